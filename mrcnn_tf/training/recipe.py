"""The COCO recipe as one call, shared by ``mrcnn-tf train --preset`` and ``samples/coco/coco.py``.

    config, epochs = recipe_setup("coco_r50_fpn_1x", NUM_CLASSES=81)
    model = MaskRCNN("training", config, "logs")
    train_recipe(model, train, val, epochs)       # + HorizontalFlip, CocoEvaluation(val) each epoch

On several GPUs, ``strategy, config = mirrored(config)`` and both calls inside
``strategy.scope()``.

``pretrained="maskrcnn_resnet50_fpn"`` builds torchvision's architecture
(:func:`mrcnn_tf.pretrained.torchvision_config`) with the preset's training
settings on top, so that :func:`fine_tune_from` can load its state dict.
``mrcnn_tf.pretrained`` is optional here: without it only ``pretrained``
fails, with a message saying so.
"""

import functools

from mrcnn_tf import presets

# Config attributes a torchvision model's weights fix (their shapes or what they compute).
_FIXED_BY_PRETRAINED = ("BACKBONE",)


def torchvision_module():
    """``mrcnn_tf.pretrained`` (torchvision models), or None when this installation lacks it."""
    try:
        from mrcnn_tf import pretrained
    except ImportError:
        return None
    return pretrained if hasattr(pretrained, "torchvision_config") else None


def pretrained_names():
    """The torchvision model names ``pretrained`` accepts (empty without ``mrcnn_tf.pretrained``)."""
    module = torchvision_module()
    return tuple(sorted(module.TORCHVISION_MODELS)) if module is not None else ()


def recipe_setup(preset=None, pretrained=None, **overrides):
    """(Config, end epoch or None) of a COCO preset and/or a torchvision model to start from.

    Args:
        preset: None or a key of ``presets.COCO_PRESETS`` (detectron2's schedule,
            augmentation scales, RoI sampling, weight decay).
        pretrained: None or a torchvision model name: its architecture under
            the preset's settings.
        **overrides: Config attributes applied last (e.g. NUM_CLASSES, NAME).
    Returns:
        (Config, the preset's end epoch; None without a preset).
    Raises:
        ValueError naming ``preset`` or ``pretrained`` and the known values.
    """
    if preset is None and pretrained is None:
        raise ValueError("recipe_setup needs a preset, a pretrained model or both")
    config_class = None
    if pretrained is not None:
        module = torchvision_module()
        if module is None:
            raise ValueError(f"pretrained {pretrained!r}: mrcnn_tf.pretrained (torchvision models) is "
                             "not available in this installation")
        if pretrained not in module.TORCHVISION_MODELS:
            raise ValueError(f"pretrained: unknown torchvision model {pretrained!r}; known: "
                             f"{sorted(module.TORCHVISION_MODELS)}")
        fixed = [key for key in _FIXED_BY_PRETRAINED if key in overrides]
        if fixed:
            raise ValueError(f"pretrained {pretrained!r} fixes {fixed[0]} "
                             f"({module.TORCHVISION_SETTINGS[pretrained][fixed[0]]!r}); do not override it")

        config_class = functools.partial(module.torchvision_config, pretrained)
        if preset is None:
            return config_class(**overrides), None
    return presets.recipe_config(preset, config_class, **overrides)


def mirrored(config):
    """(MirroredStrategy over all local GPUs, Config with the same global batch split over them).

    ``GPU_COUNT`` becomes the replica count and ``IMAGES_PER_GPU`` the
    global ``BATCH_SIZE`` (the preset's 16) divided by it. Build and train
    the model inside ``strategy.scope()``.
    Raises:
        ValueError when the global batch does not split evenly.
    """
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    replicas = strategy.num_replicas_in_sync
    if config.BATCH_SIZE % replicas:
        raise ValueError(f"the global batch {config.BATCH_SIZE} (IMAGES_PER_GPU * GPU_COUNT) does not split "
                         f"over {replicas} replicas; set IMAGES_PER_GPU and GPU_COUNT={replicas}")
    values = {**config.to_dict(), "GPU_COUNT": replicas, "IMAGES_PER_GPU": config.BATCH_SIZE // replicas}
    return strategy, type(config).from_dict(values)


def fine_tune_from(model, pretrained, weights):
    """Load torchvision's ``pretrained`` state dict (a ``.pth``, ``.safetensors`` or ``.npz`` file)
    into ``model`` (built from :func:`recipe_setup` with that ``pretrained``).

    With NUM_CLASSES other than torchvision's 91 the class-specific layers
    keep their fresh weights. Returns the loaded layer names.
    Raises:
        ValueError naming the missing, extra or misfitting key; ImportError for a
        ``.pth`` without torch (convert it: ``python -m mrcnn_tf.pretrained convert``).
    """
    module = torchvision_module()
    if module is None:
        raise ValueError("mrcnn_tf.pretrained (torchvision models) is not available in this installation")
    loaded = module.load_torchvision_weights(model, weights, pretrained)
    fresh = model.config.NUM_CLASSES != len(module.COCO_CATEGORY_NAMES)
    print(f"{pretrained}: {len(loaded)} layers loaded from {weights}"
          + (f"; class-specific layers start fresh ({model.config.NUM_CLASSES} classes)" if fresh else ""))
    return loaded


def train_recipe(model, train_dataset, val_dataset, epochs, learning_rate=None, layers="all",
                 max_eval_images=None, **train_kwargs):
    """``model.train`` as detectron2 trains: horizontal flips, COCO AP of ``val_dataset`` each epoch.

    Multi-scale resizing, the schedule and the weight decay come from the
    model's Config (:func:`recipe_setup`). There is no validation loss
    (detectron2 reports none): ``val_dataset`` is scored by
    :class:`~mrcnn_tf.callbacks.CocoEvaluation`, which writes ``val_bbox_AP``,
    ``val_segm_AP``, ... into the epoch logs.

    Args:
        epochs: the end epoch; learning_rate: the schedule's peak (default
            the config's LEARNING_RATE); layers: as ``MaskRCNN.train``
            (``FREEZE_AT`` keeps the stem frozen under "all").
        max_eval_images: score at most this many validation images.
        **train_kwargs: more ``MaskRCNN.train`` arguments (seed, verbose, ...).
    Returns:
        the Keras History.
    """
    from mrcnn_tf.callbacks import CocoEvaluation
    from mrcnn_tf.data.augment import HorizontalFlip

    callbacks = list(train_kwargs.pop("custom_callbacks", None) or [])
    if val_dataset is not None:
        callbacks.insert(0, CocoEvaluation(val_dataset, max_images=max_eval_images))
    return model.train(train_dataset, None, learning_rate or model.config.LEARNING_RATE, epochs, layers,
                       augmentation=HorizontalFlip(), custom_callbacks=callbacks, **train_kwargs)
