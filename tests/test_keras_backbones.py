"""BACKBONE = "keras:<Name>": C2..C5 by stride, each model's preprocess_input, train and export."""

import importlib
import os

import keras
import numpy as np
import pytest

from mrcnn_tf import DataGenerator, MaskRCNN, presets
from mrcnn_tf.config import LOSS_NAMES
from mrcnn_tf.data import ShapesConfig, ShapesDataset
from mrcnn_tf.modeling.backbone.keras_applications import PixelAffine, input_map
from mrcnn_tf.ops.image import normalize

NAMED = ("MobileNetV3Large", "EfficientNetV2S", "ResNet50V2", "ConvNeXtTiny")


@pytest.mark.parametrize("name, channel_order", [("ResNet50V2", "RGB"), ("ResNet50", "BGR"),
                                                 ("DenseNet121", "RGB"), ("ConvNeXtTiny", "BGR")])
def test_backbone_input_is_the_models_own_preprocess_input(name, channel_order):
    """Whatever the config's normalisation, the application sees preprocess_input(RGB pixels)."""
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    mean, std = (100.0, 120.0, 90.0), (50.0, 60.0, 70.0)
    molded = normalize(pixels, mean, std, channel_order)
    mapped = PixelAffine(*input_map(name, mean, std, channel_order))(molded)
    module = importlib.import_module(getattr(keras.applications, name).__module__)
    expected = module.preprocess_input(pixels.copy())
    np.testing.assert_allclose(np.asarray(mapped), expected, rtol=1e-4, atol=1e-3)


def test_unknown_names_and_bad_models_fail_clearly():
    with pytest.raises(ValueError, match="keras:MobileNetV3Large"):  # the list of supported names
        ShapesConfig(BACKBONE="keras:MobileNetV9")
    inputs = keras.Input((None, None, 3))
    maps = [keras.layers.Conv2D(4, 3, strides=s, padding="same")(inputs) for s in (2, 4, 8, 16)]
    config = ShapesConfig(**presets.tiny(64, BACKBONE=keras.Model(inputs, maps)))
    with pytest.raises(ValueError, match="strides"):
        MaskRCNN("inference", config, "logs")


def test_any_functional_model_returning_four_maps_is_a_backbone(tmp_path):
    inputs = keras.Input((None, None, 3))
    x, maps = inputs, []
    for width in (8, 16, 16, 32):
        x = keras.layers.Conv2D(width, 3, strides=2 if maps else 4, padding="same")(x)
        maps.append(x)
    config = ShapesConfig(**presets.tiny(64, BACKBONE=keras.Model(inputs, maps), IMAGES_PER_GPU=1))
    pyramid = MaskRCNN("inference", config, tmp_path).find_layer("backbone_fpn")
    outputs = pyramid(np.zeros((1, 64, 64, 3), np.float32))
    assert [tuple(p.shape[1:3]) for p in outputs] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


@pytest.fixture(scope="module", params=NAMED)
def trained(request, tmp_path_factory):
    keras.utils.set_random_seed(0)
    config = ShapesConfig(**presets.tiny(256, BACKBONE=f"keras:{request.param}", IMAGES_PER_GPU=1))
    model = MaskRCNN("training", config, str(tmp_path_factory.mktemp("logs")))
    dataset = ShapesDataset()
    dataset.load_shapes(2, 256, 256, seed=0)
    dataset.prepare()
    model.set_trainable("all")
    model.compile(1e-3, 0.9)
    # Two steps run eagerly: tracing and optimising the training graph of a full ImageNet
    # backbone costs ~8x the two steps themselves; the computation is the same.
    model.keras_model.run_eagerly = True
    history = model.keras_model.fit(DataGenerator(dataset, config, seed=0), epochs=1, verbose=0).history
    return request.param, model, history, tmp_path_factory.mktemp("export")


@pytest.mark.slow
def test_named_backbones_build_train_two_steps_and_export(trained):
    from mrcnn_tf.export import export_saved_model

    name, model, history, export_dir = trained
    assert model.find_layer(f"keras_{name.lower()}")  # the application, nested whole
    for loss in LOSS_NAMES:
        assert np.isfinite(history[loss]).all() and len(history[loss]) == 1, loss
    assert model.keras_model.optimizer.iterations.numpy() == 2  # STEPS_PER_EPOCH of presets.tiny
    # One signature (each traces the whole inference graph); its definition is read from
    # saved_model.pb rather than by loading the graph back (test_export.py serves exports).
    path = export_saved_model(model, str(export_dir), signatures=("serving_default",))
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    signature = saved.meta_graphs[0].signature_def["serving_default"]
    assert list(signature.inputs) == ["images"]
    assert {"num_detections", "detection_boxes", "detection_masks"} <= set(signature.outputs)
    names = {node.name for function in saved.meta_graphs[0].graph_def.library.function
             for node in function.node_def}
    assert any(f"keras_{name.lower()}" in node for node in names), "the backbone is not in the export"
