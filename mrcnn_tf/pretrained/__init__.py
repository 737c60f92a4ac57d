"""Pretrained models: torchvision's COCO Mask R-CNNs, loaded into mrcnn_tf.

    from mrcnn_tf.pretrained import torchvision_model
    model = torchvision_model("maskrcnn_resnet50_fpn_v2",
                              weights="maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth")
    results = model.detect([image])   # class ids index COCO_CATEGORY_NAMES

The architecture options that make our graph compute what torchvision's
does (stride on the 3x3, BatchNorm epsilons, FPN/head norms, sigmoid RPN,
torchvision anchors, per-level proposals, RoIAlign ``aligned=False``,
torchvision's detection rule and input transform) are ordinary ``Config``
attributes; :data:`TORCHVISION_SETTINGS` lists them per model. The weight
names and conversions are :mod:`.torchvision_layout`; reading ``.pth``,
``.safetensors`` and ``.npz`` is :mod:`.files`.
"""

import keras
import numpy as np

from mrcnn_tf.config import Config
from mrcnn_tf.pretrained.coco_names import COCO_CATEGORY_NAMES
from mrcnn_tf.pretrained.files import read_state_dict, write_state_dict
from mrcnn_tf.pretrained.torchvision_layout import CLASS_SPECIFIC, convert, layout, normalise_keys, torch_keys

__all__ = ["COCO_CATEGORY_NAMES", "TORCHVISION_MODELS", "TORCHVISION_SETTINGS", "load_torchvision_weights",
           "read_state_dict", "torchvision_config", "torchvision_model", "write_state_dict"]

# name -> (layout variant, published COCO val2017 box AP, mask AP, file name of the release).
TORCHVISION_MODELS = {
    "maskrcnn_resnet50_fpn": ("v1", 37.9, 34.6, "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"),
    "maskrcnn_resnet50_fpn_v2": ("v2", 47.4, 41.8, "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"),
}
TORCHVISION_URL = "https://download.pytorch.org/models/"

# What both torchvision models share: GeneralizedRCNNTransform, AnchorGenerator, RPN,
# MultiScaleRoIAlign and RoIHeads at their test-time defaults.
_COMMON = {
    "BACKBONE": "resnet50", "NUM_CLASSES": 91, "RESNET_STRIDE_ON": "3x3",
    "IMAGE_RESIZE_MODE": "shortest_edge", "IMAGE_MIN_DIM": 800, "IMAGE_MAX_DIM": 1333,
    "IMAGE_PAD_MULTIPLE": 32, "IMAGE_PAD_VALUE": "mean",
    # RGB in [0, 1], ImageNet mean / std, expressed on 0..255 pixels.
    "MEAN_PIXEL": (0.485 * 255, 0.456 * 255, 0.406 * 255),
    "PIXEL_STD": (0.229 * 255, 0.224 * 255, 0.225 * 255),
    "TOP_DOWN_PYRAMID_SIZE": 256, "RPN_CONV_CHANNELS": 256, "RPN_OBJECTNESS": "sigmoid",
    "RPN_ANCHOR_MODE": "torchvision", "RPN_ANCHOR_SCALES": (32, 64, 128, 256, 512),
    "RPN_ANCHOR_RATIOS": (2.0, 1.0, 0.5),  # torchvision's aspect ratios (0.5, 1, 2) are height / width
    "RPN_BBOX_STD_DEV": (1.0, 1.0, 1.0, 1.0), "RPN_PROPOSAL_MODE": "per_level",
    "RPN_NMS_THRESHOLD": 0.7, "PRE_NMS_LIMIT": 1000, "POST_NMS_ROIS_INFERENCE": 1000,
    "POST_NMS_ROIS_TRAINING": 2000, "ROI_ALIGN_ALIGNED": False, "ROI_LEVEL_MAPPER_EPS": 1e-6,
    "ROI_ALIGN_SAMPLING_RATIO": 2, "POOL_SIZE": 7, "MASK_POOL_SIZE": 14, "MASK_SHAPE": (28, 28),
    "FPN_CLASSIF_FC_LAYERS_SIZE": 1024, "MASK_HEAD_CHANNELS": 256,
    "BBOX_STD_DEV": (0.1, 0.1, 0.2, 0.2), "DETECTION_MODE": "torchvision", "MASK_PASTE_MODE": "torchvision",
    "DETECTION_MIN_CONFIDENCE": 0.05, "DETECTION_NMS_THRESHOLD": 0.5, "DETECTION_MAX_INSTANCES": 100,
    "TRAIN_ROIS_PER_IMAGE": 512, "ROI_POSITIVE_RATIO": 0.25,
}
TORCHVISION_SETTINGS = {
    "maskrcnn_resnet50_fpn": {**_COMMON, "NAME": "maskrcnn_resnet50_fpn", "BACKBONE_BN_EPSILON": 0.0,
                              "HEAD_NORM": "none", "FPN_NORM": "none", "RPN_CONV_LAYERS": 1,
                              "BOX_HEAD_CONV_LAYERS": 0},
    "maskrcnn_resnet50_fpn_v2": {**_COMMON, "NAME": "maskrcnn_resnet50_fpn_v2", "BACKBONE_BN_EPSILON": 1e-5,
                                 "HEAD_NORM": "batch", "HEAD_BN_EPSILON": 1e-5, "FPN_NORM": "batch",
                                 "RPN_CONV_LAYERS": 2, "BOX_HEAD_CONV_LAYERS": 4},
}


def _check_name(name):
    if name not in TORCHVISION_MODELS:
        raise ValueError(f"unknown torchvision model {name!r}; known: {sorted(TORCHVISION_MODELS)}")
    return TORCHVISION_MODELS[name][0]


def torchvision_config(name, **config_overrides):
    """The Config of torchvision's ``name`` (test-time defaults), with ``config_overrides``."""
    _check_name(name)
    return Config(**{**TORCHVISION_SETTINGS[name], **config_overrides})


def torchvision_model(name, weights=None, mode="inference", model_dir="logs", **config_overrides):
    """A MaskRCNN computing what torchvision's ``name`` computes, with its weights.

    Args:
        name: "maskrcnn_resnet50_fpn" (v1) or "maskrcnn_resnet50_fpn_v2".
        weights: a mapping of torchvision state-dict names to arrays (numpy
            or torch tensors), or a ``.pth`` (needs torch), ``.safetensors``
            or ``.npz`` file; None leaves the model freshly initialised.
        mode: "inference" or "training".
        model_dir: the MaskRCNN's log directory.
        **config_overrides: any Config attribute (e.g. ``IMAGE_MIN_DIM=480``,
            ``NUM_CLASSES=1 + 3``: the class-specific layers then start fresh).
    Returns:
        MaskRCNN with ``class_names`` (COCO_CATEGORY_NAMES at 91 classes).
    Raises:
        ValueError naming a missing, extra or wrong-shaped key.
    """
    from mrcnn_tf.model import MaskRCNN  # the model imports the training stack: only when used

    config = torchvision_config(name, **config_overrides)
    model = MaskRCNN(mode, config, model_dir=model_dir)
    if weights is not None:
        load_torchvision_weights(model, weights, name)
    model.class_names = (list(COCO_CATEGORY_NAMES) if config.NUM_CLASSES == len(COCO_CATEGORY_NAMES)
                         else ["BG"] + [f"class_{i}" for i in range(1, config.NUM_CLASSES)])
    return model


def _layers_by_name(model):
    """Every weighted layer of the model's sub-models, by name."""
    found, pending = {}, list(model._submodels)
    while pending:
        layer = pending.pop()
        if isinstance(layer, keras.Model):
            pending.extend(layer.layers)
        elif layer.weights:
            found[layer.name] = layer
    return found


def load_torchvision_weights(model, weights, name):
    """Fill a MaskRCNN built by :func:`torchvision_config` with a torchvision state dict.

    All or nothing: every key is checked before any variable is assigned.
    With NUM_CLASSES other than 91 the three class-specific layers
    (:data:`~.torchvision_layout.CLASS_SPECIFIC`) keep their fresh weights.

    Returns:
        list of our layer names that were loaded.
    Raises:
        ValueError naming the first missing, extra or wrong-shaped key.
    """
    variant = _check_name(name)
    state = normalise_keys(read_state_dict(weights))
    layers = _layers_by_name(model)
    num_classes = model.config.NUM_CLASSES
    fresh = num_classes != len(COCO_CATEGORY_NAMES)
    used, updates, loaded = set(), [], []
    for entry in layout(variant):
        keys = torch_keys(entry)
        used.update(keys)
        if fresh and entry.torch_name in CLASS_SPECIFIC:
            continue
        missing = [key for key in keys if key not in state]
        if missing:
            raise ValueError(f"weights for {name} lack {missing[0]!r} (for layer {entry.layer_name}); "
                             f"is it a {name} state dict?")
        if entry.layer_name not in layers:
            raise ValueError(f"the model has no layer {entry.layer_name!r} for {entry.torch_name}: "
                             f"build it with torchvision_config({name!r})")
        values = convert(entry, [np.asarray(state[key], np.float32) for key in keys],
                         model.config.POOL_SIZE)
        layer = layers[entry.layer_name]
        for variable in layer.weights:
            short = variable.path.split("/")[-1]
            value = values[short]
            if tuple(value.shape) != tuple(variable.shape):
                key = next((k for k in keys if k.endswith(_TORCH_SUFFIX.get(short, short))), keys[0])
                raise ValueError(f"{key} has shape {tuple(state[key].shape)}, which does not fit layer "
                                 f"{entry.layer_name} ({short} {tuple(variable.shape)})")
            updates.append((variable, value))
        loaded.append(entry.layer_name)
    extra = sorted(set(state) - used)
    if extra:
        raise ValueError(f"weights for {name} have {len(extra)} unexpected key(s), first {extra[0]!r}; "
                         f"is it a {name} state dict?")
    unfilled = sorted(set(layers) - set(loaded) - ({"mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"}
                                                   if fresh else set()))
    if unfilled:
        raise ValueError(f"layers {unfilled} of the model get no torchvision weights: build it with "
                         f"torchvision_config({name!r})")
    for variable, value in updates:
        variable.assign(value)
    return loaded


# Our variable name -> the torch tensor it comes from (for error messages).
_TORCH_SUFFIX = {"kernel": ".weight", "bias": ".bias", "gamma": ".weight", "beta": ".bias",
                 "moving_mean": ".running_mean", "moving_variance": ".running_var"}
