"""Box IoU, delta encoding/decoding, clipping and normalisation.

Boxes are (y1, x1, y2, x2), y2/x2 exclusive, area (y2 - y1) * (x2 - x1), no +1
(docs/CONTRACTS.md). Checked against the numpy loop reference.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from mrcnn_tf.ops import boxes
from reference.numpy_ops import (BBOX_LOG_SCALE_CLIP, ref_box_iou, ref_decode_boxes,
                                 ref_encode_boxes)

STD = (0.1, 0.1, 0.2, 0.2)


def _random_boxes(rng, n, extent=100.0, min_size=0.5, max_size=60.0):
    y1 = rng.uniform(0, extent, n); x1 = rng.uniform(0, extent, n)
    h = rng.uniform(min_size, max_size, n); w = rng.uniform(min_size, max_size, n)
    return np.stack([y1, x1, y1 + h, x1 + w], axis=1)


def _iou(b1, b2):
    return np.asarray(boxes.box_iou(tf.constant(b1, tf.float32), tf.constant(b2, tf.float32)))


# -- IoU -------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iou_matches_reference(seed):
    rng = np.random.default_rng(seed)
    b1, b2 = _random_boxes(rng, 20), _random_boxes(rng, 15)
    b2[:3] = b1[:3]                      # some identical pairs
    b2[3] = [10, 10, 10, 30]             # zero height
    b1[4] = [b2[5, 0] + 1, b2[5, 1] + 1, b2[5, 2] - 1, b2[5, 3] - 1]  # nested
    got = _iou(b1, b2)
    assert got.shape == (20, 15) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref_box_iou(b1, b2), atol=1e-5)
    assert np.all((got >= 0) & (got <= 1))
    np.testing.assert_allclose(_iou(b2, b1), got.T, atol=1e-6)  # symmetric


def test_iou_hand_cases():
    a = [[0, 0, 10, 10]]
    cases = [[0, 0, 10, 10], [0, 5, 10, 15], [5, 5, 15, 15], [10, 0, 20, 10], [2, 2, 4, 4]]
    # overlap 100/100, 50/150, 25/175, touching edges share no area, nested 4/100
    np.testing.assert_allclose(_iou(a, cases)[0], [1, 1 / 3, 25 / 175, 0, 0.04], atol=1e-6)


def test_self_iou_is_one():
    b = _random_boxes(np.random.default_rng(4), 12)
    np.testing.assert_allclose(np.diag(_iou(b, b)), 1.0, atol=1e-6)


def test_zero_area_iou_is_zero_not_nan():
    zero = np.array([[0, 0, 0, 0], [5, 5, 5, 9], [3, 3, 8, 3]], np.float64)
    other = np.array([[0, 0, 10, 10], [0, 0, 0, 0], [5, 5, 5, 9]], np.float64)
    got = _iou(zero, other)
    assert not np.any(np.isnan(got))
    np.testing.assert_array_equal(got, 0.0)
    np.testing.assert_array_equal(np.diag(_iou(zero, zero)), 0.0)


def test_iou_empty_inputs():
    assert _iou(np.zeros((0, 4)), _random_boxes(np.random.default_rng(0), 3)).shape == (0, 3)


def test_iou_rejects_wrong_last_dim():
    with pytest.raises(ValueError, match="5"):
        boxes.box_iou(tf.zeros((3, 5)), tf.zeros((2, 4)))
    with pytest.raises(ValueError, match="5"):
        boxes.box_iou(tf.zeros((3, 4)), tf.zeros((2, 5)))


# -- encode / decode ---------------------------------------------------------------

@pytest.mark.parametrize("std_dev", [(1.0, 1.0, 1.0, 1.0), STD])
def test_encode_matches_reference(std_dev):
    rng = np.random.default_rng(5)
    anchors, gt = _random_boxes(rng, 30).reshape(3, 10, 4), _random_boxes(rng, 30).reshape(3, 10, 4)
    got = boxes.encode_boxes(tf.constant(anchors, tf.float32), tf.constant(gt, tf.float32), std_dev)
    assert tuple(got.shape) == (3, 10, 4)
    np.testing.assert_allclose(got, ref_encode_boxes(anchors, gt, std_dev), rtol=1e-4, atol=1e-4)


def test_encode_hand_case():
    # Anchor centred (5, 5), 10 x 10; gt centred (7, 4), 20 x 5:
    # dy = 2/10, dx = -1/10, dh = log 2, dw = log 0.5, then / std_dev.
    got = boxes.encode_boxes(tf.constant([[0.0, 0.0, 10.0, 10.0]]),
                             tf.constant([[-3.0, 1.5, 17.0, 6.5]]), STD).numpy()
    np.testing.assert_allclose(got[0], [2.0, -1.0, math.log(2) / 0.2, math.log(0.5) / 0.2],
                               rtol=1e-5)


@pytest.mark.parametrize("std_dev", [(1.0, 1.0, 1.0, 1.0), STD])
def test_decode_matches_reference(std_dev):
    rng = np.random.default_rng(6)
    anchors = _random_boxes(rng, 40)
    deltas = rng.normal(0, 1, (40, 4)) * np.array(std_dev) ** -1 * 0.3
    got = boxes.decode_boxes(tf.constant(anchors, tf.float32), tf.constant(deltas, tf.float32),
                             std_dev)
    np.testing.assert_allclose(got, ref_decode_boxes(anchors, deltas, std_dev), rtol=1e-4,
                               atol=1e-3)


@pytest.mark.parametrize("std_dev", [(1.0, 1.0, 1.0, 1.0), STD])
def test_encode_decode_round_trip(std_dev):
    rng = np.random.default_rng(7)
    anchors, gt = _random_boxes(rng, 50), _random_boxes(rng, 50)
    a, g = tf.constant(anchors, tf.float32), tf.constant(gt, tf.float32)
    back = boxes.decode_boxes(a, boxes.encode_boxes(a, g, std_dev), std_dev)
    np.testing.assert_allclose(back, gt, rtol=1e-5, atol=1e-3)


def test_decode_clamps_huge_log_scale():
    anchors = tf.constant([[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 16.0, 16.0]])
    deltas = tf.constant([[0.0, 0.0, 1e4, 1e4], [0.0, 0.0, 100.0, -2.0]])
    got = boxes.decode_boxes(anchors, deltas).numpy()
    assert np.all(np.isfinite(got))
    # Clamped at log(1000/16): a 16 px box grows to at most 1000 px, about its centre.
    np.testing.assert_allclose(got[0], [8 - 500, 8 - 500, 8 + 500, 8 + 500], rtol=1e-4)
    np.testing.assert_allclose(got[1, 2] - got[1, 0], 1000.0, rtol=1e-4)
    np.testing.assert_allclose(got[1, 3] - got[1, 1], 16 * math.exp(-2.0), rtol=1e-4)
    np.testing.assert_allclose(got, ref_decode_boxes(anchors.numpy(), deltas.numpy()), rtol=1e-4)
    assert BBOX_LOG_SCALE_CLIP == pytest.approx(math.log(1000 / 16))


# -- clip / normalise ----------------------------------------------------------------

def test_clip_boxes_hand_and_broadcast():
    b = tf.constant([[[-5.0, 3.0, 50.0, 120.0], [10.0, 10.0, 20.0, 20.0]],
                     [[-5.0, 3.0, 50.0, 120.0], [200.0, 200.0, 300.0, 300.0]]])
    got = boxes.clip_boxes(b, tf.constant([0.0, 0.0, 40.0, 100.0])).numpy()
    np.testing.assert_allclose(got[0], [[0, 3, 40, 100], [10, 10, 20, 20]])
    np.testing.assert_allclose(got[1, 1], [40, 100, 40, 100])
    per_image = tf.constant([[[0.0, 0.0, 40.0, 100.0]], [[10.0, 20.0, 30.0, 60.0]]])
    got = boxes.clip_boxes(b, per_image).numpy()
    np.testing.assert_allclose(got[1], [[10, 20, 30, 60], [30, 60, 30, 60]])


def test_normalize_denormalize():
    px = np.array([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 480.0, 640.0]])
    norm = boxes.normalize_boxes(tf.constant(px, tf.float32), (480, 640)).numpy()
    np.testing.assert_allclose(norm, px / [480, 640, 480, 640], rtol=1e-6)
    back = boxes.denormalize_boxes(tf.constant(norm), (480, 640)).numpy()
    np.testing.assert_allclose(back, px, rtol=1e-6, atol=1e-4)


# -- properties -----------------------------------------------------------------------

_pos = st.floats(0.0, 500.0, allow_nan=False, width=32)
_size = st.floats(1.0, 300.0, allow_nan=False, width=32)
_box = st.tuples(_pos, _pos, _size, _size).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@settings(max_examples=40, deadline=None)
@given(st.lists(_box, min_size=1, max_size=6), st.lists(_box, min_size=1, max_size=6))
def test_property_iou_in_unit_interval(b1, b2):
    got = _iou(np.array(b1), np.array(b2))
    assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1 + 1e-6))
    np.testing.assert_allclose(got, ref_box_iou(np.array(b1, np.float32), np.array(b2, np.float32)),
                               atol=1e-4)


# Sizes within a factor 1000/16 of each other: beyond that decoding clamps on purpose.
_size_rt = st.floats(8.0, 300.0, allow_nan=False, width=32)
_box_rt = st.tuples(_pos, _pos, _size_rt, _size_rt).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_box_rt, _box_rt), min_size=1, max_size=6))
def test_property_decode_encode_identity(pairs):
    a = tf.constant([p[0] for p in pairs], tf.float32)
    g = tf.constant([p[1] for p in pairs], tf.float32)
    back = boxes.decode_boxes(a, boxes.encode_boxes(a, g, STD), STD)
    np.testing.assert_allclose(back, g, rtol=1e-4, atol=5e-3)


_coord = st.floats(-1000.0, 1000.0, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_coord, _coord, _coord, _coord), min_size=1, max_size=6), _box)
def test_property_clip_inside_window(raw, window):
    b = np.array([[min(r[0], r[2]), min(r[1], r[3]), max(r[0], r[2]), max(r[1], r[3])]
                  for r in raw])
    got = boxes.clip_boxes(tf.constant(b, tf.float32), tf.constant(window, tf.float32)).numpy()
    wy1, wx1, wy2, wx2 = np.float32(window)
    assert np.all((got[:, 0::2] >= wy1) & (got[:, 0::2] <= wy2))
    assert np.all((got[:, 1::2] >= wx1) & (got[:, 1::2] <= wx2))
    assert np.all(got[:, 2] >= got[:, 0]) and np.all(got[:, 3] >= got[:, 1])
