"""Tests of mrcnn_tf.config.Config: defaults, derived values, validation, serialisation."""

import json
import math
import re

import numpy as np
import pytest

from mrcnn_tf.config import ATTRIBUTES, DERIVED, LOSS_NAMES, Config

EXPECTED_DEFAULTS = {
    "NAME": "mrcnn", "GPU_COUNT": 1, "IMAGES_PER_GPU": 2, "STEPS_PER_EPOCH": 1000,
    "VALIDATION_STEPS": 50, "BACKBONE": "resnet101", "BACKBONE_WEIGHTS": None, "RESNET_STRIDE_ON": "1x1",
    "BACKBONE_BN_EPSILON": 1.001e-05, "FPN_NORM": "none", "BACKBONE_STRIDES": (4, 8, 16, 32, 64),
    "FPN_CLASSIF_FC_LAYERS_SIZE": 1024, "TOP_DOWN_PYRAMID_SIZE": 256, "MASK_HEAD_CHANNELS": 256,
    "HEAD_NORM": "batch", "NUM_CLASSES": 81, "RPN_ANCHOR_SCALES": (32, 64, 128, 256, 512),
    "RPN_ANCHOR_RATIOS": (0.5, 1, 2), "RPN_CONV_CHANNELS": 256, "RPN_CONV_LAYERS": 1,
    "RPN_OBJECTNESS": "softmax", "RPN_ANCHOR_MODE": "classic", "RPN_PROPOSAL_MODE": "global",
    "RPN_ANCHOR_STRIDE": 1, "RPN_NMS_THRESHOLD": 0.7, "RPN_TRAIN_ANCHORS_PER_IMAGE": 256,
    "RPN_POSITIVE_IOU": 0.7, "RPN_NEGATIVE_IOU": 0.3, "PRE_NMS_LIMIT": 6000,
    "POST_NMS_ROIS_TRAINING": 2000, "POST_NMS_ROIS_INFERENCE": 1000, "USE_MINI_MASK": True,
    "MINI_MASK_SHAPE": (56, 56), "IMAGE_RESIZE_MODE": "square", "IMAGE_MIN_DIM": 800,
    "IMAGE_MAX_DIM": 1024, "IMAGE_SCALE_JITTER": None, "IMAGE_MIN_SCALE": 0, "IMAGE_PAD_MULTIPLE": 32,
    "IMAGE_CHANNEL_COUNT": 3, "INPUT_CHANNEL_ORDER": "RGB", "MEAN_PIXEL": (123.7, 116.8, 103.9),
    "PIXEL_STD": (1.0, 1.0, 1.0), "IMAGE_PAD_VALUE": "black", "TRAIN_ROIS_PER_IMAGE": 200,
    "ROI_POSITIVE_RATIO": 0.33, "ROI_POSITIVE_IOU": 0.5, "CROWD_IOU_THRESHOLD": 0.001, "POOL_SIZE": 7,
    "MASK_POOL_SIZE": 14, "MASK_SHAPE": (28, 28), "ROI_POOLING": "align", "ROI_FEATURE_LEVEL": None,
    "ROI_ALIGN_AGGREGATE": "avg",
    "ROI_ALIGN_ALIGNED": True, "ROI_LEVEL_MAPPER_EPS": 0.0, "BOX_HEAD_CONV_LAYERS": 0,
    "HEAD_BN_EPSILON": 0.001, "ROI_ALIGN_SAMPLING_RATIO": 2, "MASK_LOSS": "sigmoid",
    "MASK_CLASS_AGNOSTIC": False, "MASK_HEAD": "fcn", "MAX_GT_INSTANCES": 100,
    "RPN_BBOX_STD_DEV": (0.1, 0.1, 0.2, 0.2), "BBOX_STD_DEV": (0.1, 0.1, 0.2, 0.2),
    "DETECTION_MAX_INSTANCES": 100, "DETECTION_MIN_CONFIDENCE": 0.7, "DETECTION_NMS_THRESHOLD": 0.3,
    "DETECTION_MODE": "classic", "MASK_PASTE_MODE": "box", "DETECTION_CROSS_CLASS_NMS_THRESHOLD": None,
    "DETECTION_CROSS_CLASS_NMS_ON": "box", "LEARNING_RATE": 0.001, "LEARNING_MOMENTUM": 0.9,
    "WEIGHT_DECAY": 0.0001, "WEIGHT_DECAY_MODE": "decoupled", "LR_SCHEDULE": "step", "WARMUP_ITERS": 0,
    "WARMUP_FACTOR": 0.001, "LR_STEPS": (), "LR_GAMMA": 0.1, "FREEZE_AT": 0,
    "LOSS_WEIGHTS": {"rpn_class_loss": 1.0, "rpn_bbox_loss": 1.0, "mrcnn_class_loss": 1.0,
                     "mrcnn_bbox_loss": 1.0, "mrcnn_mask_loss": 1.0},
    "TRAIN_BN": False, "GRADIENT_CLIP_NORM": 5.0, "FILTER_EMPTY_IMAGES": False, "MIXED_PRECISION": None,
}


class ShapesConfig(Config):
    NAME = "shapes"
    NUM_CLASSES = 4
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128


def tiny_backbone(image):
    """Stand-in callable backbone; never called by Config."""
    return [image] * 4


# ---------------------------------------------------------------- defaults

def test_defaults_are_exactly_the_documented_ones():
    config = Config()
    assert ATTRIBUTES == tuple(EXPECTED_DEFAULTS)
    for name, expected in EXPECTED_DEFAULTS.items():
        assert getattr(config, name) == expected, name
        assert type(getattr(config, name)) is type(expected), name


def test_derived_defaults():
    config = Config()
    assert config.BATCH_SIZE == 2
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [1024, 1024, 3])
    assert config.IMAGE_SHAPE.dtype.kind == "i"
    assert config.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 81


def test_derived_values_follow_edits():
    config = Config()
    config.IMAGES_PER_GPU, config.GPU_COUNT = 3, 2
    config.NUM_CLASSES = 4
    config.IMAGE_MAX_DIM = 512
    assert config.BATCH_SIZE == 6
    assert config.IMAGE_META_SIZE == 16
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [512, 512, 3])
    config.IMAGE_RESIZE_MODE, config.IMAGE_MIN_DIM = "crop", 256
    config.IMAGE_CHANNEL_COUNT, config.MEAN_PIXEL, config.PIXEL_STD = 1, (100.0,), (1.0,)
    config.validate()
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [256, 256, 1])


def test_image_shape_without_fixed_side():
    config = Config(IMAGE_RESIZE_MODE="pad64", IMAGE_MAX_DIM=None)
    assert config.IMAGE_SHAPE.tolist() == [None, None, 3]


def test_derived_values_are_read_only():
    config = Config()
    with pytest.raises(AttributeError, match="BATCH_SIZE is derived.*read-only"):
        config.BATCH_SIZE = 4
    with pytest.raises(ValueError, match="IMAGE_SHAPE"):
        Config(IMAGE_SHAPE=(64, 64, 3))
    with pytest.raises(TypeError, match="IMAGE_META_SIZE"):
        type("Bad", (Config,), {"IMAGE_META_SIZE": 20})


# ------------------------------------------------- subclassing, overrides, isolation

def test_subclass_values_and_inherited_defaults():
    config = ShapesConfig()
    assert (config.NAME, config.NUM_CLASSES) == ("shapes", 4)
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [128, 128, 3])
    assert config.IMAGE_META_SIZE == 16
    assert config.POOL_SIZE == 7 and config.BACKBONE == "resnet101"
    assert Config().NUM_CLASSES == 81

    class Deeper(ShapesConfig):
        IMAGES_PER_GPU = 8

    assert (Deeper().BATCH_SIZE, Deeper().NAME) == (8, "shapes")


def test_overrides_apply_to_the_instance_only():
    config = ShapesConfig(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.5)
    assert (config.IMAGES_PER_GPU, config.BATCH_SIZE) == (1, 1)
    assert config.DETECTION_MIN_CONFIDENCE == 0.5
    assert ShapesConfig.IMAGES_PER_GPU == 2 and ShapesConfig().IMAGES_PER_GPU == 2


@pytest.mark.parametrize("name, suggestion", [("IMAGES_PER_GUP", "IMAGES_PER_GPU"),
                                              ("images_per_gpu", "IMAGES_PER_GPU"),
                                              ("NUM_CLASS", "NUM_CLASSES")])
def test_unknown_override_names_the_attribute_and_suggests(name, suggestion):
    with pytest.raises(ValueError, match=f"'{name}'.*did you mean '{suggestion}'"):
        Config(**{name: 1})


def test_invalid_override_is_rejected():
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        ShapesConfig(NUM_CLASSES=1)


def test_loss_weights_are_not_shared():
    a, b = Config(), Config()
    a.LOSS_WEIGHTS["rpn_class_loss"] = 5.0
    assert b.LOSS_WEIGHTS["rpn_class_loss"] == 1.0
    assert Config.LOSS_WEIGHTS["rpn_class_loss"] == 1.0
    assert Config().LOSS_WEIGHTS["rpn_class_loss"] == 1.0
    with pytest.raises(TypeError):
        Config.LOSS_WEIGHTS["rpn_class_loss"] = 2.0  # the class default is read-only


def test_mutable_subclass_attributes_are_copied_to_tuples():
    class ListConfig(Config):
        MEAN_PIXEL = [1.0, 2.0, 3.0]
        LOSS_WEIGHTS = {"mrcnn_mask_loss": 2.0}

    config = ListConfig()
    ListConfig.MEAN_PIXEL.append(4.0)
    ListConfig.LOSS_WEIGHTS["mrcnn_mask_loss"] = 9.0
    assert config.MEAN_PIXEL == (1.0, 2.0, 3.0)
    assert config.LOSS_WEIGHTS == {**EXPECTED_DEFAULTS["LOSS_WEIGHTS"], "mrcnn_mask_loss": 2.0}


def test_loss_weights_are_filled_and_ordered():
    config = Config(LOSS_WEIGHTS={"mrcnn_mask_loss": 0.5})
    assert list(config.LOSS_WEIGHTS) == list(LOSS_NAMES)
    assert config.LOSS_WEIGHTS["mrcnn_mask_loss"] == 0.5
    assert config.LOSS_WEIGHTS["rpn_class_loss"] == 1.0


def test_numpy_values_are_stored_as_python_values():
    config = Config(MEAN_PIXEL=np.array([1.5, 2.5, 3.5]), IMAGE_MAX_DIM=np.int64(1088),
                    RPN_ANCHOR_RATIOS=[1, 2])
    assert config.MEAN_PIXEL == (1.5, 2.5, 3.5) and type(config.MEAN_PIXEL[0]) is float
    assert type(config.IMAGE_MAX_DIM) is int
    assert config.RPN_ANCHOR_RATIOS == (1, 2)


def test_edits_after_construction_are_copied_and_checked():
    config = Config()
    strides = [4, 8, 16, 32, 128]
    config.BACKBONE_STRIDES = strides
    strides.append(256)
    assert config.BACKBONE_STRIDES == (4, 8, 16, 32, 128)
    with pytest.raises(AttributeError, match="did you mean 'IMAGE_MAX_DIM'"):
        config.IMAGE_MAX_DIMS = 512
    config.NUM_CLASSES = 1
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        config.validate()


def test_subclass_extras_are_kept_and_typos_warned():
    class Extra(Config):
        SHAPE_NAMES = ["square", "circle"]

    config = Extra(SHAPE_NAMES=("triangle",))
    assert config.SHAPE_NAMES == ("triangle",)
    assert Extra().SHAPE_NAMES == ("square", "circle")
    assert Extra.from_dict(config.to_dict()).SHAPE_NAMES == ("triangle",)
    with pytest.raises(ValueError, match="SHAPE_NAMES"):
        Config.from_dict(config.to_dict())
    with pytest.warns(UserWarning, match="IMAGE_PER_GPU.*IMAGES_PER_GPU"):
        type("Typo", (Config,), {"IMAGE_PER_GPU": 1})


# ------------------------------------------------------------- validation

INVALID = [
    ("NUM_CLASSES", 1), ("NUM_CLASSES", 2.5), ("NUM_CLASSES", "3"), ("NUM_CLASSES", True),
    ("NAME", ""), ("NAME", None),
    ("GPU_COUNT", 0), ("GPU_COUNT", True), ("IMAGES_PER_GPU", 0), ("IMAGES_PER_GPU", -1),
    ("STEPS_PER_EPOCH", "10"),
    ("IMAGE_MAX_DIM", 1000), ("IMAGE_MAX_DIM", None), ("IMAGE_MAX_DIM", -64),
    ("IMAGE_MIN_DIM", 0), ("IMAGE_MIN_DIM", 1088), ("IMAGE_MIN_DIM", 1.5),
    ("IMAGE_RESIZE_MODE", "pad32"), ("IMAGE_RESIZE_MODE", None),
    ("RPN_ANCHOR_RATIOS", ()), ("RPN_ANCHOR_RATIOS", (0.5, 0, 2)), ("RPN_ANCHOR_RATIOS", 1),
    ("RPN_ANCHOR_SCALES", (32, 64, 0, 256, 512)), ("RPN_ANCHOR_SCALES", (32, 64, 128, 256)),
    ("BACKBONE_STRIDES", (4, 8, 8, 32, 64)), ("BACKBONE_STRIDES", (64, 32, 16, 8, 4)),
    ("MASK_SHAPE", (28, 14)), ("MASK_SHAPE", (56, 56)), ("MASK_SHAPE", 28),
    ("POOL_SIZE", 0), ("MASK_POOL_SIZE", 0),
    ("ROI_POSITIVE_RATIO", 0), ("ROI_POSITIVE_RATIO", 1.5),
    ("RPN_NMS_THRESHOLD", 1.1), ("RPN_NMS_THRESHOLD", -0.1), ("DETECTION_NMS_THRESHOLD", 2),
    ("DETECTION_MIN_CONFIDENCE", -0.5), ("DETECTION_MIN_CONFIDENCE", math.nan),
    ("RPN_BBOX_STD_DEV", (0.1, 0.1, 0.2)), ("RPN_BBOX_STD_DEV", (0.1, 0.1, 0.2, 0)),
    ("BBOX_STD_DEV", (0.1, 0.1, 0.2, -0.2)), ("BBOX_STD_DEV", ("a", 0.1, 0.2, 0.2)),
    ("MEAN_PIXEL", (1.0, 2.0)), ("MEAN_PIXEL", (1.0, 2.0, "3")),
    ("LOSS_WEIGHTS", [1.0] * 5),
    ("TRAIN_ROIS_PER_IMAGE", 0), ("POST_NMS_ROIS_TRAINING", 0), ("POST_NMS_ROIS_INFERENCE", 0),
    ("PRE_NMS_LIMIT", 0), ("DETECTION_MAX_INSTANCES", 0), ("MAX_GT_INSTANCES", 0),
    ("RPN_TRAIN_ANCHORS_PER_IMAGE", 0), ("RPN_ANCHOR_STRIDE", 0), ("RPN_CONV_CHANNELS", 0),
    ("LEARNING_RATE", 0), ("LEARNING_RATE", -0.1), ("LEARNING_RATE", math.inf),
    ("LEARNING_RATE", "0.01"), ("LEARNING_MOMENTUM", 1.5), ("WEIGHT_DECAY", -1e-4),
    ("GRADIENT_CLIP_NORM", 0), ("GRADIENT_CLIP_NORM", -1.0), ("IMAGE_MIN_SCALE", -1),
    ("BACKBONE", "resnet152"), ("BACKBONE", 3), ("BACKBONE_WEIGHTS", 7), ("BACKBONE_WEIGHTS", ""),
    ("HEAD_NORM", "layer"), ("MIXED_PRECISION", "float16"),
    ("MINI_MASK_SHAPE", (56,)), ("MINI_MASK_SHAPE", (0, 56)), ("MINI_MASK_SHAPE", (56.0, 56)),
    ("USE_MINI_MASK", 1), ("TRAIN_BN", None), ("FILTER_EMPTY_IMAGES", "no"),
]


@pytest.mark.parametrize("name, value", INVALID, ids=[f"{n}={v!r}" for n, v in INVALID])
def test_invalid_value_names_the_attribute_and_value(name, value):
    with pytest.raises(ValueError) as info:
        Config(**{name: value})
    message = str(info.value)
    assert name in message
    assert repr(tuple(value) if isinstance(value, list) else value) in message  # lists -> tuples


@pytest.mark.parametrize("weights, quoted", [({"rpn_class_loss": -1.0}, "-1.0"),
                                             ({"rpn_bbox_loss": "1"}, "'1'"),
                                             ({"mask_loss": 1.0}, "'mask_loss'")])
def test_invalid_loss_weights(weights, quoted):
    with pytest.raises(ValueError, match=f"LOSS_WEIGHTS.*{re.escape(quoted)}"):
        Config(LOSS_WEIGHTS=weights)
    config = Config()
    del config.LOSS_WEIGHTS["mrcnn_bbox_loss"]
    with pytest.raises(ValueError, match="LOSS_WEIGHTS.*'mrcnn_bbox_loss'"):
        config.validate()


@pytest.mark.parametrize("overrides, name", [
    ({"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 500}, "IMAGE_MIN_DIM"),
    ({"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": None}, "IMAGE_MIN_DIM"),
    ({"MASK_POOL_SIZE": 7}, "MASK_POOL_SIZE"),
    ({"IMAGE_CHANNEL_COUNT": 4}, "MEAN_PIXEL"),
    ({"PIXEL_STD": (1.0, 0.0, 1.0)}, "PIXEL_STD"),
    ({"INPUT_CHANNEL_ORDER": "RGBA"}, "INPUT_CHANNEL_ORDER"),
    ({"IMAGE_RESIZE_MODE": "shortest_edge", "IMAGE_MAX_DIM": None}, "IMAGE_MAX_DIM"),
    ({"BACKBONE_STRIDES": (4, 8, 16, 32)}, "RPN_ANCHOR_SCALES"),
])
def test_invalid_combinations(overrides, name):
    with pytest.raises(ValueError, match=name):
        Config(**overrides)


@pytest.mark.parametrize("overrides", [
    {"POST_NMS_ROIS_TRAINING": 100, "TRAIN_ROIS_PER_IMAGE": 200},  # gt boxes join the proposals
    {"GRADIENT_CLIP_NORM": None}, {"MIXED_PRECISION": "mixed_bfloat16"},
    {"BACKBONE": tiny_backbone}, {"BACKBONE": "small"}, {"HEAD_NORM": "group"},
    {"IMAGE_RESIZE_MODE": "none", "IMAGE_MAX_DIM": 1000},
    {"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 512, "IMAGE_MAX_DIM": None},
    {"ROI_POSITIVE_RATIO": 1.0, "DETECTION_MIN_CONFIDENCE": 0.0, "RPN_NMS_THRESHOLD": 1.0},
    {"IMAGE_CHANNEL_COUNT": 1, "MEAN_PIXEL": (127.5,), "PIXEL_STD": (1.0,)},
    {"LOSS_WEIGHTS": {"mrcnn_mask_loss": 0}},
])
def test_valid_edge_cases(overrides):
    config = Config(**overrides)
    for name, value in overrides.items():
        assert getattr(config, name) == value or name == "LOSS_WEIGHTS"


# --------------------------------------------------------- serialisation

def _non_default_config():
    return ShapesConfig(IMAGES_PER_GPU=1, LEARNING_RATE=0.0123, GRADIENT_CLIP_NORM=None,
                        MEAN_PIXEL=(1.25, 2.5, 3.75), RPN_ANCHOR_RATIOS=(0.25, 1, 4.0),
                        LOSS_WEIGHTS={"mrcnn_mask_loss": 0.3}, MIXED_PRECISION="mixed_float16",
                        TRAIN_BN=True, BACKBONE="resnet50")


def test_to_dict_is_plain_json():
    d = _non_default_config().to_dict()
    assert list(d) == list(ATTRIBUTES)
    assert d["BACKBONE_STRIDES"] == [4, 8, 16, 32, 64] and type(d["BACKBONE_STRIDES"]) is list
    assert d["LOSS_WEIGHTS"]["mrcnn_mask_loss"] == 0.3
    assert json.loads(json.dumps(d)) == d
    assert not set(DERIVED) & set(d)


def test_from_dict_round_trip_is_exact():
    config = _non_default_config()
    again = ShapesConfig.from_dict(config.to_dict())
    assert type(again) is ShapesConfig
    for name in ATTRIBUTES:
        assert getattr(again, name) == getattr(config, name), name
        assert type(getattr(again, name)) is type(getattr(config, name)), name
    assert again.to_dict() == config.to_dict()


def test_json_round_trip_is_exact(tmp_path):
    config = _non_default_config()
    path = tmp_path / "config.json"
    config.to_json(path)
    again = ShapesConfig.from_json(path)
    assert again.to_dict() == config.to_dict()
    assert again.MEAN_PIXEL == (1.25, 2.5, 3.75) and again.GRADIENT_CLIP_NORM is None
    assert json.loads(path.read_text())["NAME"] == "shapes"


def test_from_dict_rejects_unknown_and_derived_keys():
    d = Config().to_dict()
    with pytest.raises(ValueError, match="'LEARNIG_RATE'.*LEARNING_RATE"):
        Config.from_dict({**d, "LEARNIG_RATE": 0.1})
    with pytest.raises(ValueError, match="BATCH_SIZE"):
        Config.from_dict({**d, "BATCH_SIZE": 4})
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        Config.from_dict({**d, "NUM_CLASSES": 0})


def test_from_dict_missing_keys_keep_class_defaults():
    assert ShapesConfig.from_dict({"IMAGES_PER_GPU": 4}).NUM_CLASSES == 4


def test_callable_backbone_is_saved_by_name_and_refused_on_load():
    config = Config(BACKBONE=tiny_backbone)
    assert config.BACKBONE is tiny_backbone
    d = config.to_dict()
    assert d["BACKBONE"] == f"{tiny_backbone.__module__}.tiny_backbone"
    with pytest.raises(ValueError, match=re.escape(repr(d["BACKBONE"])) + ".*pass it again"):
        Config.from_dict(d)
    assert Config.from_dict({**d, "BACKBONE": tiny_backbone}).BACKBONE is tiny_backbone
    with pytest.raises(ValueError, match="BACKBONE"):  # names are never resolved or imported
        Config.from_dict({"BACKBONE": "os.system"})


# ------------------------------------------------------ display, repr, describe

def test_display_lists_every_value_sorted(capsys):
    ShapesConfig(BACKBONE=tiny_backbone).display()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[0] == "Configurations:"
    names = [line.split()[0] for line in lines[1:]]
    assert names == sorted(set(ATTRIBUTES) | set(DERIVED))
    assert f"{'NAME':30} shapes" in lines
    assert f"{'BATCH_SIZE':30} 2" in lines
    assert f"{'IMAGE_META_SIZE':30} 16" in lines
    assert f"{'MASK_SHAPE':30} (28, 28)" in lines
    assert f"{'IMAGE_SHAPE':30} [128 128   3]" in lines
    assert any(line.startswith("BACKBONE ") and line.endswith("tiny_backbone") for line in lines)


def test_repr_is_short():
    text = repr(ShapesConfig())
    assert text.startswith("<ShapesConfig") and "'shapes'" in text and "\n" not in text
    assert len(text) < 150


def test_describe_covers_every_attribute():
    rows = Config.describe()
    assert [row[0] for row in rows] == list(ATTRIBUTES) + list(DERIVED)
    for name, default, description in rows[:len(ATTRIBUTES)]:
        assert default == EXPECTED_DEFAULTS[name], name
        assert isinstance(description, str) and len(description) > 10, name
    derived = {name: default for name, default, _ in rows[len(ATTRIBUTES):]}
    assert derived["BATCH_SIZE"] == 2 and derived["IMAGE_META_SIZE"] == 93
    shapes = dict((name, default) for name, default, _ in ShapesConfig.describe())
    assert shapes["NUM_CLASSES"] == 4 and shapes["IMAGE_META_SIZE"] == 16
