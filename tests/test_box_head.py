"""The box head's fully connected layers: conv kernels in the classic layout, run as matmuls.

``mrcnn_class_conv1`` (a pool_size x pool_size "valid" conv in the classic
model) and ``mrcnn_class_conv2`` (1x1) keep their 4-D kernels and names, so
classic files load and files we write stay classic; only the computation is
a matmul over the row-major flattened RoI.
"""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from mrcnn_tf import MaskRCNN
from mrcnn_tf.layers import FullyConnectedConv2D
from mrcnn_tf.modeling.roi_heads import build_box_head
from mrcnn_tf.weights import load_weights_by_name
from test_model import TinyConfig
from test_weights import randomize

BN_EPSILON = 1e-3  # the heads' BatchNormalization


def classic_conv_box_head(num_classes, pool_size, channels, fc_size):
    """The box head as the classic model computed it: Conv2D layers (the old formulation)."""
    pooled = keras.Input((pool_size, pool_size, channels))
    x = layers.Conv2D(fc_size, pool_size, name="mrcnn_class_conv1")(pooled)
    x = layers.Activation("relu")(layers.BatchNormalization(epsilon=BN_EPSILON, name="mrcnn_class_bn1")(x))
    x = layers.Conv2D(fc_size, 1, name="mrcnn_class_conv2")(x)
    x = layers.Activation("relu")(layers.BatchNormalization(epsilon=BN_EPSILON, name="mrcnn_class_bn2")(x))
    shared = layers.Flatten()(x)
    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    deltas = layers.Reshape((num_classes, 4))(layers.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared))
    return keras.Model(pooled, [logits, deltas])


@pytest.mark.parametrize("seed, pool_size, channels, filters, rois", [
    (0, 7, 5, 6, 4), (1, 3, 2, 4, 1), (2, 1, 8, 3, 5), (3, 2, 3, 7, 0)])
def test_matmul_equals_the_valid_convolution_and_its_gradients(seed, pool_size, channels, filters, rois):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=[rois, pool_size, pool_size, channels]))
    layer = FullyConnectedConv2D(filters, pool_size, dtype="float64")
    layer.build(x.shape)
    kernel = rng.normal(size=[pool_size, pool_size, channels, filters])
    assert tuple(layer.kernel.shape) == kernel.shape  # the classic 4-D layout
    layer.kernel.assign(kernel)
    layer.bias.assign(rng.normal(size=[filters]))
    kernel = tf.constant(kernel)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        ours = layer(x)
        expected = tf.nn.conv2d(x, kernel, 1, "VALID") + layer.bias
        weights = tf.constant(rng.normal(size=[rois, 1, 1, filters]))
        loss_ours, loss_expected = tf.reduce_sum(ours * weights), tf.reduce_sum(expected * weights)
    assert ours.shape == (rois, 1, 1, filters)
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
    got = tape.gradient(loss_ours, [x, layer.kernel, layer.bias])
    want = tape.gradient(loss_expected, [x, kernel, layer.bias])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12, atol=1e-12)


def test_layer_config_round_trip_and_graph_equals_eager():
    layer = FullyConnectedConv2D(4, 3, activation="relu", name="fc")
    config = layer.get_config()
    assert config["filters"] == 4 and tuple(config["kernel_size"]) == (3, 3) and config["name"] == "fc"
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is FullyConnectedConv2D and restored.get_config() == config
    x = np.random.default_rng(0).normal(size=[2, 3, 3, 5]).astype(np.float32)
    inputs = keras.Input((3, 3, 5))
    model = keras.Model(inputs, layer(inputs))
    np.testing.assert_allclose(model.predict(x, verbose=0), layer(x).numpy(), rtol=1e-5, atol=1e-6)
    tf.function(lambda t: layer(t))(tf.constant(x))  # traces


@pytest.mark.parametrize("make, message", [
    (lambda: FullyConnectedConv2D(4, 3, strides=2), "strides"),
    (lambda: FullyConnectedConv2D(4, 3, padding="same"), "padding"),
    (lambda: FullyConnectedConv2D(4, 3, dilation_rate=2), "dilation_rate"),
    (lambda: FullyConnectedConv2D(4, 3, data_format="channels_first"), "data_format"),
    (lambda: FullyConnectedConv2D(4, 7)(keras.Input((5, 5, 2))), r"span.*\(None, 5, 5, 2\)"),
])
def test_bad_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_box_head_saves_and_reloads_as_keras_file(tmp_path):
    head = build_box_head(3, pool_size=7, channels=4, fc_size=8)
    randomize(head, seed=7)
    path = str(tmp_path / "box_head.keras")
    head.save(path)
    reloaded = keras.saving.load_model(path)
    x = np.random.default_rng(1).normal(size=[3, 7, 7, 4]).astype(np.float32)
    for a, b in zip(reloaded(x), head(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def _bn(x, gamma, beta, mean, variance):
    return (x - mean) / np.sqrt(variance + BN_EPSILON) * gamma + beta


def test_classic_file_with_4d_kernels_loads_and_gives_the_convolutions_outputs(tmp_path):
    """A classic file (written here with h5py) gives what the conv head computes (numpy, float64)."""
    config = TinyConfig()
    pool, channels, fc, classes = (config.POOL_SIZE, config.TOP_DOWN_PYRAMID_SIZE,
                                   config.FPN_CLASSIF_FC_LAYERS_SIZE, config.NUM_CLASSES)
    rng = np.random.default_rng(11)

    def normal(*shape, scale=0.1):
        return rng.normal(0, scale, shape).astype(np.float32)

    def bn_weights():
        return [1 + np.abs(normal(fc)), normal(fc), normal(fc), 1 + np.abs(normal(fc))]

    file_layers = {  # what matterport's mask_rcnn_coco.h5 holds, at TinyConfig's sizes
        "mrcnn_class_conv1": ("kernel", "bias"), "mrcnn_class_bn1": ("gamma", "beta", "moving_mean",
                                                                      "moving_variance"),
        "mrcnn_class_conv2": ("kernel", "bias"), "mrcnn_class_bn2": ("gamma", "beta", "moving_mean",
                                                                      "moving_variance"),
        "mrcnn_class_logits": ("kernel", "bias"), "mrcnn_bbox_fc": ("kernel", "bias")}
    values = {"mrcnn_class_conv1": [normal(pool, pool, channels, fc, scale=0.05), normal(fc)],
              "mrcnn_class_bn1": bn_weights(),
              "mrcnn_class_conv2": [normal(1, 1, fc, fc), normal(fc)],
              "mrcnn_class_bn2": bn_weights(),
              "mrcnn_class_logits": [normal(fc, classes), normal(classes)],
              "mrcnn_bbox_fc": [normal(fc, 4 * classes), normal(4 * classes)]}
    path = str(tmp_path / "classic_box_head.h5")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([name.encode() for name in file_layers])
        for name, weight_names in file_layers.items():
            group = f.create_group(name)
            names = [f"{name}/{w}:0" for w in weight_names]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for weight_name, value in zip(names, values[name]):
                group.create_dataset(weight_name, data=value)

    model = MaskRCNN("inference", config, tmp_path)
    report = model.load_weights(path)
    assert sorted(report.loaded) == sorted(file_layers) and not report.mismatched
    assert tuple(model.find_layer("mrcnn_class_conv1").kernel.shape) == (pool, pool, channels, fc)

    x = rng.normal(0, 1, [5, pool, pool, channels]).astype(np.float32)
    logits, deltas = model.find_layer("box_head")(x, training=False)

    # The classic computation: a pool x pool "valid" conv, summing over (i, j, c) directly.
    v = {name: [a.astype(np.float64) for a in arrays] for name, arrays in values.items()}
    h = np.einsum("rijc,ijcf->rf", x.astype(np.float64), v["mrcnn_class_conv1"][0]) + v["mrcnn_class_conv1"][1]
    h = np.maximum(_bn(h, *v["mrcnn_class_bn1"]), 0)
    h = np.einsum("rc,cf->rf", h, v["mrcnn_class_conv2"][0][0, 0]) + v["mrcnn_class_conv2"][1]
    h = np.maximum(_bn(h, *v["mrcnn_class_bn2"]), 0)
    expected_logits = h @ v["mrcnn_class_logits"][0] + v["mrcnn_class_logits"][1]
    expected_deltas = (h @ v["mrcnn_bbox_fc"][0] + v["mrcnn_bbox_fc"][1]).reshape(5, classes, 4)
    np.testing.assert_allclose(logits.numpy(), expected_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(deltas.numpy(), expected_deltas, rtol=1e-4, atol=1e-5)


def test_saved_file_keeps_the_classic_4d_kernels_and_loads_into_the_conv_head(tmp_path):
    config = TinyConfig()
    pool, channels, fc = config.POOL_SIZE, config.TOP_DOWN_PYRAMID_SIZE, config.FPN_CLASSIF_FC_LAYERS_SIZE
    source = MaskRCNN("training", config, tmp_path)
    randomize(source.keras_model, seed=12)
    source.set_trainable("heads")  # the stage regexes still reach both layers by name
    trained = {v.path.split("/")[-2] for v in source.keras_model.trainable_variables}
    assert {"mrcnn_class_conv1", "mrcnn_class_conv2"} <= trained
    path = str(tmp_path / "saved.h5")
    source.save_weights(path)

    with h5py.File(path) as f:
        for name, shape in (("mrcnn_class_conv1", (pool, pool, channels, fc)),
                            ("mrcnn_class_conv2", (1, 1, fc, fc))):
            assert list(f[name].attrs["weight_names"]) == [f"{name}/kernel:0".encode(),
                                                           f"{name}/bias:0".encode()]
            assert f[name][f"{name}/kernel:0"].shape == shape
            np.testing.assert_array_equal(f[name][f"{name}/kernel:0"][()],
                                          source.find_layer(name).kernel.numpy())

    target = MaskRCNN("inference", config, tmp_path)
    report = target.load_weights(path)
    assert not report.mismatched and not report.missing
    classic = classic_conv_box_head(config.NUM_CLASSES, pool, channels, fc)
    report = load_weights_by_name(classic, path)  # the old Conv2D layout reads our file
    assert len(report.loaded) == 6 and not report.mismatched and not report.missing
    x = np.random.default_rng(13).normal(0, 1, [6, pool, pool, channels]).astype(np.float32)
    for ours, theirs in zip(target.find_layer("box_head")(x, training=False), classic(x, training=False)):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_box_head_computes_in_half_and_matches_float32(policy):
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        half = build_box_head(3, pool_size=7, channels=8, fc_size=16)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    full = build_box_head(3, pool_size=7, channels=8, fc_size=16)
    randomize(full, seed=14)
    half.set_weights(full.get_weights())
    conv1 = half.get_layer("mrcnn_class_conv1")
    assert conv1.compute_dtype == policy.split("_")[1] and conv1.kernel.dtype == "float32"
    x = np.random.default_rng(15).normal(0, 1, [4, 7, 7, 8]).astype(np.float32)
    for ours, reference in zip(half(x, training=False), full(x, training=False)):
        assert ours.dtype == policy.split("_")[1]
        np.testing.assert_allclose(np.asarray(ours, np.float32), reference.numpy(), rtol=0.05, atol=0.05)
