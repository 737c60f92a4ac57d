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

__all__ = ["ShapesConfig", "TINY_ANCHOR_FRACTIONS", "COCO_PRESETS", "coco_r50_fpn_1x",
           "coco_r50_fpn_3x", "shapes", "tiny"]

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


# detectron2's COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_{1x,3x}.yaml, per 16 images
# (IMS_PER_BATCH 16 over the replicas): iterations of the schedule, its LR steps.
_COCO_SCHEDULES = {"1x": (90_000, (60_000, 80_000)), "3x": (270_000, (210_000, 250_000))}
# Evaluate (CocoEvaluation every epoch) and checkpoint every this many iterations.
COCO_EVAL_PERIOD = 5000


def _coco_recipe(schedule, **overrides):
    iterations, steps = _COCO_SCHEDULES[schedule]
    settings = {
        "NAME": f"coco_r50_fpn_{schedule}", "BACKBONE": "resnet50", "NUM_CLASSES": 81,
        "GPU_COUNT": 8, "IMAGES_PER_GPU": 2,  # 16 images per step
        "LEARNING_RATE": 0.02, "LEARNING_MOMENTUM": 0.9,
        "LR_SCHEDULE": "step", "WARMUP_ITERS": 1000, "WARMUP_FACTOR": 0.001,
        "LR_STEPS": steps, "LR_GAMMA": 0.1,
        "WEIGHT_DECAY": 1e-4, "WEIGHT_DECAY_MODE": "l2", "GRADIENT_CLIP_NORM": None,
        "FREEZE_AT": 2,
        # Multi-scale training 640..800 (short side), 1333 long side; 800 at inference.
        "IMAGE_RESIZE_MODE": "shortest_edge", "IMAGE_MIN_DIM": (640, 672, 704, 736, 768, 800),
        "IMAGE_MAX_DIM": 1333,
        "RPN_PROPOSAL_MODE": "per_level", "PRE_NMS_LIMIT": 2000, "POST_NMS_ROIS_TRAINING": 1000,
        "POST_NMS_ROIS_INFERENCE": 1000, "TRAIN_ROIS_PER_IMAGE": 512, "ROI_POSITIVE_RATIO": 0.25,
        "STEPS_PER_EPOCH": COCO_EVAL_PERIOD,
        "DETECTION_MIN_CONFIDENCE": 0.05, "DETECTION_NMS_THRESHOLD": 0.5,
    }
    settings["EPOCHS"] = iterations // COCO_EVAL_PERIOD
    return {**settings, **overrides}


def coco_r50_fpn_1x(**overrides):
    """Config overrides of detectron2's R50-FPN 1x recipe (38.6 box / 35.2 mask AP on COCO val2017).

    90k iterations of 16 images, LR 0.02 with a 1000-iteration linear warmup,
    x0.1 at 60k and 80k, PyTorch-style L2 weight decay 1e-4, stem and res2
    frozen, multi-scale 640-800 training (add ``HorizontalFlip`` as the
    augmentation), per-level proposals, 512 RoIs per image with 25%
    positives. ``EPOCHS`` (not a Config attribute: pop it) is the
    ``train()`` end epoch, ``STEPS_PER_EPOCH`` the evaluation period.
    """
    return _coco_recipe("1x", **overrides)


def coco_r50_fpn_3x(**overrides):
    """As :func:`coco_r50_fpn_1x` over 270k iterations, x0.1 at 210k and 250k (40.0 / 37.1 AP)."""
    return _coco_recipe("3x", **overrides)


COCO_PRESETS = {"coco_r50_fpn_1x": coco_r50_fpn_1x, "coco_r50_fpn_3x": coco_r50_fpn_3x}


def recipe_config(name, config_class=None, **overrides):
    """(Config, end epoch) of a COCO preset by name, e.g. for ``--preset``.

    Raises:
        ValueError naming the preset and the known ones.
    """
    from mrcnn_tf.config import Config

    if name not in COCO_PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(COCO_PRESETS)}")
    settings = COCO_PRESETS[name](**overrides)
    epochs = settings.pop("EPOCHS")
    return (config_class or Config)(**settings), epochs
