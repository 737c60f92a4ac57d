"""Weights by name: classic HDF5 files, transfer to new classes, ImageNet mapping, atomic writes."""

import os

import h5py
import keras
import numpy as np
import pytest

from mrcnn_tf import MaskRCNN
from mrcnn_tf.backbone import resnet_graph
from mrcnn_tf.weights import (classic_resnet_name, imagenet_weights_path, load_imagenet_backbone,
                              load_weights_by_name, save_weights_by_name)
from test_model import TinyConfig


def randomize(keras_model, seed):
    """Give every weight (BN statistics included) distinct random values."""
    rng = np.random.default_rng(seed)
    for variable in keras_model.weights:
        value = rng.normal(0, 0.05, variable.shape)
        if "variance" in variable.path or "gamma" in variable.path:
            value = 1.0 + np.abs(value)
        variable.assign(value.astype(variable.dtype))


def predict(model, seed=0):
    rng = np.random.default_rng(seed)
    meta = np.zeros([1, model.config.IMAGE_META_SIZE], np.float32)
    meta[0, 1:11] = [64, 64, 3, 64, 64, 3, 0, 0, 64, 64]
    meta[0, 11], meta[0, 12:] = 1.0, 1.0
    inputs = {"input_image": rng.normal(0, 50, [1, 64, 64, 3]).astype(np.float32), "input_image_meta": meta}
    return model.keras_model.predict(inputs, verbose=0)


def write_classic_file(keras_model, path, full_model_file=False):
    """Write weights the way Keras 2 did, independently of save_weights_by_name."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model_file else f
        layers = [layer for layer in keras_model.layers if layer.weights]
        # Keras 2 stored fixed-length byte strings (numpy 'S' arrays).
        root.attrs["layer_names"] = np.array([layer.name.encode("utf8") for layer in layers])
        for layer in layers:
            group = root.create_group(layer.name)
            names = []
            for variable in layer.weights:
                owner, short = variable.path.split("/")[-2:]
                names.append(f"{owner}/{short}:0".encode("utf8"))  # nested models keep sublayer names
                group.create_dataset(names[-1].decode(), data=variable.numpy())
            group.attrs["weight_names"] = np.array(names)


@pytest.mark.parametrize("full_model_file", [False, True])
def test_classic_file_loads_back_exactly(tmp_path, full_model_file):
    source = MaskRCNN("inference", TinyConfig(DETECTION_MIN_CONFIDENCE=0.0), tmp_path)
    randomize(source.keras_model, seed=1)
    path = str(tmp_path / "classic.h5")
    write_classic_file(source.keras_model, path, full_model_file)
    with h5py.File(path) as f:  # the nested RPN is one group holding its sublayers
        root = f["model_weights"] if full_model_file else f
        assert b"rpn_conv_shared/kernel:0" in list(root["rpn_model"].attrs["weight_names"])

    target = MaskRCNN("inference", TinyConfig(DETECTION_MIN_CONFIDENCE=0.0), tmp_path)
    before = predict(target)
    report = target.load_weights(path)
    weighted = [layer.name for layer in target.keras_model.layers if layer.weights]
    assert sorted(report.loaded) == sorted(weighted) and not report.mismatched and not report.missing
    after, expected = predict(target), predict(source)
    assert not np.allclose(before["mrcnn_class"], expected["mrcnn_class"])
    for key in ("detections", "mrcnn_mask", "rpn_class"):
        np.testing.assert_allclose(after[key], expected[key], atol=1e-5)


def test_new_class_count_loads_with_exclude_and_reports_mismatches_without(tmp_path):
    source = MaskRCNN("training", TinyConfig(), tmp_path)
    randomize(source.keras_model, seed=2)
    path = str(tmp_path / "four_classes.h5")
    source.save_weights(path)
    heads = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]

    target = MaskRCNN("training", TinyConfig(NUM_CLASSES=7), tmp_path)
    report = target.load_weights(path, exclude=heads)
    assert not report.mismatched
    assert {"mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"} <= set(report.skipped)
    for name in ("small_stage5_conv1", "fpn_p2", "mrcnn_mask_conv1"):
        for a, b in zip(target.keras_model.get_layer(name).weights, source.keras_model.get_layer(name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    untouched = target.keras_model.get_layer("mrcnn_mask").weights[0].numpy().copy()

    report = MaskRCNN("training", TinyConfig(NUM_CLASSES=7), tmp_path).load_weights(path)
    assert {m[0] for m in report.mismatched} == {"mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"}
    assert untouched.shape[-1] == 7


def test_load_errors_name_the_file(tmp_path):
    model = MaskRCNN("inference", TinyConfig(), tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        model.load_weights(str(tmp_path / "missing.h5"))
    bad = tmp_path / "not_weights.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(ValueError, match="not_weights.h5.*layer_names"):
        model.load_weights(str(bad))


def test_application_names_map_to_the_classic_names():
    assert classic_resnet_name("conv1_conv") == "conv1"
    assert classic_resnet_name("conv1_bn") == "bn_conv1"
    assert classic_resnet_name("conv2_block1_0_conv") == "res2a_branch1"
    assert classic_resnet_name("conv3_block2_1_conv") == "res3b_branch2a"
    assert classic_resnet_name("conv4_block23_3_bn") == "bn4w_branch2c"
    assert classic_resnet_name("conv5_block3_out") is None


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["classic", "keras3"])
def test_imagenet_mapping_reproduces_keras_applications_c5(tmp_path, file_format):
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    randomize(reference, seed=3)
    if file_format == "classic":
        path = str(tmp_path / "resnet50_notop.h5")
        write_classic_file(reference, path)
    else:
        path = str(tmp_path / "resnet50.weights.h5")
        reference.save_weights(path)

    image = keras.Input((64, 64, 3))
    backbone = keras.Model(image, resnet_graph(image, "resnet50")[-1])
    report = load_imagenet_backbone(backbone, path, "resnet50")
    # ResNet-50: 53 convolutions (stem, 16 blocks x 3, 4 shortcuts), each with its BatchNorm.
    assert len(report.loaded) == 106 and not report.mismatched
    assert set(report.loaded) == {layer.name for layer in backbone.layers if layer.weights}
    x = np.random.default_rng(4).normal(0, 1, [2, 64, 64, 3]).astype(np.float32)
    expected = keras.Model(reference.input, reference.get_layer("conv5_block3_out").output).predict(x, verbose=0)
    np.testing.assert_allclose(backbone.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_imagenet_without_the_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = os.path.join(str(tmp_path), ".keras", "models",
                            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    with pytest.raises(FileNotFoundError, match="put the Keras Applications file") as error:
        imagenet_weights_path("resnet50")
    assert expected in str(error.value)


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    model = MaskRCNN("inference", TinyConfig(), tmp_path)
    path = str(tmp_path / "w.h5")
    save_weights_by_name(model.keras_model, path)
    with open(path, "rb") as f:
        original = f.read()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", fail)
    with pytest.raises(OSError, match="disk full"):
        save_weights_by_name(model.keras_model, path)
    monkeypatch.undo()
    with open(path, "rb") as f:
        assert f.read() == original
    assert os.listdir(tmp_path).count("w.h5") == 1
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert load_weights_by_name(model.keras_model, path).loaded
