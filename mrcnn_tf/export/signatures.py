"""In-graph pre- and post-processing for the served model (no Python at serving time).

The served graph repeats, op for op, what ``MaskRCNN.detect`` does in numpy:
``mold_inputs`` (``resize_image`` + centred padding + batch padding + mean
subtraction + ``compose_image_meta``) before the Keras model and
``unmold_detections`` (boxes back to original pixels, ``unmold_mask``)
after it. Frames: ``boxes_norm`` are normalised to the molded batch image,
``boxes_px`` are pixels of the original image, y2/x2 exclusive.

Only :class:`ServingModule` reads ``Config``; the functions take plain values.
"""

import tensorflow as tf

PAD64 = 64
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BAD_IMAGE_MESSAGE = "not a JPEG/PNG image: every element of `images` must be encoded JPEG or PNG bytes"
EMPTY_BATCH_MESSAGE = "images must contain at least one image"
EMPTY_IMAGE_MESSAGE = "every image must be at least 1x1 pixels"
# Masks are cut at the same threshold as unmold_mask's default.
MASK_THRESHOLD = 0.5


def compute_scale(height, width, mode, min_dim, max_dim, min_scale):
    """resize_image's scale rule for one image, in float64 as Python computes it.

    Args:
        height, width: int32 scalars, the original image size.
        mode: "none", "square" or "pad64" ("crop" is served as "pad64").
    Returns:
        (scale float64 scalar, new_height int32, new_width int32).
    """
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    if mode == "none":
        return tf.constant(1.0, tf.float64), height, width
    scale = tf.constant(1.0, tf.float64)
    if min_dim:  # scale up so the short side reaches min_dim, never down
        scale = tf.maximum(scale, min_dim / tf.minimum(h, w))
    if min_scale:
        scale = tf.maximum(scale, tf.constant(float(min_scale), tf.float64))
    if max_dim:  # then down if the long side would exceed max_dim (tf.round == Python round)
        long_side = tf.maximum(h, w)
        scale = tf.where(tf.round(long_side * scale) > max_dim, max_dim / long_side, scale)
    new_h = tf.cast(tf.maximum(tf.round(h * scale), 1.0), tf.int32)
    new_w = tf.cast(tf.maximum(tf.round(w * scale), 1.0), tf.int32)
    return scale, new_h, new_w


def _axis_resize(values, out_len, axis):
    """Linear resize of ``values`` (float64) along ``axis`` to ``out_len``.

    Output index i samples source ``(i + 0.5) * in_len / out_len - 0.5``
    clamped to the edge, in float64: what scipy.ndimage.zoom(grid_mode=True,
    mode="nearest") does inside skimage's resize.
    """
    in_len = tf.shape(values, out_type=tf.int64)[axis]
    ratio = tf.cast(in_len, tf.float64) / tf.cast(out_len, tf.float64)
    src = (tf.range(out_len, dtype=tf.float64) + 0.5) * ratio - 0.5
    src = tf.clip_by_value(src, 0.0, tf.cast(in_len - 1, tf.float64))
    low = tf.floor(src)
    frac = src - low
    low = tf.cast(low, tf.int64)
    high = tf.minimum(low + 1, in_len - 1)
    shape = [-1, 1, 1] if axis == 0 else [1, -1, 1]
    frac = tf.reshape(frac, shape)
    return tf.gather(values, low, axis=axis) * (1.0 - frac) + tf.gather(values, high, axis=axis) * frac


def bilinear_resize(image, new_h, new_w):
    """skimage ``resize(order=1, mode="edge", anti_aliasing=False, preserve_range=True)``
    then round and clip to uint8 values, as resize_image does.

    tf.image.resize computes its sampling grid in float32, which moves a few
    pixels across a rounding boundary; this float64 separable version
    matches skimage to the last bit in practice.

    Args:
        image: uint8 [H, W, C].
    Returns:
        float64 [new_h, new_w, C] holding integers in [0, 255].
    """
    values = _axis_resize(tf.cast(image, tf.float64), new_h, axis=0)
    values = _axis_resize(values, new_w, axis=1)
    return tf.clip_by_value(tf.round(values), 0.0, 255.0)


def resize_and_pad(image, mode, min_dim, max_dim, min_scale):
    """One image as resize_image molds it (before batch padding).

    Args:
        image: uint8 [H, W, 3].
    Returns:
        molded float32 [h, w, 3] with uint8 values (padding 0, not yet mean
        subtracted), window int32 [(y1, x1, y2, x2)] pixels of ``molded``,
        scale float32 scalar.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    scale, new_h, new_w = compute_scale(height, width, mode, min_dim, max_dim, min_scale)
    resized = tf.cast(bilinear_resize(image, new_h, new_w), tf.float32)
    if mode == "square":
        target_h = target_w = tf.constant(max_dim, tf.int32)
    elif mode == "pad64":
        target_h = (new_h + PAD64 - 1) // PAD64 * PAD64
        target_w = (new_w + PAD64 - 1) // PAD64 * PAD64
    else:  # none
        target_h, target_w = new_h, new_w
    top, left = (target_h - new_h) // 2, (target_w - new_w) // 2  # extra pixel goes after
    molded = tf.pad(resized, [[top, target_h - new_h - top], [left, target_w - new_w - left], [0, 0]])
    window = tf.stack([top, left, top + new_h, left + new_w])
    return molded, window, tf.cast(scale, tf.float32)


def decode_image(encoded):
    """Encoded JPEG/PNG bytes (scalar tf.string) -> uint8 [H, W, 3], checked."""
    is_png = tf.equal(tf.strings.substr(encoded, 0, len(PNG_MAGIC)), PNG_MAGIC)
    ok = tf.debugging.Assert(tf.logical_or(tf.io.is_jpeg(encoded), is_png), [BAD_IMAGE_MESSAGE])
    with tf.control_dependencies([ok]):
        image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def check_image_size(image, max_image_size):
    """Asserts 1 <= H, W <= max_image_size; returns ``image`` gated on them."""
    shape = tf.shape(image)[:2]
    checks = [
        tf.debugging.assert_greater(tf.reduce_min(shape), 0, message=EMPTY_IMAGE_MESSAGE),
        tf.debugging.assert_less_equal(
            tf.reduce_max(shape), max_image_size,
            message=f"image is larger than max_image_size={max_image_size} pixels per side "
                    "(x below is the image's long side)"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(image)


def mold_batch(count, get_image, resize_args, mean_pixel, num_classes, max_image_size):
    """Mold ``count`` images of any sizes into one model batch, like mold_inputs.

    Args:
        count: int32 scalar, number of images (> 0).
        get_image: ``i -> uint8 [H_i, W_i, 3]`` (decodes or slices).
        resize_args: (mode, min_dim, max_dim, min_scale).
        mean_pixel: 3 floats subtracted from every pixel.
    Returns:
        molded float32 [N, Hm, Wm, 3] (each image at the top-left, padded
        bottom/right to the batch's largest molded size), image_meta float32
        [N, 12 + num_classes], windows float32 [N, 4] (pixels of the molded
        image), image_sizes int32 [N, 2] original (H, W).
    """
    molded_ta = tf.TensorArray(tf.float32, size=count, infer_shape=False, clear_after_read=False,
                               element_shape=tf.TensorShape([None, None, 3]))
    molded_sizes_ta = tf.TensorArray(tf.int32, size=count, element_shape=[2])
    windows_ta = tf.TensorArray(tf.int32, size=count, element_shape=[4])
    sizes_ta = tf.TensorArray(tf.int32, size=count, element_shape=[2])
    scales_ta = tf.TensorArray(tf.float32, size=count, element_shape=[])
    # A TensorArray, not map_fn: molded sizes differ until the batch max is known.
    for i in tf.range(count):
        image = check_image_size(get_image(i), max_image_size)
        molded, window, scale = resize_and_pad(image, *resize_args)
        molded_ta = molded_ta.write(i, molded)
        molded_sizes_ta = molded_sizes_ta.write(i, tf.shape(molded)[:2])
        windows_ta = windows_ta.write(i, window)
        sizes_ta = sizes_ta.write(i, tf.shape(image)[:2])
        scales_ta = scales_ta.write(i, scale)
    windows = tf.cast(windows_ta.stack(), tf.float32)
    sizes, scales = sizes_ta.stack(), scales_ta.stack()
    batch_hw = tf.reduce_max(molded_sizes_ta.stack(), axis=0)
    mean = tf.constant(mean_pixel, tf.float32)

    def pad_one(i):  # bottom/right to the batch max, then mean-subtract (mold_image)
        molded = molded_ta.read(i)
        pad_hw = batch_hw - tf.shape(molded)[:2]
        return tf.pad(molded, [[0, pad_hw[0]], [0, pad_hw[1]], [0, 0]]) - mean

    batch = tf.map_fn(pad_one, tf.range(count), fn_output_signature=tf.TensorSpec([None, None, 3]))
    ones = tf.ones([count, 1])
    meta = tf.concat([                                   # compose_image_meta's layout
        0.0 * ones,                                      # image_id
        tf.cast(sizes, tf.float32), 3.0 * ones,          # original (H, W, C)
        tf.cast(batch_hw, tf.float32) * ones, 3.0 * ones,  # molded (H, W, C) of the batch
        windows, scales[:, None],
        tf.ones([count, num_classes]),                   # active_class_ids: all
    ], axis=1)
    return batch, meta, windows, sizes


def _axis_weights(start, end, out_len, limits, small_len):
    """Bilinear weights that paste one axis of a small mask into a box.

    Output pixel i is sampled at its centre, source index
    ``(i + 0.5 - start) * small_len / (end - start) - 0.5`` clamped to the
    edge cells (as transforms._paste); rows whose centre is outside
    ``[start, end)`` or beyond the image side ``limits`` get zero weight.

    Args:
        start, end: float32 [B, D] box edges, original pixels.
        out_len: int32 scalar, output length (the batch's max side).
        limits: int32 [B], this image's side.
    Returns:
        float32 [B, D, out_len, small_len].
    """
    centres = (tf.range(out_len, dtype=tf.float32) + 0.5)[None, None, :]
    start, end = start[..., None], end[..., None]
    inside = ((centres >= start) & (centres < end)
              & (centres < tf.cast(limits, tf.float32)[:, None, None]))
    src = (centres - start) * tf.math.divide_no_nan(float(small_len), end - start) - 0.5
    src = tf.clip_by_value(src, 0.0, small_len - 1.0)
    low = tf.floor(src)
    frac = (src - low)[..., None]
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, small_len - 1)
    weights = tf.one_hot(low, small_len) * (1.0 - frac) + tf.one_hot(high, small_len) * frac
    return weights * tf.cast(inside, tf.float32)[..., None]


def paste_masks(box_masks, boxes_px, image_sizes):
    """unmold_mask for every detection: small masks -> binary full-size masks.

    Args:
        box_masks: float32 [B, D, mh, mw] probabilities covering each box.
        boxes_px: float32 [B, D, (y1, x1, y2, x2)] original pixels (unclipped).
        image_sizes: int32 [B, 2] original (H, W); output is padded to the max.
    Returns:
        uint8 [B, D, Hmax, Wmax], 1 where the interpolated value >= 0.5.
    """
    mask_h, mask_w = box_masks.shape[2], box_masks.shape[3]
    max_hw = tf.reduce_max(image_sizes, axis=0)
    rows = _axis_weights(boxes_px[..., 0], boxes_px[..., 2], max_hw[0], image_sizes[:, 0], mask_h)
    cols = _axis_weights(boxes_px[..., 1], boxes_px[..., 3], max_hw[1], image_sizes[:, 1], mask_w)
    # Separable bilinear: rows @ mask @ cols^T, as transforms._paste does.
    full = tf.einsum("bdhn,bdwn->bdhw", tf.einsum("bdhm,bdmn->bdhn", rows, box_masks), cols)
    return tf.cast(full >= MASK_THRESHOLD, tf.uint8)


def postprocess(detections, mrcnn_mask, molded_hw, windows, image_sizes, include_box_masks):
    """unmold_detections for a batch, padded outputs with ``num_detections``.

    Args:
        detections: float32 [B, D, (y1, x1, y2, x2, class_id, score)]
            normalised to the molded image; score 0 rows are padding.
        mrcnn_mask: float32 [B, D, mh, mw, K] probabilities.
        molded_hw: int32 [2], the molded batch image size.
        windows: float32 [B, 4] pixels of the molded image.
        image_sizes: int32 [B, 2] original (H, W).
    Returns:
        dict: num_detections int32 [B], detection_boxes float32 [B, D, 4]
        original pixels clipped to the image, detection_classes int32 [B, D],
        detection_scores float32 [B, D], detection_masks uint8 [B, D, Hmax,
        Wmax], image_sizes int32 [B, 2] (+ detection_box_masks float32
        [B, D, mh, mw]). Valid rows come first; the rest are zeros.
    """
    molded_hw = tf.cast(molded_hw, tf.float32)
    sizes = tf.cast(image_sizes, tf.float32)
    boxes_norm, class_ids, scores = detections[..., :4], tf.cast(detections[..., 4], tf.int32), detections[..., 5]
    boxes = boxes_norm * tf.tile(molded_hw, [2])
    scale_yx = (windows[:, 2:] - windows[:, :2]) / sizes                # molded px per original px
    boxes_px = (boxes - tf.tile(windows[:, None, :2], [1, 1, 2])) / tf.tile(scale_yx[:, None], [1, 1, 2])
    limits = tf.tile(sizes[:, None], [1, 1, 2])
    rounded = tf.clip_by_value(tf.round(boxes_px), 0.0, limits)
    # Like unmold_detections: padding rows and boxes that round to nothing go.
    valid = ((scores > 0) & (rounded[..., 2] > rounded[..., 0]) & (rounded[..., 3] > rounded[..., 1]))
    num_detections = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    max_det = tf.shape(scores)[1]
    index = tf.range(max_det)[None]
    # Stable compaction: valid rows keep their (score) order at the front.
    order = tf.argsort(tf.where(valid, index, index + max_det), axis=1, stable=True)
    keep = tf.cast(index < num_detections[:, None], tf.float32)

    def take(x):
        return tf.gather(x, order, batch_dims=1)

    boxes_px, class_ids = take(boxes_px), take(class_ids) * tf.cast(keep, tf.int32)
    outputs = {
        "num_detections": num_detections,
        "detection_boxes": tf.clip_by_value(boxes_px, 0.0, limits) * keep[..., None],
        "detection_classes": class_ids,
        "detection_scores": take(scores) * keep,
        "image_sizes": image_sizes,
    }
    # The chosen class's mask: [B, D, K, mh, mw] gathered at class_ids.
    box_masks = take(tf.transpose(mrcnn_mask, [0, 1, 4, 2, 3]))
    box_masks = tf.gather(box_masks, class_ids, batch_dims=2) * keep[..., None, None]
    # Paste only the leading rows that hold a detection in some image; the
    # rest of the D slots are zero anyway (the output keeps its fixed D).
    pasted_rows = tf.reduce_max(num_detections)
    pasted = paste_masks(box_masks[:, :pasted_rows], boxes_px[:, :pasted_rows], image_sizes)
    pasted = tf.pad(pasted, [[0, 0], [0, max_det - pasted_rows], [0, 0], [0, 0]])
    outputs["detection_masks"] = tf.ensure_shape(pasted, [None, scores.shape[1], None, None])
    if include_box_masks:
        outputs["detection_box_masks"] = box_masks
    return outputs


class ServingModule(tf.Module):
    """The Keras inference model plus the two serving signatures.

    ``serve_encoded(images: tf.string [N])`` and ``serve_tensor(images:
    uint8 [N, H, W, 3])`` return the dict documented in :func:`postprocess`.
    """

    def __init__(self, keras_model, config, max_image_size, include_box_masks):
        super().__init__(name="mask_rcnn_serving")
        if config.IMAGE_RESIZE_MODE == "square" and not config.IMAGE_MAX_DIM:
            raise ValueError("IMAGE_RESIZE_MODE 'square' needs IMAGE_MAX_DIM, got "
                             f"{config.IMAGE_MAX_DIM!r}")
        self.keras_model = keras_model
        # "crop" is a training-time mode; mold_inputs serves it as "pad64".
        mode = "pad64" if config.IMAGE_RESIZE_MODE == "crop" else config.IMAGE_RESIZE_MODE
        self._resize_args = (mode, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE)
        self._square_side = config.IMAGE_MAX_DIM if mode == "square" else None
        self._mean_pixel = tuple(float(v) for v in config.MEAN_PIXEL)
        self._num_classes = int(config.NUM_CLASSES)
        self._max_image_size = int(max_image_size)
        self._include_box_masks = bool(include_box_masks)
        self.serve_encoded = tf.function(
            self._serve_encoded, input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        self.serve_tensor = tf.function(
            self._serve_tensor, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])

    def _nonempty(self, images):
        check = tf.debugging.assert_greater(tf.shape(images)[0], 0, message=EMPTY_BATCH_MESSAGE)
        with tf.control_dependencies([check]):
            return tf.identity(images)

    def _serve_encoded(self, images):
        images = self._nonempty(images)
        return self._run(tf.shape(images)[0], lambda i: decode_image(images[i]))

    def _serve_tensor(self, images):
        images = self._nonempty(images)
        return self._run(tf.shape(images)[0], lambda i: images[i])

    def _run(self, count, get_image):
        molded, meta, windows, sizes = mold_batch(
            count, get_image, self._resize_args, self._mean_pixel, self._num_classes,
            self._max_image_size)
        if self._square_side:  # the Keras model has a static square input
            molded = tf.ensure_shape(molded, [None, self._square_side, self._square_side, 3])
        raw = self.keras_model({"input_image": molded, "input_image_meta": meta}, training=False)
        return postprocess(tf.cast(raw["detections"], tf.float32), tf.cast(raw["mrcnn_mask"], tf.float32),
                           tf.shape(molded)[1:3], windows, sizes, self._include_box_masks)
