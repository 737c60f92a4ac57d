"""From a dataset to training batches: boxes of masks, one image molded as the model sees
it, and batches of different image sizes padded, normalised and described by name."""

import numpy as np
import pytest

from mrcnn_tf import DataGenerator
from mrcnn_tf.data import ShapesConfig, ShapesDataset, extract_bboxes, load_image_gt, load_sample
from mrcnn_tf.image_meta import parse_image_meta
from mrcnn_tf.ops.image import normalize, resize_image
from reference.numpy_ops import ref_normalize


# ------------------------------------------------------------ extract_bboxes
def test_extract_bboxes_hand_made_10x12():
    masks = np.zeros([10, 12, 4], bool)
    masks[2:6, 3:9, 0] = True          # rectangle rows 2..5, cols 3..8
    masks[9, 11, 1] = True             # single bottom-right pixel
    masks[1, 0, 3] = masks[7, 4, 3] = True  # two far-apart pixels: box spans both
    boxes = extract_bboxes(masks)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[2, 3, 6, 9], [9, 11, 10, 12], [0, 0, 0, 0], [1, 0, 8, 5]])
    assert extract_bboxes(np.zeros([5, 6, 0], bool)).shape == (0, 4)
    with pytest.raises(ValueError, match="masks"):
        extract_bboxes(np.zeros([5, 6], bool))


# ------------------------------------------------------------------ batches
def two_sizes():
    """Image 0 is 50x90, image 1 is 40x30."""
    dataset = ShapesDataset()
    dataset.load_shapes(1, 50, 90, seed=0)
    dataset.load_shapes(1, 40, 30, seed=0)
    dataset.prepare()
    return dataset


def config_for(mode, **kwargs):
    return ShapesConfig(IMAGE_RESIZE_MODE=mode, IMAGES_PER_GPU=2, **kwargs)


def test_shortest_edge_batch_is_padded_black_to_the_pad_multiple():
    dataset = two_sizes()
    config = config_for("shortest_edge", IMAGE_MIN_DIM=40, IMAGE_MAX_DIM=100, USE_MINI_MASK=False,
                        INPUT_CHANNEL_ORDER="BGR", MEAN_PIXEL=(1.0, 2.0, 3.0),
                        PIXEL_STD=(2.0, 4.0, 5.0))
    batch = DataGenerator(dataset, config, shuffle=False, seed=0)[0]
    # 50x90 -> 40x72 (0.8); 40x30 -> 53x40 (40 / 30, floored); 53x72 -> 64x96 (multiples of 32)
    assert batch["input_image"].shape == (2, 64, 96, 3) and batch["input_image"].dtype == np.float32
    assert batch["input_gt_masks"].shape == (2, 64, 96, config.MAX_GT_INSTANCES)
    meta = parse_image_meta(batch["input_image_meta"])
    np.testing.assert_array_equal(meta["image_id"], [0, 1])
    np.testing.assert_array_equal(meta["original_image_shape"], [[50, 90, 3], [40, 30, 3]])
    np.testing.assert_array_equal(meta["image_shape"], [[64, 96, 3], [64, 96, 3]])
    np.testing.assert_array_equal(meta["window"], [[0, 0, 40, 72], [0, 0, 53, 40]])
    np.testing.assert_allclose(meta["scale"], [0.8, 53 / 40], rtol=1e-6)
    np.testing.assert_array_equal(meta["active_class_ids"], np.ones([2, 4]))
    black = ref_normalize(np.zeros(3), (1.0, 2.0, 3.0), (2.0, 4.0, 5.0), "BGR")
    for b, (height, width) in enumerate([(40, 72), (53, 40)]):
        image = dataset.load_image(b)
        molded = resize_image(image, "shortest_edge", 40, 100)["image"].numpy()
        np.testing.assert_allclose(batch["input_image"][b, :height, :width],
                                   ref_normalize(molded, (1.0, 2.0, 3.0), (2.0, 4.0, 5.0), "BGR"),
                                   rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(batch["input_image"][b, height:], np.broadcast_to(black, (64 - height, 96, 3)))
        np.testing.assert_allclose(batch["input_image"][b, :, width:], np.broadcast_to(black, (64, 96 - width, 3)))
        n = (batch["input_gt_class_ids"][b] > 0).sum()
        masks = batch["input_gt_masks"][b, :, :, :n]
        assert not masks[height:].any() and not masks[:, width:].any()
        np.testing.assert_array_equal(batch["input_gt_boxes"][b, :n], extract_bboxes(masks))


def test_classic_modes_need_sides_divisible_by_64():
    config = config_for("none", IMAGE_MIN_DIM=None, IMAGE_MAX_DIM=None)
    with pytest.raises(ValueError, match="50x90.*divisible by 64"):
        DataGenerator(two_sizes(), config, shuffle=False)[0]


def test_pad64_batch_pads_each_image_centred_then_bottom_right():
    dataset = two_sizes()
    batch = DataGenerator(dataset, config_for("pad64", IMAGE_MIN_DIM=None, IMAGE_MAX_DIM=None),
                          shuffle=False, seed=0)[0]
    # 50x90 -> 64x128, window (7, 19, 57, 109); 40x30 -> 64x64, window (12, 17, 52, 47)
    assert batch["input_image"].shape == (2, 64, 128, 3)
    meta = parse_image_meta(batch["input_image_meta"])
    np.testing.assert_array_equal(meta["image_shape"][:, :2], [[64, 128], [64, 128]])
    np.testing.assert_array_equal(meta["window"], [[7, 19, 57, 109], [12, 17, 52, 47]])
    mean = ShapesConfig.MEAN_PIXEL
    np.testing.assert_allclose(batch["input_image"][1, 12:52, 17:47],
                               normalize(dataset.load_image(1), mean).numpy(), rtol=1e-6)
    np.testing.assert_allclose(batch["input_image"][1, :, 64:], -np.broadcast_to(mean, (64, 64, 3)))


def test_crop_mode_draws_its_offset_from_the_seed():
    dataset = ShapesDataset()
    dataset.load_shapes(2, 50, 90, seed=0)
    dataset.prepare()
    config = config_for("crop", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=None)
    first = DataGenerator(dataset, config, shuffle=False, seed=3)[0]
    again = DataGenerator(dataset, config, shuffle=False, seed=3)[0]
    assert first["input_image"].shape == (2, 64, 64, 3)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    meta = parse_image_meta(first["input_image_meta"])
    np.testing.assert_array_equal(meta["window"], [[0, 0, 64, 64]] * 2)
    np.testing.assert_allclose(meta["scale"], [1.28, 1.28], rtol=1e-6)
    # 50x90 scales to 64x115: the crops start at x in 0..51, drawn per seed
    images = {DataGenerator(dataset, config, shuffle=False, seed=s)[0]["input_image"][0].tobytes()
              for s in range(6)}
    assert len(images) > 1


def test_load_image_gt_molds_one_image():
    dataset = two_sizes()
    config = config_for("square", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64)
    image, meta, class_ids, boxes, masks = load_image_gt(dataset, config, 1,
                                                         rng=np.random.default_rng(0))
    assert image.shape == (64, 64, 3) and image.dtype == np.float32  # pixels, not rounded
    assert 0 <= image.min() and image.max() <= 255
    parsed = parse_image_meta(meta)
    assert parsed["image_id"] == 1
    np.testing.assert_array_equal(parsed["window"], [0, 8, 64, 56])  # 40x30 x 1.6 -> 64x48
    assert masks.shape == (28, 28, len(class_ids)) and masks.dtype == bool and masks.any()
    sample = load_sample(dataset, config, 1, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(sample["image"], image)
    np.testing.assert_array_equal(sample["info"]["molded_size"], [64, 64])


@pytest.mark.parametrize("method, refused", [("fork", True), ("forkserver", False), ("spawn", False)])
def test_worker_processes_must_not_be_forked(monkeypatch, method, refused):
    """TF ops hang in a forked child once the parent used TF's thread pool."""
    import multiprocessing

    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: method)
    dataset, config = two_sizes(), config_for("square", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64)
    if refused:
        with pytest.raises(ValueError, match="'fork' start method"):
            DataGenerator(dataset, config, workers=2, use_multiprocessing=True)
    else:
        DataGenerator(dataset, config, workers=2, use_multiprocessing=True)
    DataGenerator(dataset, config, workers=2)  # threads: any start method
