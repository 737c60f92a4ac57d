"""Named configurations: the settings the samples, notebooks and tests share.

    config = ShapesConfig(**presets.tiny(64, IMAGES_PER_GPU=2))    # a CPU smoke run
    config = presets.shapes()                                      # the shapes dataset's model

``tiny(image_size)``
    A dict of Config overrides for a model that builds, trains a step and
    detects in seconds on a CPU: square ``image_size`` images, narrow heads,
    few RoIs, anchors scaled to the image, 2 steps per epoch, and every
    detection kept (``DETECTION_MIN_CONFIDENCE = 0``) so an untrained model
    still returns some. It sets neither the backbone, the batch nor the
    classes: apply it to any Config class (``--tiny`` of the samples, the
    notebooks at ``MRCNN_TINY=1``, the tests' ``TinyConfig``).
``shapes()``
    The shapes dataset's configuration, ``ShapesConfig``: the small backbone
    and narrow heads at 128 px, trained from scratch in minutes on a CPU.
"""

from mrcnn_tf.data.shapes import ShapesConfig
from mrcnn_tf.ops.image import SIZE_MULTIPLE

__all__ = ["ShapesConfig", "TINY_ANCHOR_FRACTIONS", "shapes", "tiny"]

# tiny: the anchor side of each level P2..P6 as a fraction of the image side
# (64 px: 8, 16, 24, 32, 48 pixels, the sizes of the shapes dataset's objects).
TINY_ANCHOR_FRACTIONS = (1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4)


def tiny(image_size=64, **overrides):
    """Config overrides of the tiny CPU setting at ``image_size`` pixels.

    Args:
        image_size: int, the molded image side (IMAGE_MIN_DIM = IMAGE_MAX_DIM);
            a multiple of 64, the stride of P6.
        **overrides: Config attributes that replace or add to the tiny values.
    Returns:
        dict {attribute name: value}, for ``SomeConfig(**tiny(...))`` or as the
        class attributes of a Config subclass. The Config checks the names.
    """
    if (not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < SIZE_MULTIPLE
            or image_size % SIZE_MULTIPLE):
        raise ValueError(f"image_size must be a positive multiple of {SIZE_MULTIPLE}, got {image_size!r}")
    settings = {
        "IMAGE_MIN_DIM": image_size,
        "IMAGE_MAX_DIM": image_size,
        "RPN_ANCHOR_SCALES": tuple(round(image_size * f) for f in TINY_ANCHOR_FRACTIONS),
        # Narrow heads: a few hundred thousand weights beside the backbone.
        "TOP_DOWN_PYRAMID_SIZE": 32,
        "RPN_CONV_CHANNELS": 64,
        "FPN_CLASSIF_FC_LAYERS_SIZE": 64,
        "MASK_HEAD_CHANNELS": 32,
        # Few RoIs: a 64 px image has 1023 anchors at the default ratios.
        "PRE_NMS_LIMIT": 1000,
        "POST_NMS_ROIS_TRAINING": 64,
        "POST_NMS_ROIS_INFERENCE": 32,
        "TRAIN_ROIS_PER_IMAGE": 16,
        "DETECTION_MAX_INSTANCES": 8,
        "DETECTION_MIN_CONFIDENCE": 0.0,  # an untrained model still reports its best guesses
        "STEPS_PER_EPOCH": 2,
        "VALIDATION_STEPS": 1,
    }
    return {**settings, **overrides}


def shapes(**overrides):
    """The shapes dataset's configuration: ``ShapesConfig(**overrides)``."""
    return ShapesConfig(**overrides)
