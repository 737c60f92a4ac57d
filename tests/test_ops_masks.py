"""ops/masks.py: pasting box-relative masks against a float64 loop (pixel centres in the
box, clamped bilinear, >= 0.5), degenerate boxes, and GT mini masks there and back."""

import os

import numpy as np
import pytest
import tensorflow as tf
from skimage.draw import disk

from mrcnn_tf.data import extract_bboxes
from mrcnn_tf.ops.masks import MASK_THRESHOLD, crop_masks, expand_masks, paste_mask, paste_masks
from reference.numpy_ops import ref_crop_mask, ref_paste_mask


def paste_one(mask, box, image_hw, out_hw=None):
    return paste_mask(tf.constant(mask, tf.float32), tf.constant(box, tf.float32),
                      tf.constant(image_hw), tf.constant(out_hw or image_hw)).numpy()


def iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


# ------------------------------------------------------------------- paste
def test_paste_integer_box_inside_the_image_fills_it():
    full = paste_one(np.ones([28, 28]), (10, 20, 30, 50), (60, 80))
    expected = np.zeros([60, 80], bool)
    expected[10:30, 20:50] = True
    np.testing.assert_array_equal(full, expected)


def test_paste_sub_pixel_box_uses_pixel_centres():
    # Row centres 11.5 .. 20.5 lie in [10.6, 20.6); column centres 10.5 .. 18.5 in [10, 19.4).
    full = paste_one(np.ones([28, 28]), (10.6, 10.0, 20.6, 19.4), (40, 40))
    expected = np.zeros([40, 40], bool)
    expected[11:21, 10:19] = True
    np.testing.assert_array_equal(full, expected)


def test_paste_left_half_by_hand():
    prob = np.zeros([28, 28])
    prob[:, :14] = 1.0
    full = paste_one(prob, (0, 0, 40, 40), (40, 40))
    assert full[:, :20].all() and not full[:, 20:].any()


def test_paste_clips_boxes_to_the_image_and_pads_to_the_output():
    full = paste_one(np.ones([28, 28]), (-5, -10, 20, 30), (60, 80), out_hw=(64, 96))
    expected = np.zeros([64, 96], bool)
    expected[0:20, 0:30] = True
    np.testing.assert_array_equal(full, expected)
    # a box reaching beyond the image stops at the image's size, not the output's
    beyond = paste_one(np.ones([28, 28]), (50, 70, 70, 90), (60, 80), out_hw=(64, 96))
    assert beyond[50:60, 70:80].all() and beyond.sum() == 100


@pytest.mark.parametrize("box", [(10, 10, 10, 20), (10, 10, 20, 10), (20, 20, 10, 10),
                                 (70, 90, 100, 120), (-30, -30, -5, -5), (10.2, 10, 10.4, 20)])
def test_zero_size_and_outside_boxes_paste_nothing(box):
    assert not paste_one(np.ones([28, 28]), box, (40, 40), out_hw=(48, 48)).any()


@pytest.mark.parametrize("seed", range(8))
def test_paste_masks_matches_the_loop_reference(seed):
    rng = np.random.default_rng(seed)
    count = 4
    probs = rng.random([count, 14, 14]).astype(np.float32)
    y1, x1 = rng.uniform(-10, 40, size=(2, count))
    boxes = np.stack([y1, x1, y1 + rng.uniform(0.5, 40, count), x1 + rng.uniform(0.5, 50, count)], 1)
    sizes = np.array([[48, 56], [30, 64], [48, 20], [41, 41]], np.int32)
    pasted = paste_masks(probs, boxes.astype(np.float32), sizes).numpy()
    assert pasted.shape == (count, 48, 64) and pasted.dtype == bool
    for i in range(count):
        height, width = sizes[i]
        reference = ref_paste_mask(probs[i], boxes[i], (height, width))
        loose = ref_paste_mask(probs[i], boxes[i], (height, width), MASK_THRESHOLD - 1e-4)
        tight = ref_paste_mask(probs[i], boxes[i], (height, width), MASK_THRESHOLD + 1e-4)
        decided = loose == tight  # a value within 1e-4 of the threshold may go either way
        assert decided.mean() > 0.99
        np.testing.assert_array_equal(pasted[i, :height, :width][decided], reference[decided])
        assert not pasted[i, height:].any() and not pasted[i, :, width:].any()
    assert pasted.any()


def test_torchvision_paste_mode_equals_paste_masks_in_image():
    """Against torchvision's own output (tests/fixtures/torchvision/make_fixtures.py)."""
    case = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "torchvision", "paste_masks.npz"))
    height, width = (int(v) for v in case["image_hw"])
    theirs = np.unpackbits(case["pasted"], axis=-1, count=width).astype(bool)
    count = len(case["masks"])
    boxes = case["boxes"][:, [1, 0, 3, 2]]  # (x1, y1, x2, y2) -> ours
    ours = paste_masks(case["masks"], boxes, np.tile([[height, width]], [count, 1]), mode="torchvision").numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert theirs.any(axis=(1, 2)).mean() > 0.8
    # The default geometry is another one (the mask spans its box exactly): it must differ here.
    default = paste_masks(case["masks"], boxes, np.tile([[height, width]], [count, 1])).numpy()
    assert (default != theirs).any(axis=(1, 2)).mean() > 0.5


def test_paste_mode_is_checked():
    with pytest.raises(ValueError, match="paste mode must be one of"):
        paste_masks(np.zeros([1, 28, 28]), np.zeros([1, 4]), np.ones([1, 2]), mode="detectron2")


def test_paste_nothing_gives_an_empty_batch():
    out = paste_masks(np.zeros([0, 28, 28]), np.zeros([0, 4]), np.zeros([0, 2]), out_hw=(10, 12))
    assert out.shape == (0, 10, 12)


# ------------------------------------------------------------- mini masks
def disc_masks(shape, centres, radius):
    masks = np.zeros(tuple(shape) + (len(centres),), bool)
    for i, centre in enumerate(centres):
        masks[disk(centre, radius, shape=shape) + (i,)] = True
    return masks


@pytest.mark.parametrize("seed", range(4))
def test_crop_masks_matches_the_loop_reference(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random([40, 50, 3]) > 0.5
    y1, x1 = rng.uniform(0, 20, size=(2, 3))
    boxes = np.stack([y1, x1, y1 + rng.uniform(1, 20, 3), x1 + rng.uniform(1, 30, 3)], 1)
    mini = crop_masks(masks, boxes, (7, 9)).numpy()
    assert mini.shape == (7, 9, 3) and mini.dtype == bool
    for i in range(3):
        reference = ref_crop_mask(masks[:, :, i], boxes[i], (7, 9))
        loose = ref_crop_mask(masks[:, :, i], boxes[i], (7, 9), MASK_THRESHOLD - 1e-4)
        tight = ref_crop_mask(masks[:, :, i], boxes[i], (7, 9), MASK_THRESHOLD + 1e-4)
        decided = loose == tight
        np.testing.assert_array_equal(mini[:, :, i][decided], reference[decided])


def test_crop_then_expand_recovers_discs():
    masks = disc_masks((100, 120), [(50, 60), (20, 25)], 18)
    boxes = extract_bboxes(masks)
    mini = crop_masks(masks, boxes, (28, 28)).numpy()
    assert mini.shape == (28, 28, 2)
    restored = expand_masks(mini, boxes, (100, 120)).numpy()
    assert restored.shape == masks.shape and restored.dtype == bool
    for i in range(2):
        assert iou(restored[:, :, i], masks[:, :, i]) > 0.9
    assert not restored[:, :, 0][~np.pad(np.ones([36, 36], bool), [(32, 32), (42, 42)])].any()


def test_full_box_crops_to_all_true_and_expands_to_exactly_the_box():
    masks = np.zeros([30, 40, 1], bool)
    masks[5:15, 10:30, 0] = True
    assert crop_masks(masks, [[5, 10, 15, 30]], (8, 8)).numpy().all()
    full = expand_masks(np.ones([7, 7, 2], bool), [[2, 3, 7, 9], [4, 4, 4, 9]], (10, 12)).numpy()
    expected = np.zeros([10, 12], bool)
    expected[2:7, 3:9] = True
    np.testing.assert_array_equal(full[:, :, 0], expected)
    assert not full[:, :, 1].any()  # zero-height box


def test_no_instances_crop_and_expand_to_empty():
    assert crop_masks(np.zeros([10, 12, 0], bool), np.zeros([0, 4]), (7, 7)).shape == (7, 7, 0)
    assert expand_masks(np.zeros([7, 7, 0], bool), np.zeros([0, 4]), (10, 12)).shape == (10, 12, 0)
