"""Checks on images handed to the model directly (``detect()``), with messages naming them.

Files read through a ``Dataset`` are checked by ``Dataset.load_image``
(``ImageLoadError``); this module covers arrays a user passes in memory.
"""

import numpy as np

RGB_CHANNELS = 3


def validate_image(image, name="image"):
    """Check one RGB image array for inference and return it as a numpy array.

    Args:
        image: array-like [H, W, 3], integer or float pixels (0..255).
        name: how messages call the image, e.g. ``"image 3"``.
    Returns:
        ``np.asarray(image)``, unchanged otherwise.
    Raises:
        TypeError: the pixels are not numbers (bool, object, strings, complex).
        ValueError: the shape is not [H, W, 3], the image is empty, or float
            pixels contain NaN or Inf (they would turn every box into NaN).
    """
    image = np.asarray(image)
    if image.dtype == bool or image.dtype.kind not in "iuf":
        raise TypeError(f"{name} must have integer or float pixels, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != RGB_CHANNELS:
        raise ValueError(f"{name} must be an RGB image [H, W, 3], got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"{name} is empty: shape {image.shape}")
    if image.dtype.kind == "f":
        finite = np.isfinite(image)
        if not finite.all():
            y, x, c = np.argwhere(~finite)[0]
            raise ValueError(f"{name} has NaN or Inf pixels ({int((~finite).sum())} values, "
                             f"first at row {y}, column {x}, channel {c}: {image[y, x, c]})")
    return image
