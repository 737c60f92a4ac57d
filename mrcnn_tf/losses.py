"""The five Mask R-CNN losses, as plain functions of tensors.

Each is a mean over the elements it is defined on and is exactly 0 (not
NaN) when that set is empty, e.g. an image with no object has no positive
anchor and no positive RoI.
"""

import tensorflow as tf

# Anchor labels in rpn_match.
POSITIVE_ANCHOR, NEUTRAL_ANCHOR, NEGATIVE_ANCHOR = 1, 0, -1


def _safe_mean(values):
    """Mean of a 1-D tensor; 0 for an empty one (never NaN)."""
    values = tf.reshape(tf.cast(values, tf.float32), [-1])
    count = tf.cast(tf.size(values), tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(values), count)


def smooth_l1(diff, beta=1.0):
    """Elementwise smooth L1 (Huber with slope 1): 0.5 d^2 / beta below beta, |d| - 0.5 beta above."""
    diff = tf.abs(diff)
    return tf.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def rpn_class_loss(rpn_match, rpn_class_logits):
    """Anchor object/background cross-entropy over non-neutral anchors.

    Args:
        rpn_match: int [B, A] (or [B, A, 1]): 1 positive, -1 negative, 0 neutral.
        rpn_class_logits: float [B, A, 2] (background, object) logits.
    Returns:
        float32 scalar: mean cross-entropy over positive and negative anchors.
    """
    rpn_match = tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(rpn_class_logits)[:2])
    used = tf.where(tf.not_equal(rpn_match, NEUTRAL_ANCHOR))
    labels = tf.cast(tf.equal(tf.gather_nd(rpn_match, used), POSITIVE_ANCHOR), tf.int32)
    logits = tf.cast(tf.gather_nd(rpn_class_logits, used), tf.float32)
    return _safe_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


def rpn_bbox_loss(target_rpn_bbox, rpn_match, rpn_bbox):
    """Smooth L1 on the deltas of positive anchors.

    Args:
        target_rpn_bbox: float [B, M, 4]: the deltas of each image's positive
            anchors, in anchor order, packed at the top and zero-padded.
        rpn_match: int [B, A] (or [B, A, 1]).
        rpn_bbox: float [B, A, 4] predicted deltas.
    Returns:
        float32 scalar: mean over the positive anchors' 4 coordinates.
    """
    rpn_bbox = tf.cast(rpn_bbox, tf.float32)
    target_rpn_bbox = tf.cast(target_rpn_bbox, tf.float32)
    rpn_match = tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(rpn_bbox)[:2])
    positive = tf.cast(tf.equal(rpn_match, POSITIVE_ANCHOR), tf.int32)
    # The targets are packed: image i's positives, in anchor order, fill its
    # first rows. Positives beyond the target rows have no target and are skipped.
    max_rows = tf.shape(target_rpn_bbox)[1]
    rank = tf.cumsum(positive, axis=1, exclusive=True)
    pred = tf.boolean_mask(rpn_bbox, (positive > 0) & (rank < max_rows))
    counts = tf.minimum(tf.reduce_sum(positive, axis=1), max_rows)
    target = tf.boolean_mask(target_rpn_bbox, tf.sequence_mask(counts, max_rows))
    return _safe_mean(smooth_l1(target - pred))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """RoI classification cross-entropy over the classes of the image's dataset.

    Args:
        target_class_ids: int [B, N]; negative ids mark padding rows (ignored).
        pred_class_logits: float [B, N, K].
        active_class_ids: [B, K], 1 for classes of the image's source dataset.
            Inactive classes are removed from the softmax, so a model trained
            on several datasets is never pushed away from another dataset's
            classes it cannot see labelled here.
    Returns:
        float32 scalar: mean over non-padding RoIs.
    """
    logits = tf.cast(pred_class_logits, tf.float32)
    active = tf.cast(active_class_ids, tf.bool)[:, None, :]
    logits = tf.where(active, logits, tf.float32.min / 2.0)
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    used = tf.where(target_class_ids >= 0)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.gather_nd(target_class_ids, used), tf.gather_nd(logits, used))
    return _safe_mean(losses)


def _positive_rois(target_class_ids):
    """(indices [P, 2] of positive RoIs, their class ids [P])."""
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    positive = tf.where(target_class_ids > 0)
    return positive, tf.gather_nd(target_class_ids, positive)


def mrcnn_bbox_loss(target_deltas, target_class_ids, pred_bbox):
    """Smooth L1 on positive RoIs, using the deltas of the ground-truth class only.

    Args:
        target_deltas: float [B, N, 4].
        target_class_ids: int [B, N].
        pred_bbox: float [B, N, K, 4].
    Returns:
        float32 scalar: mean over the positives' 4 coordinates.
    """
    positive, classes = _positive_rois(target_class_ids)
    pred = tf.gather_nd(tf.cast(pred_bbox, tf.float32), tf.concat([positive, tf.cast(classes, tf.int64)[:, None]], 1))
    target = tf.gather_nd(tf.cast(target_deltas, tf.float32), positive)
    return _safe_mean(smooth_l1(target - pred))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_mask_logits):
    """Per-pixel sigmoid cross-entropy on the ground-truth class's mask only.

    Args:
        target_masks: float [B, N, h, w] in {0, 1}.
        target_class_ids: int [B, N].
        pred_mask_logits: float [B, N, h, w, K] mask logits (pre-sigmoid).
    Returns:
        float32 scalar: mean over the positives' pixels. Other classes'
        channels get no gradient (the paper's decoupled masks).
    """
    positive, classes = _positive_rois(target_class_ids)
    logits = tf.transpose(tf.cast(pred_mask_logits, tf.float32), [0, 1, 4, 2, 3])
    logits = tf.gather_nd(logits, tf.concat([positive, tf.cast(classes, tf.int64)[:, None]], 1))
    target = tf.gather_nd(tf.cast(target_masks, tf.float32), positive)
    return _safe_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits))


LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")
