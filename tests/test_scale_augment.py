"""Scale augmentation happens in the resize, so the model really sees other object sizes:
multi-scale short sides (IMAGE_MIN_DIM tuple), large-scale jitter (IMAGE_SCALE_JITTER) and the
flip each change the molded image, masks and boxes, consistently with one another."""

import numpy as np
import pytest

from mrcnn_tf.data.augment import HorizontalFlip, ScaleJitter, check_effective
from mrcnn_tf.data.samples import extract_bboxes, mold_sample, read_sample
from mrcnn_tf.data.shapes import ShapesConfig
from test_model import shapes


@pytest.fixture(scope="module")
def dataset():
    return shapes(2, seed=4, size=96, min_instances=2, max_instances=3)


def molded(dataset, config, seed, augmentation=None):
    sample = read_sample(dataset, config, 0, augmentation, np.random.default_rng(seed))
    out = {k: np.asarray(v) for k, v in mold_sample(sample, config).items()}
    n = int(out["num_instances"])
    return out, out["gt_boxes"][:n], out["gt_masks"][..., :n], out["gt_class_ids"][:n]


def check_consistent(dataset, out, boxes, masks, class_ids):
    """Boxes are the masks' boxes; each mask covers pixels of its shape's colour in the molded
    image (shapes are solid: the mean colour under a mask matches the original's)."""
    np.testing.assert_array_equal(boxes, extract_bboxes(masks))
    image = dataset.load_image(0)
    original_masks, original_ids = dataset.load_mask(0)
    for k, class_id in enumerate(class_ids):
        inside = masks[:, :, k]
        if inside.sum() < 20:  # a sliver at the crop edge: too few pixels for a mean
            continue
        colour = out["image"][inside].mean(axis=0)
        references = [image[original_masks[:, :, j]].mean(axis=0)
                      for j in np.flatnonzero(original_ids == class_id)]
        assert min(np.abs(colour - r).max() for r in references) < 25, (colour, references)


def test_multi_scale_short_sides_spread_the_molded_boxes(dataset):
    config = ShapesConfig(IMAGE_RESIZE_MODE="shortest_edge", IMAGE_MIN_DIM=(64, 96, 128),
                          IMAGE_MAX_DIM=256, USE_MINI_MASK=False)
    sides, heights = set(), []
    for seed in range(12):
        out, boxes, masks, class_ids = molded(dataset, config, seed)
        sides.add(int(out["molded_size"].min()))
        heights.append(float(boxes[:, 2].max() - boxes[:, 0].min()))
        check_consistent(dataset, out, boxes, masks, class_ids)
    assert sides == {64, 96, 128}
    assert max(heights) / min(heights) > 1.8  # the same objects at 2/3x .. 4/3x
    # Inference molds at the largest short side (detectron2's test size).
    from mrcnn_tf.ops.image import scaled_size
    assert int(scaled_size(96, 96, "shortest_edge", (64, 96, 128), 256)[1]) == 128


def test_large_scale_jitter_spreads_sizes_in_a_fixed_canvas(dataset):
    config = ShapesConfig(IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128, IMAGE_SCALE_JITTER=(0.1, 2.0),
                          USE_MINI_MASK=False)
    areas = []
    for seed in range(30):
        out, boxes, masks, class_ids = molded(dataset, config, seed)
        assert out["image"].shape == (128, 128, 3)  # the batch shape never changes
        window = out["window"]
        assert not out["image"][window[2]:].any() and not out["image"][:, window[3]:].any()  # padding
        if len(boxes):
            areas.append(float(masks.sum(axis=(0, 1)).mean()))
            check_consistent(dataset, out, boxes, masks, class_ids)
    assert max(areas) / min(areas) > 20  # 0.1x .. 2x: object areas over two orders of magnitude
    with pytest.raises(ValueError, match="IMAGE_SCALE_JITTER"):
        ShapesConfig(IMAGE_RESIZE_MODE="pad64", IMAGE_SCALE_JITTER=(0.5, 2.0))


def test_flip_mirrors_the_molded_image_masks_and_boxes(dataset):
    config = ShapesConfig(IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128, USE_MINI_MASK=False)
    plain, boxes, masks, _ = molded(dataset, config, 0)
    flipped, flipped_boxes, flipped_masks, _ = molded(dataset, config, 0, HorizontalFlip(p=1.0))
    np.testing.assert_allclose(flipped["image"], plain["image"][:, ::-1], atol=1e-3)
    np.testing.assert_array_equal(flipped_masks, masks[:, ::-1])
    np.testing.assert_array_equal(flipped_boxes[:, [1, 3]], 128 - boxes[:, [3, 1]])


def test_a_scale_jitter_the_resize_would_undo_is_refused():
    with pytest.raises(ValueError, match="undone by IMAGE_RESIZE_MODE 'square'"):
        check_effective(ScaleJitter(), "square")
    check_effective(ScaleJitter(), "none")  # no resize: the rescale stays
