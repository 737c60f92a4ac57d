"""Mask R-CNN layers: config round trips, graph == eager, hand cases, numpy references.

Boxes are (y1, x1, y2, x2) normalised to the molded image (docs/CONTRACTS.md).
"""

import math

import keras
import numpy as np
import pytest

from mrcnn_tf.layers import (PADDING_CLASS_ID, DetectionLayer, DetectionTargetLayer,
                             LeadingDetectionBoxes, MergeRoiBatch, MetaField, NormalizeBoxes,
                             PadToDetections, ProposalLayer, PyramidAnchors, PyramidROIAlign,
                             SplitRoiBatch)
from reference.numpy_ops import (ref_box_iou, ref_encode_boxes, ref_fpn_level, ref_nms,
                                 ref_pyramid_anchors, ref_roi_align)

STD = (0.1, 0.1, 0.2, 0.2)


def _np(x):
    return [np.asarray(v) for v in x] if isinstance(x, (list, tuple)) else np.asarray(x)


def _graph_equals_eager(layer, inputs, canon=lambda out: out):
    """Run ``layer`` eagerly and inside a keras.Model via predict (graph); compare."""
    single = not isinstance(inputs, list)
    xs = [inputs] if single else inputs
    syms = [keras.Input(shape=x.shape[1:], dtype=str(x.dtype)) for x in xs]
    model = keras.Model(syms, layer(syms[0] if single else syms))
    graph = model.predict(xs[0] if single else xs, batch_size=len(xs[0]), verbose=0)
    graph, eager = canon(_np(graph)), canon(_np(layer(inputs)))
    if not isinstance(eager, list):
        graph, eager = [graph], [eager]
    assert len(graph) == len(eager)
    for g, e in zip(graph, eager):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


# --- hand cases, shared by the behaviour and the graph-mode tests --------------

def _proposal_case():
    anchors = np.array([[0.1, 0.1, 0.4, 0.4],      # 0.9
                        [0.12, 0.12, 0.42, 0.42],  # 0.8: IoU ~0.78 with anchor 0 -> suppressed
                        [0.5, 0.5, 0.9, 0.9],      # 0.7
                        [-0.2, 0.6, 1.2, 1.1],     # 0.6: clipped to (0, .6, 1, 1), IoU .27 with #2
                        [1.1, 1.1, 1.3, 1.3],      # 0.95: outside -> clipped to zero area
                        [0.6, 0.0, 0.8, 0.2]],     # 0.1
                       np.float32)
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.95, 0.1],
                       [0.1, 0.2, 0.3, 0.4, 0.99, 0.5]], np.float32)
    probs = np.stack([1 - scores, scores], axis=-1)
    return [probs, np.zeros([2, 6, 4], np.float32), np.stack([anchors, anchors])]


def _target_case():
    g0, crowd = [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]
    proposals = np.zeros([2, 8, 4], np.float32)
    proposals[0, :6] = [[0.1, 0.1, 0.5, 0.45],    # IoU .875 with g0 -> positive
                        [0.15, 0.1, 0.55, 0.5],   # IoU .778 -> positive
                        [0.1, 0.3, 0.5, 0.7],     # IoU .333, no crowd overlap -> negative
                        [0.55, 0.55, 0.95, 0.95],  # overlaps the crowd box -> never sampled
                        [0.0, 0.7, 0.1, 0.9],     # no overlap -> negative
                        [0.58, 0.0, 0.62, 0.62]]  # crowd IoU .0035 >= .001 -> never sampled
    proposals[1, :2] = [[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.8, 0.8]]   # image 1: no GT
    class_ids = np.array([[3, -2, 0], [0, 0, 0]], np.int32)
    gt_boxes = np.zeros([2, 3, 4], np.float32)
    gt_boxes[0, :2] = [g0, crowd]
    masks = np.zeros([2, 16, 16, 3], np.float32)
    masks[0, :, :, :2] = 1.0
    return [proposals, class_ids, gt_boxes, masks]


def _detection_case():
    rois = np.zeros([2, 3, 4], np.float32)
    rois[:] = [[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.11, 0.1, 0.51, 0.5]]
    probs = np.zeros([2, 3, 3], np.float32)
    probs[0] = [[0.05, 0.9, 0.05],   # class 1, 0.9
                [0.1, 0.1, 0.8],     # class 2, 0.8: overlaps RoI 0 but another class -> kept
                [0.2, 0.75, 0.05]]   # class 1, 0.75: IoU .95 with RoI 0 -> suppressed
    probs[1] = [[1.0, 0.0, 0.0]] * 3  # image 1: only background -> no candidate
    deltas = np.random.default_rng(0).normal(size=[2, 3, 3, 4]).astype(np.float32)
    deltas[0, [0, 1, 2], [1, 2, 1]] = 0.0          # candidates keep their RoI
    window = np.array([[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 1.0, 1.0]], np.float32)
    return [rois, probs, deltas, window]


def _roi_align_case(seed=0, n=40):
    rng = np.random.default_rng(seed)
    maps = [rng.normal(size=[2, 256 // 2 ** l, 256 // 2 ** l, 3]).astype(np.float32)
            for l in range(2, 6)]
    size = np.exp(rng.uniform(np.log(4), np.log(250), size=[2, n, 2]))
    y1 = rng.uniform(0, 256 - size[..., 0])
    x1 = rng.uniform(0, 256 - size[..., 1])
    boxes_px = np.stack([y1, x1, y1 + size[..., 0], x1 + size[..., 1]], -1)
    boxes = (boxes_px / 256).astype(np.float32)
    return [boxes, np.array([[256, 256, 3]] * 2, np.float32), *maps]


def _canon_targets(out):
    """Sampling shuffles; sort positives and the rest by RoI so runs compare."""
    rois, ids, deltas, masks = [np.array(o) for o in out]
    for b in range(len(rois)):
        npos = int((ids[b] > 0).sum())
        pos = np.lexsort(rois[b, :npos].T[::-1])
        order = np.concatenate([pos, npos + np.lexsort(rois[b, npos:].T[::-1])])
        rois[b], ids[b], deltas[b] = rois[b, order], ids[b, order], deltas[b, order]
        masks[b, :npos] = masks[b, pos]
    return [rois, ids, deltas, masks]


def _detections_with_counts(counts, rows):
    """DetectionLayer-style output: counts[b] scored rows first, zero padding after."""
    rng = np.random.default_rng(sum(counts))
    detections = np.zeros([len(counts), rows, 6], np.float32)
    for b, count in enumerate(counts):
        detections[b, :count, :4] = np.sort(rng.uniform(size=[count, 2, 2]), axis=1).reshape(count, 4)
        detections[b, :count, 4] = rng.integers(1, 4, count)
        detections[b, :count, 5] = np.sort(rng.uniform(0.5, 1.0, count))[::-1]
    return detections


def _meta():
    return np.array([[7, 100, 120, 3, 128, 256, 3, 14, 0, 114, 256, 1.0, 1, 1, 0],
                     [8, 90, 90, 3, 128, 256, 3, 0, 38, 128, 218, 1.4, 1, 0, 1]], np.float32)


# (class, kwargs, inputs, canon): every layer with a case it can run on.
LAYER_CASES = [
    (ProposalLayer, dict(proposal_count=5, nms_threshold=0.5, pre_nms_limit=100,
                         rpn_bbox_std_dev=[0.1, 0.1, 0.2, 0.2]), _proposal_case, None),
    (PyramidROIAlign, dict(pool_size=7, sampling_ratio=2, k0=4, canonical_size=224.0,
                           min_level=2), _roi_align_case, None),
    (DetectionTargetLayer, dict(rois_per_image=8, positive_ratio=0.5, bbox_std_dev=list(STD),
                                mask_shape=[14, 14], use_mini_mask=True, positive_iou=0.5),
     _target_case, _canon_targets),
    (DetectionLayer, dict(max_detections=5, min_confidence=0.7, nms_threshold=0.3,
                          bbox_std_dev=list(STD)), _detection_case, None),
    (PyramidAnchors, dict(scales=[8.0, 16.0], ratios=[0.5, 1.0, 2.0], feature_strides=[4, 8],
                          anchor_stride=1),
     lambda: [np.zeros([2, 32, 48, 3], np.float32), np.zeros([2, 8, 12, 4], np.float32),
              np.zeros([2, 4, 6, 4], np.float32)], None),
    (MetaField, dict(field="window", normalized=True), _meta, None),
    (MergeRoiBatch, dict(), lambda: np.arange(2 * 3 * 4 * 4 * 5, dtype=np.float32)
     .reshape([2, 3, 4, 4, 5]), None),
    (SplitRoiBatch, dict(), lambda: [np.arange(6 * 4 * 5, dtype=np.float32).reshape([6, 4, 5]),
                                     np.zeros([2, 3, 4], np.float32)], None),
    (LeadingDetectionBoxes, dict(), lambda: _detections_with_counts([2, 1], rows=4), None),
    (PadToDetections, dict(), lambda: [np.arange(2 * 2 * 3, dtype=np.float32).reshape([2, 2, 3]) + 1,
                                       _detections_with_counts([2, 1], rows=4)], None),
    (NormalizeBoxes, dict(), lambda: [np.array([[[10, 20, 30, 40]], [[0, 0, 64, 32]]], np.float32),
                                      np.array([[64, 128, 3], [64, 32, 3]], np.float32)], None),
]
IDS = [case[0].__name__ for case in LAYER_CASES]


@pytest.mark.parametrize("cls, kwargs, make_inputs, canon", LAYER_CASES, ids=IDS)
def test_config_round_trip(cls, kwargs, make_inputs, canon):
    layer = cls(name="the_layer", **kwargs)
    config = layer.get_config()
    assert {k: config[k] for k in kwargs} == kwargs
    assert config["name"] == "the_layer"
    assert cls.from_config(config).get_config() == config
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is cls and restored.get_config() == config


# SplitRoiBatch's two inputs have different batch sizes ([B * N, ...] and
# [B, N, 4]), which predict cannot feed; the model tests run it in graph mode.
GRAPH_CASES = [case for case in LAYER_CASES if case[0] is not SplitRoiBatch]


@pytest.mark.parametrize("cls, kwargs, make_inputs, canon", GRAPH_CASES,
                         ids=[case[0].__name__ for case in GRAPH_CASES])
def test_graph_model_predict_equals_eager(cls, kwargs, make_inputs, canon):
    _graph_equals_eager(cls(**kwargs), make_inputs(), canon or (lambda out: out))


def test_plumbing_values():
    meta = _meta()
    np.testing.assert_allclose(MetaField("window", normalized=True)(meta),
                               [[14 / 128, 0, 114 / 128, 1], [0, 38 / 256, 1, 218 / 256]])
    np.testing.assert_array_equal(MetaField("active_class_ids")(meta), [[1, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(MetaField("image_id")(meta), [[7], [8]])
    inputs = [np.zeros([2, 32, 48, 3], np.float32), np.zeros([2, 8, 12, 4], np.float32),
              np.zeros([2, 4, 6, 4], np.float32)]
    got = PyramidAnchors([8, 16], [0.5, 1, 2], [4, 8])(inputs).numpy()
    want = ref_pyramid_anchors([8, 16], [0.5, 1, 2], (32, 48), [4, 8], 1) / [32, 48, 32, 48]
    np.testing.assert_allclose(got, np.stack([want, want]), atol=1e-6)
    rois = np.random.default_rng(1).normal(size=[2, 3, 4, 4, 5]).astype(np.float32)
    flat = MergeRoiBatch()(rois)
    np.testing.assert_array_equal(flat[4], rois[1, 1])
    np.testing.assert_array_equal(SplitRoiBatch()([flat, np.zeros([2, 3, 4], np.float32)]), rois)
    detections = _detections_with_counts([1, 3], rows=5)
    np.testing.assert_array_equal(LeadingDetectionBoxes()(detections), detections[:, :3, :4])
    assert LeadingDetectionBoxes()(_detections_with_counts([0, 0], rows=5)).shape == (2, 1, 4)
    values = np.arange(1, 2 * 3 * 2 + 1, dtype=np.float32).reshape([2, 3, 2])
    padded = PadToDetections()([values, detections]).numpy()
    np.testing.assert_array_equal(padded[0], [values[0, 0], [0, 0], [0, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(padded[1], [*values[1], [0, 0], [0, 0]])
    empty = PadToDetections()([np.ones([2, 0, 3], np.float32), _detections_with_counts([0, 0], 4)])
    np.testing.assert_array_equal(empty, np.zeros([2, 4, 3]))
    got = NormalizeBoxes()([np.array([[[16, 32, 48, 64]]], np.float32),
                            np.array([[64, 128, 3]], np.float32)])
    np.testing.assert_allclose(got, [[[0.25, 0.25, 0.75, 0.5]]])


# --- PyramidROIAlign ----------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("canonical_size, want_levels", [(224, {2, 3}), (56, {2, 3, 4, 5})])
def test_pyramid_roi_align_matches_numpy(seed, canonical_size, want_levels):
    # In a 256 px image no box reaches P4 (>= 224 px) with the canonical 224 px
    # (only near-full boxes); a 56 px canonical size spreads boxes over P2..P5.
    boxes, image_shape, *maps = _roi_align_case(seed)
    layer = PyramidROIAlign(pool_size=5, sampling_ratio=2, canonical_size=canonical_size)
    got = layer([boxes, image_shape, *maps]).numpy()
    assert got.shape == (2, boxes.shape[1], 5, 5, 3)
    levels = set()
    for b in range(2):
        for n, box in enumerate(boxes[b].astype(np.float64)):
            box_px = box * 256
            level = ref_fpn_level(box_px, canonical=canonical_size)
            levels.add(level)
            want = ref_roi_align(maps[level - 2][b], box_px / 2 ** level, 5, 2)
            np.testing.assert_allclose(got[b, n], want, rtol=1e-4, atol=1e-4)
    assert want_levels <= levels                    # the case exercises these levels


def test_pyramid_roi_align_empty_and_zero_boxes():
    _, image_shape, *maps = _roi_align_case(0)
    layer = PyramidROIAlign(pool_size=7)
    assert layer([np.zeros([2, 0, 4], np.float32), image_shape, *maps]).shape == (2, 0, 7, 7, 3)
    out = layer([np.zeros([2, 3, 4], np.float32), image_shape, *maps]).numpy()
    assert np.all(np.isfinite(out))


# --- ProposalLayer ------------------------------------------------------------

def test_proposal_layer_hand_case():
    probs, deltas, anchors = _proposal_case()
    got = ProposalLayer(proposal_count=6, nms_threshold=0.5)([probs, deltas, anchors]).numpy()
    clipped = np.clip(anchors[0], 0.0, 1.0)
    want0 = [clipped[i] for i in (0, 2, 3, 5)] + [np.zeros(4)] * 2    # by score, NMS, padded
    np.testing.assert_allclose(got[0], want0, atol=1e-6)
    for b in range(2):                                # the same through ref_nms
        valid = np.flatnonzero((clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1]))
        keep = valid[ref_nms(clipped[valid], probs[b, valid, 1], 6, 0.5)]
        want = np.zeros([6, 4])
        want[:len(keep)] = clipped[keep]
        np.testing.assert_allclose(got[b], want, atol=1e-6)
    assert not np.any(np.all(np.isclose(got, 1.0), axis=-1))  # the outside anchor never


def test_proposal_layer_decodes_deltas_with_std_dev():
    anchors = np.array([[[0.2, 0.2, 0.6, 0.4]]], np.float32)   # cy .4, cx .3, h .4, w .2
    deltas = np.array([[[1.0, -1.0, 0.5, 0.0]]], np.float32)   # x std: (.1, -.1, .1, 0)
    probs = np.array([[[0.1, 0.9]]], np.float32)
    got = ProposalLayer(2, 0.7, rpn_bbox_std_dev=STD)([probs, deltas, anchors]).numpy()
    cy, cx = 0.4 + 0.1 * 0.4, 0.3 - 0.1 * 0.2                  # .44, .28
    h, w = 0.4 * math.exp(0.1), 0.2 * math.exp(0.0)
    np.testing.assert_allclose(got[0], [[cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2],
                                        [0, 0, 0, 0]], atol=1e-6)


def test_proposal_layer_pre_nms_limit():
    anchors = np.array([[[0.1 * i, 0.0, 0.1 * i + 0.08, 0.5] for i in range(5)]], np.float32)
    scores = np.array([[0.3, 0.9, 0.1, 0.8, 0.5]], np.float32)
    probs = np.stack([1 - scores, scores], -1)
    got = ProposalLayer(5, 0.5, pre_nms_limit=2)([probs, np.zeros_like(anchors), anchors]).numpy()
    np.testing.assert_allclose(got[0], [anchors[0, 1], anchors[0, 3]] + [np.zeros(4)] * 3,
                               atol=1e-6)


def test_proposal_layer_all_outside_is_all_padding():
    anchors = np.array([[[1.2, 0.1, 1.5, 0.4], [0.1, -0.5, 0.4, -0.1], [0, 0, 0, 0]]], np.float32)
    probs = np.array([[[0.1, 0.9]] * 3], np.float32)
    got = ProposalLayer(4, 0.7)([probs, np.zeros_like(anchors), anchors]).numpy()
    np.testing.assert_array_equal(got, np.zeros([1, 4, 4]))


# --- DetectionTargetLayer -----------------------------------------------------

def _rows(array):
    return sorted(map(tuple, np.round(np.asarray(array, np.float64), 5)))


def test_detection_target_hand_case():
    proposals, class_ids, gt_boxes, masks = _target_case()
    layer = DetectionTargetLayer(rois_per_image=8, positive_ratio=0.5, bbox_std_dev=STD,
                                 mask_shape=(14, 14))
    rois, ids, deltas, target_masks = [o.numpy() for o in layer([proposals, class_ids,
                                                                 gt_boxes, masks])]
    g0 = gt_boxes[0, 0]
    positives = [proposals[0, 0], proposals[0, 1], g0]          # g0 itself is added
    np.testing.assert_array_equal(ids[0], [3, 3, 3, 0, 0] + [PADDING_CLASS_ID] * 3)
    assert _rows(rois[0, :3]) == _rows(positives)
    assert _rows(rois[0, 3:5]) == _rows([proposals[0, 2], proposals[0, 4]])
    np.testing.assert_array_equal(rois[0, 5:], 0.0)
    np.testing.assert_allclose(deltas[0], np.concatenate(
        [ref_encode_boxes(rois[0, :3], [g0] * 3, STD), np.zeros([5, 4])]), atol=1e-5)
    # By hand for proposal 0: dx = (.3 - .275) / .35 / .1, dw = log(.4 / .35) / .2.
    row = [i for i in range(3) if np.allclose(rois[0, i], proposals[0, 0])][0]
    np.testing.assert_allclose(deltas[0, row], [0, 0.025 / 0.35 / 0.1, 0, math.log(0.4 / 0.35) / 0.2],
                               atol=1e-5)
    crowd = gt_boxes[0, 1:2]
    assert np.all(ref_box_iou(rois[0, 3:5], crowd) < 0.001)
    assert np.all(ref_box_iou(rois[0, :3], [g0]) >= 0.5)
    for i in range(3):      # mini masks all ones: ones inside g0, zeros beyond (p1's bottom)
        want = np.ones([14, 14])
        if np.allclose(rois[0, i], proposals[0, 1]):
            want[13] = 0.0     # p1's last bin row: y .536..550, > 1 mini px (.025) below g0
        np.testing.assert_array_equal(target_masks[0, i], want)
    np.testing.assert_array_equal(target_masks[0, 3:], 0.0)
    # Image 1 has no GT: every sampled RoI is a negative.
    np.testing.assert_array_equal(ids[1], [0, 0] + [PADDING_CLASS_ID] * 6)
    assert _rows(rois[1, :2]) == _rows(proposals[1, :2])
    for out in (rois, deltas, target_masks):
        assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(deltas[1], 0.0)
    np.testing.assert_array_equal(target_masks[1], 0.0)


@pytest.mark.parametrize("rois_per_image, ratio", [(10, 0.33), (6, 0.5), (12, 0.25)])
def test_detection_target_positive_count(rois_per_image, ratio):
    rng = np.random.default_rng(3)
    near = 0.2 + rng.uniform(-0.01, 0.01, size=[20, 4])          # 20 positives around g0
    far = np.array([[0.7, 0.7, 0.8, 0.8 + 0.01 * i] for i in range(20)])   # 20 negatives
    proposals = np.concatenate([near + [0, 0, 0.4, 0.4], far])[None].astype(np.float32)
    gt_boxes = np.array([[[0.2, 0.2, 0.6, 0.6]]], np.float32)
    layer = DetectionTargetLayer(rois_per_image, positive_ratio=ratio, mask_shape=(7, 7))
    _, ids, _, masks = layer([proposals, np.array([[1]], np.int32), gt_boxes,
                              np.ones([1, 8, 8, 1], np.float32)])
    num_pos = int(round(rois_per_image * ratio))
    np.testing.assert_array_equal(ids[0], [1] * num_pos + [0] * (rois_per_image - num_pos))
    assert masks.shape == (1, num_pos, 7, 7)


@pytest.mark.parametrize("use_mini_mask", [False, True])
def test_detection_target_mask_crops(use_mini_mask):
    # Image 32 px. gA: px (2, 2, 14, 14), mask = its box. gB: px (16, 16, 28, 28),
    # mask = the left half of its box (x in [16, 22)). RoI = left half of gB (IoU .5).
    g_a, g_b = [2 / 32, 2 / 32, 14 / 32, 14 / 32], [0.5, 0.5, 0.875, 0.875]
    left_b = [0.5, 0.5, 0.875, 0.6875]
    if use_mini_mask:                           # each mask resized into its own box: 12 x 12
        masks = np.zeros([1, 12, 12, 2], np.float32)
        masks[0, :, :, 0] = 1.0
        masks[0, :, :6, 1] = 1.0
    else:
        masks = np.zeros([1, 32, 32, 2], np.float32)
        masks[0, 2:14, 2:14, 0] = 1.0
        masks[0, 16:28, 16:22, 1] = 1.0
    proposals = np.array([[left_b, [0, 0, 0, 0]]], np.float32)
    gt_boxes = np.array([[g_a, g_b]], np.float32)
    layer = DetectionTargetLayer(6, positive_ratio=0.5, mask_shape=(28, 28),
                                 use_mini_mask=use_mini_mask)
    rois, ids, _, target_masks = [o.numpy() for o in layer(
        [proposals, np.array([[1, 2]], np.int32), gt_boxes, masks])]
    assert sorted(ids[0, :3].tolist()) == [1, 2, 2] and np.all(ids[0, 3:] == PADDING_CLASS_ID)
    half = np.zeros([28, 28])
    half[:, :14] = 1.0                          # the box's left half: bins 0..13
    left = np.ones([28, 28])
    if not use_mini_mask:
        # The RoI's outer edge is the mask's edge in the full image: a corner bin's samples
        # sit 0.05..0.16 px (x, bin 6/28 px) and 0.11..0.32 px (y, bin 12/28 px) inside it, so
        # bilinear reads (.554 + .661) / 2 * (.607 + .821) / 2 = .607 * .714 = .43 < .5.
        left[[0, 0, -1, -1], [0, -1, 0, -1]] = 0.0
    expected = {tuple(np.float32(g_a)): np.ones([28, 28]), tuple(np.float32(g_b)): half,
                tuple(np.float32(left_b)): left}
    for i in range(3):
        np.testing.assert_array_equal(target_masks[0, i], expected[tuple(rois[0, i])])
        # The same through the numpy RoIAlign on the assigned GT mask.
        gt = ids[0, i] - 1
        if use_mini_mask:
            gy1, gx1, gy2, gx2 = gt_boxes[0, gt]
            box = (rois[0, i] - [gy1, gx1, gy1, gx1]) / ([gy2 - gy1, gx2 - gx1] * 2) * 12
        else:
            box = rois[0, i] * 32
        want = ref_roi_align(masks[0, :, :, gt:gt + 1], box, 28, 2)[..., 0] >= 0.5
        np.testing.assert_array_equal(target_masks[0, i], want)


def test_detection_target_nothing_at_all():
    layer = DetectionTargetLayer(4, mask_shape=(7, 7))
    out = layer([np.zeros([2, 5, 4], np.float32), np.zeros([2, 2], np.int32),
                 np.zeros([2, 2, 4], np.float32), np.zeros([2, 8, 8, 2], np.float32)])
    rois, ids, deltas, masks = [o.numpy() for o in out]
    np.testing.assert_array_equal(ids, PADDING_CLASS_ID)
    for array in (rois, deltas, masks):
        np.testing.assert_array_equal(array, 0.0)    # zeros, in particular no NaN


# --- DetectionLayer -----------------------------------------------------------

def test_detection_layer_hand_case():
    rois, probs, deltas, window = _detection_case()
    got = DetectionLayer(max_detections=5, min_confidence=0.7, nms_threshold=0.3,
                         bbox_std_dev=STD)([rois, probs, deltas, window]).numpy()
    want = np.zeros([5, 6])
    want[0] = [0.1, 0.1, 0.5, 0.5, 1, 0.9]
    want[1] = [0.12, 0.1, 0.5, 0.5, 2, 0.8]       # y2 .52 clipped to the window's .5
    np.testing.assert_allclose(got[0], want, atol=1e-6)
    np.testing.assert_array_equal(got[1], 0.0)    # no candidate: all zeros, no error


def test_detection_layer_uses_class_deltas():
    rois = np.array([[[0.2, 0.2, 0.6, 0.4]]], np.float32)
    probs = np.array([[[0.1, 0.1, 0.8]]], np.float32)
    deltas = np.zeros([1, 1, 3, 4], np.float32)
    deltas[0, 0, 1] = [5, 5, 5, 5]                 # another class's deltas: unused
    deltas[0, 0, 2] = [1.0, -1.0, 0.5, 0.0]
    got = DetectionLayer(1, 0.5, bbox_std_dev=STD)([rois, probs, deltas,
                                                   np.array([[0, 0, 1, 1]], np.float32)])
    h = 0.4 * math.exp(0.1)
    np.testing.assert_allclose(got[0, 0], [0.44 - h / 2, 0.18, 0.44 + h / 2, 0.38, 2, 0.8],
                               atol=1e-6)


# --- argument checks ----------------------------------------------------------

@pytest.mark.parametrize("make, name", [
    (lambda: ProposalLayer(proposal_count=0, nms_threshold=0.7), "proposal_count"),
    (lambda: ProposalLayer(proposal_count=2.5, nms_threshold=0.7), "proposal_count"),
    (lambda: ProposalLayer(10, nms_threshold=1.5), "nms_threshold"),
    (lambda: ProposalLayer(10, 0.7, pre_nms_limit=0), "pre_nms_limit"),
    (lambda: ProposalLayer(10, 0.7, rpn_bbox_std_dev=(0.1, 0.1, 0.2)), "rpn_bbox_std_dev"),
    (lambda: DetectionLayer(0), "max_detections"),
    (lambda: DetectionLayer(10, min_confidence=1.5), "min_confidence"),
    (lambda: DetectionLayer(10, nms_threshold=-0.1), "nms_threshold"),
    (lambda: DetectionLayer(10, bbox_std_dev=(0.1, 0.1, 0.2, 0.0)), "bbox_std_dev"),
    (lambda: PyramidROIAlign(pool_size=0), "pool_size"),
    (lambda: PyramidROIAlign(7, sampling_ratio=0), "sampling_ratio"),
    (lambda: DetectionTargetLayer(0), "rois_per_image"),
    (lambda: DetectionTargetLayer(10, positive_ratio=2), "positive_ratio"),
    (lambda: DetectionTargetLayer(10, mask_shape=(28, 0)), "mask_shape"),
    (lambda: DetectionTargetLayer(10, positive_iou=1.1), "positive_iou"),
    (lambda: PyramidAnchors([8], [1], [4], anchor_stride=0), "anchor_stride"),
    (lambda: MetaField("nope"), "field"),
])
def test_bad_arguments_raise_value_error(make, name):
    with pytest.raises(ValueError, match=name):
        make()
