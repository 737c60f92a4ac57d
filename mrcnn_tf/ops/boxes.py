"""Box geometry in TensorFlow: IoU, regression deltas, clipping, frames.

Every box is ``(y1, x1, y2, x2)`` with continuous coordinates (pixel ``i``
covers ``[i, i + 1)``; ``y2``/``x2`` exclusive), so height is ``y2 - y1``
and area is ``(y2 - y1) * (x2 - x1)``. The functions are frame-agnostic
(pixels or normalised) unless their name says otherwise.
"""

import math

import tensorflow as tf

# Largest log-scale a delta may apply: exp() of more overflows float16 and
# yields boxes thousands of times their anchor (detectron2's scale clamp).
MAX_LOG_SCALE = math.log(1000.0 / 16.0)


def _check_box_dim(tensor, name):
    if tensor.shape.rank is not None and tensor.shape[-1] not in (None, 4):
        raise ValueError(f"{name}.shape[-1] is {tensor.shape[-1]}, but must be 4 (y1, x1, y2, x2)")


def box_area(boxes):
    """Area of boxes ``[..., 4]`` -> ``[...]``; inverted boxes count as 0."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    _check_box_dim(boxes, "boxes")
    y1, x1, y2, x2 = tf.unstack(boxes, 4, axis=-1)
    return tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)


def box_iou(boxes1, boxes2):
    """Intersection over union of every pair.

    Args:
        boxes1: float32 [N, (y1, x1, y2, x2)].
        boxes2: float32 [M, (y1, x1, y2, x2)], same frame.
    Returns:
        float32 [N, M] in [0, 1]. A pair whose union is empty has IoU 0.
    """
    boxes1 = tf.convert_to_tensor(boxes1, tf.float32)
    boxes2 = tf.convert_to_tensor(boxes2, tf.float32)
    _check_box_dim(boxes1, "boxes1")
    _check_box_dim(boxes2, "boxes2")
    b1 = boxes1[:, None, :]
    b2 = boxes2[None, :, :]
    inter_h = tf.maximum(tf.minimum(b1[..., 2], b2[..., 2]) - tf.maximum(b1[..., 0], b2[..., 0]), 0.0)
    inter_w = tf.maximum(tf.minimum(b1[..., 3], b2[..., 3]) - tf.maximum(b1[..., 1], b2[..., 1]), 0.0)
    intersection = inter_h * inter_w
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - intersection
    return tf.math.divide_no_nan(intersection, union)


def _centre_size(boxes):
    y1, x1, y2, x2 = tf.unstack(boxes, 4, axis=-1)
    h = y2 - y1
    w = x2 - x1
    return y1 + 0.5 * h, x1 + 0.5 * w, h, w


def encode_boxes(boxes, gt_boxes, std_dev=(1.0, 1.0, 1.0, 1.0)):
    """Regression deltas that turn ``boxes`` into ``gt_boxes``.

    Args:
        boxes: float32 [..., (y1, x1, y2, x2)], non-empty (anchors or RoIs).
        gt_boxes: float32 [..., (y1, x1, y2, x2)], same shape and frame.
        std_dev: 4 floats; deltas are divided by them (target scaling).
    Returns:
        float32 [..., (dy, dx, log(dh), log(dw))] / std_dev.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    _check_box_dim(boxes, "boxes")
    _check_box_dim(gt_boxes, "gt_boxes")
    cy, cx, h, w = _centre_size(boxes)
    gcy, gcx, gh, gw = _centre_size(gt_boxes)
    # Tiny guards keep padding rows (all zeros) finite instead of NaN.
    eps = 1e-8
    h = tf.maximum(h, eps)
    w = tf.maximum(w, eps)
    deltas = tf.stack(
        [(gcy - cy) / h, (gcx - cx) / w,
         tf.math.log(tf.maximum(gh, eps) / h), tf.math.log(tf.maximum(gw, eps) / w)], axis=-1)
    return deltas / tf.constant(std_dev, tf.float32)


def decode_boxes(boxes, deltas, std_dev=(1.0, 1.0, 1.0, 1.0)):
    """Apply regression deltas (the inverse of :func:`encode_boxes`).

    Args:
        boxes: float32 [..., (y1, x1, y2, x2)].
        deltas: float32 [..., (dy, dx, log(dh), log(dw))], divided by std_dev.
        std_dev: 4 floats the deltas were divided by.
    Returns:
        float32 [..., (y1, x1, y2, x2)], same frame as ``boxes``. Log-scales
        are clamped at ``MAX_LOG_SCALE`` so the result is always finite.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    deltas = tf.cast(deltas, tf.float32) * tf.constant(std_dev, tf.float32)
    _check_box_dim(boxes, "boxes")
    _check_box_dim(deltas, "deltas")
    cy, cx, h, w = _centre_size(boxes)
    dy, dx, dh, dw = tf.unstack(deltas, 4, axis=-1)
    cy = cy + dy * h
    cx = cx + dx * w
    h = h * tf.exp(tf.minimum(dh, MAX_LOG_SCALE))
    w = w * tf.exp(tf.minimum(dw, MAX_LOG_SCALE))
    return tf.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def clip_boxes(boxes, window):
    """Clip boxes to a window.

    Args:
        boxes: float32 [..., (y1, x1, y2, x2)].
        window: float32 [..., (y1, x1, y2, x2)], broadcastable to ``boxes``
            under numpy rules (e.g. [4], or [B, 1, 4] for boxes [B, N, 4]).
    Returns:
        float32 [..., 4]; every coordinate inside the window.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    window = tf.cast(window, tf.float32)
    wy1, wx1, wy2, wx2 = tf.unstack(window, 4, axis=-1)
    low = tf.stack([wy1, wx1, wy1, wx1], axis=-1)
    high = tf.stack([wy2, wx2, wy2, wx2], axis=-1)
    return tf.minimum(tf.maximum(boxes, low), high)


def _scale_of(image_hw):
    image_hw = tf.cast(image_hw, tf.float32)
    h, w = image_hw[..., 0], image_hw[..., 1]
    return tf.stack([h, w, h, w], axis=-1)


def normalize_boxes(boxes_px, image_hw):
    """Pixel boxes ``[..., 4]`` -> boxes normalised by ``[H, W, H, W]``."""
    return tf.cast(boxes_px, tf.float32) / _scale_of(image_hw)


def denormalize_boxes(boxes_norm, image_hw):
    """Normalised boxes ``[..., 4]`` -> pixel boxes (exact inverse of normalize_boxes)."""
    return tf.cast(boxes_norm, tf.float32) * _scale_of(image_hw)


def nonzero_rows(boxes):
    """bool [...]: rows of ``boxes [..., 4]`` that are not all-zero padding."""
    return tf.reduce_any(tf.not_equal(boxes, 0.0), axis=-1)


def pad_rows(tensor, rows, value=0):
    """Pad (or cut) axis 0 of ``tensor`` to exactly ``rows`` rows."""
    tensor = tensor[:rows]
    padding = [[0, rows - tf.shape(tensor)[0]]] + [[0, 0]] * (tensor.shape.rank - 1)
    padded = tf.pad(tensor, padding, constant_values=value)
    trailing = tensor.shape[1:]
    if isinstance(rows, int) and trailing.is_fully_defined():
        # The static shape as an op (a free reshape), so that graph converters (TFLite) see it too
        # and can drop the callers' EnsureShape.
        padded = tf.reshape(padded, [rows, *trailing.as_list()])
    return padded
