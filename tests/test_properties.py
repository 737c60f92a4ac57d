"""Property tests: random valid inputs keep the layers' invariants (hypothesis)."""

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn_tf.layers import PADDING_CLASS_ID, DetectionLayer, DetectionTargetLayer, ProposalLayer
from mrcnn_tf.ops.boxes import box_iou

SETTINGS = settings(max_examples=20, deadline=None)


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
