"""Numpy image and mask geometry shared by the data generator and detect().

Frames: boxes are ``(y1, x1, y2, x2)`` in pixels of the image they refer to,
pixel ``i`` covering ``[i, i + 1)``, so ``y2``/``x2`` are exclusive and a
box's height is ``y2 - y1``. A *molded* image is the resized, padded (or
cropped) one the network sees; its ``window`` is the part holding the
original image. Resizing maps pixel centres onto pixel centres
(``src = (dst + 0.5) / scale - 0.5``), as skimage does.
"""

import numpy as np
from skimage.transform import resize

from mrcnn_tf.image_meta import META_FIELDS, META_FIXED_LENGTH

RESIZE_MODES = ("none", "square", "pad64", "crop")
PAD64 = 64


def _resize_bilinear(array, out_hw):
    """skimage bilinear resize of the first two axes; float result."""
    return resize(array, tuple(out_hw) + array.shape[2:], order=1, mode="edge",
                  preserve_range=True, anti_aliasing=False)


def _scaled_hw(height, width, scale):
    """Size after scaling; resize_image and resize_mask must agree on it."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _split_padding(total):
    """(before, after) halves of ``total`` padding; the extra pixel goes after."""
    return total // 2, total - total // 2


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", rng=None):
    """Resize and pad (or crop) an image the way the model expects it.

    Scaling follows matterport: the image is scaled *up* so its short side is
    at least ``min_dim`` (never down for ``min_dim``), then at least by
    ``min_scale``; in "square" and "pad64" modes it is then scaled down if the
    long side would exceed ``max_dim``.

    Modes:
        "none": returned unchanged.
        "square": scaled, then zero-padded to ``max_dim x max_dim`` (centred).
        "pad64": scaled (``max_dim`` may be None), then each side zero-padded
            (centred) up to a multiple of 64.
        "crop": scaled, then a random ``min_dim x min_dim`` crop drawn with
            ``rng`` (a ``np.random.Generator``; a fresh one if None).

    Args:
        image: [H, W, C] array of any dtype.
    Returns:
        image: [h, w, C], same dtype as the input (rounded and clipped for
            integer types).
        window: (y1, x1, y2, x2) ints, the scaled image inside the result,
            pixels of the result, y2/x2 exclusive.
        scale: float, result pixels per input pixel.
        padding: [(top, bottom), (left, right), (0, 0)] added zeros.
        crop: (y, x, h, w) of the crop in the scaled image, or None.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, C], got shape {image.shape}")
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    if mode == "square" and not max_dim:
        raise ValueError(f"mode 'square' needs max_dim, got {max_dim!r}")
    if mode == "crop" and not min_dim:
        raise ValueError(f"mode 'crop' needs min_dim, got {min_dim!r}")
    height, width = image.shape[:2]
    window = (0, 0, height, width)
    padding = [(0, 0), (0, 0), (0, 0)]
    if mode == "none":
        return image, window, 1.0, padding, None

    scale = 1.0
    if min_dim:
        scale = max(1.0, min_dim / min(height, width))
    if min_scale and scale < min_scale:
        scale = float(min_scale)
    if max_dim and mode in ("square", "pad64") and round(max(height, width) * scale) > max_dim:
        scale = max_dim / max(height, width)
    if scale != 1.0:
        resized = _resize_bilinear(image, _scaled_hw(height, width, scale))
        image = _cast_like(resized, image.dtype)
    height, width = image.shape[:2]

    if mode == "crop":
        rng = rng if rng is not None else np.random.default_rng()
        y = int(rng.integers(0, height - min_dim + 1))
        x = int(rng.integers(0, width - min_dim + 1))
        crop = (y, x, min_dim, min_dim)
        return image[y:y + min_dim, x:x + min_dim], (0, 0, min_dim, min_dim), scale, padding, crop

    if mode == "square":
        target_h = target_w = max_dim
    else:  # pad64
        target_h, target_w = -(-height // PAD64) * PAD64, -(-width // PAD64) * PAD64
    top, bottom = _split_padding(target_h - height)
    left, right = _split_padding(target_w - width)
    padding = [(top, bottom), (left, right), (0, 0)]
    image = np.pad(image, padding, mode="constant", constant_values=0)
    window = (top, left, top + height, left + width)
    return image, window, scale, padding, None


def _cast_like(values, dtype):
    """Float ``values`` back to ``dtype``, rounding and clipping integer types."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.round(values), info.min, info.max)
    return values.astype(dtype)


def resize_mask(mask, scale, padding, crop=None):
    """Resize and pad (or crop) masks exactly as ``resize_image`` did the image.

    Args:
        mask: bool [H, W, N] in the original image's pixels (N may be 0).
        scale, padding, crop: as returned by ``resize_image``.
    Returns:
        bool [h, w, N] in the molded image's pixels. Bilinear on 0/1 floats
        then ``> 0.5``, so thin parts survive better than nearest neighbour.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be [H, W, N], got shape {mask.shape}")
    height, width, count = mask.shape
    if scale != 1:
        out_h, out_w = _scaled_hw(height, width, scale)
        resized = np.zeros([out_h, out_w, count], bool)
        for i in range(count):  # one channel at a time bounds float memory
            resized[:, :, i] = _resize_bilinear(mask[:, :, i].astype(np.float32), (out_h, out_w)) > 0.5
        mask = resized
    if crop is not None:
        y, x, crop_h, crop_w = crop
        return mask[y:y + crop_h, x:x + crop_w]
    return np.pad(mask, padding, mode="constant", constant_values=False)


def extract_bboxes(mask):
    """Tight boxes of instance masks.

    Args:
        mask: bool [H, W, N].
    Returns:
        int32 [N, (y1, x1, y2, x2)] pixels, y2/x2 exclusive; an empty mask's
        box is all zeros.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be [H, W, N], got shape {mask.shape}")
    boxes = np.zeros([mask.shape[2], 4], np.int32)
    for i in range(mask.shape[2]):
        rows = np.flatnonzero(mask[:, :, i].any(axis=1))
        cols = np.flatnonzero(mask[:, :, i].any(axis=0))
        if rows.size:
            boxes[i] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return boxes


def _interp_matrix(src_coords, src_len):
    """Bilinear weights [n, src_len]: row k samples continuous index
    ``src_coords[k]`` (cell i has centre i), clamped to the edge cells."""
    coords = np.clip(np.asarray(src_coords, np.float64), 0, src_len - 1)
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, src_len - 1)
    frac = coords - low
    weights = np.zeros([coords.size, src_len])
    rows = np.arange(coords.size)
    np.add.at(weights, (rows, low), 1 - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def _paste(small, box, image_hw):
    """Bilinear values of float ``small [h, w]`` stretched over ``box`` (float
    pixels) in an image of ``image_hw``; pixels whose centre is outside the
    box or the image are 0. Returns float64 [H, W]."""
    image_h, image_w = image_hw
    full = np.zeros([image_h, image_w])
    y1, x1, y2, x2 = (float(v) for v in box)
    if y2 <= y1 or x2 <= x1 or small.size == 0:
        return full
    # Pixels whose centre (i + 0.5) lies in [y1, y2), clipped to the image.
    row0, row1 = max(0, int(np.ceil(y1 - 0.5))), min(image_h, int(np.ceil(y2 - 0.5)))
    col0, col1 = max(0, int(np.ceil(x1 - 0.5))), min(image_w, int(np.ceil(x2 - 0.5)))
    if row0 >= row1 or col0 >= col1:
        return full
    small_h, small_w = small.shape
    src_y = (np.arange(row0, row1) + 0.5 - y1) * (small_h / (y2 - y1)) - 0.5
    src_x = (np.arange(col0, col1) + 0.5 - x1) * (small_w / (x2 - x1)) - 0.5
    full[row0:row1, col0:col1] = (_interp_matrix(src_y, small_h) @ small
                                  @ _interp_matrix(src_x, small_w).T)
    return full


def minimize_mask(bbox, mask, mini_shape):
    """Crop each mask to its box and resize it to ``mini_shape`` (saves memory).

    Args:
        bbox: int [N, (y1, x1, y2, x2)] pixels of ``mask``, exclusive ends.
        mask: bool [H, W, N].
        mini_shape: (mh, mw).
    Returns:
        bool [mh, mw, N]: bilinear resize of the crop, then ``>= 0.5``. An
        empty box (or one outside the mask) gives all False.
    """
    mask = np.asarray(mask, bool)
    bbox = np.asarray(bbox).reshape(-1, 4)
    mini_h, mini_w = (int(v) for v in mini_shape)
    mini = np.zeros([mini_h, mini_w, mask.shape[-1]], bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = np.round(bbox[i]).astype(int)
        y1, x1 = max(y1, 0), max(x1, 0)
        crop = mask[y1:y2, x1:x2, i].astype(np.float32)
        if crop.size:
            mini[:, :, i] = _resize_bilinear(crop, (mini_h, mini_w)) >= 0.5
    return mini


def expand_mask(bbox, mini_mask, image_shape):
    """Inverse of ``minimize_mask``: paste each mini mask into its box.

    Args:
        bbox: [N, (y1, x1, y2, x2)] pixels of the full image, exclusive ends.
        mini_mask: bool [mh, mw, N].
        image_shape: (H, W, ...) of the full image.
    Returns:
        bool [H, W, N]; bilinear then ``>= 0.5``; empty boxes give all False.
    """
    mini_mask = np.asarray(mini_mask)
    bbox = np.asarray(bbox).reshape(-1, 4)
    image_hw = tuple(int(v) for v in image_shape[:2])
    mask = np.zeros(image_hw + (mini_mask.shape[-1],), bool)
    for i in range(mini_mask.shape[-1]):
        mask[:, :, i] = _paste(mini_mask[:, :, i].astype(np.float64), bbox[i], image_hw) >= 0.5
    return mask


def unmold_mask(mask_prob, bbox, image_shape, threshold=0.5):
    """Paste a small predicted mask into its box in the full image.

    Args:
        mask_prob: float [mh, mw] probabilities (e.g. 28x28) covering the box.
        bbox: (y1, x1, y2, x2), float or int pixels of the full image,
            exclusive ends; may extend outside the image.
        image_shape: (H, W, ...) of the full image.
        threshold: a pixel is in the mask if its interpolated value >= this.
    Returns:
        bool [H, W]. A pixel is sampled at its centre; centres outside the
        box are False, so a zero-size box gives an all-False mask.
    """
    mask_prob = np.asarray(mask_prob, np.float64)
    if mask_prob.ndim != 2:
        raise ValueError(f"mask_prob must be [mh, mw], got shape {mask_prob.shape}")
    image_hw = tuple(int(v) for v in image_shape[:2])
    return _paste(mask_prob, bbox, image_hw) >= threshold


def mold_image(images, mean_pixel):
    """Subtract the mean pixel: uint8 [..., 3] -> float32 [..., 3]."""
    return np.asarray(images, np.float32) - np.asarray(mean_pixel, np.float32)


def unmold_image(normalized_images, mean_pixel):
    """Inverse of ``mold_image``: float [..., 3] -> uint8 (rounded, clipped)."""
    images = np.asarray(normalized_images, np.float32) + np.asarray(mean_pixel, np.float32)
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """Pack one image's attributes into the meta vector (docs/CONTRACTS.md).

    Args:
        image_id: int, internal image id.
        original_image_shape: (H, W, C) before resizing.
        image_shape: (H, W, C) after resizing and padding.
        window: (y1, x1, y2, x2) pixels of the molded image holding the image.
        scale: float from ``resize_image``.
        active_class_ids: [NUM_CLASSES] 1 for classes of the image's source.
    Returns:
        float32 [12 + NUM_CLASSES].
    """
    parts = {"original_image_shape": original_image_shape, "image_shape": image_shape,
             "window": window}
    for (name, length) in META_FIELDS[1:4]:
        if len(parts[name]) != length:
            raise ValueError(f"{name} must have {length} values, got {parts[name]!r}")
    return np.array([image_id, *original_image_shape, *image_shape, *window, scale,
                     *active_class_ids], np.float32)


def parse_image_meta(meta):
    """Unpack meta vectors made by ``compose_image_meta``.

    Args:
        meta: [batch, M] or [M] with M = 12 + NUM_CLASSES.
    Returns:
        dict of numpy arrays with the batch axis if the input had one:
        image_id int32 [B], original_image_shape int32 [B, 3],
        image_shape int32 [B, 3], window int32 [B, 4] (pixels),
        scale float32 [B], active_class_ids int32 [B, NUM_CLASSES].
    """
    meta = np.asarray(meta, np.float32)
    if meta.ndim not in (1, 2) or meta.shape[-1] < META_FIXED_LENGTH:
        raise ValueError(f"meta must be [M] or [batch, M] with M >= {META_FIXED_LENGTH}, "
                         f"got shape {meta.shape}")
    parsed, start = {}, 0
    for name, length in META_FIELDS:
        part = meta[..., start:start + length]
        parsed[name] = part[..., 0] if length == 1 else part
        start += length
    parsed["active_class_ids"] = meta[..., start:]
    for name in ("image_id", "original_image_shape", "image_shape", "window",
                 "active_class_ids"):
        parsed[name] = np.round(parsed[name]).astype(np.int32)
    parsed["scale"] = parsed["scale"].astype(np.float32)
    return parsed
