"""Pure TF image pre-processing: resize, pad and normalise a batch, and the way back.

One implementation for every path from pixels to the network: ``detect()``,
evaluation, the training input and the SavedModel all call these functions.

Frames: boxes are ``(y1, x1, y2, x2)``; pixel ``i`` covers ``[i, i + 1)``, so
``y2``/``x2`` are exclusive. The *molded* image is the resized, padded (or
cropped) one the network sees; its ``window`` is the part that holds the
original image. Resizing is bilinear with half-pixel centres (source
``(dst + 0.5) / scale - 0.5``, clamped at the edges), as torchvision's and
detectron2's resizes, without antialiasing.

Image info (a dict of tensors, one row per image):
    ``original_size`` int32 [N, (H, W)]: the input image's size.
    ``molded_size`` int32 [N, (H, W)]: the molded batch image's size.
    ``window`` float32 [N, (y1, x1, y2, x2)]: molded pixels holding the image.
    ``scale`` float32 [N, (sy, sx)]: molded pixels per original pixel.
"""

import numpy as np
import tensorflow as tf

from mrcnn_tf.ops.batching import unrolled_batch_size
from mrcnn_tf.ops.masks import MASK_THRESHOLD

RESIZE_MODES = ("none", "square", "pad64", "crop", "shortest_edge")
# P6 has stride 64: fixed sides and "pad64" sides are multiples of this.
SIZE_MULTIPLE = 64
# "shortest_edge" pads the batch bottom/right to a multiple of IMAGE_PAD_MULTIPLE (torchvision: 32).
DEFAULT_PAD_MULTIPLE = 32
CHANNEL_ORDERS = ("RGB", "BGR")
# What mold_batch pads with: a black pixel, or the mean pixel (0 once normalised).
PAD_VALUES = ("black", "mean")
# Grey = pixels (R, G, B) @ LUMA_WEIGHTS: ITU-R BT.601, as PIL's "L" conversion and
# torchvision's rgb_to_grayscale (colour jitter, colour splash). Read-only.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
LUMA_WEIGHTS.flags.writeable = False
INFO_FIELDS = ("original_size", "molded_size", "window", "scale")


def inference_resize_mode(mode):
    """The mode images are molded with at inference: "crop" trains on crops but
    detects on whole images, molded as "pad64"."""
    return "pad64" if mode == "crop" else mode


def _check_mode(mode, min_dim, max_dim):
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if mode in ("square", "shortest_edge") and not max_dim:
        raise ValueError(f"resize mode {mode!r} needs max_dim, got {max_dim!r}")
    # A tensor min_dim (a multi-scale draw, see choose_min_dim) is given, whatever its value.
    if mode in ("crop", "shortest_edge") and not tf.is_tensor(min_dim) and not min_dim:
        raise ValueError(f"resize mode {mode!r} needs min_dim, got {min_dim!r}")


def choose_min_dim(min_dims, draw):
    """Multi-scale training (detectron2's ``ResizeShortestEdge``): the short side for one image.

    Args:
        min_dims: int or a tuple of ints (IMAGE_MIN_DIM).
        draw: float scalar in [0, 1), e.g. ``rng.random()``: each size is
            equally likely.
    Returns:
        ``min_dims`` itself if an int, else int32 scalar ``min_dims[floor(draw * n)]``,
        the ``min_dim`` of :func:`resize_image` in "shortest_edge" mode.
    """
    if not isinstance(min_dims, (tuple, list)):
        return min_dims
    index = tf.cast(tf.floor(tf.cast(draw, tf.float32) * len(min_dims)), tf.int32)
    return tf.gather(tf.constant(min_dims, tf.int32), tf.minimum(index, len(min_dims) - 1))


def scaled_size(height, width, mode, min_dim=None, max_dim=None, min_scale=None):
    """The resize rule of one image: its scale and its size once scaled.

    "square", "pad64", "crop" follow matterport: scale *up* so the short side
    is at least ``min_dim`` (never down for it), then at least ``min_scale``;
    "square" and "pad64" then scale down if the long side would exceed
    ``max_dim``; sizes are rounded. "shortest_edge" follows torchvision's
    ``GeneralizedRCNNTransform``: ``scale = min(min_dim / short side,
    max_dim / long side)`` (float32, up or down), sizes floored. "none": 1.

    Args:
        height, width: int32 scalars, the image's size.
    Returns:
        (scale float64 scalar, new_height int32 scalar, new_width int32 scalar).
    """
    if isinstance(min_dim, (tuple, list)):  # multi-scale: the largest at inference (detectron2's test size)
        min_dim = max(min_dim)
    _check_mode(mode, min_dim, max_dim)
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    if mode == "none":
        return tf.constant(1.0, tf.float64), tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    if mode == "shortest_edge":
        scale = tf.minimum(tf.cast(min_dim, tf.float32) / tf.cast(tf.minimum(h, w), tf.float32),
                           float(max_dim) / tf.cast(tf.maximum(h, w), tf.float32))
        scale = tf.cast(scale, tf.float64)
        new_h, new_w = tf.floor(h * scale), tf.floor(w * scale)
    else:
        scale = tf.constant(1.0, tf.float64)
        if min_dim:
            scale = tf.maximum(scale, min_dim / tf.minimum(h, w))
        if min_scale:
            scale = tf.maximum(scale, tf.constant(float(min_scale), tf.float64))
        if max_dim and mode in ("square", "pad64"):  # tf.round rounds half to even, as Python
            long_side = tf.maximum(h, w)
            scale = tf.where(tf.round(long_side * scale) > max_dim, max_dim / long_side, scale)
        new_h, new_w = tf.round(h * scale), tf.round(w * scale)
    return (scale, tf.cast(tf.maximum(new_h, 1.0), tf.int32),
            tf.cast(tf.maximum(new_w, 1.0), tf.int32))


def _centred_padding(size, target):
    """(before, after) to pad ``size`` up to ``target``; the extra pixel goes after."""
    before = (target - size) // 2
    return before, target - size - before


def resize_image(image, mode, min_dim=None, max_dim=None, min_scale=None, crop_yx=None):
    """Resize and pad (or crop) one image the way the model sees it.

    Modes: "none" (unchanged), "square" (scaled, zero-padded centred to
    ``max_dim x max_dim``), "pad64" (scaled, each side zero-padded centred to
    a multiple of 64), "crop" (scaled, then the ``min_dim x min_dim`` crop at
    ``crop_yx``), "shortest_edge" (scaled, not padded: the batch is padded
    bottom/right by :func:`mold_batch`). See :func:`scaled_size`.

    Args:
        image: [H, W, C], any real dtype (pixel values, not normalised).
        crop_yx: with "crop": int (y, x) of the crop in the scaled image, for
            example from :func:`crop_offset`.
    Returns:
        dict: ``image`` float32 [h, w, C] (unrounded, padding 0),
        ``window`` int32 [(y1, x1, y2, x2)] in the result's pixels,
        ``scale`` float32 [(sy, sx)], ``scaled_size`` int32 [(h, w)] before
        padding or cropping, ``crop`` int32 [(y, x, h, w)] in the scaled
        image (all zeros unless "crop"), and ``mode`` (the str).
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"image must be [H, W, C], got shape {image.shape}")
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    _, new_h, new_w = scaled_size(height, width, mode, min_dim, max_dim, min_scale)
    resized = resize_bilinear(tf.cast(image, tf.float32), new_h, new_w)
    scale = tf.cast(tf.stack([new_h / height, new_w / width]), tf.float32)
    zero = tf.constant(0, tf.int32)
    crop = tf.zeros([4], tf.int32)
    if mode == "crop":
        if crop_yx is None:
            raise ValueError("resize mode 'crop' needs crop_yx (see crop_offset)")
        crop_yx = tf.cast(crop_yx, tf.int32)  # a pair or a tensor (in graph too)
        y, x = crop_yx[0], crop_yx[1]
        side = int(min_dim)
        check = tf.debugging.assert_less_equal(
            tf.stack([y + side, x + side]), tf.stack([new_h, new_w]),
            message=f"crop_yx puts the {side}x{side} crop outside the scaled image")
        with tf.control_dependencies([check]):
            resized = resized[y:y + side, x:x + side]
        window = tf.constant([0, 0, side, side], tf.int32)
        crop = tf.stack([y, x, side, side])
    elif mode in ("square", "pad64"):
        if mode == "square":
            target_h = target_w = tf.constant(int(max_dim), tf.int32)
        else:
            target_h = -(-new_h // SIZE_MULTIPLE) * SIZE_MULTIPLE
            target_w = -(-new_w // SIZE_MULTIPLE) * SIZE_MULTIPLE
        top, bottom = _centred_padding(new_h, target_h)
        left, right = _centred_padding(new_w, target_w)
        resized = tf.pad(resized, [[top, bottom], [left, right], [0, 0]])
        window = tf.stack([top, left, top + new_h, left + new_w])
    else:  # none, shortest_edge
        window = tf.stack([zero, zero, new_h, new_w])
    return {"image": resized, "window": window, "scale": scale,
            "scaled_size": tf.stack([new_h, new_w]), "crop": crop, "mode": mode}


SCALE_JITTER = "scale_jitter"  # the ``mode`` of scale_jitter_resize's result


def scale_jitter_resize(image, side, scale_range, draw):
    """Large-scale jitter (Model Garden's ``resize_and_crop_image``, detectron2's LSJ baselines).

    The image is scaled to fit a ``side * s`` square (``s`` uniform in
    ``scale_range``, e.g. (0.1, 2.0)), a ``side x side`` window of it is cut
    at a uniform offset (when it is larger) and the result zero-padded
    bottom/right to ``side x side``: object sizes change by up to 20x while
    the batch shape stays fixed (the "square" mode's at inference).

    Args:
        image: [H, W, C] real pixel values.
        side: int, the output side (IMAGE_MAX_DIM).
        scale_range: (low, high) floats, 0 < low <= high.
        draw: float [3] in [0, 1): the scale, then the (y, x) offset fractions.
    Returns:
        the dict of :func:`resize_image` with ``mode`` SCALE_JITTER: ``window``
        int32 [(0, 0, h, w)] the part holding image pixels, ``crop`` int32
        [(y, x, h, w)] in the scaled image, ``scaled_size`` before the crop.
        :func:`resize_masks` applies the same to masks.
    """
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high:
        raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
    image = tf.convert_to_tensor(image)
    draw = tf.cast(draw, tf.float32)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    target = side * (low + (high - low) * draw[0])
    scale = tf.minimum(target / tf.cast(height, tf.float32), target / tf.cast(width, tf.float32))
    new_h = tf.maximum(tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32), 1)
    resized = resize_bilinear(tf.cast(image, tf.float32), new_h, new_w)
    spare = tf.maximum(tf.stack([new_h, new_w]) - side, 0)
    offset = tf.minimum(tf.cast(tf.floor(draw[1:] * tf.cast(spare + 1, tf.float32)), tf.int32), spare)
    crop_hw = tf.minimum(tf.stack([new_h, new_w]) - offset, side)
    resized = resized[offset[0]:offset[0] + crop_hw[0], offset[1]:offset[1] + crop_hw[1]]
    resized = tf.pad(resized, [[0, side - crop_hw[0]], [0, side - crop_hw[1]], [0, 0]])
    zero = tf.constant(0, tf.int32)
    return {"image": tf.ensure_shape(resized, [side, side, image.shape[-1]]),
            "window": tf.stack([zero, zero, crop_hw[0], crop_hw[1]]),
            "scale": tf.cast(tf.stack([new_h / height, new_w / width]), tf.float32),
            "scaled_size": tf.stack([new_h, new_w]),
            "crop": tf.concat([offset, crop_hw], 0), "mode": SCALE_JITTER}


def resize_bilinear(image, height, width):
    """Bilinear resize with half-pixel centres, no antialiasing; the identity at the same size.

    Args:
        image: float32 [H, W, C].
        height, width: int32 scalars, the output size.
    Returns:
        float32 [height, width, C].
    """
    return tf.image.resize(image, tf.stack([height, width]), method="bilinear", antialias=False)


def crop_offset(scaled_hw, side, draw):
    """(y, x) of the ``side x side`` crop at a uniform draw, in an image of ``scaled_hw``.

    Args:
        scaled_hw: int32 [(h, w)], at least ``side`` each (see :func:`scaled_size`).
        side: int, the crop's side.
        draw: float [2] in [0, 1), e.g. ``rng.random(2)``: each offset is
            uniform over its ``h - side + 1`` (``w - side + 1``) choices.
    Returns:
        int32 [(y, x)], the ``crop_yx`` of :func:`resize_image`.
    """
    scaled_hw = tf.cast(scaled_hw, tf.int32)
    check = tf.debugging.assert_greater_equal(
        scaled_hw, side, message=f"a {side}x{side} crop does not fit in the scaled image")
    with tf.control_dependencies([check]):
        choices = tf.cast(scaled_hw - side + 1, tf.float32)
    offset = tf.cast(tf.floor(tf.cast(draw, tf.float32) * choices), tf.int32)
    return tf.minimum(offset, scaled_hw - side)  # a draw of 1.0 stays inside


def scale_masks(masks, height, width):
    """Resize instance masks to ``height x width``: bilinear on 0/1 values, then ``> MASK_THRESHOLD``.

    Strictly above, unlike a paste: a pixel half on the mask (a 2x downscale's
    edge) stays off.

    Args:
        masks: bool [H, W, N] (N may be 0).
        height, width: int32 scalars, the output size.
    Returns:
        bool [height, width, N]. One mask at a time, so float memory stays one mask.
    """
    masks = tf.convert_to_tensor(masks)
    if masks.shape.rank != 3:
        raise ValueError(f"masks must be [H, W, N], got shape {masks.shape}")

    def one(mask):
        return resize_bilinear(tf.cast(mask, tf.float32)[..., None], height, width)[..., 0] > MASK_THRESHOLD

    def scale_all():
        scaled = tf.map_fn(one, tf.transpose(masks, [2, 0, 1]),
                           fn_output_signature=tf.TensorSpec([None, None], tf.bool))
        return tf.reshape(scaled, tf.stack([-1, height, width]))

    # map_fn cannot stack zero results of an unknown shape: no instances is its own branch.
    scaled = tf.cond(tf.shape(masks)[2] > 0, scale_all,
                     lambda: tf.zeros(tf.stack([0, height, width]), tf.bool))
    return tf.transpose(scaled, [1, 2, 0])


def resize_masks(masks, resized):
    """Resize and pad (or crop) instance masks exactly as :func:`resize_image` did the image.

    Args:
        masks: bool [H, W, N] in the original image's pixels (N may be 0).
        resized: the dict :func:`resize_image` returned for that image.
    Returns:
        bool [h, w, N] in the molded image's pixels (:func:`scale_masks`,
        then padded or cropped like the image).
    """
    new_hw = resized["scaled_size"]
    scaled = scale_masks(masks, new_hw[0], new_hw[1])
    if resized["mode"] in ("crop", SCALE_JITTER):
        crop = resized["crop"]
        scaled = scaled[crop[0]:crop[0] + crop[2], crop[1]:crop[1] + crop[3]]
        if resized["mode"] == "crop":
            return scaled
    molded_hw = tf.shape(resized["image"])[:2]
    window = resized["window"]
    return tf.pad(scaled, [[window[0], molded_hw[0] - window[2]],
                           [window[1], molded_hw[1] - window[3]], [0, 0]])


def normalize(images, mean_pixel, pixel_std=(1.0, 1.0, 1.0), channel_order="RGB"):
    """RGB pixel values -> the network's input: channels reordered, ``(x - mean) / std``.

    Args:
        images: float32 [..., C] RGB pixel values (0..255).
        mean_pixel, pixel_std: C numbers each, in ``channel_order`` order
            (what the backbone's weights expect).
        channel_order: "RGB" or "BGR".
    Returns:
        float32 [..., C].
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    images = tf.cast(images, tf.float32)
    if channel_order == "BGR":
        images = images[..., ::-1]
    mean = tf.constant(np.asarray(mean_pixel, np.float32))
    std = tf.constant(np.asarray(pixel_std, np.float32))
    return (images - mean) / std


def denormalize(images, mean_pixel, pixel_std=(1.0, 1.0, 1.0), channel_order="RGB"):
    """The inverse of :func:`normalize`, for display: float [..., C] -> uint8 RGB (rounded, clipped)."""
    images = tf.cast(images, tf.float32) * tf.constant(np.asarray(pixel_std, np.float32)) \
        + tf.constant(np.asarray(mean_pixel, np.float32))
    if channel_order == "BGR":
        images = images[..., ::-1]
    return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)


def mold_batch(images, image_sizes, mode, min_dim=None, max_dim=None, min_scale=None,
               mean_pixel=(0.0, 0.0, 0.0), pixel_std=(1.0, 1.0, 1.0), channel_order="RGB",
               pad_multiple=DEFAULT_PAD_MULTIPLE, square_side=None, pad_value="black"):
    """Images of any sizes -> one normalised model batch and its image info.

    Each image is resized (:func:`resize_image`, "crop" served as "pad64"),
    placed at the top-left and zero-padded bottom/right to the batch's
    largest molded size ("shortest_edge": rounded up to a multiple of
    ``pad_multiple``), then normalised. Padding is a black pixel, so it is
    ``-mean / std`` after normalisation.

    Args:
        images: [N, Hmax, Wmax, C] real pixels, image i in its top-left
            ``image_sizes[i]`` (the rest is ignored).
        image_sizes: int32 [N, (H, W)].
        square_side: the model's static input side ("square" mode), so the
            batch gets a static shape.
        pad_value: "black" (padding is ``-mean / std`` once normalised) or
            "mean" (padding is 0 once normalised, as torchvision's
            ``GeneralizedRCNNTransform`` pads).
    Returns:
        (molded float32 [N, Hb, Wb, C], image info dict, see the module doc).
    """
    if pad_value not in PAD_VALUES:
        raise ValueError(f"pad_value must be one of {PAD_VALUES}, got {pad_value!r}")
    mode = inference_resize_mode(mode)
    images = tf.convert_to_tensor(images)
    image_sizes = tf.cast(image_sizes, tf.int32)
    count = tf.shape(images)[0]
    channels = images.shape[-1]
    static_count = unrolled_batch_size(images)
    if static_count is not None:  # an export's static batch (ops.batching): the same steps, no loop
        resized = [resize_image(images[i, :image_sizes[i, 0], :image_sizes[i, 1]], mode, min_dim,
                                max_dim, min_scale) for i in range(static_count)]
        batch_hw = batch_molded_size(tf.stack([tf.shape(r["image"])[:2] for r in resized]), mode, pad_multiple)
        batch = tf.stack([pad_to_batch(r["image"], batch_hw) for r in resized])
        windows = tf.stack([r["window"] for r in resized])
        scales = tf.stack([r["scale"] for r in resized])
    else:
        molded_ta = tf.TensorArray(tf.float32, size=count, infer_shape=False,
                                   element_shape=tf.TensorShape([None, None, channels]))
        sizes_ta = tf.TensorArray(tf.int32, size=count, element_shape=[2])
        windows_ta = tf.TensorArray(tf.int32, size=count, element_shape=[4])
        scales_ta = tf.TensorArray(tf.float32, size=count, element_shape=[2])
        # A loop, not map_fn: molded sizes differ until the batch's largest is known.
        for i in tf.range(count):
            size = image_sizes[i]
            resized = resize_image(images[i, :size[0], :size[1]], mode, min_dim, max_dim, min_scale)
            molded_ta = molded_ta.write(i, resized["image"])
            sizes_ta = sizes_ta.write(i, tf.shape(resized["image"])[:2])
            windows_ta = windows_ta.write(i, resized["window"])
            scales_ta = scales_ta.write(i, resized["scale"])
        batch_hw = batch_molded_size(sizes_ta.stack(), mode, pad_multiple)
        batch = tf.map_fn(lambda i: pad_to_batch(molded_ta.read(i), batch_hw), tf.range(count),
                          fn_output_signature=tf.TensorSpec([None, None, channels], tf.float32))
        windows, scales = windows_ta.stack(), scales_ta.stack()
    if square_side:
        batch = tf.ensure_shape(batch, [None, square_side, square_side, channels])
    molded = normalize(batch, mean_pixel, pixel_std, channel_order)
    if pad_value == "mean":  # zero outside each image's window
        rows = tf.range(batch_hw[0])[None, :]
        cols = tf.range(batch_hw[1])[None, :]
        inside_rows = (rows >= windows[:, :1]) & (rows < windows[:, 2:3])
        inside_cols = (cols >= windows[:, 1:2]) & (cols < windows[:, 3:4])
        inside = inside_rows[:, :, None, None] & inside_cols[:, None, :, None]
        molded = tf.where(inside, molded, 0.0)
    info = {
        "original_size": image_sizes,
        "molded_size": tf.tile(batch_hw[None], [count, 1]),
        "window": tf.cast(windows, tf.float32),
        "scale": scales,
    }
    return molded, info


def batch_molded_size(molded_sizes, mode, pad_multiple=DEFAULT_PAD_MULTIPLE):
    """The molded size of a batch: the largest of its images' molded sizes, in
    "shortest_edge" mode rounded up to a multiple of ``pad_multiple``.

    Args:
        molded_sizes: int32 [N, (h, w)], each image's molded size.
    Returns:
        int32 [(H, W)].
    """
    batch_hw = tf.reduce_max(tf.cast(molded_sizes, tf.int32), axis=0)
    if mode == "shortest_edge":
        batch_hw = -(-batch_hw // pad_multiple) * pad_multiple
    return batch_hw


def pad_to_batch(molded, batch_hw):
    """Pad one molded image (or its masks) bottom/right to the batch's size.

    Args:
        molded: [h, w, C] pixels before normalisation (padding is 0, a black
            pixel) or bool masks (padding False).
        batch_hw: int32 [(H, W)] >= (h, w), from :func:`batch_molded_size`.
    Returns:
        [H, W, C], the dtype of ``molded``; the image stays at the top-left.
    """
    pad_hw = tf.cast(batch_hw, tf.int32) - tf.shape(molded)[:2]
    return tf.pad(molded, [[0, pad_hw[0]], [0, pad_hw[1]], [0, 0]])


def boxes_to_original(boxes_norm, info):
    """Boxes normalised to the molded batch image -> float pixels of each original image.

    Args:
        boxes_norm: float32 [N, D, (y1, x1, y2, x2)] normalised to the molded
            image (``molded_size``).
        info: the image info of the batch.
    Returns:
        float32 [N, D, (y1, x1, y2, x2)] original pixels, unrounded and
        unclipped (a box may reach outside the image).
    """
    molded_hw = tf.cast(info["molded_size"], tf.float32)
    boxes_px = boxes_norm * tf.tile(molded_hw, [1, 2])[:, None, :]
    offset = tf.tile(info["window"][:, None, :2], [1, 1, 2])
    return (boxes_px - offset) / tf.tile(info["scale"][:, None, :], [1, 1, 2])
