"""Weights by name: classic HDF5 files, transfer to new classes, ImageNet mapping, atomic writes."""

import os

import h5py
import keras
import numpy as np
import pytest

from mrcnn_tf import MaskRCNN
from mrcnn_tf.modeling.backbone import resnet_graph
from mrcnn_tf.image_meta import compose_image_meta
from mrcnn_tf.ops.image import normalize
from mrcnn_tf.weights import (classic_resnet_name, imagenet_weights_path, load_imagenet_backbone,
                              load_weights_by_name, save_weights_by_name)
from test_model import TinyConfig

preprocess_input = keras.applications.resnet.preprocess_input


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
    info = {"original_size": [[64, 64]], "molded_size": [[64, 64]], "window": [[0, 0, 64, 64]],
            "scale": [[1.0, 1.0]]}
    meta = compose_image_meta(info, np.ones([model.config.NUM_CLASSES])).numpy()
    inputs = {"input_image": rng.normal(0, 50, [1, 64, 64, 3]).astype(np.float32), "input_image_meta": meta}
    return model.keras_model.predict(inputs, verbose=0)


def classic_layers(keras_model):
    """The layers of the classic flat model: the sub-models it predates opened up (not rpn_model)."""
    for layer in keras_model.layers:
        if layer.name in ("backbone_fpn", "box_head", "mask_head"):
            yield from classic_layers(layer)
        else:
            yield layer


def write_classic_file(keras_model, path, full_model_file=False, wrapper_names=False):
    """Write weights the way Keras 2 did, independently of save_weights_by_name.

    Every layer of the classic flat model is listed (weightless ones with empty
    ``weight_names``); weights are
    named ``<sublayer>/<variable>:0`` (a nested model's group holds its sublayers'
    names); ``full_model_file`` nests it all under ``model_weights`` as ``model.save``
    did; ``wrapper_names`` names the heads' weights after an anonymous TimeDistributed
    inner layer (``time_distributed_3/kernel:0``), as some Keras 2 files do.
    """
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model_file else f
        # Keras 2 stored fixed-length byte strings (numpy 'S' arrays).
        layers = list(classic_layers(keras_model))
        root.attrs["layer_names"] = np.array([layer.name.encode("utf8") for layer in layers])
        root.attrs["backend"], root.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for index, layer in enumerate(layers):
            group = root.create_group(layer.name)
            names = []
            for variable in layer.weights:
                owner, short = variable.path.split("/")[-2:]
                if wrapper_names and layer.name.startswith("mrcnn_"):
                    owner = f"time_distributed_{index}"
                names.append(f"{owner}/{short}:0".encode("utf8"))
                group.create_dataset(names[-1].decode(), data=variable.numpy())
            group.attrs["weight_names"] = np.array(names, dtype="S") if names else np.zeros([0], "S1")


@pytest.mark.parametrize("full_model_file,wrapper_names", [(False, False), (True, True)])
def test_classic_file_loads_back_exactly(tmp_path, capsys, full_model_file, wrapper_names):
    source = MaskRCNN("inference", TinyConfig(DETECTION_MIN_CONFIDENCE=0.0), tmp_path)
    randomize(source.keras_model, seed=1)
    path = str(tmp_path / "classic.h5")
    write_classic_file(source.keras_model, path, full_model_file, wrapper_names)
    with h5py.File(path) as f:  # the file really is in the classic layout
        root = f["model_weights"] if full_model_file else f
        assert b"rpn_conv_shared/kernel:0" in list(root["rpn_model"].attrs["weight_names"])
        assert "kernel:0" in root["rpn_model"]["rpn_conv_shared"]  # nested: rpn_model/rpn_conv_shared/kernel:0
        assert list(root["fpn_p2"].attrs["weight_names"]) == [b"fpn_p2/kernel:0", b"fpn_p2/bias:0"]
        assert len(root["input_image"].attrs["weight_names"]) == 0  # weightless layers are listed too
        head_names = [n.decode() for n in root["mrcnn_class_bn1"].attrs["weight_names"]]
        assert head_names[0].endswith("/gamma:0") and head_names[3].endswith("/moving_variance:0")
        assert head_names[0].startswith("time_distributed_" if wrapper_names else "mrcnn_class_bn1/")

    target = MaskRCNN("inference", TinyConfig(DETECTION_MIN_CONFIDENCE=0.0), tmp_path)
    before = predict(target)
    capsys.readouterr()
    report = target.load_weights(path)
    weighted = [layer.name for layer in classic_layers(target.keras_model) if layer.weights]
    assert sorted(report.loaded) == sorted(weighted) and not report.mismatched and not report.missing
    assert f"classic.h5: loaded {len(weighted)} layers, skipped 0, shape-mismatched 0" in capsys.readouterr().out
    after, expected = predict(target), predict(source)
    assert not np.allclose(before["mrcnn_class"], expected["mrcnn_class"])
    for key in ("detections", "mrcnn_mask", "rpn_class"):
        np.testing.assert_allclose(after[key], expected[key], atol=1e-5)
    for a, b in zip(target.keras_model.weights, source.keras_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


BN_ORDER = ("gamma", "beta", "moving_mean", "moving_variance")


def matterport_layers(config, rng):
    """{layer: [(weight name, array)]}: some layers of mask_rcnn_coco.h5, spelled as there, at config's sizes.

    Written from the names and shapes of matterport's model (not from ours). Each
    BatchNorm variable gets its own range (gamma ~2, beta ~-1, mean ~10, variance ~100)
    so that any swap shows.
    """
    top, rpn, mask, fc = (config.TOP_DOWN_PYRAMID_SIZE, config.RPN_CONV_CHANNELS,
                          config.MASK_HEAD_CHANNELS, config.FPN_CLASSIF_FC_LAYERS_SIZE)
    classes, anchors = config.NUM_CLASSES, len(config.RPN_ANCHOR_RATIOS)

    def conv(name, *shape):
        return [(f"{name}/kernel:0", rng.normal(0, 0.1, shape)),
                (f"{name}/bias:0", rng.normal(0, 0.1, shape[-1]))]

    def bn(name, width):
        centres = {"gamma": 2.0, "beta": -1.0, "moving_mean": 10.0, "moving_variance": 100.0}
        return [(f"{name}/{w}:0", centres[w] + rng.uniform(-0.5, 0.5, width)) for w in BN_ORDER]

    return {
        "input_image": [],  # weightless layers are listed with empty weight_names
        "fpn_p2": conv("fpn_p2", 3, 3, top, top),
        "rpn_model": (conv("rpn_conv_shared", 3, 3, top, rpn) + conv("rpn_class_raw", 1, 1, rpn, 2 * anchors)
                      + conv("rpn_bbox_pred", 1, 1, rpn, 4 * anchors)),
        "roi_align_classifier": [],
        "mrcnn_class_bn1": bn("mrcnn_class_bn1", fc),
        "mrcnn_bbox_fc": conv("mrcnn_bbox_fc", fc, 4 * classes),
        "mrcnn_mask_conv1": conv("mrcnn_mask_conv1", 3, 3, top, mask),
        "mrcnn_mask_bn1": bn("mrcnn_mask_bn1", mask),
        "mrcnn_mask_deconv": conv("mrcnn_mask_deconv", 2, 2, mask, mask),
        "mrcnn_mask": conv("mrcnn_mask", 1, 1, mask, classes),
        "res2a_branch2a": conv("res2a_branch2a", 1, 1, 64, 64),  # a ResNet layer this model lacks
    }


def write_matterport_file(path, layers, full_model_file):
    """The Keras 2.1 ``save_weights`` (or ``model.save``: under ``model_weights``) layout, with h5py."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model_file else f
        root.attrs["layer_names"] = np.array([name.encode("utf8") for name in layers], dtype="S")
        root.attrs["backend"], root.attrs["keras_version"] = b"tensorflow", b"2.1.3"
        for name, weights in layers.items():
            group = root.create_group(name)
            group.attrs["weight_names"] = (np.array([w.encode("utf8") for w, _ in weights], dtype="S")
                                           if weights else np.zeros([0], "S1"))
            for weight_name, value in weights:
                group.create_dataset(weight_name, data=value.astype(np.float32))


@pytest.mark.parametrize("full_model_file", [False, True])
def test_matterport_h5_layout_loads_each_array_into_its_variable(tmp_path, full_model_file):
    model = MaskRCNN("inference", TinyConfig(), tmp_path)
    layers = matterport_layers(model.config, np.random.default_rng(9))
    path = str(tmp_path / "mask_rcnn_coco.h5")
    write_matterport_file(path, layers, full_model_file)
    with h5py.File(path) as f:  # the layout as matterport's file has it
        root = f["model_weights"] if full_model_file else f
        assert "mrcnn_mask_conv1/kernel:0" in root["mrcnn_mask_conv1"]  # nested by the "/"
        assert list(root["mrcnn_mask_bn1"]["mrcnn_mask_bn1"]) == [  # keys: alphabetical, not BN_ORDER
            "beta:0", "gamma:0", "moving_mean:0", "moving_variance:0"]
        assert [n.decode() for n in root["rpn_model"].attrs["weight_names"]][:2] == [
            "rpn_conv_shared/kernel:0", "rpn_conv_shared/bias:0"]

    report = model.load_weights(path)
    weighted = [name for name, weights in layers.items() if weights]
    assert sorted(report.loaded) == sorted(weighted[:-1]) and report.skipped == ["res2a_branch2a"]
    assert not report.mismatched and "mrcnn_class_conv1" in report.missing
    variables = {w.path.split("/")[-2] + "/" + w.path.split("/")[-1]: w
                 for name in weighted[:-1] for w in model.find_layer(name).weights}
    assert len(variables) == sum(len(layers[name]) for name in weighted[:-1])  # every variable filled
    for name in weighted[:-1]:
        for weight_name, value in layers[name]:
            np.testing.assert_array_equal(variables[weight_name.split(":")[0]].numpy(),
                                          value.astype(np.float32), err_msg=f"{name}: {weight_name}")
    bn = model.find_layer("mrcnn_mask_bn1")
    assert bn.gamma.numpy().min() > 1.4 and bn.beta.numpy().max() < -0.4
    assert bn.moving_mean.numpy().min() > 9.4 and bn.moving_variance.numpy().min() > 99


def test_new_class_count_loads_with_exclude_and_reports_mismatches_without(tmp_path):
    source = MaskRCNN("training", TinyConfig(), tmp_path)
    randomize(source.keras_model, seed=2)
    path = str(tmp_path / "four_classes.h5")
    source.save_weights(path)
    with h5py.File(path) as f:  # the classic layout: one group per layer, rpn_model nested
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert {"small_stem_conv", "fpn_c5p5", "rpn_model", "mrcnn_class_conv1", "mrcnn_mask"} <= set(names)
        assert not {"backbone_fpn", "box_head", "mask_head"} & set(names)
        assert list(f["fpn_p2"].attrs["weight_names"]) == [b"fpn_p2/kernel:0", b"fpn_p2/bias:0"]
        assert "kernel:0" in f["rpn_model"]["rpn_conv_shared"]
    heads = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
    shared = ("small_stage5_conv1", "fpn_p2", "rpn_model", "mrcnn_mask_conv1", "mrcnn_class_bn2")

    def assert_loaded(model, names):
        for name in names:
            for a, b in zip(model.find_layer(name).weights, source.find_layer(name).weights):
                np.testing.assert_array_equal(a.numpy(), b.numpy())

    target = MaskRCNN("training", TinyConfig(NUM_CLASSES=7), tmp_path)
    report = target.load_weights(path, exclude=heads)
    assert not report.mismatched and not report.missing
    assert {"mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"} <= set(report.skipped)
    assert not set(heads) & set(report.loaded)
    assert_loaded(target, shared)

    fresh = MaskRCNN("training", TinyConfig(NUM_CLASSES=7), tmp_path)
    untouched = fresh.find_layer("mrcnn_mask").weights[0].numpy().copy()
    report = fresh.load_weights(path)  # no exclude: reported, not raised
    assert {m[0] for m in report.mismatched} == {"mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"}
    mask_entry = [m for m in report.mismatched if m[0] == "mrcnn_mask"][0]
    assert mask_entry[2][-1] == 4 and mask_entry[3][-1] == 7  # (layer, weight, file shape, model shape)
    np.testing.assert_array_equal(fresh.find_layer("mrcnn_mask").weights[0].numpy(), untouched)
    assert_loaded(fresh, shared)


def test_classic_512_wide_rpn_loads_with_its_config_and_is_named_otherwise(tmp_path):
    classic = MaskRCNN("inference", TinyConfig(RPN_CONV_CHANNELS=512), tmp_path)
    randomize(classic.keras_model, 3)
    path = str(tmp_path / "classic_rpn.h5")
    write_classic_file(classic.keras_model, path)

    report = MaskRCNN("inference", TinyConfig(RPN_CONV_CHANNELS=512), tmp_path).load_weights(path)
    assert not report.mismatched and "rpn_model" in report.loaded

    default = MaskRCNN("inference", TinyConfig(), tmp_path)
    report = default.load_weights(path)
    assert {(m[0], m[2][-1], m[3][-1]) for m in report.mismatched if "rpn_conv_shared" in m[1]} == {
        ("rpn_model", 512, 64)}
    assert "build the model with RPN_CONV_CHANNELS = 512 to load it" in str(report)


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
        with h5py.File(path) as f:  # the Keras 3 layout, not the classic one
            assert "layer_names" not in f.attrs

    image = keras.Input((64, 64, 3))
    backbone = keras.Model(image, resnet_graph(image, "resnet50")[-1])
    assert backbone.layers[-1].name == "res5c_out"  # C5
    report = load_imagenet_backbone(backbone, path, "resnet50")
    # ResNet-50: 53 convolutions (stem, 16 blocks x 3, 4 shortcuts), each with its BatchNorm.
    assert len(report.loaded) == 106 and not report.mismatched and not report.missing
    assert set(report.loaded) == {layer.name for layer in backbone.layers if layer.weights}
    x = np.random.default_rng(4).normal(0, 1, [2, 64, 64, 3]).astype(np.float32)
    expected = keras.Model(reference.input, reference.get_layer("conv5_block3_out").output).predict(x, verbose=0)
    np.testing.assert_allclose(backbone.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_backbone_weights_imagenet_loads_the_cached_file_in_maskrcnn(tmp_path, monkeypatch):
    """BACKBONE_WEIGHTS='imagenet' reads ~/.keras/models/<Keras file name>, nothing else."""
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    randomize(reference, seed=5)
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = tmp_path / ".keras" / "models"
    cache.mkdir(parents=True)
    write_classic_file(reference, str(cache / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"))

    model = MaskRCNN("inference", TinyConfig(BACKBONE="resnet50", BACKBONE_WEIGHTS="imagenet"), tmp_path)
    for ours, theirs in (("res5c_branch2c", "conv5_block3_3_conv"), ("bn_conv1", "conv1_bn"),
                         ("bn4a_branch1", "conv4_block1_0_bn")):
        for a, b in zip(model.find_layer(ours).weights, reference.get_layer(theirs).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The heads are left as initialised: only the backbone comes from the file.
    assert not model.find_layer("fpn_p2").weights[1].numpy().any()
    # conv1 adapted to this config's input (RGB minus ShapesConfig's 128): it sees what Keras's does.
    config = model.config
    image = np.random.default_rng(6).uniform(0, 255, [1, 64, 64, 3]).astype(np.float32)
    molded = normalize(image, config.MEAN_PIXEL, config.PIXEL_STD, config.INPUT_CHANNEL_ORDER)
    ours = model.find_layer("conv1")(model.find_layer("conv1_pad")(molded)).numpy()
    theirs = keras.Model(reference.input, reference.get_layer("conv1_conv").output)(preprocess_input(image))
    assert_interior_equal(ours, theirs.numpy())


CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # what keras.applications.resnet.preprocess_input subtracts
# conv1 (7x7, stride 2, 3-pixel zero padding): outputs [2, -2) of a 64 px side see no padding.
INTERIOR = (slice(None), slice(2, -2), slice(2, -2))


def assert_interior_equal(ours, theirs):
    """Equal to float32 precision where conv1's window lies inside the image."""
    np.testing.assert_allclose(ours[INTERIOR], theirs[INTERIOR], rtol=1e-5,
                               atol=1e-5 * np.abs(theirs).max())


@pytest.fixture(scope="module")
def resnet50_stems(tmp_path_factory):
    """(classic .h5 of a seeded Keras Applications ResNet50, its conv1_conv model, our R50 backbone)."""
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    randomize(reference, seed=7)
    path = str(tmp_path_factory.mktemp("imagenet") / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    write_classic_file(reference, path)
    image = keras.Input((64, 64, 3))
    backbone = keras.Model(image, resnet_graph(image, "resnet50")[0])
    return path, keras.Model(reference.input, reference.get_layer("conv1_conv").output), backbone


@pytest.mark.slow
@pytest.mark.parametrize("mean_pixel,pixel_std,order,exact_borders", [
    (CAFFE_MEAN_BGR[::-1], (1.0, 1.0, 1.0), "RGB", True),  # RGB minus the same mean
    (CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), "BGR", True),         # caffe's own input: the kernel unchanged
    ((123.7, 116.8, 103.9), (1.0, 1.0, 1.0), "RGB", False),  # Config's default MEAN_PIXEL
    ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), "RGB", False),  # torchvision's mean / std
])
def test_imagenet_conv1_on_our_input_equals_keras_on_preprocess_input(
        resnet50_stems, mean_pixel, pixel_std, order, exact_borders):
    """The ImageNet files expect caffe-style BGR: conv1 is adapted to the config's normalisation."""
    path, keras_conv1, backbone = resnet50_stems
    image = np.random.default_rng(8).uniform(0, 255, [2, 64, 64, 3]).astype(np.float32)
    theirs = keras_conv1(preprocess_input(image.copy())).numpy()
    molded = normalize(image, mean_pixel, pixel_std, order)

    def ours():
        return backbone.get_layer("conv1")(backbone.get_layer("conv1_pad")(molded)).numpy()

    load_imagenet_backbone(backbone, path, "resnet50", mean_pixel=mean_pixel, pixel_std=pixel_std,
                           channel_order=order)
    assert_interior_equal(ours(), theirs)
    if exact_borders:  # the zero padding is the caffe mean colour in both
        np.testing.assert_allclose(ours(), theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max())
    else:  # our padding is the colour mean_pixel: a small difference on the border only
        border = np.abs(ours() - theirs).max()
        assert 0 < border < 0.3 * np.abs(theirs).max()
    load_imagenet_backbone(backbone, path, "resnet50")  # the file's kernel as it is: caffe BGR input only
    wrong = np.abs(ours()[INTERIOR] - theirs[INTERIOR]).max()
    assert (wrong < 1e-3) == (order == "BGR" and exact_borders), wrong


def tiny_classic_backbone():
    """Three classic-named layers, enough to exercise the ImageNet mapping cheaply."""
    image = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1")(image)
    x = keras.layers.BatchNormalization(name="bn_conv1")(x)
    x = keras.layers.Conv2D(4, 1, name="res2a_branch2a")(x)
    return keras.Model(image, x)


def test_backbone_file_with_classic_names_and_old_weight_names_loads_by_position(tmp_path):
    # The older deep-learning-models release of resnet50_..._notop.h5 (what matterport
    # downloads) uses the classic layer names, and Keras 1 weight names like "conv1_W".
    source = tiny_classic_backbone()
    randomize(source, seed=6)
    path = str(tmp_path / "old_release.h5")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"input_1", b"conv1", b"bn_conv1", b"res2a_branch2a", b"fc1000"])
        f.create_group("input_1").attrs["weight_names"] = np.zeros([0], "S1")
        for layer in source.layers[1:]:
            suffixes = (["gamma", "beta", "running_mean", "running_std"]
                        if isinstance(layer, keras.layers.BatchNormalization) else ["W", "b"])
            names = [f"{layer.name}_{suffix}:0" for suffix in suffixes]
            group = f.create_group(layer.name)
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for name, variable in zip(names, layer.weights):
                group.create_dataset(name, data=variable.numpy())
        fc = f.create_group("fc1000")  # a classifier layer the backbone has no use for
        fc.attrs["weight_names"] = np.array([b"fc1000_W:0"])
        fc.create_dataset("fc1000_W:0", data=np.ones([2, 2], np.float32))

    target = tiny_classic_backbone()
    report = load_imagenet_backbone(target, path, "resnet50")
    assert sorted(report.loaded) == ["bn_conv1", "conv1", "res2a_branch2a"] and report.skipped == ["fc1000"]
    for a, b in zip(target.weights, source.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_backbone_file_lacking_a_backbone_layer_is_an_error(tmp_path):
    source = tiny_classic_backbone()
    path = str(tmp_path / "partial.h5")
    write_classic_file(keras.Model(source.input, source.get_layer("bn_conv1").output), path)
    with pytest.raises(ValueError, match="partial.h5: no weights for backbone layer res2a_branch2a"):
        load_imagenet_backbone(tiny_classic_backbone(), path, "resnet50")
    bad = tmp_path / "wrong_shapes.h5"
    write_classic_file(keras.Sequential([keras.Input((16, 16, 5)), keras.layers.Conv2D(4, 3, name="conv1")]),
                       str(bad))
    with pytest.raises(ValueError, match=r"wrong_shapes.h5: weights of conv1 do not fit.*\(3, 3, 5, 4\)"):
        load_imagenet_backbone(tiny_classic_backbone(), str(bad), "resnet50")


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
