"""Ground truth for training: the tight boxes of instance masks, and the RPN targets
(which anchors are objects, and their box deltas)."""

import numpy as np

from mrcnn_tf.modeling.rpn import NEGATIVE_ANCHOR, NEUTRAL_ANCHOR, POSITIVE_ANCHOR
from mrcnn_tf.ops.boxes import box_iou, encode_boxes

RPN_POSITIVE_IOU = 0.7
RPN_NEGATIVE_IOU = 0.3
# Anchors touching a crowd region this much are never called background.
RPN_CROWD_IOU = 0.001


def extract_bboxes(masks):
    """Tight boxes of instance masks.

    Args:
        masks: bool [H, W, N].
    Returns:
        int32 [N, (y1, x1, y2, x2)] pixels of ``masks``, y2/x2 exclusive; an
        empty mask's box is all zeros.
    """
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [H, W, N], got shape {masks.shape}")
    boxes = np.zeros([masks.shape[2], 4], np.int32)
    for i in range(masks.shape[2]):
        rows = np.flatnonzero(masks[:, :, i].any(axis=1))
        cols = np.flatnonzero(masks[:, :, i].any(axis=0))
        if rows.size:
            boxes[i] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return boxes


def build_rpn_targets(anchors_px, gt_class_ids, gt_boxes_px, anchors_per_image, std_dev, rng):
    """Label anchors and encode the deltas of the positives (Faster R-CNN rules).

    An anchor is positive with IoU >= 0.7 to a non-crowd box, or when it is
    the best anchor of some box; negative with IoU < 0.3 to every box and
    no overlap with a crowd region; otherwise neutral. At most half of
    ``anchors_per_image`` are positive; negatives fill the rest.

    Args:
        anchors_px: float32 [A, (y1, x1, y2, x2)] in molded-image pixels.
        gt_class_ids: int [G]; negative ids are crowd regions.
        gt_boxes_px: float [G, 4] molded-image pixels.
        anchors_per_image: how many anchors are labelled (pos + neg).
        std_dev: 4 floats the deltas are divided by.
        rng: numpy Generator for the subsampling.
    Returns:
        rpn_match int32 [A] (1, -1, 0) and rpn_bbox float32
        [anchors_per_image, 4]: the positives' deltas in anchor order,
        zero-padded.
    """
    num_anchors = anchors_px.shape[0]
    rpn_match = np.full([num_anchors], NEUTRAL_ANCHOR, np.int32)
    rpn_bbox = np.zeros([anchors_per_image, 4], np.float32)
    gt_class_ids = np.asarray(gt_class_ids)
    gt_boxes_px = np.asarray(gt_boxes_px, np.float32).reshape(-1, 4)

    crowd = gt_class_ids < 0
    not_near_crowd = np.ones([num_anchors], bool)
    if crowd.any():
        crowd_iou = box_iou(anchors_px, gt_boxes_px[crowd]).numpy()
        not_near_crowd = crowd_iou.max(axis=1) < RPN_CROWD_IOU
    gt_boxes_px = gt_boxes_px[~crowd]

    if len(gt_boxes_px) == 0:
        rpn_match[not_near_crowd] = NEGATIVE_ANCHOR
    else:
        overlaps = box_iou(anchors_px, gt_boxes_px).numpy()
        best_gt = overlaps.argmax(axis=1)
        best_iou = overlaps[np.arange(num_anchors), best_gt]
        rpn_match[(best_iou < RPN_NEGATIVE_IOU) & not_near_crowd] = NEGATIVE_ANCHOR
        # Every box gets its best anchor(s), even below 0.7 (small or odd shapes).
        best_per_gt = overlaps.max(axis=0)
        is_best = (overlaps == best_per_gt[None, :]) & (best_per_gt[None, :] > 0)
        rpn_match[is_best.any(axis=1)] = POSITIVE_ANCHOR
        rpn_match[best_iou >= RPN_POSITIVE_IOU] = POSITIVE_ANCHOR

    _subsample(rpn_match, POSITIVE_ANCHOR, anchors_per_image // 2, rng)
    num_positive = int((rpn_match == POSITIVE_ANCHOR).sum())
    _subsample(rpn_match, NEGATIVE_ANCHOR, anchors_per_image - num_positive, rng)

    positive = np.flatnonzero(rpn_match == POSITIVE_ANCHOR)
    if positive.size:
        rpn_bbox[:positive.size] = encode_boxes(
            anchors_px[positive], gt_boxes_px[best_gt[positive]], std_dev).numpy()
    return rpn_match, rpn_bbox


def _subsample(rpn_match, label, keep, rng):
    """Reset all but ``keep`` random anchors with ``label`` to neutral (in place)."""
    index = np.flatnonzero(rpn_match == label)
    if index.size > keep:
        rpn_match[rng.choice(index, index.size - keep, replace=False)] = NEUTRAL_ANCHOR
