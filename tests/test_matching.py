"""The shared matcher/sampler and the in-graph RPN targets, against hand cases and the numpy reference."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.modeling.matching import (BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, crowd_rows,
                                        match_boxes, sample_balanced)
from mrcnn_tf.modeling.rpn_targets import RPNTargetLayer, rpn_targets
from mrcnn_tf.ops.anchors import pyramid_anchors_for_image
from reference.numpy_ops import ref_encode_boxes, ref_rpn_anchor_labels

STD = (0.1, 0.1, 0.2, 0.2)
NEG, MID = BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS


# ------------------------------------------------------------- match_boxes
def test_match_boxes_hand_cases():
    iou = np.array([[0.80, 0.10],   # >= 0.7: box 0
                    [0.50, 0.60],   # between
                    [0.20, 0.25],   # below 0.3
                    [0.00, 0.25],   # below 0.3, but box 1's best row (tie with row 2? no: 0.25 = 0.25)
                    [0.10, 0.75]], np.float32)
    plain = match_boxes(iou, 0.7, 0.3).numpy()
    np.testing.assert_array_equal(plain, [0, MID, NEG, NEG, 1])
    # Low-quality matches: each box keeps its best rows, ties included (box 0: row 0;
    # box 1: row 4), matched to the row's own best box.
    iou[4, 1] = 0.6
    low = match_boxes(iou, 0.7, 0.3, allow_low_quality_matches=True).numpy()
    np.testing.assert_array_equal(low, [0, 1, NEG, NEG, 1])  # row 1 ties row 4 at 0.6 for box 1
    # Rows that must not be negatives (a crowd region) become "between".
    guarded = match_boxes(iou, 0.7, 0.3, not_negative=tf.constant([False, False, True, False, False]))
    np.testing.assert_array_equal(guarded.numpy(), [0, MID, MID, NEG, MID])


def test_match_boxes_without_ground_truth_and_zero_overlap():
    empty = match_boxes(tf.zeros([3, 0]), 0.7, 0.3, allow_low_quality_matches=True).numpy()
    np.testing.assert_array_equal(empty, [NEG, NEG, NEG])
    # A box nothing overlaps claims no row (a best IoU of 0 is no match).
    none = match_boxes(tf.zeros([3, 2]), 0.7, 0.3, allow_low_quality_matches=True).numpy()
    np.testing.assert_array_equal(none, [NEG, NEG, NEG])
    with pytest.raises(ValueError, match="low_threshold"):
        match_boxes(tf.zeros([1, 1]), 0.3, 0.7)


def test_crowd_rows_threshold():
    rows = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    crowd = np.array([[9, 9, 30, 30]], np.float32)  # IoU 1/540 with row 0, 100/441 with row 1
    np.testing.assert_array_equal(crowd_rows(rows, crowd).numpy(), [True, True])
    np.testing.assert_array_equal(crowd_rows(rows, crowd, threshold=0.05).numpy(), [False, True])
    np.testing.assert_array_equal(crowd_rows(rows, np.zeros([0, 4], np.float32)).numpy(),
                                  [False, False])


# ------------------------------------------------------------- sample_balanced
def test_sample_balanced_caps_positives_and_fills_with_negatives():
    matches = tf.constant([0, 1, NEG, MID, 2, NEG, NEG, 0, NEG, MID], tf.int32)
    positives, negatives = (t.numpy() for t in sample_balanced(matches, 6, 2))
    assert len(positives) == 2 and set(positives) <= {0, 1, 4, 7}
    assert len(negatives) == 4 and set(negatives) == {2, 5, 6, 8}
    positives, negatives = (t.numpy() for t in sample_balanced(matches, 3, 10))
    assert len(positives) == 3 and set(positives) <= {0, 1, 4, 7} and len(negatives) == 0
    draws = {tuple(sorted(sample_balanced(matches, 6, 2)[0].numpy())) for _ in range(30)}
    assert len(draws) > 2  # random, not the first ones


# ------------------------------------------------------------- RPN targets
def _anchors():
    return pyramid_anchors_for_image((64, 64), (4, 8, 16, 32, 64), (0.5, 1, 2), (4, 8, 16, 32, 64),
                                     1, normalized=False)


def _seeded_case(seed, max_gt=8):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(0, 6))
    y1, x1 = rng.integers(0, 50, count), rng.integers(0, 50, count)
    h, w = rng.integers(2, 30, count), rng.integers(2, 30, count)
    boxes = np.stack([y1, x1, np.minimum(y1 + h, 64), np.minimum(x1 + w, 64)], 1)
    class_ids = rng.integers(1, 4, count)
    if count and seed % 3 == 0:
        class_ids[0] = -1  # a crowd region
    padded_ids = np.zeros(max_gt, np.int32)
    padded_boxes = np.zeros([max_gt, 4], np.float32)
    padded_ids[:count], padded_boxes[:count] = class_ids, boxes
    return padded_ids, padded_boxes


@pytest.mark.parametrize("seed", range(8))
def test_rpn_targets_equal_the_reference_labels_and_deltas(seed):
    anchors = _anchors()
    class_ids, boxes = _seeded_case(seed)
    labels, matched, ambiguous = ref_rpn_anchor_labels(anchors, class_ids, boxes)
    objects = boxes[class_ids > 0]

    # With room for every labelled anchor, nothing is subsampled: labels are exact (but on
    # IoUs within 1e-6 of a threshold or of a tie, where float32 rounding decides).
    everything = 2 * len(anchors)
    match, deltas = (t.numpy() for t in rpn_targets(anchors, class_ids, boxes, everything, STD))
    assert ambiguous.sum() <= 0.005 * len(anchors)
    np.testing.assert_array_equal(match[~ambiguous], labels[~ambiguous])
    labels = np.where(ambiguous, match, labels)  # what float32 decided, for the sampling checks

    # 256 sampled: at most 128 positives, drawn from the reference's; negatives fill up.
    match, deltas = (t.numpy() for t in rpn_targets(anchors, class_ids, boxes, 256, STD))
    positive, negative = np.flatnonzero(match == 1), np.flatnonzero(match == -1)
    assert set(positive) <= set(np.flatnonzero(labels == 1))
    assert set(negative) <= set(np.flatnonzero(labels == -1))
    assert len(positive) == min((labels == 1).sum(), 128)
    assert len(negative) == min((labels == -1).sum(), 256 - len(positive))
    # Deltas of the positives, in anchor order, then zero rows.
    clear = ~ambiguous[positive]
    expected = ref_encode_boxes(anchors[positive][clear], objects[matched[positive][clear]], STD) \
        if clear.any() else np.zeros([0, 4])
    np.testing.assert_allclose(deltas[:len(positive)][clear], expected, atol=1e-4)
    assert not deltas[len(positive):].any()


def test_rpn_target_layer_batches_and_serialises():
    anchors = _anchors()
    cases = [_seeded_case(seed) for seed in (1, 4)]
    class_ids = np.stack([c[0] for c in cases])
    boxes = np.stack([c[1] for c in cases])
    layer = RPNTargetLayer(64, STD, positive_iou=0.7, negative_iou=0.3)
    # Normalised frames give the same labels (IoU and deltas do not depend on the scale).
    match, deltas = layer([np.tile(anchors[None] / 64.0, [2, 1, 1]), class_ids, boxes / 64.0])
    assert match.shape == (2, len(anchors)) and deltas.shape == (2, 64, 4)
    for b, (ids, bxs) in enumerate(cases):
        labels, _, _ = ref_rpn_anchor_labels(anchors, ids, bxs)
        chosen = match.numpy()[b]
        assert set(np.flatnonzero(chosen == 1)) <= set(np.flatnonzero(labels == 1))
        assert (chosen != 0).sum() == min(64, (labels != 0).sum())
    clone = RPNTargetLayer.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="negative_iou"):
        RPNTargetLayer(64, negative_iou=0.8, positive_iou=0.7)
