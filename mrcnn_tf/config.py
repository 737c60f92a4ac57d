"""Configuration: matterport-style upper-case attributes, subclassed per dataset.

    class ShapesConfig(Config):
        NAME = "shapes"
        NUM_CLASSES = 4          # background + 3 shapes
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = 128

    config = ShapesConfig(IMAGES_PER_GPU=1)   # copies, overrides, validates

Unlike matterport, every instance owns copies of its values (sequences as
tuples, LOSS_WEIGHTS as a fresh dict), and derived values (BATCH_SIZE,
IMAGE_SHAPE, IMAGE_META_SIZE) are properties, so they follow later edits.
Each attribute's description is its `#:` comment (Sphinx's convention), which
`Config.describe()` reads for the README's configuration reference.
"""

import difflib
import inspect
import json
import math
import numbers
import re
import warnings
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from mrcnn_tf.image_meta import image_meta_size
from mrcnn_tf.modeling.backbone.keras_applications import KERAS_PREFIX, application_name
from mrcnn_tf.modeling.roi_heads import MASK_HEADS, MASK_LOSSES, POOLING_METHODS
from mrcnn_tf.modeling.backbone.resnet import STRIDE_PLACES
from mrcnn_tf.modeling.detections import DETECTION_MODES
from mrcnn_tf.modeling.rpn import PROPOSAL_MODES, RPN_OBJECTNESS
from mrcnn_tf.ops.anchors import ANCHOR_MODES
from mrcnn_tf.ops.image import CHANNEL_ORDERS, PAD_VALUES, RESIZE_MODES, SIZE_MULTIPLE
from mrcnn_tf.ops.masks import PASTE_MODES
from mrcnn_tf.ops.roi_align import AGGREGATES
from mrcnn_tf.training.optimizer import WEIGHT_DECAY_MODES
from mrcnn_tf.training.schedules import SCHEDULES

BACKBONES = ("resnet50", "resnet101", "small")
HEAD_NORMS = ("batch", "group", "none")
MIXED_PRECISION_POLICIES = (None, "mixed_float16", "mixed_bfloat16")
LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")
# Read-only, so the class default cannot be edited by mistake.
DEFAULT_LOSS_WEIGHTS = MappingProxyType({name: 1.0 for name in LOSS_NAMES})


def _batch_size(c):
    return c.IMAGES_PER_GPU * c.GPU_COUNT


def _image_shape(c):
    side = c.IMAGE_MIN_DIM if c.IMAGE_RESIZE_MODE == "crop" else c.IMAGE_MAX_DIM
    if side is None or c.IMAGE_RESIZE_MODE == "shortest_edge":  # the molded size varies
        return np.array([None, None, c.IMAGE_CHANNEL_COUNT], dtype=object)
    return np.array([side, side, c.IMAGE_CHANNEL_COUNT], dtype=np.int64)


def _image_meta_size(c):
    return image_meta_size(c.NUM_CLASSES)


# Derived, read-only values: name -> (function of a config or config class, description).
DERIVED = {
    "BATCH_SIZE": (_batch_size, "Read-only: IMAGES_PER_GPU * GPU_COUNT."),
    "IMAGE_SHAPE": (_image_shape, "Read-only: molded image [h, w, channels], int array "
                                  "(sides None when they vary: 'shortest_edge', or 'none'/'pad64' "
                                  "without IMAGE_MAX_DIM)."),
    "IMAGE_META_SIZE": (_image_meta_size, "Read-only: length of the image meta vector."),
}


def _freeze(value):
    """Copy `value` so no instance shares it: sequences -> tuples, mappings -> dicts."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    return value.item() if isinstance(value, np.generic) else value


def _jsonable(name, value):
    # Values went through _freeze, so no numpy types are left.
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(name, v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(name, v) for k, v in value.items()}
    raise TypeError(f"{name} = {value!r} cannot be stored as JSON")


def _qualified_name(fn):
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{module}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _unknown(name, known):
    match = difflib.get_close_matches(str(name).upper(), known, n=1)
    return f"unknown Config attribute {name!r}" + (f"; did you mean {match[0]!r}?" if match else "")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):  # finite, so NaN cannot slip through a range check
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_int(name, v, minimum):
    if not _is_int(v) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")


def _check_real(name, v, low, high=math.inf, low_open=False):
    if not (_is_real(v) and (v > low if low_open else v >= low) and v <= high):
        bounds = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"{name} must be a number in {bounds}, got {v!r}")


def _check_seq(name, v, item, kind, length=None):
    if not (isinstance(v, tuple) and len(v) > 0 and all(item(x) and x > 0 for x in v)
            and (length is None or len(v) == length)):
        count = f"{length} " if length else "a non-empty sequence of "
        raise ValueError(f"{name} must be {count}positive {kind}, got {v!r}")


def _check_choice(name, v, choices):
    if not ((v is None or isinstance(v, str)) and v in choices):
        raise ValueError(f"{name} must be one of {choices}, got {v!r}")


_POSITIVE_INTS = (
    "GPU_COUNT", "IMAGES_PER_GPU", "STEPS_PER_EPOCH", "VALIDATION_STEPS",
    "FPN_CLASSIF_FC_LAYERS_SIZE", "TOP_DOWN_PYRAMID_SIZE", "MASK_HEAD_CHANNELS",
    "RPN_CONV_CHANNELS", "RPN_ANCHOR_STRIDE", "RPN_TRAIN_ANCHORS_PER_IMAGE", "PRE_NMS_LIMIT",
    "POST_NMS_ROIS_TRAINING", "POST_NMS_ROIS_INFERENCE", "IMAGE_CHANNEL_COUNT",
    "TRAIN_ROIS_PER_IMAGE", "IMAGE_PAD_MULTIPLE", "POOL_SIZE", "MASK_POOL_SIZE", "MAX_GT_INSTANCES",
    "DETECTION_MAX_INSTANCES", "ROI_ALIGN_SAMPLING_RATIO")
_UNIT_INTERVAL = ("RPN_NMS_THRESHOLD", "DETECTION_NMS_THRESHOLD", "DETECTION_MIN_CONFIDENCE",
                  "LEARNING_MOMENTUM", "RPN_NEGATIVE_IOU", "CROWD_IOU_THRESHOLD")
_BOOLS = ("USE_MINI_MASK", "TRAIN_BN", "FILTER_EMPTY_IMAGES", "MASK_CLASS_AGNOSTIC")


class Config:
    """Base configuration; subclass it and override the class attributes.

    `Config(**overrides)` copies every attribute onto the instance, applies
    the overrides and calls `validate()`. Upper-case names a subclass adds are
    kept as extra settings (copied and serialised, not validated).
    """

    NAME = "mrcnn"  #: Name of the configuration; used in log and checkpoint names.
    GPU_COUNT = 1  #: Number of replicas (GPUs) to train on.
    IMAGES_PER_GPU = 2  #: Images per replica per step.
    STEPS_PER_EPOCH = 1000  #: Training steps per epoch.
    VALIDATION_STEPS = 50  #: Validation steps at the end of each epoch.
    BACKBONE = "resnet101"  #: 'resnet50', 'resnet101', 'small', 'keras:<Name>' (any keras.applications model, e.g. 'keras:ConvNeXtTiny'), a keras.Model or a callable -> [C2..C5] at strides 4..32.
    BACKBONE_WEIGHTS = None  #: None, 'imagenet' or a path: Keras Applications ImageNet weights for the backbone (ResNet, or the 'keras:<Name>' model's ..._notop.h5). The ResNet files expect caffe-style BGR input (BGR minus the ImageNet mean): conv1 is adapted on load to this config's MEAN_PIXEL / PIXEL_STD / INPUT_CHANNEL_ORDER, whatever they are, so the images stay RGB.
    RESNET_STRIDE_ON = "1x1"  #: ResNet bottleneck conv with a stage's stride: '1x1' (Keras Applications, MSRA) or '3x3' (torchvision).
    BACKBONE_BN_EPSILON = 1.001e-5  #: BatchNorm epsilon of the ResNet backbone (torchvision's v1 COCO weights: 0.0, v2: 1e-5).
    FPN_NORM = "none"  #: Normalisation after every FPN convolution: 'none' or 'batch' (torchvision v2).
    BACKBONE_STRIDES = (4, 8, 16, 32, 64)  #: Stride of each pyramid level P2..P6, in pixels.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024  #: Width of the two fully connected layers of the box head.
    TOP_DOWN_PYRAMID_SIZE = 256  #: Channels of the FPN feature maps.
    MASK_HEAD_CHANNELS = 256  #: Channels of the mask head's convolutions.
    HEAD_NORM = "batch"  #: Normalisation in the heads: 'batch', 'group' or 'none'.
    NUM_CLASSES = 81  #: Number of classes, including the background (class 0).
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)  #: Anchor side in pixels, one per pyramid level.
    RPN_ANCHOR_RATIOS = (0.5, 1, 2)  #: Anchor width / height ratios at every position.
    RPN_CONV_CHANNELS = 256  #: Width of the RPN 3x3 conv (as detectron2); classic Keras weights need 512.
    RPN_CONV_LAYERS = 1  #: Shared 3x3 convolutions of the RPN head (torchvision v2: 2).
    RPN_OBJECTNESS = "softmax"  #: RPN objectness: 'softmax' (two logits per anchor) or 'sigmoid' (one, torchvision's).
    RPN_ANCHOR_MODE = "classic"  #: 'classic' (centres at cell centres) or 'torchvision' (rounded sides, centres at stride multiples).
    RPN_PROPOSAL_MODE = "global"  #: 'global' (top PRE_NMS_LIMIT and one NMS over all levels) or 'per_level' (top PRE_NMS_LIMIT and NMS per level, then the best; torchvision, detectron2).
    RPN_ANCHOR_STRIDE = 1  #: Anchors at every n-th feature map cell.
    RPN_NMS_THRESHOLD = 0.7  #: IoU threshold of the NMS over RPN proposals.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256  #: Anchors sampled per image for the RPN losses (at most half positive).
    RPN_POSITIVE_IOU = 0.7  #: An anchor with IoU >= this to a box is positive (and each box's best anchors).
    RPN_NEGATIVE_IOU = 0.3  #: An anchor below this IoU with every box (and off every crowd region) is negative.
    PRE_NMS_LIMIT = 6000  #: Top-scoring anchors kept before the proposal NMS.
    POST_NMS_ROIS_TRAINING = 2000  #: Proposals kept after NMS when training.
    POST_NMS_ROIS_INFERENCE = 1000  #: Proposals kept after NMS at inference.
    USE_MINI_MASK = True  #: Store ground-truth masks cropped to their box and resized.
    MINI_MASK_SHAPE = (56, 56)  #: (height, width) of a mini mask.
    IMAGE_RESIZE_MODE = "square"  #: 'none', 'square', 'pad64', 'crop' or 'shortest_edge' (torchvision's); how images are molded.
    IMAGE_MIN_DIM = 800  #: Short side is scaled up to at least this ('shortest_edge': to this); crop size in 'crop' mode. 'shortest_edge' may take a tuple: multi-scale training, one drawn per image (detectron2's ResizeShortestEdge), the largest at inference.
    IMAGE_MAX_DIM = 1024  #: Long side is scaled down to at most this; side in 'square' mode.
    IMAGE_SCALE_JITTER = None  #: (low, high), 'square' mode: large-scale jitter in training, each image scaled to fit IMAGE_MAX_DIM * U(low, high), cropped/padded to IMAGE_MAX_DIM (Model Garden; e.g. (0.1, 2.0)). None: off.
    IMAGE_MIN_SCALE = 0  #: Minimum scale factor applied after IMAGE_MIN_DIM (0: none; not in 'shortest_edge').
    IMAGE_PAD_MULTIPLE = 32  #: 'shortest_edge': batches are padded bottom/right to a multiple of this.
    IMAGE_CHANNEL_COUNT = 3  #: Channels of the input images.
    INPUT_CHANNEL_ORDER = "RGB"  #: 'RGB' or 'BGR': the channel order the backbone's weights expect (for checkpoints trained that way; BACKBONE_WEIGHTS adapts to either).
    MEAN_PIXEL = (123.7, 116.8, 103.9)  #: Per-channel mean subtracted from the images (in INPUT_CHANNEL_ORDER).
    PIXEL_STD = (1.0, 1.0, 1.0)  #: Per-channel divisor after the mean (in INPUT_CHANNEL_ORDER).
    IMAGE_PAD_VALUE = "black"  #: Padding of molded images: 'black', or 'mean' (0 once normalised, torchvision's).
    TRAIN_ROIS_PER_IMAGE = 200  #: RoIs sampled per image for the box and mask heads.
    ROI_POSITIVE_RATIO = 0.33  #: Fraction of the sampled RoIs that are positive.
    ROI_POSITIVE_IOU = 0.5  #: A RoI with IoU >= this to a box is positive, below it (off crowd regions) negative.
    CROWD_IOU_THRESHOLD = 0.001  #: Anchors and RoIs touching a crowd region by this IoU are never negatives.
    POOL_SIZE = 7  #: RoIAlign output side for the box head.
    MASK_POOL_SIZE = 14  #: RoIAlign output side for the mask head.
    MASK_SHAPE = (28, 28)  #: (height, width) of the predicted masks: twice MASK_POOL_SIZE.
    ROI_POOLING = "align"  #: RoI feature extractor of both heads: 'align' (RoIAlign), 'pool' (Fast R-CNN's RoIPool, quantised, max) or 'warp' (MNC's RoIWarp: quantised box, bilinear); the paper's Table 2c.
    ROI_FEATURE_LEVEL = None  #: None: each RoI pooled from its FPN level (P2..P5 by size); an int 2..5: every RoI from that one level, stride 2**level (the paper's Table 2d: one stride-32 feature).
    ROI_ALIGN_AGGREGATE = "avg"  #: 'avg' or 'max': how the sampling points of a bin combine ('align' and 'warp').
    ROI_ALIGN_ALIGNED = True  #: RoIAlign with the half-pixel offset (True) or torchvision's aligned=False (boxes 0.5 px off, at least 1 cell).
    ROI_LEVEL_MAPPER_EPS = 0.0  #: Added before the floor of the FPN level rule (torchvision: 1e-6).
    BOX_HEAD_CONV_LAYERS = 0  #: 3x3 convs of the box head before one FC layer (0: the two-FC head; torchvision v2: 4).
    HEAD_BN_EPSILON = 0.001  #: BatchNorm epsilon in the heads with HEAD_NORM 'batch' (torchvision v2: 1e-5).
    ROI_ALIGN_SAMPLING_RATIO = 2  #: Sampling points per bin along each axis ('align' and 'warp').
    MASK_LOSS = "sigmoid"  #: 'sigmoid' (per-class binary masks, the paper's) or 'softmax' (multinomial across classes at each pixel, Table 2b).
    MASK_CLASS_AGNOSTIC = False  #: One mask for all classes (the mask head's last layer has 1 map) instead of one per class.
    MASK_HEAD = "fcn"  #: Mask head: 'fcn' (4 convs, deconv) or 'mlp' (two 1024-wide FC layers, then K*m*m outputs; Table 2e).
    MAX_GT_INSTANCES = 100  #: Ground-truth instances kept per image.
    RPN_BBOX_STD_DEV = (0.1, 0.1, 0.2, 0.2)  #: Divisors of the RPN box deltas (dy, dx, dh, dw).
    BBOX_STD_DEV = (0.1, 0.1, 0.2, 0.2)  #: Divisors of the head's box deltas (dy, dx, dh, dw).
    DETECTION_MAX_INSTANCES = 100  #: Detections returned per image.
    DETECTION_MIN_CONFIDENCE = 0.7  #: Detections scoring below this are dropped.
    DETECTION_NMS_THRESHOLD = 0.3  #: IoU threshold of the per-class detection NMS.
    DETECTION_MODE = "classic"  #: Candidate rule: 'classic' (score >= DETECTION_MIN_CONFIDENCE, area > 0) or 'torchvision' (score >, sides >= 0.01 px).
    MASK_PASTE_MODE = "box"  #: How detect() pastes the box-relative masks: 'box' (the mask spans its box exactly, value >= 0.5) or 'torchvision' (paste_masks_in_image: one zero cell of padding, the box grown by (m + 2) / m to whole pixels, value > 0.5).
    DETECTION_CROSS_CLASS_NMS_THRESHOLD = None  #: None, or drop a detection whose IoU with a higher-scoring one of another class exceeds this (after the per-class NMS).
    DETECTION_CROSS_CLASS_NMS_ON = "box"  #: What DETECTION_CROSS_CLASS_NMS_THRESHOLD compares: 'box' IoU or 'mask' IoU.
    LEARNING_RATE = 0.001  #: SGD learning rate.
    LEARNING_MOMENTUM = 0.9  #: SGD momentum.
    WEIGHT_DECAY = 0.0001  #: Weight decay factor of the kernels (biases and norm parameters are not decayed); see WEIGHT_DECAY_MODE.
    WEIGHT_DECAY_MODE = "decoupled"  #: 'decoupled' (Keras SGD: w -= lr*wd*w beside the momentum) or 'l2' (PyTorch SGD: wd*w added to the gradient, through the momentum; what detectron2's 1e-4 means).
    LR_SCHEDULE = "step"  #: 'step' (detectron2 WarmupMultiStepLR: warmup, then x LR_GAMMA at each of LR_STEPS) or 'cosine' (warmup, then cosine to 0 over the train() call).
    WARMUP_ITERS = 0  #: Iterations of linear learning-rate warmup at the start of a train() call (0: none).
    WARMUP_FACTOR = 0.001  #: Learning-rate multiplier at iteration 0 of the warmup.
    LR_STEPS = ()  #: 'step' schedule: iterations (of the train() call) at which the rate is multiplied by LR_GAMMA.
    LR_GAMMA = 0.1  #: 'step' schedule: the factor applied at each of LR_STEPS.
    FREEZE_AT = 0  #: detectron2's FREEZE_AT: 0 nothing, 1 the stem, 2 stem + res2, ... 5 stem + res2..res5 stay frozen whatever `layers` trains.
    LOSS_WEIGHTS = DEFAULT_LOSS_WEIGHTS  #: Weight of each of the five losses; missing: 1.0.
    TRAIN_BN = False  #: Train the backbone's batch-normalisation layers (False: frozen).
    GRADIENT_CLIP_NORM = 5.0  #: Clip gradients to this global norm; None: no clipping.
    FILTER_EMPTY_IMAGES = False  #: Skip training images without instances.
    MIXED_PRECISION = None  #: Keras dtype policy: None, 'mixed_float16' or 'mixed_bfloat16'.

    BATCH_SIZE = property(_batch_size, doc=DERIVED["BATCH_SIZE"][1])
    IMAGE_SHAPE = property(_image_shape, doc=DERIVED["IMAGE_SHAPE"][1])
    IMAGE_META_SIZE = property(_image_meta_size, doc=DERIVED["IMAGE_META_SIZE"][1])

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            if name in DERIVED and not isinstance(value, property):
                raise TypeError(f"{cls.__name__}.{name} is derived ({DERIVED[name][1]}); "
                                "set the attributes it is computed from instead")
            if not name.isupper() or name in ATTRIBUTES or name in DERIVED:
                continue
            match = difflib.get_close_matches(name, ATTRIBUTES, n=1, cutoff=0.85)
            if match:
                # A typo would otherwise silently become an unused extra setting.
                warnings.warn(f"{cls.__name__}.{name} is not a Config attribute (did you mean "
                              f"{match[0]!r}?); it is kept as an extra setting", stacklevel=2)

    def __init__(self, **overrides):
        settable = self._settable_names()
        for name in overrides:
            if name in DERIVED:
                raise ValueError(f"{name} is derived ({DERIVED[name][1]}) and cannot be set")
            if name not in settable:
                raise ValueError(_unknown(name, settable))
        for name in settable:  # getattr on the class: a function BACKBONE stays unbound
            setattr(self, name, overrides.get(name, getattr(type(self), name)))
        self.validate()

    @classmethod
    def _settable_names(cls):
        extras = sorted(n for n in dir(cls) if n.isupper() and not n.startswith("_")
                        and n not in ATTRIBUTES and n not in DERIVED)
        return ATTRIBUTES + tuple(extras)

    def __setattr__(self, name, value):
        # Later edits get the same copying, and a typo fails instead of being ignored.
        if name in DERIVED:
            raise AttributeError(f"{name} is derived ({DERIVED[name][1]}) and read-only")
        if name.isupper() and not name.startswith("_"):
            settable = self._settable_names()
            if name not in settable:
                raise AttributeError(_unknown(name, settable) + "; declare new settings as "
                                     "class attributes of a Config subclass")
            value = _freeze(value)
            if name == "LOSS_WEIGHTS" and isinstance(value, dict):
                value = {**DEFAULT_LOSS_WEIGHTS, **value}
        object.__setattr__(self, name, value)

    def validate(self):
        """Check every attribute; raise ValueError naming the first bad one and its value.

        Called by `__init__`; call it again after editing attributes.
        """
        if not isinstance(self.NAME, str) or not self.NAME:
            raise ValueError(f"NAME must be a non-empty string, got {self.NAME!r}")
        for name in _POSITIVE_INTS:
            _check_int(name, getattr(self, name), 1)
        _check_int("NUM_CLASSES", self.NUM_CLASSES, 2)  # background + at least one class
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in _UNIT_INTERVAL:
            _check_real(name, getattr(self, name), 0.0, 1.0)
        _check_real("ROI_POSITIVE_RATIO", self.ROI_POSITIVE_RATIO, 0.0, 1.0, low_open=True)
        if self.DETECTION_CROSS_CLASS_NMS_THRESHOLD is not None:
            _check_real("DETECTION_CROSS_CLASS_NMS_THRESHOLD",
                        self.DETECTION_CROSS_CLASS_NMS_THRESHOLD, 0.0, 1.0)
        _check_choice("DETECTION_CROSS_CLASS_NMS_ON", self.DETECTION_CROSS_CLASS_NMS_ON, ("box", "mask"))
        for name in ("RPN_POSITIVE_IOU", "ROI_POSITIVE_IOU"):  # IoU 0 would match even no box
            _check_real(name, getattr(self, name), 0.0, 1.0, low_open=True)
        if self.RPN_NEGATIVE_IOU > self.RPN_POSITIVE_IOU:
            raise ValueError(f"RPN_NEGATIVE_IOU ({self.RPN_NEGATIVE_IOU!r}) must not exceed "
                             f"RPN_POSITIVE_IOU ({self.RPN_POSITIVE_IOU!r})")
        _check_real("LEARNING_RATE", self.LEARNING_RATE, 0.0, low_open=True)
        _check_real("WEIGHT_DECAY", self.WEIGHT_DECAY, 0.0)
        self._validate_schedule()
        if self.GRADIENT_CLIP_NORM is not None:
            _check_real("GRADIENT_CLIP_NORM", self.GRADIENT_CLIP_NORM, 0.0, low_open=True)
        if self.IMAGE_MIN_SCALE is not None:
            _check_real("IMAGE_MIN_SCALE", self.IMAGE_MIN_SCALE, 0.0)
        _check_choice("HEAD_NORM", self.HEAD_NORM, HEAD_NORMS)
        self._validate_torchvision_options()
        _check_choice("ROI_POOLING", self.ROI_POOLING, POOLING_METHODS)
        _check_choice("ROI_ALIGN_AGGREGATE", self.ROI_ALIGN_AGGREGATE, AGGREGATES)
        if self.ROI_FEATURE_LEVEL is not None and not (
                _is_int(self.ROI_FEATURE_LEVEL) and 2 <= self.ROI_FEATURE_LEVEL <= 5):
            # The heads pool from P2..P5.
            raise ValueError(f"ROI_FEATURE_LEVEL must be None or one of the heads' pyramid levels "
                             f"2, 3, 4, 5, got {self.ROI_FEATURE_LEVEL!r}")
        _check_choice("MASK_LOSS", self.MASK_LOSS, MASK_LOSSES)
        _check_choice("MASK_HEAD", self.MASK_HEAD, MASK_HEADS)
        if self.MASK_LOSS == "softmax" and self.MASK_CLASS_AGNOSTIC:
            raise ValueError("MASK_LOSS 'softmax' needs a map per class: it cannot be combined "
                             "with MASK_CLASS_AGNOSTIC=True")
        _check_choice("INPUT_CHANNEL_ORDER", self.INPUT_CHANNEL_ORDER, CHANNEL_ORDERS)
        _check_choice("MIXED_PRECISION", self.MIXED_PRECISION, MIXED_PRECISION_POLICIES)
        backbone = self.BACKBONE
        if isinstance(backbone, str) and backbone.startswith(KERAS_PREFIX):
            application_name(backbone)  # a ValueError listing the supported names
        elif not callable(backbone) and not (isinstance(backbone, str) and backbone in BACKBONES):
            hint = ("; a callable backbone is saved by name only, so pass it again, e.g. "
                    "Config.from_dict({**d, 'BACKBONE': fn})"
                    if isinstance(backbone, str) and "." in backbone else "")
            raise ValueError(f"BACKBONE must be one of {BACKBONES} or a callable, "
                             f"got {backbone!r}{hint}")
        weights = self.BACKBONE_WEIGHTS
        if weights is not None and not (isinstance(weights, str) and weights):
            raise ValueError(f"BACKBONE_WEIGHTS must be None, 'imagenet' or a file path, got {weights!r}")
        if weights is not None and backbone not in ("resnet50", "resnet101") and not (
                isinstance(backbone, str) and backbone.startswith(KERAS_PREFIX)):
            raise ValueError(f"BACKBONE_WEIGHTS needs BACKBONE 'resnet50', 'resnet101' or "
                             f"'keras:<Name>', got {backbone!r}")
        self._validate_image_dims()
        self._validate_sequences()
        self._validate_loss_weights()

    def _validate_torchvision_options(self):
        for name, choices in (("RESNET_STRIDE_ON", STRIDE_PLACES), ("FPN_NORM", ("none", "batch")),
                              ("RPN_OBJECTNESS", RPN_OBJECTNESS), ("RPN_ANCHOR_MODE", ANCHOR_MODES),
                              ("RPN_PROPOSAL_MODE", PROPOSAL_MODES), ("IMAGE_PAD_VALUE", PAD_VALUES),
                              ("DETECTION_MODE", DETECTION_MODES), ("MASK_PASTE_MODE", PASTE_MODES)):
            _check_choice(name, getattr(self, name), choices)
        _check_int("RPN_CONV_LAYERS", self.RPN_CONV_LAYERS, 1)
        _check_int("BOX_HEAD_CONV_LAYERS", self.BOX_HEAD_CONV_LAYERS, 0)
        for name in ("BACKBONE_BN_EPSILON", "HEAD_BN_EPSILON", "ROI_LEVEL_MAPPER_EPS"):
            _check_real(name, getattr(self, name), 0.0, 1.0)
        if not isinstance(self.ROI_ALIGN_ALIGNED, bool):
            raise ValueError(f"ROI_ALIGN_ALIGNED must be True or False, got {self.ROI_ALIGN_ALIGNED!r}")
        if self.RPN_ANCHOR_MODE == "torchvision" and self.RPN_ANCHOR_STRIDE != 1:
            raise ValueError(f"RPN_ANCHOR_MODE 'torchvision' needs RPN_ANCHOR_STRIDE 1, "
                             f"got {self.RPN_ANCHOR_STRIDE!r}")

    def _validate_schedule(self):
        _check_choice("WEIGHT_DECAY_MODE", self.WEIGHT_DECAY_MODE, WEIGHT_DECAY_MODES)
        _check_choice("LR_SCHEDULE", self.LR_SCHEDULE, SCHEDULES)
        _check_int("WARMUP_ITERS", self.WARMUP_ITERS, 0)
        _check_real("WARMUP_FACTOR", self.WARMUP_FACTOR, 0.0, 1.0)
        _check_real("LR_GAMMA", self.LR_GAMMA, 0.0, 1.0, low_open=True)
        steps = self.LR_STEPS
        if not (isinstance(steps, tuple) and all(_is_int(s) and s > 0 for s in steps)
                and list(steps) == sorted(set(steps))):
            raise ValueError(f"LR_STEPS must be increasing positive iteration numbers, got {steps!r}")
        _check_int("FREEZE_AT", self.FREEZE_AT, 0)
        if self.FREEZE_AT > 5:
            raise ValueError(f"FREEZE_AT must be 0..5 (stem, res2..res5), got {self.FREEZE_AT!r}")

    def _validate_image_dims(self):
        mode, min_dim, max_dim = self.IMAGE_RESIZE_MODE, self.IMAGE_MIN_DIM, self.IMAGE_MAX_DIM
        _check_choice("IMAGE_RESIZE_MODE", mode, RESIZE_MODES)
        if isinstance(min_dim, tuple):  # multi-scale: checked as its largest below
            if mode != "shortest_edge":
                raise ValueError(f"IMAGE_MIN_DIM may be a tuple (multi-scale) only with IMAGE_RESIZE_MODE "
                                 f"'shortest_edge', got {min_dim!r} with {mode!r}")
            _check_seq("IMAGE_MIN_DIM", min_dim, _is_int, "ints")
            min_dim = max(min_dim)
        jitter = self.IMAGE_SCALE_JITTER
        if jitter is not None:
            _check_seq("IMAGE_SCALE_JITTER", jitter, _is_real, "numbers", length=2)
            if jitter[0] > jitter[1] or mode != "square":
                raise ValueError(f"IMAGE_SCALE_JITTER must be (low, high) with low <= high, in "
                                 f"IMAGE_RESIZE_MODE 'square'; got {jitter!r} with {mode!r}")
        for name, value in (("IMAGE_MIN_DIM", min_dim), ("IMAGE_MAX_DIM", max_dim)):
            if value is not None:
                _check_int(name, value, 1)
        # 'square' pads to IMAGE_MAX_DIM and 'crop' cuts IMAGE_MIN_DIM: fixed sides.
        for name, value, fixed_mode in (("IMAGE_MAX_DIM", max_dim, "square"),
                                        ("IMAGE_MIN_DIM", min_dim, "crop")):
            if mode == fixed_mode and (value is None or value % SIZE_MULTIPLE):
                raise ValueError(f"{name} must be a multiple of {SIZE_MULTIPLE} with "
                                 f"IMAGE_RESIZE_MODE={mode!r}, got {value!r}")
        if mode == "shortest_edge" and (min_dim is None or max_dim is None):
            raise ValueError(f"IMAGE_RESIZE_MODE 'shortest_edge' needs IMAGE_MIN_DIM and IMAGE_MAX_DIM, "
                             f"got IMAGE_MIN_DIM={min_dim!r} and IMAGE_MAX_DIM={max_dim!r}")
        if min_dim is not None and max_dim is not None and min_dim > max_dim:
            raise ValueError(f"IMAGE_MIN_DIM must be <= IMAGE_MAX_DIM, got IMAGE_MIN_DIM="
                             f"{min_dim!r} and IMAGE_MAX_DIM={max_dim!r}")

    def _validate_sequences(self):
        strides = self.BACKBONE_STRIDES
        _check_seq("BACKBONE_STRIDES", strides, _is_int, "ints")
        if any(a >= b for a, b in zip(strides, strides[1:])):
            raise ValueError(f"BACKBONE_STRIDES must be increasing, got {strides!r}")
        _check_seq("RPN_ANCHOR_SCALES", self.RPN_ANCHOR_SCALES, _is_real, "numbers")
        if len(self.RPN_ANCHOR_SCALES) != len(strides):
            raise ValueError(f"RPN_ANCHOR_SCALES needs one scale per level of BACKBONE_STRIDES "
                             f"{strides!r}, got {self.RPN_ANCHOR_SCALES!r}")
        _check_seq("RPN_ANCHOR_RATIOS", self.RPN_ANCHOR_RATIOS, _is_real, "numbers")
        _check_seq("MINI_MASK_SHAPE", self.MINI_MASK_SHAPE, _is_int, "ints", length=2)
        _check_seq("MASK_SHAPE", self.MASK_SHAPE, _is_int, "ints", length=2)
        # The mask head upsamples its pooled features once, by 2.
        if self.MASK_SHAPE != (2 * self.MASK_POOL_SIZE,) * 2:
            raise ValueError(f"MASK_SHAPE must be 2 * MASK_POOL_SIZE ({self.MASK_POOL_SIZE!r}) "
                             f"in both dims, got {self.MASK_SHAPE!r}")
        for name in ("RPN_BBOX_STD_DEV", "BBOX_STD_DEV"):
            _check_seq(name, getattr(self, name), _is_real, "numbers", length=4)
        for name in ("MEAN_PIXEL", "PIXEL_STD"):
            value = getattr(self, name)
            if (not isinstance(value, tuple) or len(value) != self.IMAGE_CHANNEL_COUNT
                    or not all(_is_real(v) for v in value)):
                raise ValueError(f"{name} must be {self.IMAGE_CHANNEL_COUNT} numbers "
                                 f"(IMAGE_CHANNEL_COUNT), got {value!r}")
        if min(self.PIXEL_STD) <= 0:
            raise ValueError(f"PIXEL_STD must be positive, got {self.PIXEL_STD!r}")

    def _validate_loss_weights(self):
        weights = self.LOSS_WEIGHTS
        if not isinstance(weights, Mapping):
            raise ValueError(f"LOSS_WEIGHTS must be a dict, got {weights!r}")
        for key in weights:
            if key not in LOSS_NAMES:
                raise ValueError(f"LOSS_WEIGHTS has unknown key {key!r}; known: {LOSS_NAMES}")
        for key in LOSS_NAMES:
            if key not in weights:
                raise ValueError(f"LOSS_WEIGHTS is missing key {key!r}")
            _check_real(f"LOSS_WEIGHTS[{key!r}]", weights[key], 0.0)

    @classmethod
    def describe(cls):
        """Rows `(name, default, description)`: the settable attributes, then the derived.

        Defaults are this class's values (derived rows: their value under those
        defaults); descriptions are the `#:` comments in `Config`'s source.
        Extra attributes added by subclasses are not listed.
        """
        text = dict(re.findall(r"^    ([A-Z][A-Z0-9_]*) = .*  #: (.+)$",
                               inspect.getsource(Config), flags=re.MULTILINE))
        rows = [(name, _freeze(getattr(cls, name)), text[name]) for name in ATTRIBUTES]
        return rows + [(name, fn(cls), doc) for name, (fn, doc) in DERIVED.items()]

    def display(self):
        """Print every attribute, derived ones included, sorted by name (as matterport)."""
        print("\nConfigurations:")
        for name in sorted(self._settable_names() + tuple(DERIVED)):
            value = getattr(self, name)
            if name == "BACKBONE" and callable(value):
                value = _qualified_name(value)
            print(f"{name:30} {value}")
        print()

    def __repr__(self):
        backbone = self.BACKBONE
        backbone = _qualified_name(backbone) if callable(backbone) else backbone
        return (f"<{type(self).__name__} NAME={self.NAME!r} NUM_CLASSES={self.NUM_CLASSES!r} "
                f"BACKBONE={backbone!r} IMAGE_SHAPE={self.IMAGE_SHAPE.tolist()}>")

    def to_dict(self):
        """JSON-serialisable dict of the settable attributes (tuples as lists).

        A callable BACKBONE is stored as its qualified name, which `from_dict`
        refuses: pass the callable again when loading.
        """
        out = {}
        for name in self._settable_names():
            value = getattr(self, name)
            out[name] = (_qualified_name(value) if name == "BACKBONE" and callable(value)
                         else _jsonable(name, value))
        return out

    @classmethod
    def from_dict(cls, d):
        """Build and validate an instance from a `to_dict()` dict.

        Unknown keys raise ValueError naming the key; missing keys keep the
        class defaults.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"from_dict expects a dict, got {type(d).__name__}")
        return cls(**d)

    def to_json(self, path):
        """Write `to_dict()` to `path` as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def from_json(cls, path):
        """Read a file written by `to_json` and build a validated instance."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


# Settable attribute names in definition order (display, to_dict and describe use it).
ATTRIBUTES = tuple(name for name, value in vars(Config).items()
                   if name.isupper() and not isinstance(value, property))
