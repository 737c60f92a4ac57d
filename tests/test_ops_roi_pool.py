"""RoIPool, RoIWarp and RoIAlign's max aggregate against torchvision and the numpy loop reference.

RoIPool: the box snapped to cells (start round(y1), last cell round(y2 - 1)),
bins floor/ceil of i * size / m, max per bin, 0 for an empty bin; it equals
torchvision.ops.roi_pool given (x1, y1, x2 - 1, y2 - 1). RoIWarp: RoIAlign of
that snapped box.
"""

import importlib
import os

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.modeling.roi_heads import PyramidROIAlign
from mrcnn_tf.ops import roi_align, roi_pool, roi_warp
from reference.roi_pool import ref_roi_align_aggregate, ref_roi_pool, ref_roi_warp

roi_pool_mod = importlib.import_module("mrcnn_tf.ops.roi_pool")
FIXTURE = os.path.join(os.path.dirname(__file__), "peers", "roi_pool_torchvision.npz")
# 4 x 4 map, f[y, x] = 4 y + x + 1 (1..16), so a 0 can only be an empty bin.
MAP = (np.arange(16, dtype=np.float32) + 1).reshape(1, 4, 4, 1)


def _pool(box, size, features=MAP):
    return roi_pool(features, [box], [0], size).numpy()[0, ..., 0]


@pytest.fixture(scope="module")
def peer():
    return dict(np.load(FIXTURE))


# ------------------------------------------------------------- torchvision
def test_roi_pool_equals_torchvision(peer):
    features = tf.constant(peer["features"])
    for oh, ow in peer["output_sizes"]:
        key = f"{oh}x{ow}"
        with tf.GradientTape() as tape:
            tape.watch(features)
            pooled = roi_pool(features, peer["boxes"], peer["box_indices"], (int(oh), int(ow)))
            loss = tf.reduce_sum(pooled * peer[f"weights_{key}"])
        np.testing.assert_array_equal(pooled.numpy(), peer[f"pooled_{key}"], err_msg=key)
        np.testing.assert_allclose(tape.gradient(loss, features).numpy(), peer[f"grad_{key}"],
                                   atol=1e-6, err_msg=key)


def test_fixture_covers_the_awkward_boxes(peer):
    boxes = peer["boxes"]
    assert (boxes[:, 2] == boxes[:, 0]).any()                        # zero size
    assert ((boxes % 1) == 0.5).any() and (boxes < 0).any()           # halves, negatives
    assert (peer["pooled_7x7"] == 0).any() and (peer["pooled_7x7"] != 0).any()  # empty bins too


# ------------------------------------------------------------- hand cases, 4 x 4 map
def test_hand_whole_map():
    np.testing.assert_array_equal(_pool((0, 0, 4, 4), 2), [[6, 8], [14, 16]])


def test_hand_quantised_box_and_bins():
    # rows round(0.4)=0 .. round(1.6)=2 (3 cells), cols round(0.6)=1 .. round(2.4)=2 (2 cells);
    # row bins [0, 2) and [1, 3) overlap (floor 0, 1 / ceil 1.5 -> 2, 3).
    np.testing.assert_array_equal(_pool((0.4, 0.6, 2.6, 3.4), 2), [[6, 7], [10, 11]])
    # RoIAlign reads the same box without rounding: different values.
    aligned = roi_align(MAP, [(0.4, 0.6, 2.6, 3.4)], [0], 2).numpy()[0, ..., 0]
    assert not np.allclose(aligned, [[6, 7], [10, 11]])


def test_hand_sub_cell_shift_is_lost():
    # Shifted by 0.4 px, the box snaps to the same cells: RoIPool cannot see the shift.
    np.testing.assert_array_equal(_pool((0.4, 0.4, 2.4, 2.4), 2), _pool((0, 0, 2, 2), 2))
    np.testing.assert_array_equal(_pool((0, 0, 2, 2), 2), [[1, 2], [5, 6]])


def test_hand_halves_round_away_from_zero():
    # start round(2.5) = 3 (tf.round would give 2), last round(3) = 3: one cell, in both bins.
    np.testing.assert_array_equal(_pool((2.5, 2.5, 4, 4), 2), [[16, 16], [16, 16]])


def test_hand_outside_bins_are_zero():
    # cells -3..0: the first bin [-3, -1) is off the map (empty -> 0).
    np.testing.assert_array_equal(_pool((-3, -3, 1, 1), 2), [[0, 0], [0, 1]])
    np.testing.assert_array_equal(_pool((10, 10, 12, 12), 2), np.zeros((2, 2)))


def test_hand_warp_and_max_aggregate():
    # warp snaps (0.4, 0.6, 2.6, 3.4) to (0, 1, 3, 3); one bin, 2 x 2 samples at index
    # positions y in {0.25, 1.75}, x in {1, 2}; f is linear there: 4 y + x + 1.
    warp = lambda agg: roi_warp(MAP, [(0.4, 0.6, 2.6, 3.4)], [0], 1, 2, agg).numpy()[0, 0, 0, 0]
    assert warp("avg") == pytest.approx(4 * 1.0 + 1.5 + 1)
    assert warp("max") == pytest.approx(4 * 1.75 + 2 + 1)
    # RoIAlign of the whole map, one bin: samples at index positions 0.5 and 2.5.
    align = lambda agg: roi_align(MAP, [(0, 0, 4, 4)], [0], 1, 2, agg).numpy()[0, 0, 0, 0]
    assert align("avg") == pytest.approx(4 * 1.5 + 1.5 + 1)
    assert align("max") == pytest.approx(4 * 2.5 + 2.5 + 1)


def test_float32_bin_edges_as_torchvision():
    # 7 cells in 13 bins: 13 * float32(7 / 13) rounds up past 7, so the last bin reaches cell 7.
    row = np.zeros((1, 1, 20, 1), np.float32)
    row[0, 0, 7] = 5.0
    assert _pool((0, 0, 1, 7), (1, 13), row)[0, -1] == 5.0
    assert ref_roi_pool(row[0], (0, 0, 1, 7), (1, 13))[0, -1, 0] == 5.0
    assert _pool((0, 0, 1, 7), (1, 13), row)[0, :-1].max() == 0.0


# ------------------------------------------------------------- the loop reference
def _random_boxes(rng, count, height, width):
    y1 = rng.uniform(-3, height, count)
    x1 = rng.uniform(-3, width, count)
    boxes = np.stack([y1, x1, y1 + rng.uniform(0, height, count), x1 + rng.uniform(0, width, count)], 1)
    boxes[::7, 2:] = boxes[::7, :2]  # some zero-size boxes
    return boxes.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("output_size", [1, 3, 7, (2, 5)])
def test_all_extractors_match_reference(seed, output_size):
    rng = np.random.default_rng(seed)
    features = rng.uniform(-1, 1, (2, 7, 9, 2)).astype(np.float32)
    boxes = _random_boxes(rng, 12, 7, 9)
    idx = rng.integers(0, 2, len(boxes)).astype(np.int32)
    ratio = int(rng.integers(1, 4))
    cases = {
        "pool": (roi_pool(features, boxes, idx, output_size), ref_roi_pool, ()),
        "warp avg": (roi_warp(features, boxes, idx, output_size, ratio, "avg"), ref_roi_warp, (ratio, "avg")),
        "warp max": (roi_warp(features, boxes, idx, output_size, ratio, "max"), ref_roi_warp, (ratio, "max")),
        "align max": (roi_align(features, boxes, idx, output_size, ratio, "max"),
                      ref_roi_align_aggregate, (ratio, "max")),
    }
    for name, (got, ref, args) in cases.items():
        warp = name.startswith("warp")
        # Snapped boxes can put a sample exactly 1 px outside the map, the limit of the edge
        # rule (edge value there, 0 beyond), where crop_and_resize's rounding decides: the
        # reference marks those bins NaN, and they are left out.
        want = np.stack([ref(features[b], box, output_size, *args, **({"ties_nan": True} if warp else {}))
                         for box, b in zip(boxes, idx)])
        checked = ~np.isnan(want)
        assert checked.mean() > 0.5, name
        np.testing.assert_allclose(got.numpy()[checked], want[checked], atol=1e-5, err_msg=name)


# ------------------------------------------------------------- gradients
def test_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    # Distinct values, far enough apart that the finite-difference step keeps each argmax.
    features = tf.constant(rng.permutation(30).reshape(1, 5, 6, 1) / 30.0, tf.float32)
    boxes = tf.constant([[0.3, -0.4, 3.1, 2.2], [1.2, 1.7, 4.6, 5.3]], tf.float32)
    idx = tf.constant([0, 0], tf.int32)
    for fn in (lambda f: roi_pool(f, boxes, idx, (2, 3)),
               lambda f: roi_warp(f, boxes, idx, (2, 3), 2, "avg"),
               lambda f: roi_warp(f, boxes, idx, (2, 3), 2, "max"),
               lambda f: roi_align(f, boxes, idx, (2, 3), 2, "max")):
        theoretical, numerical = tf.test.compute_gradient(fn, [features], delta=1e-3)
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3)
        assert np.abs(theoretical[0]).sum() > 0


def test_pool_gradient_goes_to_one_cell_on_ties():
    features = tf.ones([1, 4, 4, 1])
    with tf.GradientTape() as tape:
        tape.watch(features)
        pooled = roi_pool(features, [(0, 0, 4, 4)], [0], 1)
    grad = tape.gradient(pooled, features).numpy()[0, ..., 0]
    want = np.zeros((4, 4)); want[0, 0] = 1.0   # the first cell in row-major order, as torchvision
    np.testing.assert_array_equal(grad, want)


# ------------------------------------------------------------- graph use, errors
def test_tf_function_dynamic_count_and_empty():
    rng = np.random.default_rng(6)
    features = rng.uniform(size=(1, 6, 7, 3)).astype(np.float32)
    boxes = _random_boxes(rng, 5, 6, 7)
    fn = tf.function(lambda b: roi_pool(features, b, tf.zeros([tf.shape(b)[0]], tf.int32), 3),
                     input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    np.testing.assert_array_equal(fn(boxes).numpy(), roi_pool(features, boxes, [0] * 5, 3).numpy())
    assert fn(np.zeros((0, 4), np.float32)).shape == (0, 3, 3, 3)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="aggregate"):
        roi_warp(MAP, [(0, 0, 1, 1)], [0], 2, 2, "mean")
    with pytest.raises(ValueError, match="aggregate"):
        roi_align(MAP, [(0, 0, 1, 1)], [0], 2, 2, "median")
    with pytest.raises(ValueError, match="output_size"):
        roi_pool(MAP, [(0, 0, 1, 1)], [0], 0)
    with pytest.raises(ValueError, match="boxes"):
        roi_pool(MAP, [0, 0, 1, 1], [0], 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="y2 >= y1"):
        roi_pool(MAP, [(2, 0, 1, 1)], [0], 2)
    with pytest.raises(ValueError, match="method"):
        PyramidROIAlign(7, method="bilinear")


def test_pyramid_layer_uses_the_extractor_per_level():
    rng = np.random.default_rng(8)
    maps = [rng.uniform(size=(1, 64 // s, 64 // s, 2)).astype(np.float32) for s in (4, 8, 16, 32)]
    boxes_px = np.array([[3, 5, 20, 30], [0, 0, 64, 64], [10.3, 7.6, 13.2, 9.9]], np.float32)
    image_shape = np.array([[64, 64, 3]], np.float32)
    for method, aggregate in (("pool", "avg"), ("warp", "max")):
        layer = PyramidROIAlign(3, sampling_ratio=2, method=method, aggregate=aggregate)
        got = layer([boxes_px[None] / 64.0, image_shape, *maps]).numpy()[0]
        assert PyramidROIAlign.from_config(layer.get_config()).get_config() == layer.get_config()
        for box, pooled in zip(boxes_px, got):
            h, w = box[2] - box[0], box[3] - box[1]
            level = int(min(max(np.floor(4 + np.log2(np.sqrt(h * w) / 224)), 2), 5))
            box_level = box / 2 ** level
            want = (ref_roi_pool(maps[level - 2][0], box_level, 3) if method == "pool"
                    else ref_roi_warp(maps[level - 2][0], box_level, 3, 2, aggregate))
            np.testing.assert_allclose(pooled, want, atol=1e-5)


def test_pyramid_layer_fixed_level_pools_every_box_from_that_map():
    """ROI_FEATURE_LEVEL (Table 2d's single coarse feature): every box from P4 at stride 16,
    whatever level its size would give; a level outside the given maps is an error."""
    rng = np.random.default_rng(9)
    maps = [rng.uniform(size=(1, 64 // s, 64 // s, 2)).astype(np.float32) for s in (4, 8, 16, 32)]
    boxes_px = np.array([[3, 5, 20, 30], [0, 0, 64, 64], [10.3, 7.6, 13.2, 9.9]], np.float32)
    image_shape = np.array([[64, 64, 3]], np.float32)
    for method in ("align", "pool"):
        layer = PyramidROIAlign(3, sampling_ratio=2, method=method, fixed_level=4)
        got = layer([boxes_px[None] / 64.0, image_shape, *maps]).numpy()[0]
        assert PyramidROIAlign.from_config(layer.get_config()).fixed_level == 4
        for box, pooled in zip(boxes_px, got):
            want = (ref_roi_pool(maps[2][0], box / 16, 3) if method == "pool"
                    else ref_roi_align_aggregate(maps[2][0], box / 16, 3, 2))
            np.testing.assert_allclose(pooled, want, atol=1e-5)
    # The FPN rule puts these boxes on P2, where the result differs.
    rule = PyramidROIAlign(3, sampling_ratio=2)([boxes_px[None] / 64.0, image_shape, *maps]).numpy()[0]
    assert np.abs(rule - got).max() > 1e-3
    with pytest.raises(ValueError, match="fixed_level 5 is not one of the given levels 2..4"):
        PyramidROIAlign(3, fixed_level=5)([boxes_px[None] / 64.0, image_shape, *maps[:3]])
