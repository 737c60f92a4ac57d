"""RoIPool (Fast R-CNN) and RoIWarp (MNC): the quantised poolers RoIAlign replaced.

Both exist for the paper's ablation (Mask R-CNN, Table 2c) and take
:func:`~mrcnn_tf.ops.roi_align.roi_align`'s arguments and frames: boxes
``(y1, x1, y2, x2)`` in the map's own pixels, y2/x2 exclusive.

Quantisation (both): the box is snapped to the feature grid the way
``torchvision.ops.roi_pool`` does with ``spatial_scale=1`` on the box's
inclusive end: ``start = round(y1)``, ``last = round(y2 - 1)``,
``size = max(last - start + 1, 1)`` cells, with C's ``round`` (halves away
from zero). The quantised box covers the cells ``[start, start + size)``.

- ``roi_pool``: bin ``i`` of ``m`` covers the cells
  ``[start + floor(i * size / m), start + ceil((i + 1) * size / m))``, both
  ends clipped to ``[0, H]``; its value is the max over those cells, 0 for an
  empty bin. The gradient goes to the first maximal cell (row-major), as in
  torchvision. ``i * size / m`` is computed in float32 as torchvision's
  kernel does (``i * float32(size / m)``), so it can round past a whole
  number: a box of 7 cells in 13 bins has its last bin end at cell 8.
- ``roi_warp``: exact RoIAlign (``roialign.md``) of the quantised box, i.e.
  bilinear resampling of the snapped crop.
"""

import tensorflow as tf

from mrcnn_tf.ops.roi_align import check_aggregate, check_roi_args, roi_align_unchecked


def _round_half_away(values):
    """C's ``round``: halves away from zero (``tf.round`` rounds them to even)."""
    return tf.sign(values) * tf.floor(tf.abs(values) + 0.5)


def quantise_boxes(boxes):
    """Snap boxes to whole cells, torchvision's RoIPool rule (see the module docstring).

    Args:
        boxes: float32 [N, (y1, x1, y2, x2)], map pixels, y2/x2 exclusive.
    Returns:
        (start float32 [N, (y, x)], size float32 [N, (h, w)]): whole numbers,
        size >= 1; the quantised box is ``[start, start + size)``.
    """
    start = _round_half_away(boxes[:, :2])
    last = _round_half_away(boxes[:, 2:] - 1.0)
    return start, tf.maximum(last - start + 1.0, 1.0)


def roi_pool(features, boxes, box_indices, output_size):
    """Fast R-CNN's RoIPool: quantised box, quantised bins, max over each bin's cells.

    Args:
        features: float [B, H, W, C] feature maps.
        boxes: float [N, (y1, x1, y2, x2)] in this map's own pixels, y2/x2
            exclusive; y2 >= y1, x2 >= x1, finite.
        box_indices: int32 [N], the image in the batch each box reads.
        output_size: int or (oh, ow), the number of bins.
    Returns:
        [N, oh, ow, C] in the dtype of ``features``; equals
        ``torchvision.ops.roi_pool(features_nchw, [(b, x1, y1, x2 - 1, y2 - 1)],
        output_size, spatial_scale=1)``.
    Raises:
        ValueError: on wrong ranks or sizes (statically known).
        tf.errors.InvalidArgumentError: on inverted or non-finite boxes.
    """
    features, boxes, box_indices, out_h, out_w = check_roi_args(
        features, boxes, box_indices, output_size, "roi_pool")
    return roi_pool_unchecked(features, boxes, box_indices, out_h, out_w)


def _bin_edges(start, size, bins, length):
    """Cells [lo, hi) of each bin along one axis: int32 [N, bins] each, clipped to [0, length]."""
    # float32 arithmetic as torchvision's kernel (bin size = size / bins), so the
    # floor/ceil land on the same cells.
    bin_size = size[:, None] / float(bins)
    index = tf.range(bins, dtype=tf.float32)[None, :]
    lo = tf.floor(index * bin_size) + start[:, None]
    hi = tf.math.ceil((index + 1.0) * bin_size) + start[:, None]
    length = tf.cast(length, tf.float32)
    return (tf.cast(tf.clip_by_value(lo, 0.0, length), tf.int32),
            tf.cast(tf.clip_by_value(hi, 0.0, length), tf.int32))


def roi_pool_unchecked(features, boxes, box_indices, out_h, out_w):
    """roi_pool without argument checks, for callers that built valid boxes.

    Each bin reads an ``S x S`` window of cells from its first cell, ``S`` the
    largest bin extent in the call (cells past the bin's end are masked), so
    the work is that of the boxes' own area, not of the whole map per box.
    """
    compute_dtype = features.dtype
    features = tf.cast(features, tf.float32)
    height, width = tf.shape(features)[1], tf.shape(features)[2]
    start, size = quantise_boxes(boxes)
    lo_y, hi_y = _bin_edges(start[:, 0], size[:, 0], out_h, height)
    lo_x, hi_x = _bin_edges(start[:, 1], size[:, 1], out_w, width)
    window = tf.maximum(tf.reduce_max(tf.concat([hi_y - lo_y, hi_x - lo_x], axis=1)), 1)
    offsets = tf.range(window)
    rows = lo_y[:, :, None] + offsets                     # [N, oh, S]
    cols = lo_x[:, :, None] + offsets                     # [N, ow, S]
    row_ok = rows < hi_y[:, :, None]
    col_ok = cols < hi_x[:, :, None]
    # Indices [N, oh, S, ow, S, (b, y, x)]; masked cells read a clamped, valid cell.
    num = tf.shape(boxes)[0]
    grid_shape = [num, out_h, window, out_w, window]
    index = tf.stack([
        tf.broadcast_to(box_indices[:, None, None, None, None], grid_shape),
        tf.broadcast_to(tf.minimum(rows, height - 1)[:, :, :, None, None], grid_shape),
        tf.broadcast_to(tf.minimum(cols, width - 1)[:, None, None, :, :], grid_shape)], axis=-1)
    values = tf.gather_nd(features, index)                # [N, oh, S, ow, S, C]
    valid = row_ok[:, :, :, None, None] & col_ok[:, None, None, :, :]
    channels = tf.shape(features)[3]
    # [N, oh, ow, C, S * S]: the bin's cells row-major, so argmax picks torchvision's cell.
    values = tf.reshape(tf.transpose(values, [0, 1, 3, 5, 2, 4]),
                        [num, out_h, out_w, channels, window * window])
    valid = tf.reshape(tf.transpose(valid, [0, 1, 3, 2, 4]), [num, out_h, out_w, 1, window * window])
    masked = tf.where(valid, values, tf.float32.min)
    best = tf.argmax(masked, axis=-1, output_type=tf.int32)
    # A gather (not reduce_max): the gradient goes to one cell even on ties.
    pooled = tf.gather(values, best[..., None], batch_dims=4)[..., 0]
    empty = ~tf.reduce_any(valid, axis=-1)                # [N, oh, ow, 1]
    pooled = tf.where(empty, 0.0, pooled)
    features_c = features.shape[-1]
    if features_c is not None:
        pooled = tf.ensure_shape(pooled, [None, out_h, out_w, features_c])
    return tf.cast(pooled, compute_dtype)


def roi_warp(features, boxes, box_indices, output_size, sampling_ratio=2, aggregate="avg"):
    """RoIWarp (Dai et al., MNC): RoIPool's quantised box, bilinearly resampled.

    Args:
        features, boxes, box_indices, output_size: as :func:`roi_pool`.
        sampling_ratio: samples per bin along each axis (r; r*r in all).
        aggregate: "avg" or "max" of each bin's samples.
    Returns:
        [N, oh, ow, C], the dtype of ``features``: ``roi_align`` of the box
        ``[start, start + size)`` of :func:`quantise_boxes`.
    Raises:
        ValueError: on wrong ranks, sizes or aggregate.
        tf.errors.InvalidArgumentError: on inverted or non-finite boxes.
    """
    features, boxes, box_indices, out_h, out_w = check_roi_args(
        features, boxes, box_indices, output_size, "roi_warp")
    if int(sampling_ratio) < 1:
        raise ValueError(f"sampling_ratio must be >= 1, got {sampling_ratio}")
    check_aggregate(aggregate)
    return roi_warp_unchecked(features, boxes, box_indices, out_h, out_w, int(sampling_ratio),
                              aggregate)


def roi_warp_unchecked(features, boxes, box_indices, out_h, out_w, sampling_ratio, aggregate="avg"):
    """roi_warp without argument checks."""
    start, size = quantise_boxes(boxes)
    quantised = tf.concat([start, start + size], axis=1)
    return roi_align_unchecked(features, quantised, box_indices, out_h, out_w, sampling_ratio,
                               aggregate=aggregate)
