"""Pure TF mask geometry: pasting box-relative masks into images, and GT mask crops.

Frames as in ``ops/image.py``: boxes ``(y1, x1, y2, x2)`` in pixels of the
image they refer to, ``y2``/``x2`` exclusive, pixel ``i`` covering
``[i, i + 1)``. A box-relative ``m x m`` mask covers its box exactly: its
cell ``j`` has centre ``y1 + (j + 0.5) * (y2 - y1) / m``.
"""

import tensorflow as tf

from mrcnn_tf.ops.roi_align import roi_align_unchecked

# A pasted or cropped mask (and a mask target) holds the pixels whose interpolated value
# is at least this; a scaled one (ops.image.scale_masks) those strictly above it.
MASK_THRESHOLD = 0.5


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
    src = tf.clip_by_value(src, 0.0, small_len - 1.0)
    low = tf.floor(src)
    frac = (src - low)[:, None]
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, small_len - 1)
    weights = tf.one_hot(low, small_len) * (1.0 - frac) + tf.one_hot(high, small_len) * frac
    return tf.cast(first, tf.int32), tf.cast(count, tf.int32), weights


def paste_mask(mask, box, image_hw, out_hw, threshold=MASK_THRESHOLD, dtype=tf.bool):
    """Paste one box-relative mask into an image: bilinear over the box's pixels only.

    Args:
        mask: float32 [mh, mw] values (probabilities) covering ``box``.
        box: float32 [(y1, x1, y2, x2)] pixels of the image, may reach outside.
        image_hw: int32 [(H, W)], the image's size; pixels beyond it stay False.
        out_hw: int32 [(Ho, Wo)] >= image_hw, the output's size.
        dtype: of the result (bool, or uint8 for 0/1): cast on the region,
            so the full-size mask is written once.
    Returns:
        ``dtype`` [Ho, Wo]. Only the box's region is computed in float; a
        box of zero size gives an all-False mask.
    """
    mask_h, mask_w = mask.shape[0], mask.shape[1]
    row0, rows, row_weights = _paste_axis(box[0], box[2], image_hw[0], mask_h)
    col0, cols, col_weights = _paste_axis(box[1], box[3], image_hw[1], mask_w)
    region = tf.matmul(tf.matmul(row_weights, mask), col_weights, transpose_b=True) >= threshold
    return tf.pad(tf.cast(region, dtype), [[row0, out_hw[0] - row0 - rows], [col0, out_hw[1] - col0 - cols]])


def paste_masks(masks, boxes, image_sizes, out_hw=None, threshold=MASK_THRESHOLD, dtype=tf.bool):
    """Paste every detection's box-relative mask into its image.

    Args:
        masks: float32 [N, mh, mw] values covering each box.
        boxes: float32 [N, (y1, x1, y2, x2)] pixels of each mask's image.
        image_sizes: int32 [N, (H, W)], each mask's image size.
        out_hw: int32 [(Ho, Wo)], the output size (default the largest image).
        dtype: of the result, bool or uint8 (0/1).
    Returns:
        ``dtype`` [N, Ho, Wo]; each mask is False outside its image's size.
        Memory: one box region in float at a time, N binary masks out.
    """
    masks = tf.cast(masks, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    image_sizes = tf.cast(image_sizes, tf.int32)
    if out_hw is None:
        out_hw = tf.reduce_max(tf.concat([image_sizes, tf.zeros([1, 2], tf.int32)], 0), axis=0)
    out_hw = tf.cast(out_hw, tf.int32)

    def paste_all():
        return tf.map_fn(lambda args: paste_mask(args[0], args[1], args[2], out_hw, threshold, dtype),
                         (masks, boxes, image_sizes),
                         fn_output_signature=tf.TensorSpec([None, None], dtype))

    # map_fn cannot stack zero results of an unknown shape: no masks is its own branch.
    return tf.cond(tf.shape(masks)[0] > 0, paste_all,
                   lambda: tf.zeros(tf.concat([[0], out_hw], 0), dtype))


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
