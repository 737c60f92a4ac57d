"""Augmentation transforms: geometry against hand-written formulas, seeding, adapter."""

import numpy as np
import pytest

from mrcnn_tf.data.augment import (ColorJitter, Compose, HorizontalFlip, RandomCrop, Rotate90,
                                   ScaleJitter, VerticalFlip, default_augmentation,
                                   from_albumentations)
from mrcnn_tf.data import extract_bboxes

H, W = 20, 30
# Two instances: boxes (y1, x1, y2, x2) = (2, 3, 9, 12) and (12, 20, 18, 27).
BOXES = np.array([[2, 3, 9, 12], [12, 20, 18, 27]])


def sample():
    """Image whose channels 0/1 hold each pixel's row/column, and box masks."""
    rows, cols = np.mgrid[0:H, 0:W]
    image = np.stack([rows, cols, (rows * 7 + cols * 3) % 256], axis=2).astype(np.uint8)
    masks = np.zeros([H, W, len(BOXES)], bool)
    for i, (y1, x1, y2, x2) in enumerate(BOXES):
        masks[y1:y2, x1:x2, i] = True
    return image, masks


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("flip", [HorizontalFlip(p=1.0), VerticalFlip(p=1.0)])
def test_flip_twice_is_identity(flip):
    image, masks = sample()
    once = flip(image, masks, rng())
    assert not np.array_equal(once[0], image)
    twice = flip(*once, rng())
    np.testing.assert_array_equal(twice[0], image)
    np.testing.assert_array_equal(twice[1], masks)


def test_flip_boxes_follow_the_formula():
    image, masks = sample()
    y1, x1, y2, x2 = BOXES.T
    _, flipped = HorizontalFlip(p=1.0)(image, masks, rng())
    np.testing.assert_array_equal(extract_bboxes(flipped), np.stack([y1, W - x2, y2, W - x1], 1))
    _, flipped = VerticalFlip(p=1.0)(image, masks, rng())
    np.testing.assert_array_equal(extract_bboxes(flipped), np.stack([H - y2, x1, H - y1, x2], 1))


def test_p_zero_changes_nothing():
    image, masks = sample()
    for transform in (HorizontalFlip(p=0.0), VerticalFlip(p=0.0), Rotate90(p=0.0)):
        out_image, out_masks = transform(image, masks, rng())
        np.testing.assert_array_equal(out_image, image)
        np.testing.assert_array_equal(out_masks, masks)


def test_rotate90_moves_pixels_and_boxes():
    image, masks = sample()
    y1, x1, y2, x2 = BOXES.T
    y, x = 4, 25  # a marked pixel
    # Counter-clockwise by k quarter turns: where (y, x) goes, and the new boxes.
    expected = {1: ((W - 1 - x, y), np.stack([W - x2, y1, W - x1, y2], 1), (W, H)),
                2: ((H - 1 - y, W - 1 - x), np.stack([H - y2, W - x2, H - y1, W - x1], 1), (H, W)),
                3: ((x, H - 1 - y), np.stack([x1, H - y2, x2, H - y1], 1), (W, H))}
    seen = set()
    for seed in range(30):
        out_image, out_masks = Rotate90(p=1.0)(image, masks, rng(seed))
        # The image encodes source coordinates: the pixel from (y, x) is unique.
        where = np.argwhere((out_image[:, :, 0] == y) & (out_image[:, :, 1] == x))
        matches = [k for k, (pos, boxes, shape) in expected.items()
                   if out_image.shape[:2] == shape and tuple(where[0]) == pos
                   and np.array_equal(extract_bboxes(out_masks), boxes)]
        assert len(where) == 1 and len(matches) == 1, seed
        assert out_masks.sum(axis=(0, 1)).tolist() == masks.sum(axis=(0, 1)).tolist()
        seen.update(matches)
    assert seen == {1, 2, 3}


def test_scale_jitter_keeps_relative_area_and_range():
    image, masks = sample()
    big_image = np.repeat(np.repeat(image, 4, 0), 4, 1)  # 80 x 120: less rounding noise
    big_masks = np.repeat(np.repeat(masks, 4, 0), 4, 1)
    fractions = big_masks.mean(axis=(0, 1))
    scales = []
    for seed in range(12):
        out_image, out_masks = ScaleJitter(0.8, 1.25)(big_image, big_masks, rng(seed))
        assert out_image.dtype == np.uint8 and out_masks.dtype == bool
        assert out_masks.shape[:2] == out_image.shape[:2]
        scale = out_image.shape[0] / big_image.shape[0]
        assert 0.8 - 0.02 <= scale <= 1.25 + 0.02
        assert out_image.shape[1] / big_image.shape[1] == pytest.approx(scale, abs=0.02)
        np.testing.assert_allclose(out_masks.mean(axis=(0, 1)), fractions, rtol=0.08)
        scales.append(scale)
    assert min(scales) < 0.95 and max(scales) > 1.05  # it does jitter both ways


def test_random_crop_matches_window_and_drops_outside_instances():
    image, masks = sample()
    corner = np.zeros([H, W, 1], bool)
    corner[0, 0, 0] = True  # an instance in the top-left pixel only
    masks = np.concatenate([masks, corner], axis=2)
    kept, dropped = 0, 0
    for seed in range(40):
        out_image, out_masks = RandomCrop(min_fraction=0.5)(image, masks, rng(seed))
        assert out_image.shape[0] >= 0.5 * H - 1 and out_image.shape[1] >= 0.5 * W - 1
        y, x = int(out_image[0, 0, 0]), int(out_image[0, 0, 1])  # window origin
        h, w = out_image.shape[:2]
        np.testing.assert_array_equal(out_image, image[y:y + h, x:x + w])
        np.testing.assert_array_equal(out_masks, masks[y:y + h, x:x + w])
        assert out_masks.shape[2] == 3  # cropped-away instances stay, empty
        if (y, x) == (0, 0):
            kept += 1
            assert out_masks[:, :, 2].any()
        else:
            dropped += 1
            assert not out_masks[:, :, 2].any()
    assert kept and dropped


def test_same_seed_same_output_different_seed_differs():
    image, masks = sample()
    augment = Compose([HorizontalFlip(), VerticalFlip(), Rotate90(), ScaleJitter(),
                       RandomCrop(), ColorJitter()])
    a = augment(image, masks, rng(5))
    b = augment(image, masks, rng(5))
    c = augment(image, masks, rng(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_color_jitter_changes_image_not_masks():
    image, masks = sample()
    out_image, out_masks = ColorJitter(0.3, 0.3, 0.3)(image, masks, rng(1))
    assert out_masks is masks or np.array_equal(out_masks, masks)
    assert out_image.dtype == np.uint8 and out_image.shape == image.shape
    assert not np.array_equal(out_image, image)
    # Brightness alone on a flat grey image: stays flat, within the factor range.
    flat = np.full([4, 5, 3], 100, np.uint8)
    for seed in range(10):
        out, _ = ColorJitter(0.5, 0.0, 0.0)(flat, masks[:4, :5], rng(seed))
        assert len(np.unique(out)) == 1 and 50 <= out[0, 0, 0] <= 150


def test_reprs_and_default():
    assert repr(HorizontalFlip(0.3)) == "HorizontalFlip(p=0.3)"
    assert repr(Rotate90()) == "Rotate90(p=0.5)"
    text = repr(default_augmentation())
    assert text.startswith("Compose([HorizontalFlip(p=0.5), ColorJitter(")  # scale: in the resize
    assert "ColorJitter(brightness=0.2" in text
    image, masks = sample()
    out_image, out_masks = default_augmentation()(image, masks, rng(0))
    assert out_image.shape[:2] == out_masks.shape[:2] and out_masks.shape[2] == 2


def test_argument_and_input_errors():
    with pytest.raises(ValueError, match="p must be in"):
        HorizontalFlip(p=1.5)
    with pytest.raises(ValueError, match="min_scale <= max_scale"):
        ScaleJitter(1.2, 0.9)
    with pytest.raises(ValueError, match="min_fraction"):
        RandomCrop(0)
    with pytest.raises(ValueError, match="brightness"):
        ColorJitter(brightness=-0.1)
    with pytest.raises(TypeError, match="callables"):
        Compose([HorizontalFlip(), 3])
    image, masks = sample()
    with pytest.raises(ValueError, match=r"masks must be \[H, W, N\]"):
        HorizontalFlip()(image, masks[:-1], rng())
    with pytest.raises(ValueError, match="image must be uint8"):
        HorizontalFlip()(image.astype(np.float32), masks, rng())


class FakeAlbumentations:
    """Albumentations-like: keyword call, dict result, own seeded generator."""

    def __init__(self):
        self._random = np.random.default_rng(0)

    def set_random_seed(self, seed):
        self._random = np.random.default_rng(seed)

    def __call__(self, image, masks):
        shift = int(self._random.integers(1, 5))  # roll right by 1..4 columns
        return {"image": np.roll(image, shift, axis=1),
                "masks": [np.roll(m, shift, axis=1) for m in masks]}


def test_albumentations_adapter():
    image, masks = sample()
    adapter = from_albumentations(FakeAlbumentations())
    out_image, out_masks = adapter(image, masks, rng(3))
    assert out_masks.dtype == bool and out_masks.shape == masks.shape
    shift = W - int(out_image[0, 0, 1])  # column 0 now holds source column W - shift
    assert 1 <= shift <= 4
    np.testing.assert_array_equal(out_masks, np.roll(masks, shift, axis=1))
    again = adapter(image, masks, rng(3))  # reseeded from rng: reproducible
    np.testing.assert_array_equal(again[0], out_image)
    empty_image, empty_masks = adapter(image, masks[:, :, :0], rng(3))
    assert empty_masks.shape == (H, W, 0) and empty_image.shape == image.shape
    drop_one = from_albumentations(lambda image, masks: {"image": image, "masks": masks[:1]})
    with pytest.raises(ValueError, match="returned 1 masks for 2 instances"):
        drop_one(image, masks, rng())
    assert "from_albumentations" in repr(adapter)


def test_load_image_gt_with_augmentation_drops_cropped_instances():
    """End to end: boxes come from the augmented masks; emptied instances go."""
    from mrcnn_tf.data.generator import load_image_gt
    from mrcnn_tf.data.shapes import ShapesConfig, ShapesDataset

    dataset = ShapesDataset()
    dataset.load_shapes(3, 128, 128, seed=2, min_instances=3, max_instances=4)
    dataset.prepare()
    config = ShapesConfig()
    config.USE_MINI_MASK = False  # full-size masks to compare with the boxes
    augment = Compose([HorizontalFlip(), RandomCrop(min_fraction=0.3), ScaleJitter()])
    counts = []
    for seed in range(6):
        image, _, class_ids, boxes, masks = load_image_gt(dataset, config, seed % 3,
                                                          augment, rng(seed))
        assert image.shape == (128, 128, 3)
        assert masks.shape[2] == len(class_ids) == len(boxes)
        assert masks.any(axis=(0, 1)).all()
        np.testing.assert_array_equal(boxes, extract_bboxes(masks))
        counts.append(len(class_ids) - len(dataset.load_mask(seed % 3)[1]))
    assert min(counts) < 0  # some crop removed an instance
