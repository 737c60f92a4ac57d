"""Pure TF mask geometry: pasting box-relative masks into images, and GT mask crops.

Frames as in ``ops/image.py``: boxes ``(y1, x1, y2, x2)`` in pixels of the
image they refer to, ``y2``/``x2`` exclusive, pixel ``i`` covering
``[i, i + 1)``. A box-relative ``m x m`` mask covers its box exactly: its
cell ``j`` has centre ``y1 + (j + 0.5) * (y2 - y1) / m`` (paste mode "box").
Paste mode "torchvision" reproduces torchvision's ``paste_masks_in_image``
instead: the mask padded by one zero cell, its box grown by ``(m + 2) / m``
and truncated to whole pixels (both ends inclusive), resized bilinearly with
half-pixel centres, then thresholded strictly (``> 0.5``, as torchvision's
COCO evaluation does); its masks reach less far towards the box's edges.
"""

import tensorflow as tf

from mrcnn_tf.ops.roi_align import roi_align_unchecked

# A pasted or cropped mask (and a mask target) holds the pixels whose interpolated value
# is at least this; a scaled one (ops.image.scale_masks) those strictly above it.
MASK_THRESHOLD = 0.5
PASTE_MODES = ("box", "torchvision")


def _linear_weights(src, length):
    """Bilinear weights [..., length] reading a ``length``-cell axis at indexes ``src`` [...].

    Indexes beyond the edge cells take the edge value (torch's
    ``F.interpolate`` clamps the same way).
    """
    src = tf.clip_by_value(src, 0.0, length - 1.0)
    low = tf.floor(src)
    frac = (src - low)[..., None]
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, length - 1)
    return tf.one_hot(low, length) * (1.0 - frac) + tf.one_hot(high, length) * frac


def _paste_axis(start, end, limit, small_len):
    """One axis of a paste: which output pixels a box covers and their bilinear weights.

    Pixel ``i`` is sampled at its centre ``i + 0.5``, at source index
    ``(i + 0.5 - start) * small_len / (end - start) - 0.5`` clamped to the
    edge cells; only pixels whose centre lies in ``[start, end)`` and in
    ``[0, limit)`` are covered.

    Args:
        start, end: float32 scalars, the box's edges on this axis.
        limit: int32 scalar, the image's side.
        small_len: int, the mask's side.
    Returns:
        (first int32, count int32, weights float32 [count, small_len]).
    """
    limit_f = tf.cast(limit, tf.float32)
    first = tf.clip_by_value(tf.math.ceil(start - 0.5), 0.0, limit_f)
    last = tf.clip_by_value(tf.math.ceil(end - 0.5), 0.0, limit_f)
    count = tf.maximum(last - first, 0.0)
    centres = first + tf.range(count) + 0.5
    src = (centres - start) * tf.math.divide_no_nan(float(small_len), end - start) - 0.5
    return tf.cast(first, tf.int32), tf.cast(count, tf.int32), _linear_weights(src, small_len)


def _paste_axis_torchvision(start, end, limit, small_len):
    """:func:`_paste_axis` as torchvision's ``paste_masks_in_image`` (padding 1) computes it.

    The box grows about its centre by ``(small_len + 2) / small_len`` (the
    zero cell added on each side), its ends are truncated towards zero
    (``.to(int64)``) and both are covered: output pixels ``lo..hi``, length
    ``L = max(hi - lo + 1, 1)``. ``F.interpolate(bilinear,
    align_corners=False)`` reads pixel ``lo + k`` of the padded mask at
    ``(k + 0.5) * (small_len + 2) / L - 0.5``, clamped to the edge cells.
    Float32 steps in torch's order, so that values at the threshold fall the
    same way.

    Returns:
        (first int32, count int32, weights float32 [count, small_len]): the
        padded cells' weights are dropped (they multiply zeros).
    """
    padded_len = small_len + 2
    centre = (end + start) * 0.5
    half = (end - start) * 0.5 * tf.constant(padded_len / small_len, tf.float32)
    low_end = tf.cast(centre - half, tf.int32)   # truncation towards zero, as torch's cast
    high_end = tf.cast(centre + half, tf.int32)
    length = tf.maximum(high_end - low_end + 1, 1)
    first = tf.clip_by_value(low_end, 0, limit)
    count = tf.maximum(tf.clip_by_value(high_end + 1, 0, limit) - first, 0)
    local = tf.cast(first - low_end + tf.range(count), tf.float32)
    scale = tf.cast(padded_len, tf.float32) / tf.cast(length, tf.float32)
    weights = _linear_weights(scale * (local + 0.5) - 0.5, padded_len)
    return first, count, weights[:, 1:-1]


def _check_paste_mode(mode):
    if mode not in PASTE_MODES:
        raise ValueError(f"paste mode must be one of {PASTE_MODES}, got {mode!r}")
    return _paste_axis_torchvision if mode == "torchvision" else _paste_axis


def paste_mask(mask, box, image_hw, out_hw, threshold=MASK_THRESHOLD, dtype=tf.bool, mode="box"):
    """Paste one box-relative mask into an image: bilinear over the box's pixels only.

    Args:
        mask: float32 [mh, mw] values (probabilities) covering ``box``.
        box: float32 [(y1, x1, y2, x2)] pixels of the image, may reach outside.
        image_hw: int32 [(H, W)], the image's size; pixels beyond it stay False.
        out_hw: int32 [(Ho, Wo)] >= image_hw, the output's size.
        dtype: of the result (bool, or uint8 for 0/1): cast on the region,
            so the full-size mask is written once.
        mode: the geometry, "box" or "torchvision" (see the module's docstring).
    Returns:
        ``dtype`` [Ho, Wo]. Only the box's region is computed in float; a
        box of zero size gives an all-False mask ("box" mode).
    """
    paste_axis = _check_paste_mode(mode)
    mask_h, mask_w = mask.shape[0], mask.shape[1]
    row0, rows, row_weights = paste_axis(box[0], box[2], image_hw[0], mask_h)
    col0, cols, col_weights = paste_axis(box[1], box[3], image_hw[1], mask_w)
    values = tf.matmul(tf.matmul(row_weights, mask), col_weights, transpose_b=True)
    # torchvision's users (and its COCO evaluation) keep probabilities strictly above 0.5.
    region = values > threshold if mode == "torchvision" else values >= threshold
    return tf.pad(tf.cast(region, dtype), [[row0, out_hw[0] - row0 - rows], [col0, out_hw[1] - col0 - cols]])


def paste_masks(masks, boxes, image_sizes, out_hw=None, threshold=MASK_THRESHOLD, dtype=tf.bool, mode="box"):
    """Paste every detection's box-relative mask into its image.

    Args:
        masks: float32 [N, mh, mw] values covering each box.
        boxes: float32 [N, (y1, x1, y2, x2)] pixels of each mask's image.
        image_sizes: int32 [N, (H, W)], each mask's image size.
        out_hw: int32 [(Ho, Wo)], the output size (default the largest image).
        dtype: of the result, bool or uint8 (0/1).
        mode: the paste geometry, "box" or "torchvision" (see the module's docstring).
    Returns:
        ``dtype`` [N, Ho, Wo]; each mask is False outside its image's size.
        Memory: one box region in float at a time, N binary masks out.
    """
    _check_paste_mode(mode)
    masks = tf.cast(masks, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    image_sizes = tf.cast(image_sizes, tf.int32)
    if out_hw is None:
        out_hw = tf.reduce_max(tf.concat([image_sizes, tf.zeros([1, 2], tf.int32)], 0), axis=0)
    out_hw = tf.cast(out_hw, tf.int32)

    def paste_all():
        return tf.map_fn(lambda args: paste_mask(args[0], args[1], args[2], out_hw, threshold, dtype, mode),
                         (masks, boxes, image_sizes),
                         fn_output_signature=tf.TensorSpec([None, None], dtype))

    # map_fn cannot stack zero results of an unknown shape: no masks is its own branch.
    return tf.cond(tf.shape(masks)[0] > 0, paste_all,
                   lambda: tf.zeros(tf.concat([[0], out_hw], 0), dtype))


def mask_boxes(masks):
    """Tight boxes of instance masks.

    Args:
        masks: bool [H, W, N].
    Returns:
        int32 [N, (y1, x1, y2, x2)] pixels of ``masks``, y2/x2 exclusive; an
        empty mask's box is all zeros.
    """
    masks = tf.convert_to_tensor(masks, tf.bool)
    if masks.shape.rank != 3:
        raise ValueError(f"masks must be [H, W, N], got shape {masks.shape}")

    def span(occupied):  # bool [L, N] -> (first, end) int32 [N], (0, 0) where empty
        length = tf.shape(occupied)[0]
        first = tf.argmax(tf.cast(occupied, tf.int32), axis=0, output_type=tf.int32)
        end = length - tf.argmax(tf.cast(occupied[::-1], tf.int32), axis=0, output_type=tf.int32)
        any_on = tf.reduce_any(occupied, axis=0)
        return tf.where(any_on, first, 0), tf.where(any_on, end, 0)

    y1, y2 = span(tf.reduce_any(masks, axis=1))
    x1, x2 = span(tf.reduce_any(masks, axis=0))
    return tf.stack([y1, x1, y2, x2], axis=1)


def crop_masks(masks, boxes, output_size, threshold=MASK_THRESHOLD):
    """Crop each full-size mask to its box and resample it to ``output_size`` (mini masks).

    Each output cell is the mask's bilinear value at the cell's centre in
    the box (RoIAlign with one sample per bin on the 0/1 mask), then
    ``>= threshold``: the inverse of :func:`paste_mask` up to resampling.

    Args:
        masks: bool [H, W, N].
        boxes: [N, (y1, x1, y2, x2)] pixels of ``masks``.
        output_size: (mh, mw).
    Returns:
        bool [mh, mw, N]. One mask in float at a time.
    """
    out_h, out_w = (int(v) for v in output_size)
    masks = tf.convert_to_tensor(masks)
    boxes = tf.cast(tf.reshape(boxes, [-1, 4]), tf.float32)

    def one(args):
        mask, box = args
        cell = roi_align_unchecked(tf.cast(mask, tf.float32)[None, :, :, None], box[None],
                                   tf.zeros([1], tf.int32), out_h, out_w, 1)
        return cell[0, :, :, 0] >= threshold

    cropped = tf.map_fn(one, (tf.transpose(masks, [2, 0, 1]), boxes),
                        fn_output_signature=tf.TensorSpec([out_h, out_w], tf.bool))
    return tf.transpose(cropped, [1, 2, 0])


def expand_masks(mini_masks, boxes, image_hw, threshold=MASK_THRESHOLD):
    """Inverse of :func:`crop_masks`: paste mini masks back at full size.

    Args:
        mini_masks: bool or float [mh, mw, N].
        boxes: [N, (y1, x1, y2, x2)] pixels of the full image.
        image_hw: (H, W) of the full image.
    Returns:
        bool [H, W, N].
    """
    mini_masks = tf.transpose(tf.cast(mini_masks, tf.float32), [2, 0, 1])
    image_hw = tf.cast(tf.reshape(image_hw, [2]), tf.int32)
    count = tf.shape(mini_masks)[0]
    pasted = paste_masks(mini_masks, tf.reshape(boxes, [-1, 4]), tf.tile(image_hw[None], [count, 1]),
                         out_hw=image_hw, threshold=threshold)
    return tf.transpose(pasted, [1, 2, 0])


def _sample_axis(points, start, end, small_len):
    """Bilinear weights [P, small_len] of a box-relative mask axis at pixel positions ``points``.

    The convention of :func:`_paste_axis`: cell ``j`` has centre
    ``start + (j + 0.5) * (end - start) / small_len``; positions beyond the
    edge cells take the edge value.
    """
    src = (points - start) * tf.math.divide_no_nan(float(small_len), end - start) - 0.5
    return _linear_weights(src, small_len)


def box_mask_iou(masks, boxes, threshold=MASK_THRESHOLD):
    """Pairwise IoU of box-relative masks, without pasting them into an image.

    Each mask's area is its box's area times the fraction of its cells at or
    above ``threshold``; a pair's intersection is counted on an ``mh x mw``
    grid of cell centres over the intersection of the two boxes, each mask
    sampled bilinearly there (as :func:`paste_mask` samples pixel centres).
    Only pairs whose boxes intersect are computed. The resolution is the
    masks' own, so this is the pasted masks' IoU up to resampling.

    Args:
        masks: float32 [N, mh, mw] values covering each box.
        boxes: float32 [N, (y1, x1, y2, x2)], one frame for all (pixels or
            normalised; IoU does not change with the axes' scales).
    Returns:
        float32 [N, N] symmetric, 1 on the diagonal of non-empty masks.
    """
    masks = tf.cast(masks, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    mask_h, mask_w = masks.shape[1], masks.shape[2]
    count = tf.shape(masks)[0]
    areas = (tf.maximum(boxes[:, 2] - boxes[:, 0], 0.0) * tf.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
             * tf.reduce_mean(tf.cast(masks >= threshold, tf.float32), axis=[1, 2]))
    top_left = tf.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = tf.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    pairs = tf.cast(tf.where(tf.reduce_all(bottom_right > top_left, axis=-1)), tf.int32)  # [P, 2]
    inter = tf.concat([tf.gather_nd(top_left, pairs), tf.gather_nd(bottom_right, pairs)], axis=1)

    def sampled(index):
        # [P, mh, mw]: mask `index[p]` at the grid of pair p's intersection box.
        box = tf.gather(boxes, index)
        rows = inter[:, 0:1] + (tf.range(mask_h, dtype=tf.float32)[None] + 0.5) * (
            inter[:, 2:3] - inter[:, 0:1]) / mask_h
        cols = inter[:, 1:2] + (tf.range(mask_w, dtype=tf.float32)[None] + 0.5) * (
            inter[:, 3:4] - inter[:, 1:2]) / mask_w
        row_weights = _sample_axis(rows, box[:, 0:1], box[:, 2:3], mask_h)
        col_weights = _sample_axis(cols, box[:, 1:2], box[:, 3:4], mask_w)
        values = tf.matmul(tf.matmul(row_weights, tf.gather(masks, index)), col_weights, transpose_b=True)
        return values >= threshold

    both = tf.cast(sampled(pairs[:, 0]) & sampled(pairs[:, 1]), tf.float32)
    inter_area = (inter[:, 2] - inter[:, 0]) * (inter[:, 3] - inter[:, 1])
    intersection = tf.reduce_mean(both, axis=[1, 2]) * inter_area
    union = tf.gather(areas, pairs[:, 0]) + tf.gather(areas, pairs[:, 1]) - intersection
    iou = tf.math.divide_no_nan(intersection, union)
    return tf.scatter_nd(pairs, iou, tf.stack([count, count]))
