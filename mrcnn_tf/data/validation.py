"""Pixels of any common layout -> uint8 RGB, with messages naming the image.

One conversion for images a user hands to ``detect()`` and for the pixels
``Dataset.load_image`` decodes, so both reach the model the same way.
"""

import numpy as np

RGB_CHANNELS = 3
UINT8_MAX = 255
UINT16_MAX = 65535
UINT16_TO_UINT8 = 257.0  # 65535 / 255


def _stretch_to_255(pixels):
    """Map min..max linearly onto 0..255 (a constant image becomes 0)."""
    low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    if high <= low:
        return np.zeros_like(pixels)
    return (pixels - low) * (UINT8_MAX / (high - low))


def _to_uint8_range(pixels):
    """Real pixels -> float64 in 0..255 by their dtype and range.

    uint8: as is; uint16: / 257; other integers: as is within 0..255, / 257
    within 0..65535 (16-bit data in a wider type), else stretched min..max;
    floats: x 255 within 0..1, as is within 0..255, else stretched.
    """
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if pixels.dtype == np.uint16:
        return values / UINT16_TO_UINT8
    if pixels.dtype.kind in "iu":
        if low >= 0 and high <= UINT8_MAX:
            return values
        if low >= 0 and high <= UINT16_MAX:
            return values / UINT16_TO_UINT8
        return _stretch_to_255(values)
    if low >= 0 and high <= 1:
        return values * UINT8_MAX
    if low >= 0 and high <= UINT8_MAX:
        return values
    return _stretch_to_255(values)


def to_rgb_uint8(image, name="image"):
    """One image as uint8 [H, W, 3] RGB.

    Args:
        image: array-like [H, W] or [H, W, 1] (grey), [H, W, 3] (RGB) or
            [H, W, 4] (RGBA: alpha dropped, the colour under it kept), of
            integer or float pixels (see ``_to_uint8_range`` for the ranges).
        name: how messages call the image, e.g. ``"image 3"``.
    Returns:
        uint8 [H, W, 3] (the input itself when it already is that).
    Raises:
        TypeError: the pixels are not real numbers (bool, object, strings, complex).
        ValueError: another shape, an empty image, or NaN/Inf pixels.
    """
    image = np.asarray(image)
    if image.dtype == bool or image.dtype.kind not in "iuf":
        raise TypeError(f"{name} must have integer or float pixels, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, RGB_CHANNELS, RGB_CHANNELS + 1):
        raise ValueError(f"{name} must be grey [H, W] or [H, W, 1], RGB [H, W, 3] or RGBA "
                         f"[H, W, 4], got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"{name} is empty: shape {image.shape}")
    if image.dtype.kind == "f":
        finite = np.isfinite(image)
        if not finite.all():
            y, x, c = np.argwhere(~finite)[0]
            raise ValueError(f"{name} has NaN or Inf pixels ({int((~finite).sum())} values, "
                             f"first at row {y}, column {x}, channel {c}: {image[y, x, c]})")
    if image.shape[2] > RGB_CHANNELS:
        image = image[:, :, :RGB_CHANNELS]
    if image.shape[2] == 1:
        image = np.repeat(image, RGB_CHANNELS, axis=2)
    if image.dtype == np.uint8:
        return image
    return np.clip(np.round(_to_uint8_range(image)), 0, UINT8_MAX).astype(np.uint8)
