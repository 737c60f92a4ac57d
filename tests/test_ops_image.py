"""ops/image.py: resize modes by hand, bilinear against a float64 loop, masks following
their image, normalisation, and molding a batch of different sizes."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.data import extract_bboxes
from mrcnn_tf.ops.image import (batch_molded_size, boxes_to_original, denormalize, mold_batch,
                                normalize, pad_to_batch, crop_offset, resize_bilinear,
                                resize_image, resize_masks, scale_masks, scaled_size)
from reference.numpy_ops import ref_normalize, ref_resize_bilinear, ref_scaled_size

MEAN = (123.7, 116.8, 103.9)


@pytest.fixture
def image_50x100():
    return np.random.default_rng(0).integers(0, 256, size=(50, 100, 3)).astype(np.uint8)


def numpy_of(resized):
    return {k: (v if k == "mode" else v.numpy()) for k, v in resized.items()}


# ------------------------------------------------------------------ resize rule
@pytest.mark.parametrize("mode, min_dim, max_dim, size, window, scale", [
    ("none", 800, 1024, (50, 100), (0, 0, 50, 100), 1.0),
    # short side already >= min_dim: no scaling, only centred padding
    ("square", 25, 128, (128, 128), (39, 14, 89, 114), 1.0),
    # 1.5x would make the long side 150 > 128: limited to 128 / 100
    ("square", 75, 128, (128, 128), (32, 0, 96, 128), 1.28),
    ("square", 60, 128, (128, 128), (34, 4, 94, 124), 1.2),
    # odd padding total: the extra pixel goes to the bottom / right
    ("square", None, 101, (101, 101), (25, 0, 75, 100), 1.0),
    ("pad64", None, None, (64, 128), (7, 14, 57, 114), 1.0),
    ("pad64", 64, None, (64, 128), (0, 0, 64, 128), 1.28),
    ("pad64", None, 64, (64, 64), (16, 0, 48, 64), 0.64),
    ("pad64", 65, None, (128, 192), (31, 31, 96, 161), 1.3),
    # shortest_edge: min(min_dim / short, max_dim / long), up or down, never padded
    ("shortest_edge", 40, 100, (40, 80), (0, 0, 40, 80), 0.8),
    ("shortest_edge", 80, 120, (60, 120), (0, 0, 60, 120), 1.2),
])
def test_resize_modes_by_hand(image_50x100, mode, min_dim, max_dim, size, window, scale):
    out = numpy_of(resize_image(image_50x100, mode, min_dim, max_dim))
    assert out["image"].dtype == np.float32 and out["image"].shape == size + (3,)
    assert tuple(out["window"]) == window and out["mode"] == mode
    np.testing.assert_allclose(out["scale"], [scale, scale], rtol=1e-6)
    y1, x1, y2, x2 = window
    np.testing.assert_array_equal(out["scaled_size"], [y2 - y1, x2 - x1])
    np.testing.assert_array_equal(out["crop"], [0, 0, 0, 0])
    inside = np.zeros(size, bool)
    inside[y1:y2, x1:x2] = True
    assert not out["image"][~inside].any()  # padding is black
    np.testing.assert_allclose(out["image"][y1:y2, x1:x2],
                               ref_resize_bilinear(image_50x100, y2 - y1, x2 - x1), atol=0.01)


def test_shortest_edge_floors_sizes_from_a_float32_scale():
    # 30 / 50 = 0.6 (float32 0.60000002): 81 * 0.6 = 48.6 floors to 48 (rounding gives 49).
    assert [int(v) for v in scaled_size(50, 81, "shortest_edge", 30, 1000)[1:]] == [30, 48]
    # max_dim wins: min(100 / 50, 120 / 81); float32 120 / 81 = 1.48148143 is just below,
    # so the long side is 81 x 1.48148143 = 119.999996 -> 119, as torchvision sizes it.
    assert [int(v) for v in scaled_size(50, 81, "shortest_edge", 100, 120)[1:]] == [74, 119]
    # float32 9 / 5 = 1.79999995: 5 -> 8 pixels, not 9.
    assert [int(v) for v in scaled_size(5, 5, "shortest_edge", 9, 100)[1:]] == [8, 8]
    rng = np.random.default_rng(1)
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(5, 128, size=2))
        min_dim, max_dim = int(rng.integers(8, 96)), int(rng.integers(96, 160))
        _, new_h, new_w = scaled_size(height, width, "shortest_edge", min_dim, max_dim)
        assert (int(new_h), int(new_w)) == ref_scaled_size(height, width, "shortest_edge",
                                                           min_dim, max_dim)[1:]


@pytest.mark.parametrize("mode", ["square", "pad64", "crop", "none"])
def test_classic_scale_rule_matches_the_reference(mode):
    rng = np.random.default_rng(2)
    for _ in range(30):
        height, width = (int(v) for v in rng.integers(3, 128, size=2))
        min_dim = int(rng.integers(4, 100))
        max_dim = max(int(rng.integers(64, 160)), min_dim)
        min_scale = float(rng.choice([0, 1.5]))
        scale, new_h, new_w = scaled_size(height, width, mode, min_dim, max_dim, min_scale)
        want = ref_scaled_size(height, width, mode, min_dim, max_dim, min_scale)
        assert float(scale) == pytest.approx(want[0]) and (int(new_h), int(new_w)) == want[1:]


def test_resize_rejects_bad_arguments(image_50x100):
    with pytest.raises(ValueError, match="mode"):
        resize_image(image_50x100, "bogus", 64, 128)
    with pytest.raises(ValueError, match="max_dim"):
        resize_image(image_50x100, "square", 64, None)
    with pytest.raises(ValueError, match="min_dim"):
        resize_image(image_50x100, "crop", None, 128)
    with pytest.raises(ValueError, match="min_dim"):
        resize_image(image_50x100, "shortest_edge", None, 128)
    with pytest.raises(ValueError, match="crop_yx"):
        resize_image(image_50x100, "crop", 64)
    with pytest.raises(ValueError, match="shape"):
        resize_image(image_50x100[:, :, 0], "square", 64, 128)


# ----------------------------------------------------------------- bilinear
@pytest.mark.parametrize("seed", range(6))
def test_resize_bilinear_is_half_pixel_against_a_loop(seed):
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(2, 24, size=2))
    out_h, out_w = (int(v) for v in rng.integers(1, 40, size=2))  # up and down
    image = rng.uniform(0, 255, size=(height, width, 2))
    got = resize_bilinear(tf.constant(image, tf.float32), out_h, out_w).numpy()
    np.testing.assert_allclose(got, ref_resize_bilinear(image, out_h, out_w), atol=0.01)


def test_resize_bilinear_by_hand_and_identity():
    # 1 x 2 -> 1 x 4: centres 0.5..3.5 read index -0.25, 0.25, 0.75, 1.25 (clamped at the edges).
    row = tf.constant([[[0.0], [8.0]]])
    np.testing.assert_allclose(resize_bilinear(row, 1, 4).numpy()[0, :, 0], [0, 2, 6, 8])
    image = np.random.default_rng(3).uniform(0, 255, size=(7, 9, 3)).astype(np.float32)
    np.testing.assert_array_equal(resize_bilinear(image, 7, 9).numpy(), image)


# ------------------------------------------------------------- crop mode
def test_crop_is_the_window_of_the_scaled_image_at_the_offset(image_50x100):
    # Each offset is uniform over its choices: 65 in x (0..64), 1 in y.
    np.testing.assert_array_equal(crop_offset([64, 128], 64, [0.0, 0.0]), [0, 0])
    np.testing.assert_array_equal(crop_offset([64, 128], 64, [0.99, 0.5]), [0, 32])  # floor(0.5 * 65)
    np.testing.assert_array_equal(crop_offset([64, 128], 64, [0.5, 0.9999]), [0, 64])
    np.testing.assert_array_equal(crop_offset([64, 128], 64, [1.0, 1.0]), [0, 64])  # stays inside
    offset = tuple(int(v) for v in crop_offset([64, 128], 64, np.random.default_rng(3).random(2)))
    y, x = offset
    assert y == 0 and 0 <= x <= 64
    out = numpy_of(resize_image(image_50x100, "crop", 64, crop_yx=offset))
    assert out["image"].shape == (64, 64, 3) and tuple(out["window"]) == (0, 0, 64, 64)
    np.testing.assert_array_equal(out["crop"], [y, x, 64, 64])
    np.testing.assert_array_equal(out["scaled_size"], [64, 128])
    np.testing.assert_allclose(out["scale"], [1.28, 1.28], rtol=1e-6)
    scaled = resize_bilinear(tf.constant(image_50x100, tf.float32), 64, 128).numpy()
    np.testing.assert_array_equal(out["image"], scaled[y:y + 64, x:x + 64])
    offsets = {tuple(int(v) for v in crop_offset([64, 128], 64, np.random.default_rng(s).random(2)))
               for s in range(20)}
    assert all(0 <= ox <= 64 and oy == 0 for oy, ox in offsets) and len(offsets) > 5


def test_crop_outside_the_scaled_image_is_refused(image_50x100):
    with pytest.raises(tf.errors.InvalidArgumentError, match="does not fit"):
        crop_offset([50, 100], 64, [0.5, 0.5])
    with pytest.raises(tf.errors.InvalidArgumentError, match="crop"):
        resize_image(image_50x100, "crop", 64, crop_yx=(1, 0))


# -------------------------------------------------------------------- masks
def box_masks(shape, boxes):
    masks = np.zeros(tuple(shape) + (len(boxes),), bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    return masks


@pytest.mark.parametrize("mode, min_dim, max_dim", [
    ("square", 75, 128), ("pad64", 65, None), ("shortest_edge", 40, 100), ("none", None, None)])
def test_masks_follow_their_image(mode, min_dim, max_dim):
    boxes = np.array([[5, 20, 15, 40], [25, 0, 50, 13], [0, 60, 50, 100]])
    masks = box_masks((50, 100), boxes)
    # An image that is the first mask (0 / 255): resized, it is the resized mask (x 255).
    image = np.repeat(masks[:, :, :1] * 255, 3, axis=2).astype(np.uint8)
    resized = resize_image(image, mode, min_dim, max_dim)
    got = resize_masks(masks, resized).numpy()
    assert got.dtype == bool and got.shape == tuple(resized["image"].shape[:2]) + (3,)
    np.testing.assert_array_equal(got[:, :, 0], resized["image"].numpy()[:, :, 0] > 127.5)
    window, scale = resized["window"].numpy(), resized["scale"].numpy()
    expected = boxes * np.tile(scale, 2) + np.tile(window[:2], 2)
    np.testing.assert_allclose(extract_bboxes(got), expected, atol=1)


def test_masks_in_crop_mode_are_cropped_like_the_image():
    masks = box_masks((50, 100), [[10, 30, 20, 90]])
    resized = resize_image(np.zeros([50, 100, 3], np.uint8), "crop", 64, crop_yx=(0, 40))
    got = resize_masks(masks, resized).numpy()
    assert got.shape == (64, 64, 1)
    np.testing.assert_array_equal(got, scale_masks(masks, 64, 128).numpy()[:, 40:104])
    np.testing.assert_allclose(extract_bboxes(got), [[12.8, 0, 25.6, 64]], atol=1)  # x cut at 64


def test_masks_without_instances_and_thin_lines():
    resized = resize_image(np.zeros([50, 100, 3], np.uint8), "square", 75, 128)
    assert resize_masks(np.zeros([50, 100, 0], bool), resized).shape == (128, 128, 0)
    line = np.zeros([40, 40, 1], bool)
    line[:, 17] = True  # one pixel wide: bilinear then > 0.5 keeps it when scaling up
    assert scale_masks(line, 60, 60).numpy()[:, :, 0].any(axis=1).all()
    with pytest.raises(ValueError, match="masks"):
        scale_masks(line[:, :, 0], 60, 60)


# ---------------------------------------------------------------- normalise
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_normalize_by_hand_and_back(order):
    pixel = np.array([[10.0, 20.0, 30.0]], np.float32)
    mean, std = (1.0, 2.0, 3.0), (2.0, 4.0, 5.0)
    expected = {"RGB": [4.5, 4.5, 5.4], "BGR": [14.5, 4.5, 1.4]}[order]
    np.testing.assert_allclose(normalize(pixel, mean, std, order).numpy()[0], expected, rtol=1e-6)
    images = np.random.default_rng(4).integers(0, 256, size=(2, 5, 6, 3)).astype(np.uint8)
    molded = normalize(images, MEAN, (58.4, 57.1, 57.4), order).numpy()
    np.testing.assert_allclose(molded, ref_normalize(images, MEAN, (58.4, 57.1, 57.4), order),
                               rtol=1e-5, atol=1e-5)
    back = denormalize(molded, MEAN, (58.4, 57.1, 57.4), order).numpy()
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, images)


def test_normalize_rejects_unknown_channel_orders():
    with pytest.raises(ValueError, match="channel_order"):
        normalize(np.zeros([1, 3]), MEAN, channel_order="RBG")


# ------------------------------------------------------------------ batches
def two_images():
    rng = np.random.default_rng(5)
    first = rng.integers(0, 256, size=(50, 100, 3)).astype(np.uint8)
    second = rng.integers(0, 256, size=(40, 30, 3)).astype(np.uint8)
    stacked = np.zeros([2, 50, 100, 3], np.uint8)
    stacked[0], stacked[1, :40, :30] = first, second
    return (first, second), stacked, np.array([[50, 100], [40, 30]], np.int32)


@pytest.mark.parametrize("mode, min_dim, max_dim, molded_size, windows, scales", [
    # pad64 (and "crop", molded as pad64 at inference): 64x128 and 64x64, batch 64x128
    ("pad64", None, None, (64, 128), [(7, 14, 57, 114), (12, 17, 52, 47)], [(1, 1), (1, 1)]),
    ("crop", None, None, (64, 128), [(7, 14, 57, 114), (12, 17, 52, 47)], [(1, 1), (1, 1)]),
    # shortest_edge 40..100: 40x80 (0.8) and 53x40 (40 / 30: 53.3 floored); 53x80 -> 64x96;
    # the scale is the sizes' ratio
    ("shortest_edge", 40, 100, (64, 96), [(0, 0, 40, 80), (0, 0, 53, 40)],
     [(0.8, 0.8), (53 / 40, 40 / 30)]),
    # square 64: 0.64 -> 32x64, and 40x30 unscaled (no min_dim), centred
    ("square", None, 64, (64, 64), [(16, 0, 48, 64), (12, 17, 52, 47)], [(0.64, 0.64), (1, 1)]),
])
def test_mold_batch_of_two_sizes(mode, min_dim, max_dim, molded_size, windows, scales):
    originals, stacked, sizes = two_images()
    std = (2.0, 4.0, 5.0)
    molded, info = mold_batch(stacked, sizes, mode, min_dim, max_dim, mean_pixel=MEAN,
                              pixel_std=std, channel_order="BGR")
    molded = molded.numpy()
    assert molded.shape == (2,) + molded_size + (3,) and molded.dtype == np.float32
    np.testing.assert_array_equal(info["original_size"], sizes)
    np.testing.assert_array_equal(info["molded_size"], [molded_size] * 2)
    np.testing.assert_array_equal(info["window"], windows)
    np.testing.assert_allclose(info["scale"], scales, rtol=1e-6)
    black = ref_normalize(np.zeros(3), MEAN, std, "BGR")
    for b, (y1, x1, y2, x2) in enumerate(windows):
        inner = ref_resize_bilinear(originals[b], y2 - y1, x2 - x1)
        np.testing.assert_allclose(molded[b, y1:y2, x1:x2], ref_normalize(inner, MEAN, std, "BGR"),
                                   atol=0.01)
        outside = np.ones(molded_size, bool)
        outside[y1:y2, x1:x2] = False
        np.testing.assert_allclose(molded[b][outside], np.broadcast_to(black, (outside.sum(), 3)),
                                   rtol=1e-6)


def test_batch_size_and_padding_helpers():
    sizes = np.array([[40, 80], [100, 75]])
    np.testing.assert_array_equal(batch_molded_size(sizes, "shortest_edge", 32), [128, 96])
    np.testing.assert_array_equal(batch_molded_size(sizes, "shortest_edge", 10), [100, 80])
    np.testing.assert_array_equal(batch_molded_size(sizes, "pad64"), [100, 80])
    image = np.ones([2, 3, 1], np.float32)
    padded = pad_to_batch(image, [4, 5]).numpy()
    assert padded.shape == (4, 5, 1) and padded.sum() == 6 and padded[:2, :3].all()
    assert pad_to_batch(np.ones([2, 3, 2], bool), [2, 4]).numpy().sum() == 12


def test_boxes_to_original_inverts_the_molding():
    _, stacked, sizes = two_images()
    _, info = mold_batch(stacked, sizes, "shortest_edge", 40, 100)
    boxes_px = np.array([[[5.0, 10.0, 30.0, 90.0]], [[0.0, 3.0, 40.0, 30.0]]], np.float32)
    scale = np.tile(info["scale"].numpy(), 2)[:, None]
    offset = np.tile(info["window"].numpy()[:, :2], 2)[:, None]
    molded_hw = np.tile(info["molded_size"].numpy(), 2)[:, None]
    boxes_norm = (boxes_px * scale + offset) / molded_hw
    np.testing.assert_allclose(boxes_to_original(boxes_norm, info).numpy(), boxes_px, atol=1e-4)


def test_resize_traces_once_for_any_size_with_a_tensor_crop_offset():
    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32),
                                  tf.TensorSpec([None, None, None], tf.bool),
                                  tf.TensorSpec([2], tf.int32)])
    def crop(image, masks, crop_yx):
        resized = resize_image(image, "crop", 32, crop_yx=crop_yx)
        return resized["image"], resize_masks(masks, resized)

    for height, width, count in ((50, 100, 2), (40, 32, 0)):
        image = np.random.default_rng(6).uniform(0, 255, size=(height, width, 3)).astype(np.float32)
        masks = np.ones([height, width, count], bool)
        got_image, got_masks = crop(image, masks, np.array([2, 0], np.int32))
        eager = resize_image(image, "crop", 32, crop_yx=(2, 0))
        np.testing.assert_allclose(got_image.numpy(), eager["image"].numpy(), atol=1e-4)
        assert got_masks.shape == (32, 32, count) and got_masks.numpy().all()
    assert crop.experimental_get_tracing_count() == 1
