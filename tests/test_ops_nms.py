"""Greedy NMS and per-class NMS against the loop reference.

Greedy: highest score first; a box is dropped when its IoU with an already
kept box is > iou_threshold; boxes scoring <= score_threshold are never kept.
"""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.ops import nms
from reference.numpy_ops import ref_batched_nms, ref_nms


def _clustered_boxes(rng, n):
    """Boxes crowded into a small area so that many overlap."""
    y1 = rng.uniform(0, 60, n); x1 = rng.uniform(0, 60, n)
    h = rng.uniform(8, 40, n); w = rng.uniform(8, 40, n)
    return np.stack([y1, x1, y1 + h, x1 + w], axis=1).astype(np.float32)


def _distinct_scores(rng, n):
    return rng.permutation(n).astype(np.float32) / n + rng.uniform(0, 0.5 / n)


def _nms(boxes, scores, max_output, iou, score_threshold=None):
    kwargs = {} if score_threshold is None else {"score_threshold": score_threshold}
    out = nms.non_max_suppression(tf.constant(boxes, tf.float32), tf.constant(scores, tf.float32),
                                  max_output, iou, **kwargs)
    return np.asarray(out)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_nms_matches_reference(seed, iou_threshold):
    rng = np.random.default_rng(seed)
    boxes, scores = _clustered_boxes(rng, 80), _distinct_scores(rng, 80)
    got = _nms(boxes, scores, 80, iou_threshold)
    want = ref_nms(boxes, scores, 80, iou_threshold)
    assert got.dtype == np.int32
    assert 0 < len(want) < 80        # the case really suppresses something
    np.testing.assert_array_equal(got, want)
    assert np.all(np.diff(scores[got]) < 0)  # best first


@pytest.mark.parametrize("max_output", [1, 3, 10])
def test_nms_max_output_size(max_output):
    rng = np.random.default_rng(10)
    boxes, scores = _clustered_boxes(rng, 60), _distinct_scores(rng, 60)
    got = _nms(boxes, scores, max_output, 0.5)
    assert len(got) <= max_output
    np.testing.assert_array_equal(got, ref_nms(boxes, scores, max_output, 0.5))


@pytest.mark.parametrize("score_threshold", [0.25, 0.6, 0.95])
def test_nms_score_threshold(score_threshold):
    rng = np.random.default_rng(20)
    boxes, scores = _clustered_boxes(rng, 60), _distinct_scores(rng, 60)
    got = _nms(boxes, scores, 60, 0.5, score_threshold)
    assert np.all(scores[got] > score_threshold)
    np.testing.assert_array_equal(got, ref_nms(boxes, scores, 60, 0.5, score_threshold))


def test_nms_hand_case():
    boxes = np.array([[0, 0, 10, 10],    # 0: best
                      [0, 1, 10, 11],    # 1: IoU 90/110 = 0.82 with box 0 -> dropped
                      [0, 5, 10, 15],    # 2: IoU 1/3 with box 0 -> kept at 0.5
                      [50, 50, 60, 60]], np.float32)  # 3: alone
    scores = np.array([0.9, 0.8, 0.7, 0.1], np.float32)
    np.testing.assert_array_equal(_nms(boxes, scores, 10, 0.5), [0, 2, 3])
    np.testing.assert_array_equal(_nms(boxes, scores, 10, 0.3), [0, 3])
    np.testing.assert_array_equal(_nms(boxes, scores, 10, 0.9), [0, 1, 2, 3])


def test_nms_empty_input():
    got = _nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 10, 0.5)
    assert got.shape == (0,) and got.dtype == np.int32
    got = _nms(np.array([[0, 0, 1, 1]], np.float32), np.array([0.1], np.float32), 10, 0.5, 0.5)
    assert got.shape == (0,)


def _batched(boxes, scores, classes, max_output, iou, score_threshold=None):
    kwargs = {} if score_threshold is None else {"score_threshold": score_threshold}
    out = nms.batched_nms(tf.constant(boxes, tf.float32), tf.constant(scores, tf.float32),
                          tf.constant(classes, tf.int32), max_output, iou, **kwargs)
    return np.asarray(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_batched_nms_matches_reference(seed, iou_threshold):
    rng = np.random.default_rng(100 + seed)
    boxes, scores = _clustered_boxes(rng, 90), _distinct_scores(rng, 90)
    classes = rng.integers(1, 5, 90)
    got = _batched(boxes, scores, classes, 90, iou_threshold)
    want = ref_batched_nms(boxes, scores, classes, 90, iou_threshold)
    assert got.dtype == np.int32
    # Per-class NMS keeps more than class-blind NMS would.
    assert len(want) > len(ref_nms(boxes, scores, 90, iou_threshold))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("max_output, score_threshold", [(5, None), (20, 0.4), (200, 0.8)])
def test_batched_nms_limits(max_output, score_threshold):
    rng = np.random.default_rng(7)
    boxes, scores = _clustered_boxes(rng, 70), _distinct_scores(rng, 70)
    classes = rng.integers(0, 3, 70)
    got = _batched(boxes, scores, classes, max_output, 0.5, score_threshold)
    thr = -np.inf if score_threshold is None else score_threshold
    assert len(got) <= max_output
    np.testing.assert_array_equal(got, ref_batched_nms(boxes, scores, classes, max_output, 0.5,
                                                       thr))


def test_batched_nms_identical_boxes_of_different_classes_survive():
    boxes = np.array([[0, 0, 10, 10]] * 3 + [[0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.5, 0.9, 0.7, 0.8], np.float32)
    classes = np.array([2, 1, 3, 1])
    np.testing.assert_array_equal(_batched(boxes, scores, classes, 10, 0.5), [1, 2, 0])


def test_batched_nms_empty_input():
    got = _batched(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0,), np.int32), 10, 0.5)
    assert got.shape == (0,) and got.dtype == np.int32
