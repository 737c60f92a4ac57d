"""Non-maximum suppression: greedy, class-agnostic and per class.

A box is suppressed when its IoU with an already kept, higher-scoring box is
strictly greater than ``iou_threshold``.
"""

import tensorflow as tf


def non_max_suppression(boxes, scores, max_output_size, iou_threshold,
                        score_threshold=float("-inf")):
    """Greedy NMS.

    Args:
        boxes: float32 [N, (y1, x1, y2, x2)], any frame.
        scores: float32 [N].
        max_output_size: keep at most this many.
        iou_threshold: suppress overlaps above this IoU.
        score_threshold: drop boxes scoring at or below this first.
    Returns:
        int32 [K] indices into ``boxes``, best first, K <= max_output_size.
    """
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    # TF's kernel treats its box corners as unordered and needs y1<=y2 for IoU;
    # our boxes are ordered, so they pass straight through.
    # V4 padded, then cut at its valid count: the same indices as tf.image.non_max_suppression
    # (V3), but TFLite lowers V3 to NON_MAX_SUPPRESSION_V4 without the cut (its output is
    # padded with index 0 up to max_output_size), so the count must be in the graph.
    selected, valid = tf.raw_ops.NonMaxSuppressionV4(
        boxes=boxes, scores=scores, max_output_size=tf.cast(max_output_size, tf.int32),
        iou_threshold=tf.cast(iou_threshold, tf.float32),
        score_threshold=tf.cast(score_threshold, tf.float32), pad_to_max_output_size=True)
    return selected[:valid]


def batched_nms(boxes, scores, classes, max_output_size, iou_threshold,
                score_threshold=float("-inf")):
    """NMS run independently per class, results merged by score.

    Boxes of different classes never suppress each other: each class is
    shifted to its own disjoint region of the plane before one NMS call
    (torchvision's ``batched_nms`` trick), so the cost is one kernel call.

    Args:
        boxes: float32 [N, (y1, x1, y2, x2)].
        scores: float32 [N].
        classes: int [N] class of each box.
        max_output_size, iou_threshold, score_threshold: as in
            :func:`non_max_suppression`.
    Returns:
        int32 [K] indices into ``boxes``, best first.
    """
    boxes = tf.cast(boxes, tf.float32)
    # The zero keeps reduce_max defined (0, not -inf) for an empty input.
    largest = tf.reduce_max(tf.concat([tf.abs(tf.reshape(boxes, [-1])), [0.0]], axis=0))
    extent = 2.0 * largest + 1.0
    offsets = tf.cast(classes, tf.float32)[:, None] * extent
    return non_max_suppression(boxes + offsets, scores, max_output_size, iou_threshold,
                               score_threshold)


def cross_class_nms(overlaps, scores, class_ids, iou_threshold):
    """Greedy suppression across classes, after the per-class NMS.

    A detection is suppressed when its overlap with a kept, higher-scoring
    detection of another class is strictly greater than ``iou_threshold``;
    detections of one class never suppress each other here (the per-class
    NMS has already decided between them).

    Args:
        overlaps: float32 [N, N] symmetric pairwise IoU (of boxes or masks).
        scores: float32 [N]; rows scoring <= 0 (padding) are never kept.
        class_ids: int [N].
        iou_threshold: float in [0, 1].
    Returns:
        bool [N], True for the detections kept.
    """
    overlaps = tf.convert_to_tensor(overlaps, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    class_ids = tf.convert_to_tensor(class_ids)
    count = tf.shape(scores)[0]
    same_class = tf.equal(class_ids[:, None], class_ids[None, :])
    keep = tf.image.non_max_suppression_overlaps(
        tf.where(same_class, 0.0, overlaps), scores, count, iou_threshold, score_threshold=0.0)
    return tf.scatter_nd(keep[:, None], tf.ones_like(keep, tf.bool), [count])
