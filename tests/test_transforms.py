"""Tests of mrcnn_tf.data.transforms: hand-computed geometry and round trips."""

import numpy as np
import pytest
from skimage.draw import disk
from skimage.transform import resize

from mrcnn_tf.data.transforms import (
    compose_image_meta,
    expand_mask,
    extract_bboxes,
    minimize_mask,
    mold_image,
    parse_image_meta,
    resize_image,
    resize_mask,
    unmold_image,
    unmold_mask,
)


def iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


# ---------------------------------------------------------------- extract_bboxes
def test_extract_bboxes_hand_made_10x12():
    mask = np.zeros([10, 12, 4], bool)
    mask[2:6, 3:9, 0] = True          # rectangle rows 2..5, cols 3..8
    mask[9, 11, 1] = True             # single bottom-right pixel
    mask[1, 0, 3] = mask[7, 4, 3] = True  # two far-apart pixels: box spans both
    boxes = extract_bboxes(mask)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[2, 3, 6, 9], [9, 11, 10, 12], [0, 0, 0, 0], [1, 0, 8, 5]])


def test_extract_bboxes_no_instances():
    assert extract_bboxes(np.zeros([5, 6, 0], bool)).shape == (0, 4)


# ------------------------------------------------------------------ resize_image
@pytest.fixture
def image_100x200():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(100, 200, 3)).astype(np.uint8)


def test_resize_none_returns_input(image_100x200):
    image, window, scale, padding, crop = resize_image(image_100x200, 800, 1024, mode="none")
    assert image is image_100x200
    assert window == (0, 0, 100, 200) and scale == 1 and crop is None
    assert padding == [(0, 0), (0, 0), (0, 0)]


@pytest.mark.parametrize("min_dim, max_dim, scale, size, window, padding", [
    # short side already >= min_dim: no scaling, only centred padding
    (50, 256, 1.0, (100, 200), (78, 28, 178, 228), [(78, 78), (28, 28), (0, 0)]),
    # 1.5x would make the long side 300 > 256: limited to 256 / 200
    (150, 256, 1.28, (128, 256), (64, 0, 192, 256), [(64, 64), (0, 0), (0, 0)]),
    (120, 400, 1.2, (120, 240), (140, 80, 260, 320), [(140, 140), (80, 80), (0, 0)]),
    # odd padding total: the extra pixel goes to the bottom / right
    (None, 201, 1.0, (100, 200), (50, 0, 150, 200), [(50, 51), (0, 1), (0, 0)]),
])
def test_resize_square(image_100x200, min_dim, max_dim, scale, size, window, padding):
    image, got_window, got_scale, got_padding, crop = resize_image(
        image_100x200, min_dim, max_dim, mode="square")
    assert image.shape == (max_dim, max_dim, 3) and image.dtype == np.uint8
    assert got_scale == pytest.approx(scale)
    assert got_window == window and got_padding == padding and crop is None
    y1, x1, y2, x2 = window
    assert (y2 - y1, x2 - x1) == size
    inside = np.zeros(image.shape[:2], bool)
    inside[y1:y2, x1:x2] = True
    assert not image[~inside].any()  # padding is zeros


@pytest.mark.parametrize("min_dim, max_dim, shape, window, scale", [
    (None, None, (128, 256), (14, 28, 114, 228), 1.0),
    (128, None, (128, 256), (0, 0, 128, 256), 1.28),
    (None, 128, (64, 128), (0, 0, 64, 128), 0.64),
    (130, None, (192, 320), (31, 30, 161, 290), 1.3),
])
def test_resize_pad64(image_100x200, min_dim, max_dim, shape, window, scale):
    image, got_window, got_scale, padding, crop = resize_image(
        image_100x200, min_dim, max_dim, mode="pad64")
    assert image.shape[:2] == shape
    assert got_window == window and got_scale == pytest.approx(scale) and crop is None
    assert padding[0][0] == window[0] and padding[1][0] == window[1]
    assert padding[0][0] + padding[0][1] + window[2] - window[0] == shape[0]


def test_resize_crop_is_a_seeded_window_of_the_scaled_image(image_100x200):
    image, window, scale, padding, crop = resize_image(
        image_100x200, min_dim=64, mode="crop", rng=np.random.default_rng(3))
    assert image.shape == (64, 64, 3) and window == (0, 0, 64, 64) and scale == 1
    y, x, h, w = crop
    assert (h, w) == (64, 64) and 0 <= y <= 36 and 0 <= x <= 136
    np.testing.assert_array_equal(image, image_100x200[y:y + 64, x:x + 64])
    again = resize_image(image_100x200, min_dim=64, mode="crop", rng=np.random.default_rng(3))
    assert again[4] == crop

    image, _, scale, _, crop = resize_image(image_100x200, min_dim=150, mode="crop",
                                            rng=np.random.default_rng(0))
    assert scale == pytest.approx(1.5) and image.shape == (150, 150, 3)
    assert crop[0] == 0 and 0 <= crop[1] <= 150


def test_resize_keeps_colour_and_dtype():
    image = np.empty([100, 200, 3], np.uint8)
    image[:] = (7, 99, 200)
    resized, (y1, x1, y2, x2), _, _, _ = resize_image(image, 150, 256, mode="square")
    assert resized.dtype == np.uint8
    assert (resized[y1:y2, x1:x2] == (7, 99, 200)).all()
    as_float = resize_image(image.astype(np.float32), 150, 256, mode="square")[0]
    assert as_float.dtype == np.float32


def test_resize_bilinear_matches_skimage_reference(image_100x200):
    resized, (y1, x1, y2, x2), _, _, _ = resize_image(image_100x200, 120, 400, mode="square")
    expected = resize(image_100x200.astype(np.float64), (120, 240), order=1, mode="edge",
                      anti_aliasing=False, preserve_range=True)
    assert np.abs(resized[y1:y2, x1:x2].astype(float) - expected).max() <= 0.5 + 1e-9


def test_resize_image_rejects_bad_arguments(image_100x200):
    with pytest.raises(ValueError, match="mode"):
        resize_image(image_100x200, 64, 128, mode="bogus")
    with pytest.raises(ValueError, match="max_dim"):
        resize_image(image_100x200, 64, None, mode="square")
    with pytest.raises(ValueError, match="min_dim"):
        resize_image(image_100x200, None, 128, mode="crop")
    with pytest.raises(ValueError, match="shape"):
        resize_image(image_100x200[:, :, 0], 64, 128)


# ------------------------------------------------------------------- resize_mask
def test_resize_mask_follows_the_image():
    image = np.zeros([100, 200, 3], np.uint8)
    mask = np.zeros([100, 200, 2], bool)
    mask[10:30, 40:80, 0] = True
    mask[50:100, 0:25, 1] = True
    resized, window, scale, padding, crop = resize_image(image, 150, 256, mode="square")
    resized_mask = resize_mask(mask, scale, padding, crop)
    assert resized_mask.shape == (256, 256, 2) and resized_mask.dtype == bool
    top = window[0]
    expected = np.array([[10, 40, 30, 80], [50, 0, 100, 25]]) * 1.28 + [top, 0, top, 0]
    np.testing.assert_allclose(extract_bboxes(resized_mask), expected, atol=1)


def test_resize_mask_with_crop_and_without_instances():
    mask = np.zeros([100, 200, 1], bool)
    mask[20:40, 30:90, 0] = True
    cropped = resize_mask(mask, 1.0, [(0, 0)] * 3, crop=(10, 20, 64, 64))
    np.testing.assert_array_equal(cropped, mask[10:74, 20:84])
    empty = resize_mask(np.zeros([100, 200, 0], bool), 1.28, [(64, 64), (0, 0), (0, 0)])
    assert empty.shape == (256, 256, 0)


def test_resize_mask_keeps_thin_lines():
    mask = np.zeros([40, 40, 1], bool)
    mask[:, 17, 0] = True  # one pixel wide
    resized = resize_mask(mask, 1.5, [(0, 0)] * 3)
    assert resized.shape == (60, 60, 1)
    assert resized[:, :, 0].any(axis=1).all()  # every row still has the line


# ------------------------------------------------------ minimize / expand masks
def disc_mask(shape, centre, radius):
    mask = np.zeros(shape + (1,), bool)
    mask[disk(centre, radius, shape=shape) + (0,)] = True
    return mask


def test_minimize_then_expand_recovers_a_disc():
    mask = disc_mask((100, 120), (50, 60), 20)
    boxes = extract_bboxes(mask)
    mini = minimize_mask(boxes, mask, (56, 56))
    assert mini.shape == (56, 56, 1) and mini.dtype == bool
    restored = expand_mask(boxes, mini, (100, 120, 3))
    assert restored.shape == mask.shape
    assert iou(restored, mask) > 0.9


def test_minimize_mask_of_a_full_box_is_full_and_empty_box_is_empty():
    mask = np.zeros([30, 40, 2], bool)
    mask[5:15, 10:30, 0] = True
    mini = minimize_mask([[5, 10, 15, 30], [0, 0, 0, 0]], mask, (8, 8))
    assert mini[:, :, 0].all()
    assert not mini[:, :, 1].any()


def test_expand_mask_fills_exactly_the_box():
    mini = np.ones([7, 7, 2], bool)
    full = expand_mask([[2, 3, 7, 9], [4, 4, 4, 9]], mini, (10, 12))
    expected = np.zeros([10, 12], bool)
    expected[2:7, 3:9] = True
    np.testing.assert_array_equal(full[:, :, 0], expected)
    assert not full[:, :, 1].any()  # zero-height box


# ------------------------------------------------------------------- unmold_mask
def test_unmold_mask_integer_box_inside_the_image():
    full = unmold_mask(np.ones([28, 28]), (10, 20, 30, 50), (60, 80, 3))
    expected = np.zeros([60, 80], bool)
    expected[10:30, 20:50] = True
    np.testing.assert_array_equal(full, expected)


def test_unmold_mask_clips_boxes_outside_the_image():
    full = unmold_mask(np.ones([28, 28]), (-5, -10, 20, 30), (60, 80))
    expected = np.zeros([60, 80], bool)
    expected[0:20, 0:30] = True
    np.testing.assert_array_equal(full, expected)
    far = unmold_mask(np.ones([28, 28]), (70, 90, 100, 120), (60, 80))
    assert not far.any()


@pytest.mark.parametrize("box", [(10, 10, 10, 20), (10, 10, 20, 10), (20, 20, 10, 10)])
def test_unmold_mask_empty_box_gives_empty_mask(box):
    assert not unmold_mask(np.ones([28, 28]), box, (40, 40)).any()


def test_unmold_mask_sub_pixel_box_uses_pixel_centres():
    # Pixel centres 11.5 .. 20.5 lie in [10.6, 20.6); 10.5 .. 18.5 in [10, 19.4).
    full = unmold_mask(np.ones([28, 28]), (10.6, 10.0, 20.6, 19.4), (40, 40))
    expected = np.zeros([40, 40], bool)
    expected[11:21, 10:19] = True
    np.testing.assert_array_equal(full, expected)


def test_unmold_mask_left_half():
    prob = np.zeros([28, 28])
    prob[:, :14] = 1.0
    full = unmold_mask(prob, (0, 0, 40, 40), (40, 40))
    assert full[:, :20].all() and not full[:, 20:].any()


@pytest.mark.parametrize("seed", range(8))
def test_unmold_mask_matches_skimage_for_integer_boxes(seed):
    rng = np.random.default_rng(seed)
    prob = rng.random([28, 28])
    y1, x1 = rng.integers(0, 30, size=2)
    y2, x2 = y1 + rng.integers(1, 30), x1 + rng.integers(1, 40)
    full = unmold_mask(prob, (y1, x1, y2, x2), (64, 72))
    reference = np.zeros([64, 72])
    reference[y1:y2, x1:x2] = resize(prob, (y2 - y1, x2 - x1), order=1, mode="edge",
                                     anti_aliasing=False)
    decided = np.abs(reference - 0.5) > 1e-6  # ignore float ties at the threshold
    np.testing.assert_array_equal(full[decided], reference[decided] >= 0.5)
    assert not full[:y1].any() and not full[y2:].any()


def test_unmold_mask_rejects_3d_probabilities():
    with pytest.raises(ValueError, match="mask_prob"):
        unmold_mask(np.ones([28, 28, 1]), (0, 0, 5, 5), (10, 10))


# ---------------------------------------------------------------- mold / unmold
def test_mold_unmold_round_trip():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(2, 8, 9, 3)).astype(np.uint8)
    mean_pixel = np.array([123.7, 116.8, 103.9])
    molded = mold_image(images, mean_pixel)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded[1, 2, 3], images[1, 2, 3] - mean_pixel, rtol=1e-6)
    restored = unmold_image(molded, mean_pixel)
    assert restored.dtype == np.uint8
    np.testing.assert_array_equal(restored, images)


# ----------------------------------------------------------------- image meta
def test_image_meta_round_trip_single_and_batch():
    meta = compose_image_meta(7, (100, 200, 3), (256, 256, 3), (64, 0, 192, 256), 1.28,
                              [1, 0, 1, 1])
    assert meta.dtype == np.float32 and meta.shape == (16,)
    np.testing.assert_allclose(meta, [7, 100, 200, 3, 256, 256, 3, 64, 0, 192, 256, 1.28,
                                      1, 0, 1, 1], rtol=1e-6)
    single = parse_image_meta(meta)
    assert single["image_id"] == 7 and single["image_id"].dtype == np.int32
    np.testing.assert_array_equal(single["original_image_shape"], [100, 200, 3])
    np.testing.assert_array_equal(single["image_shape"], [256, 256, 3])
    np.testing.assert_array_equal(single["window"], [64, 0, 192, 256])
    assert single["scale"] == pytest.approx(1.28)
    np.testing.assert_array_equal(single["active_class_ids"], [1, 0, 1, 1])

    other = compose_image_meta(8, (50, 60, 3), (64, 64, 3), (7, 2, 57, 62), 1.0, [1, 1, 0, 0])
    batch = parse_image_meta(np.stack([meta, other]))
    np.testing.assert_array_equal(batch["image_id"], [7, 8])
    np.testing.assert_array_equal(batch["window"], [[64, 0, 192, 256], [7, 2, 57, 62]])
    np.testing.assert_allclose(batch["scale"], [1.28, 1.0], rtol=1e-6)
    assert batch["active_class_ids"].shape == (2, 4)


def test_image_meta_rejects_bad_shapes():
    with pytest.raises(ValueError, match="window"):
        compose_image_meta(0, (10, 10, 3), (10, 10, 3), (0, 0, 10), 1.0, [1])
    with pytest.raises(ValueError, match="meta"):
        parse_image_meta(np.zeros([5]))
