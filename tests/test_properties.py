"""Property tests: random valid inputs keep the layers' invariants (hypothesis)."""

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn_tf.layers import PADDING_CLASS_ID, DetectionLayer, DetectionTargetLayer, ProposalLayer
from mrcnn_tf.ops.anchors import backbone_feature_shapes, generate_pyramid_anchors
from mrcnn_tf.ops.boxes import MAX_LOG_SCALE, box_iou, clip_boxes, decode_boxes, encode_boxes
from mrcnn_tf.ops.roi_align import roi_align

SETTINGS = settings(max_examples=25, deadline=None)


def random_boxes(rng, n, low=0.0, high=1.0, min_size=0.02):
    """[n, 4] valid normalised boxes inside [low, high]."""
    y1x1 = rng.uniform(low, high - min_size, (n, 2))
    size = rng.uniform(min_size, 1.0, (n, 2)) * (high - y1x1)
    return np.concatenate([y1x1, y1x1 + np.maximum(size, min_size / 2)], axis=1).clip(low, high).astype(np.float32)


@SETTINGS
@given(seed=st.integers(0, 10_000), anchors=st.integers(1, 60), keep=st.integers(1, 20))
def test_proposals_are_valid_boxes_inside_the_image(seed, anchors, keep):
    rng = np.random.default_rng(seed)
    probs = tf.nn.softmax(rng.normal(0, 2, (2, anchors, 2)).astype(np.float32))
    deltas = rng.normal(0, 3, (2, anchors, 4)).astype(np.float32)
    anchor_boxes = np.stack([random_boxes(rng, anchors, -0.3, 1.3)] * 2)
    proposals = ProposalLayer(keep, 0.7, pre_nms_limit=50)([probs, deltas, anchor_boxes]).numpy()
    assert proposals.shape == (2, keep, 4) and np.isfinite(proposals).all()
    assert (proposals >= 0).all() and (proposals <= 1).all()
    assert (proposals[..., 2:] >= proposals[..., :2]).all()
    real = proposals[np.any(proposals != 0, axis=-1)]
    assert ((real[:, 2] - real[:, 0]) * (real[:, 3] - real[:, 1]) > 0).all()  # nothing empty proposed


@SETTINGS
@given(seed=st.integers(0, 10_000), num_gt=st.integers(0, 4), num_proposals=st.integers(0, 30),
       crowd=st.booleans())
def test_detection_targets_respect_iou_and_classes(seed, num_gt, num_proposals, crowd):
    rng = np.random.default_rng(seed)
    rois_per_image, num_classes = 12, 4
    gt_boxes = np.zeros((1, 5, 4), np.float32)
    gt_class_ids = np.zeros((1, 5), np.int32)
    gt_boxes[0, :num_gt] = random_boxes(rng, num_gt, min_size=0.1)
    gt_class_ids[0, :num_gt] = rng.integers(1, num_classes, num_gt)
    if crowd and num_gt:
        gt_class_ids[0, 0] *= -1
    proposals = np.zeros((1, 32, 4), np.float32)
    proposals[0, :num_proposals] = random_boxes(rng, num_proposals)
    masks = rng.random((1, 14, 14, 5)) > 0.5
    rois, class_ids, deltas, mask_targets = [t.numpy() for t in DetectionTargetLayer(
        rois_per_image, 0.5, mask_shape=(28, 28))([proposals, gt_class_ids, gt_boxes, masks])]

    for t in (rois, deltas, mask_targets):
        assert np.isfinite(t).all()
    assert set(np.unique(class_ids)) <= {PADDING_CLASS_ID, *range(num_classes)}
    assert set(np.unique(mask_targets)) <= {0.0, 1.0}
    objects = gt_boxes[0][gt_class_ids[0] > 0]
    positive = class_ids[0] > 0
    assert positive.sum() <= round(rois_per_image * 0.5)
    if positive.any():  # each positive overlaps a non-crowd box of its class by >= 0.5
        iou = box_iou(rois[0][positive], objects).numpy()
        same_class = class_ids[0][positive][:, None] == gt_class_ids[0][gt_class_ids[0] > 0][None, :]
        assert (np.where(same_class, iou, 0).max(axis=1) >= 0.5 - 1e-6).all()
    padding = class_ids[0] == PADDING_CLASS_ID
    assert (rois[0][padding] == 0).all()
    assert not (np.diff(padding.astype(int)) < 0).any()  # padding only at the end


@SETTINGS
@given(seed=st.integers(0, 10_000), num_rois=st.integers(1, 20), threshold=st.floats(0.0, 0.9))
def test_detections_are_sorted_inside_the_window_and_above_threshold(seed, num_rois, threshold):
    rng = np.random.default_rng(seed)
    num_classes, max_detections = 4, 10
    rois = random_boxes(rng, num_rois)[None]
    probs = tf.nn.softmax(rng.normal(0, 2, (1, num_rois, num_classes)).astype(np.float32)).numpy()
    deltas = rng.normal(0, 1, (1, num_rois, num_classes, 4)).astype(np.float32)
    window = np.array([[0.1, 0.2, 0.9, 0.8]], np.float32)
    detections = DetectionLayer(max_detections, threshold, 0.5)([rois, probs, deltas, window]).numpy()[0]
    assert detections.shape == (max_detections, 6) and np.isfinite(detections).all()
    real = detections[detections[:, 5] > 0]
    assert (np.diff(real[:, 5]) <= 1e-7).all()  # best first
    assert (real[:, 5] >= threshold - 1e-7).all()
    assert ((real[:, 4] >= 1) & (real[:, 4] < num_classes)).all()
    assert (real[:, 0] >= 0.1 - 1e-6).all() and (real[:, 2] <= 0.9 + 1e-6).all()
    assert (real[:, 1] >= 0.2 - 1e-6).all() and (real[:, 3] <= 0.8 + 1e-6).all()
    assert (detections[len(real):] == 0).all()  # padding after the detections


# ------------------------------------------------------------------- box ops

@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30))
def test_clipped_boxes_lie_inside_the_window(seed, n):
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(-50, 150, (n, 4)).astype(np.float32)  # any order, even inverted
    window = np.sort(rng.uniform(0, 100, (2, 2)), axis=0).T.reshape(-1)[[0, 2, 1, 3]].astype(np.float32)
    clipped = clip_boxes(boxes, window).numpy()
    wy1, wx1, wy2, wx2 = window
    assert ((clipped[:, 0::2] >= wy1) & (clipped[:, 0::2] <= wy2)).all()
    assert ((clipped[:, 1::2] >= wx1) & (clipped[:, 1::2] <= wx2)).all()
    inside = (boxes[:, 0::2] >= wy1) & (boxes[:, 0::2] <= wy2)
    np.testing.assert_array_equal(clipped[:, 0::2][inside], boxes[:, 0::2][inside])  # inside: untouched


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12), m=st.integers(1, 12), degenerate=st.booleans())
def test_iou_is_a_symmetric_fraction_and_one_with_itself(seed, n, m, degenerate):
    rng = np.random.default_rng(seed)
    boxes1, boxes2 = random_boxes(rng, n), random_boxes(rng, m)
    if degenerate:  # zero-area and inverted boxes overlap nothing
        boxes2[0] = boxes2[0, [0, 1, 0, 1]]
        boxes2[-1] = boxes2[-1, [2, 3, 0, 1]]
    iou = box_iou(boxes1, boxes2).numpy()
    assert iou.shape == (n, m) and np.isfinite(iou).all()
    assert (iou >= 0).all() and (iou <= 1 + 1e-6).all()
    np.testing.assert_allclose(iou, box_iou(boxes2, boxes1).numpy().T, atol=1e-6)
    np.testing.assert_allclose(np.diag(box_iou(boxes1, boxes1).numpy()), 1.0, atol=1e-5)
    if degenerate:
        assert (iou[:, 0] == 0).all() and (iou[:, -1] == 0).all()


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30),
       std=st.sampled_from([(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)]))
def test_deltas_round_trip(seed, n, std):
    rng = np.random.default_rng(seed)
    boxes_px = random_boxes(rng, n, min_size=0.05) * 100
    gt_px = random_boxes(rng, n, min_size=0.05) * 100
    deltas = encode_boxes(boxes_px, gt_px, std).numpy()
    assert np.isfinite(deltas).all()
    assert (np.abs(deltas[:, 2:] * np.array(std[2:])) <= MAX_LOG_SCALE).all()  # no clamping here
    np.testing.assert_allclose(decode_boxes(boxes_px, deltas, std).numpy(), gt_px, atol=1e-3)


# -------------------------------------------------------------------- anchors

@SETTINGS
@given(rows=st.integers(1, 4), cols=st.integers(1, 4), anchor_stride=st.integers(1, 2),
       ratios=st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=1, max_size=3, unique=True))
def test_anchor_centres_lie_inside_the_image_and_counts_add_up(rows, cols, anchor_stride, ratios):
    image_hw = (64 * rows, 64 * cols)
    strides = (4, 8, 16, 32, 64)
    shapes = backbone_feature_shapes(image_hw, strides)
    anchors = generate_pyramid_anchors((8, 16, 32, 64, 128), ratios, shapes, strides, anchor_stride).numpy()
    expected = sum(-(-h // anchor_stride) * -(-w // anchor_stride) * len(ratios) for h, w in shapes)
    assert anchors.shape == (expected, 4)
    centre_y = (anchors[:, 0] + anchors[:, 2]) / 2
    centre_x = (anchors[:, 1] + anchors[:, 3]) / 2
    assert ((centre_y > 0) & (centre_y < image_hw[0])).all()
    assert ((centre_x > 0) & (centre_x < image_hw[1])).all()
    assert (anchors[:, 2:] > anchors[:, :2]).all()


# ------------------------------------------------------------------ RoIAlign

@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 10), size=st.integers(1, 7),
       sampling_ratio=st.integers(1, 3), value=st.floats(-100, 100))
def test_roi_align_is_finite_and_constant_on_a_constant_map(seed, n, size, sampling_ratio, value):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 20, 2)
    boxes = random_boxes(rng, n, min_size=0.0) * np.array([height, width, height, width], np.float32)
    indices = rng.integers(0, 2, n).astype(np.int32)
    features = rng.normal(0, 1, (2, height, width, 3)).astype(np.float32)
    pooled = roi_align(features, boxes, indices, size, sampling_ratio).numpy()
    assert pooled.shape == (n, size, size, 3) and np.isfinite(pooled).all()
    assert (pooled >= features.min() - 1e-4).all() and (pooled <= features.max() + 1e-4).all()
    constant = np.full((2, height, width, 3), value, np.float32)
    np.testing.assert_allclose(roi_align(constant, boxes, indices, size, sampling_ratio).numpy(), value,
                               rtol=1e-5, atol=1e-4)
