"""Seeded, composable augmentation of an image and its instance masks.

Every transform is a callable ``(image, masks, rng) -> (image, masks)`` with

* ``image``: uint8 [H, W, 3], the original-size image;
* ``masks``: bool [H, W, N] instance masks (N may be 0);
* ``rng``: ``numpy.random.Generator``, the only source of randomness, so the
  same seed gives the same output.

This is the ``augmentation`` argument of ``load_image_gt``/``DataGenerator``,
which recompute boxes from the returned masks and drop instances whose mask
became empty (e.g. cropped away). Geometric transforms move image and masks
together; ``ColorJitter`` touches the image only. Each transform draws its
random numbers even when it does not fire, so adding ``p`` to one transform
does not shift the others' draws in a way that depends on the outcome.
"""

import numpy as np
import tensorflow as tf

from mrcnn_tf.ops.image import LUMA_WEIGHTS, resize_bilinear, scale_masks

__all__ = ["HorizontalFlip", "VerticalFlip", "Rotate90", "ScaleJitter", "RandomCrop",
           "ColorJitter", "Compose", "default_augmentation", "from_albumentations"]


def _check(image, masks):
    """Validate the shared argument shapes; returns (image, masks) as arrays."""
    image, masks = np.asarray(image), np.asarray(masks)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if masks.ndim != 3 or masks.shape[:2] != image.shape[:2]:
        raise ValueError(f"masks must be [H, W, N] with the image's H, W {image.shape[:2]}, "
                         f"got {masks.shape}")
    return image, masks.astype(bool, copy=False)


def _check_probability(p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    return float(p)


class _Flip:
    axis = None

    def __init__(self, p=0.5):
        self.p = _check_probability(p)

    def __call__(self, image, masks, rng):
        image, masks = _check(image, masks)
        if rng.random() < self.p:
            image, masks = np.flip(image, self.axis), np.flip(masks, self.axis)
        return np.ascontiguousarray(image), np.ascontiguousarray(masks)

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p})"


class HorizontalFlip(_Flip):
    """Mirror left-right (column ``x`` -> ``W - 1 - x``) with probability ``p``."""
    axis = 1


class VerticalFlip(_Flip):
    """Mirror top-bottom (row ``y`` -> ``H - 1 - y``) with probability ``p``."""
    axis = 0


class Rotate90(_Flip):
    """Rotate by ``k * 90`` degrees counter-clockwise, ``k`` in 1..3, with
    probability ``p``. For odd ``k`` the output is [W, H, ...]; pixel
    ``(y, x)`` goes to ``(W - 1 - x, y)`` for ``k = 1`` (``np.rot90``)."""

    def __call__(self, image, masks, rng):
        image, masks = _check(image, masks)
        fire, k = rng.random() < self.p, int(rng.integers(1, 4))
        if fire:
            image, masks = np.rot90(image, k, axes=(0, 1)), np.rot90(masks, k, axes=(0, 1))
        return np.ascontiguousarray(image), np.ascontiguousarray(masks)


@tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32),
                              tf.TensorSpec([None, None, None], tf.bool),
                              tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)])
def _scale(image, masks, height, width):
    """Image and masks resized to ``height x width`` as the model's input is (traced once)."""
    with tf.device("/CPU:0"):
        return resize_bilinear(image, height, width), scale_masks(masks, height, width)


class ScaleJitter:
    """Resize by a factor drawn log-uniformly from [min_scale, max_scale]
    (log-uniform so 0.8 and 1.25 are equally likely). Image and masks are
    resized as the model's input is (``ops.image.resize_bilinear``, masks
    ``ops.image.scale_masks``), the image rounded back to uint8. Output
    [round(H * s), round(W * s), ...]."""

    def __init__(self, min_scale=0.8, max_scale=1.25):
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale!r}, {max_scale!r}")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def __call__(self, image, masks, rng):
        image, masks = _check(image, masks)
        scale = float(np.exp(rng.uniform(np.log(self.min_scale), np.log(self.max_scale))))
        out_hw = (max(1, int(round(image.shape[0] * scale))),
                  max(1, int(round(image.shape[1] * scale))))
        if out_hw == image.shape[:2]:
            return image, masks
        resized, masks = _scale(image.astype(np.float32), masks, *out_hw)
        return np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8), masks.numpy()

    def __repr__(self):
        return f"ScaleJitter(min_scale={self.min_scale}, max_scale={self.max_scale})"


class RandomCrop:
    """Crop a window of ``f * H`` by ``f * W`` pixels, ``f`` uniform in
    [min_fraction, 1], at a uniform position. Instances cut away entirely
    keep an empty mask (load_image_gt drops them)."""

    def __init__(self, min_fraction=0.6):
        if not 0 < min_fraction <= 1:
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
        self.min_fraction = float(min_fraction)

    def __call__(self, image, masks, rng):
        image, masks = _check(image, masks)
        height, width = image.shape[:2]
        fraction = rng.uniform(self.min_fraction, 1.0)
        crop_h = min(height, max(1, int(round(height * fraction))))
        crop_w = min(width, max(1, int(round(width * fraction))))
        y = int(rng.integers(0, height - crop_h + 1))
        x = int(rng.integers(0, width - crop_w + 1))
        return (np.ascontiguousarray(image[y:y + crop_h, x:x + crop_w]),
                np.ascontiguousarray(masks[y:y + crop_h, x:x + crop_w]))

    def __repr__(self):
        return f"RandomCrop(min_fraction={self.min_fraction})"


class ColorJitter:
    """Scale brightness, contrast and saturation by factors drawn uniformly
    from ``[1 - v, 1 + v]``, in that order. Masks are returned unchanged.

    Contrast blends with the image's mean grey level, saturation with each
    pixel's grey (BT.601 luma), the way torchvision's ColorJitter does.
    """

    def __init__(self, brightness=0.2, contrast=0.2, saturation=0.2):
        for name, value in (("brightness", brightness), ("contrast", contrast),
                            ("saturation", saturation)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        self.brightness, self.contrast, self.saturation = (
            float(brightness), float(contrast), float(saturation))

    def __call__(self, image, masks, rng):
        image, masks = _check(image, masks)
        b, c, s = (1.0 + rng.uniform(-v, v) for v in
                   (self.brightness, self.contrast, self.saturation))
        pixels = image.astype(np.float32) * b
        pixels = np.clip(pixels, 0, 255)
        grey_mean = float((pixels @ LUMA_WEIGHTS).mean())
        pixels = np.clip(grey_mean + c * (pixels - grey_mean), 0, 255)
        grey = (pixels @ LUMA_WEIGHTS)[:, :, np.newaxis]
        pixels = np.clip(grey + s * (pixels - grey), 0, 255)
        return np.round(pixels).astype(np.uint8), masks

    def __repr__(self):
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation})")


class Compose:
    """Apply ``transforms`` in order, each with the same ``rng``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose needs callables (image, masks, rng), got {t!r}")

    def __call__(self, image, masks, rng):
        image, masks = _check(image, masks)
        for transform in self.transforms:
            image, masks = transform(image, masks, rng)
        return image, masks

    def __repr__(self):
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


def default_augmentation():
    """Horizontal flip and colour jitter with default settings.

    Scale augmentation is part of the resize (Config IMAGE_MIN_DIM tuple,
    IMAGE_SCALE_JITTER): a rescale before it would be undone by it.
    """
    return Compose([HorizontalFlip(), ColorJitter()])


# Resize modes that bring every image to one size (or short side): a ScaleJitter before
# them changes nothing the model sees.
_SIZE_NORMALISING_MODES = ("square", "crop", "shortest_edge")


def check_effective(augmentation, resize_mode):
    """Refuse a ScaleJitter (also inside a Compose) that the resize would undo.

    Raises:
        ValueError naming the transform and the resize mode, pointing at the
        Config attributes that jitter inside the resize.
    """
    pending = [augmentation]
    while pending:
        transform = pending.pop()
        if isinstance(transform, Compose):
            pending.extend(transform.transforms)
        elif isinstance(transform, ScaleJitter) and resize_mode in _SIZE_NORMALISING_MODES:
            raise ValueError(
                f"{transform!r} is undone by IMAGE_RESIZE_MODE {resize_mode!r}, which resizes every "
                f"image to the same size afterwards; jitter in the resize instead: IMAGE_MIN_DIM as "
                f"a tuple ('shortest_edge', multi-scale) or IMAGE_SCALE_JITTER ('square', large-scale jitter)")


class AlbumentationsAdapter:
    """Wraps an albumentations-style ``transform(image=, masks=[...])`` callable
    returning ``{"image": uint8 [h, w, 3], "masks": [[h, w], ...]}``.

    Albumentations draws from its own generator: when the transform has
    ``set_random_seed`` (albumentations >= 1.4) it is reseeded from ``rng``
    on every call so results follow the numpy seed.
    """

    def __init__(self, transform):
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {transform!r}")
        self.transform = transform

    def __call__(self, image, masks, rng):
        image, masks = _check(image, masks)
        seed = int(rng.integers(0, 2**31 - 1))
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(seed)
        result = self.transform(image=image,
                                masks=[masks[:, :, i].astype(np.uint8)
                                       for i in range(masks.shape[2])])
        out_image = np.asarray(result["image"])
        out_masks = [np.asarray(m) for m in result.get("masks", [])]
        if len(out_masks) != masks.shape[2]:
            raise ValueError(f"the transform returned {len(out_masks)} masks for "
                             f"{masks.shape[2]} instances; it must keep one per instance")
        if out_masks:
            stacked = np.stack(out_masks, axis=2) > 0
        else:
            stacked = np.zeros(out_image.shape[:2] + (0,), bool)
        return _check(out_image, stacked)

    def __repr__(self):
        return f"from_albumentations({self.transform!r})"


def from_albumentations(transform):
    """Adapt an albumentations transform (see ``AlbumentationsAdapter``)."""
    return AlbumentationsAdapter(transform)
