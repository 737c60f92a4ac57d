"""Anchor boxes for the FPN levels.

Convention (docs/CONTRACTS.md): ratio = width / height, so an anchor of
scale ``s`` and ratio ``r`` is ``s / sqrt(r)`` high and ``s * sqrt(r)``
wide; on a level of stride ``f`` the anchor centres are the centres of the
feature cells, ``((i + 0.5) * f, (j + 0.5) * f)``, taken every
``anchor_stride`` cells. Order: rows, then columns, then ratios (innermost);
levels are concatenated from the finest (P2) to the coarsest (P6).
"""

import functools
import math

import numpy as np
import tensorflow as tf


def backbone_feature_shapes(image_shape_hw, feature_strides):
    """Spatial shape of each pyramid level for an input image.

    Args:
        image_shape_hw: (H, W) of the molded image, in pixels.
        feature_strides: the level strides, e.g. (4, 8, 16, 32, 64).
    Returns:
        list of (ceil(H / stride), ceil(W / stride)) tuples, one per level.
    """
    height, width = int(image_shape_hw[0]), int(image_shape_hw[1])
    return [(math.ceil(height / s), math.ceil(width / s)) for s in feature_strides]


def generate_anchors(scale, ratios, feature_shape, feature_stride, anchor_stride):
    """Anchors of one scale for every cell of one feature map.

    Args:
        scale: anchor side for ratio 1, in image pixels.
        ratios: sequence of width/height ratios.
        feature_shape: (fh, fw), static ints or scalar int tensors.
        feature_stride: image pixels per feature cell.
        anchor_stride: place anchors every this many cells.
    Returns:
        float32 [n, (y1, x1, y2, x2)] in image pixels,
        n = ceil(fh / anchor_stride) * ceil(fw / anchor_stride) * len(ratios).
    """
    ratios = tf.constant(ratios, tf.float32)
    heights = scale / tf.sqrt(ratios)
    widths = scale * tf.sqrt(ratios)
    rows = tf.range(0, feature_shape[0], anchor_stride)
    cols = tf.range(0, feature_shape[1], anchor_stride)
    centre_y = (tf.cast(rows, tf.float32) + 0.5) * feature_stride
    centre_x = (tf.cast(cols, tf.float32) + 0.5) * feature_stride
    # [rows, cols, ratios] grids; ratios vary fastest once flattened.
    cy, cx, h = tf.meshgrid(centre_y, centre_x, heights, indexing="ij")
    _, _, w = tf.meshgrid(centre_y, centre_x, widths, indexing="ij")
    anchors = tf.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)
    return tf.reshape(anchors, [-1, 4])


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors of all levels, concatenated finest first.

    Args:
        scales: one anchor scale per level (pixels).
        ratios: width/height ratios used on every level.
        feature_shapes: one (fh, fw) per level (ints or int tensors).
        feature_strides: one stride per level (pixels).
        anchor_stride: place anchors every this many cells.
    Returns:
        float32 [A, (y1, x1, y2, x2)] in image pixels.
    """
    if not (len(scales) == len(feature_shapes) == len(feature_strides)):
        raise ValueError(
            f"scales ({len(scales)}), feature_shapes ({len(feature_shapes)}) and "
            f"feature_strides ({len(feature_strides)}) must have one entry per level")
    return tf.concat(
        [generate_anchors(scale, ratios, shape, stride, anchor_stride)
         for scale, shape, stride in zip(scales, feature_shapes, feature_strides)], axis=0)


@functools.lru_cache(maxsize=32)
def _cached_anchors(image_shape_hw, scales, ratios, feature_strides, anchor_stride, normalized):
    shapes = backbone_feature_shapes(image_shape_hw, feature_strides)
    anchors = generate_pyramid_anchors(scales, ratios, shapes, feature_strides, anchor_stride).numpy()
    if normalized:
        h, w = image_shape_hw
        anchors = anchors / np.array([h, w, h, w], np.float32)
    anchors.setflags(write=False)  # shared by every caller: keep it immutable
    return anchors


def pyramid_anchors_for_image(image_shape_hw, scales, ratios, feature_strides, anchor_stride,
                              normalized=True):
    """Anchors for a molded image shape, computed once per shape and cached.

    Args:
        image_shape_hw: (H, W) of the molded image.
        scales, ratios, feature_strides, anchor_stride: as in
            :func:`generate_pyramid_anchors`.
        normalized: divide by [H, W, H, W] (the frame the model works in).
    Returns:
        read-only numpy float32 [A, (y1, x1, y2, x2)].
    """
    key = (tuple(int(v) for v in image_shape_hw[:2]), tuple(float(s) for s in scales),
           tuple(float(r) for r in ratios), tuple(int(s) for s in feature_strides),
           int(anchor_stride), bool(normalized))
    return _cached_anchors(*key)


# Anchor conventions: ours (cell centres, exact sides) and torchvision's AnchorGenerator.
ANCHOR_MODES = ("classic", "torchvision")


def generate_anchors_torchvision(scale, ratios, feature_shape, stride_yx):
    """Anchors of one level as torchvision's ``AnchorGenerator`` places them.

    Its convention differs from :func:`generate_anchors` in three ways: the
    base anchor's half sides are rounded to whole pixels (half to even, as
    ``torch.round``), the centres sit at multiples of the stride (cell
    corners, not cell centres), and the stride is ``image side // map side``
    (P6 of a 480 px image has stride 60, not 64). ``ratios`` stay width /
    height (torchvision's aspect ratio is height / width: its (0.5, 1, 2)
    in its order are our (2, 1, 0.5)).

    Args:
        scale: anchor side for ratio 1, pixels.
        ratios: width/height ratios, in the order of the RPN head's outputs.
        feature_shape: (fh, fw), ints or int32 scalar tensors.
        stride_yx: (sy, sx) pixels per cell, ints or int32 scalar tensors.
    Returns:
        float32 [fh * fw * len(ratios), (y1, x1, y2, x2)] image pixels, rows,
        then columns, then ratios (innermost).
    """
    # As torchvision computes them, in float32: h_ratio = sqrt(h / w), w_ratio = 1 / h_ratio.
    h_ratios = tf.sqrt(1.0 / tf.constant(ratios, tf.float32))
    w_ratios = 1.0 / h_ratios
    half_h = tf.round(h_ratios * float(scale) / 2.0)
    half_w = tf.round(w_ratios * float(scale) / 2.0)
    base = tf.stack([-half_h, -half_w, half_h, half_w], axis=-1)  # [ratios, 4]
    rows = tf.range(feature_shape[0]) * tf.cast(stride_yx[0], tf.int32)
    cols = tf.range(feature_shape[1]) * tf.cast(stride_yx[1], tf.int32)
    shift_y, shift_x = tf.meshgrid(tf.cast(rows, tf.float32), tf.cast(cols, tf.float32), indexing="ij")
    shifts = tf.reshape(tf.stack([shift_y, shift_x, shift_y, shift_x], axis=-1), [-1, 1, 4])
    return tf.reshape(shifts + base[None], [-1, 4])
