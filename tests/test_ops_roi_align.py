"""RoIAlign and FPN level assignment against the numpy loop reference.

Convention (shared/design/roialign.md): pixel i covers [i, i+1); an m x m
output splits the box into bins of (h/m, w/m); each bin averages r x r
samples at y1 + (i + (k + 0.5)/r) * h/m, each read bilinearly at index
position y - 0.5; index positions in [-1, 0) or (H-1, H] read the edge value,
further out a sample is 0.
"""

import importlib
import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from mrcnn_tf.ops import roi_align
from reference.numpy_ops import ref_fpn_level, ref_roi_align

roi_align_mod = importlib.import_module("mrcnn_tf.ops.roi_align")
ATOL = 1e-5


def _run(features, boxes, box_indices, output_size, sampling_ratio):
    out = roi_align(tf.constant(features, tf.float32), tf.constant(boxes, tf.float32),
                    tf.constant(box_indices, tf.int32), output_size, sampling_ratio)
    return np.asarray(out)


def _reference(features, boxes, box_indices, output_size, sampling_ratio):
    return np.stack([ref_roi_align(features[b], box, output_size, sampling_ratio)
                     for box, b in zip(boxes, box_indices)])


def _random_boxes(rng, height, width):
    """Boxes of every awkward kind on an H x W map, in that map's pixels."""
    def along(n, size):
        kinds = []
        for _ in range(n):
            kind = rng.integers(5)
            if kind == 0:    # inside
                a = rng.uniform(0, size - 1); b = rng.uniform(a + 0.5, size)
            elif kind == 1:  # crossing one or both borders by up to 3 px
                a = rng.uniform(-3, 1); b = rng.uniform(size - 1, size + 3)
            elif kind == 2:  # partly or fully outside
                a = rng.uniform(-10, size + 5); b = a + rng.uniform(0, 8)
            elif kind == 3:  # sub-pixel
                a = rng.uniform(-1, size); b = a + rng.uniform(0, 1)
            else:            # zero size
                a = rng.uniform(0, size); b = a
            kinds.append((a, b))
        return np.array(kinds)
    n = 14
    ys, xs = along(n, height), along(n, width)
    return np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], axis=1)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("output_size", [1, 2, 7, 14, (3, 5)])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
def test_matches_reference_on_random_maps(seed, output_size, sampling_ratio):
    rng = np.random.default_rng(1000 * seed + sampling_ratio)
    batch, height, width, channels = 3, 9, 13, 2
    features = rng.uniform(-1, 1, (batch, height, width, channels))
    boxes = _random_boxes(rng, height, width)
    box_indices = rng.integers(0, batch, len(boxes))
    got = _run(features, boxes, box_indices, output_size, sampling_ratio)
    want = _reference(features, boxes, box_indices, output_size, sampling_ratio)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_box_indices_select_the_image():
    features = np.stack([np.full((5, 5, 1), 1.0), np.full((5, 5, 1), 2.0)])
    boxes = np.array([[1, 1, 3, 3]] * 3, np.float64)
    got = _run(features, boxes, [1, 0, 1], 2, 2)
    np.testing.assert_allclose(got[:, 0, 0, 0], [2.0, 1.0, 2.0], atol=ATOL)


# A 4 x 4 map whose value at pixel (y, x) is 4y + x. It is linear, so bilinear
# interpolation at index position (py, px) gives exactly 4*py + px.
ARANGE = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)


def _pool_one(features, box, output_size, sampling_ratio):
    return _run(features, np.array([box], np.float64), [0], output_size, sampling_ratio)[0, ..., 0]


def test_hand_whole_map_one_bin_four_samples():
    # Box (0, 0, 4, 4), one bin of 4 x 4, r = 2: samples at continuous 1 and 3,
    # i.e. index positions 0.5 and 2.5 on each axis. Values there:
    # (0.5, 0.5) -> 2.5, (0.5, 2.5) -> 4.5, (2.5, 0.5) -> 10.5, (2.5, 2.5) -> 12.5;
    # mean = 30 / 4 = 7.5.
    np.testing.assert_allclose(_pool_one(ARANGE, (0, 0, 4, 4), 1, 2), [[7.5]], atol=ATOL)


def test_hand_pixel_bins_give_pixel_values():
    # Box (0, 0, 2, 2), output 2, r = 1: bins are pixels, the one sample of each
    # sits at the pixel centre (0.5 or 1.5 -> index 0 or 1): the pixels exactly.
    np.testing.assert_allclose(_pool_one(ARANGE, (0, 0, 2, 2), 2, 1), [[0, 1], [4, 5]], atol=ATOL)


def test_hand_box_on_one_pixel():
    # Box (1, 1, 2, 2) covers exactly pixel (1, 1). With r = 1 the sample is at its
    # centre, so any map gives that pixel's value (here a non-linear map: 25).
    squares = ARANGE ** 2
    np.testing.assert_allclose(_pool_one(squares, (1, 1, 2, 2), 1, 1), [[25.0]], atol=ATOL)
    # With r = 2 the samples at index 0.75 and 1.25 straddle the centre; on the
    # linear arange map their mean is again the pixel value 4*1 + 1 = 5.
    np.testing.assert_allclose(_pool_one(ARANGE, (1, 1, 2, 2), 1, 2), [[5.0]], atol=ATOL)


@pytest.mark.parametrize("box, want", [
    ((-1, 1, 0, 2), 1.0),   # y sample at index -1: edge row 0 -> pixel (0, 1) = 1
    ((4, 1, 5, 2), 13.0),   # y sample at index 4 = H: edge row 3 -> pixel (3, 1) = 13
    ((-2, 1, -1, 2), 0.0),  # y sample at index -2: further out -> 0
    ((5, 1, 6, 2), 0.0),    # y sample at index 5 > H -> 0
    ((1, 6, 2, 7), 0.0),    # x far out on the right, y inside -> still 0
])
def test_hand_border_rule(box, want):
    np.testing.assert_allclose(_pool_one(ARANGE, box, 1, 1), [[want]], atol=ATOL)


def test_half_size_map_and_box_agree():
    # detectron2's test_resize idea. Halving the map by 2 x 2 block means and
    # the box by 2 gives the same pooled values when every full-size bin is
    # 2 x 2 pixels on even coordinates, with r = 2 (samples at the 4 pixel
    # centres) against r = 1 (one sample at the block's centre). It does NOT
    # hold for unaligned boxes, so only that case is tested.
    rng = np.random.default_rng(7)
    full = rng.uniform(0, 100, (1, 30, 30, 1))
    half = full.reshape(1, 15, 2, 15, 2, 1).mean(axis=(2, 4))
    got_full = _pool_one(full, (10, 10, 20, 20), 5, 2)
    got_half = _pool_one(half, (5, 5, 10, 10), 5, 1)
    np.testing.assert_allclose(got_half, got_full, atol=1e-4)


def test_gradient_matches_reference_and_finite_difference():
    rng = np.random.default_rng(3)
    height, width = 4, 5
    features = tf.constant(rng.uniform(-1, 1, (1, height, width, 1)), tf.float32)
    boxes = tf.constant([[0.3, -0.4, 3.1, 2.2], [1.2, 1.7, 4.6, 5.3]], tf.float32)
    idx = tf.constant([0, 0], tf.int32)
    weights = rng.uniform(-1, 1, (2, 2, 3, 1))

    with tf.GradientTape() as tape:
        tape.watch(features)
        loss = tf.reduce_sum(roi_align(features, boxes, idx, (2, 3), 2) * weights)
    grad = tape.gradient(loss, features)
    assert grad is not None
    # RoIAlign is linear in the map, so d loss / d f[y, x] is the weighted
    # reference output on the unit map e_(y, x).
    want = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            unit = np.zeros((height, width, 1)); unit[y, x] = 1.0
            want[y, x] = sum(np.sum(ref_roi_align(unit, b, (2, 3), 2) * w)
                             for b, w in zip(boxes.numpy(), weights))
    np.testing.assert_allclose(grad.numpy()[0, ..., 0], want, atol=1e-5)

    theoretical, numerical = tf.test.compute_gradient(
        lambda f: roi_align(f, boxes, idx, (2, 3), 2), [features])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3)


def test_works_in_tf_function_with_dynamic_box_count():
    rng = np.random.default_rng(5)
    features = rng.uniform(size=(2, 6, 7, 3))
    boxes = _random_boxes(rng, 6, 7)
    idx = rng.integers(0, 2, len(boxes))
    fn = tf.function(lambda f, b, i: roi_align(f, b, i, 7, 2), input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, 4], tf.float32),
        tf.TensorSpec([None], tf.int32)])
    got = fn(tf.constant(features, tf.float32), tf.constant(boxes, tf.float32),
             tf.constant(idx, tf.int32)).numpy()
    np.testing.assert_allclose(got, _reference(features, boxes, idx, 7, 2), atol=ATOL)


def test_empty_boxes_give_empty_output():
    out = roi_align(tf.zeros((1, 4, 4, 2)), tf.zeros((0, 4)), tf.zeros((0,), tf.int32), 7, 2)
    assert tuple(out.shape) == (0, 7, 7, 2)


# -- bad input -----------------------------------------------------------------

def test_wrong_ranks_raise_value_error():
    with pytest.raises(ValueError, match="features"):
        roi_align(tf.zeros((4, 4, 1)), tf.zeros((1, 4)), tf.zeros((1,), tf.int32), 2)
    with pytest.raises(ValueError, match="boxes"):
        roi_align(tf.zeros((1, 4, 4, 1)), tf.zeros((4,)), tf.zeros((1,), tf.int32), 2)


@pytest.mark.parametrize("output_size, sampling_ratio", [(0, 2), (-1, 2), ((2, 3, 4), 2), (2, 0)])
def test_bad_sizes_raise_value_error(output_size, sampling_ratio):
    with pytest.raises(ValueError, match="output_size|sampling_ratio"):
        roi_align(tf.zeros((1, 4, 4, 1)), tf.constant([[0.0, 0.0, 2.0, 2.0]]),
                  tf.zeros((1,), tf.int32), output_size, sampling_ratio)


def test_inverted_box_raises():
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError),
                       match=r"(?i)y1|y2|x1|x2|height|width|invert"):
        roi_align(tf.zeros((1, 4, 4, 1)), tf.constant([[3.0, 0.0, 1.0, 2.0]]),
                  tf.zeros((1,), tf.int32), 2)


def test_nan_box_raises():
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=r"(?i)nan|finite"):
        roi_align(tf.zeros((1, 4, 4, 1)), tf.constant([[0.0, math.nan, 1.0, 2.0]]),
                  tf.zeros((1,), tf.int32), 2)


# -- properties ------------------------------------------------------------------

_coord = st.floats(-6.0, 14.0, allow_nan=False, width=32)


@settings(max_examples=30, deadline=None)
@given(st.tuples(_coord, _coord, _coord, _coord), st.sampled_from([1, 2, 7]),
       st.sampled_from([1, 2, 3]))
def test_property_finite_and_constant_map(raw, output_size, sampling_ratio):
    height, width, value = 8, 8, 3.25
    y1, y2 = sorted(raw[0::2]); x1, x2 = sorted(raw[1::2])
    box = np.array([[y1, x1, y2, x2]])
    out = _run(np.full((1, height, width, 2), value), box, [0], output_size, sampling_ratio)
    assert np.all(np.isfinite(out))
    inside = 0 <= y1 and y2 <= height and 0 <= x1 and x2 <= width
    if inside:
        np.testing.assert_allclose(out, value, atol=ATOL)


# -- FPN level --------------------------------------------------------------------

def test_fpn_level_matches_reference():
    rng = np.random.default_rng(11)
    sides = np.exp(rng.uniform(math.log(1.0), math.log(2000.0), (400, 2)))
    y1 = rng.uniform(0, 100, 400); x1 = rng.uniform(0, 100, 400)
    boxes = np.stack([y1, x1, y1 + sides[:, 0], x1 + sides[:, 1]], axis=1)
    want = np.array([ref_fpn_level(b) for b in boxes])
    # Skip boxes within float32 noise of a level boundary.
    raw = 4 + np.log2(np.sqrt(sides[:, 0] * sides[:, 1]) / 224)
    clear = np.abs(raw - np.round(raw)) > 1e-4
    got = roi_align_mod.fpn_level(tf.constant(boxes, tf.float32)).numpy()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got[clear], want[clear])
    assert set(want[clear]) == {2, 3, 4, 5}


def test_fpn_level_hand_cases_and_zero_area():
    boxes = np.array([
        [0, 0, 0, 0],        # zero area -> lowest level, no NaN
        [5, 5, 5, 40],       # zero height
        [0, 0, 10, 10],      # tiny -> clamped to 2
        [0, 0, 224, 224],    # canonical -> k0 = 4
        [0, 0, 112, 112],    # half -> 3
        [0, 0, 448, 448],    # double -> 5
        [0, 0, 5000, 5000],  # huge -> clamped to 5
        [0, 0, 300, 300],    # log2(300/224) = 0.42 -> 4
    ], np.float32)
    got = roi_align_mod.fpn_level(tf.constant(boxes)).numpy()
    np.testing.assert_array_equal(got, [2, 2, 2, 4, 3, 5, 5, 4])
    np.testing.assert_array_equal(got, [ref_fpn_level(b) for b in boxes])


def test_fpn_level_custom_range():
    boxes = tf.constant([[0, 0, 8, 8], [0, 0, 4000, 4000]], tf.float32)
    got = roi_align_mod.fpn_level(boxes, k0=5, canonical_size=112, min_level=3, max_level=6)
    want = [ref_fpn_level(b, 5, 112, 3, 6) for b in boxes.numpy()]
    np.testing.assert_array_equal(got.numpy(), want)
