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
    return tf.image.non_max_suppression(boxes, scores, max_output_size, iou_threshold,
                                        score_threshold=score_threshold)


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
