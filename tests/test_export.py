"""export_saved_model: the served graph against detect(), layout, assets, errors, REST."""

import base64
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf import Config, MaskRCNN
from mrcnn_tf.data.transforms import resize_image, unmold_mask
from mrcnn_tf.export import export_saved_model
from mrcnn_tf.export.signatures import paste_masks, resize_and_pad
from mrcnn_tf.model.inference import mold_inputs
from loopback import post, rest_server

OUTPUT_DTYPES = {"num_detections": "DT_INT32", "detection_boxes": "DT_FLOAT",
                 "detection_classes": "DT_INT32", "detection_scores": "DT_FLOAT",
                 "detection_masks": "DT_UINT8", "image_sizes": "DT_INT32"}


class TinyConfig(Config):
    NAME = "tiny"
    NUM_CLASSES = 4
    BACKBONE = "small"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    IMAGES_PER_GPU = 1
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    RPN_CONV_CHANNELS = 64
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    MASK_HEAD_CHANNELS = 32
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_INFERENCE = 50
    DETECTION_MAX_INSTANCES = 10
    DETECTION_MIN_CONFIDENCE = 0.0
    MEAN_PIXEL = (128, 128, 128)


def _images():
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (100, 150, 3), dtype=np.uint8),
            rng.integers(0, 256, (128, 96, 3), dtype=np.uint8)]


def _png(image):
    return tf.io.encode_png(image).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, export version dir, images, detect() results), built once."""
    keras.utils.set_random_seed(3)
    base = tmp_path_factory.mktemp("export")
    model = MaskRCNN("inference", TinyConfig(), model_dir=str(base / "logs"))
    images = _images()
    path = export_saved_model(model, str(base / "tiny"))
    return model, path, images, model.detect(images)


def _assert_matches_detect(outputs, index, reference):
    """One image's served outputs (numpy dict, batch axis kept) vs detect()'s dict."""
    count = int(outputs["num_detections"][index])
    assert count == len(reference["scores"]) > 0
    height, width = outputs["image_sizes"][index]
    assert (height, width) == reference["masks"].shape[:2]
    np.testing.assert_allclose(outputs["detection_boxes"][index, :count], reference["rois"], atol=1.0)
    np.testing.assert_array_equal(outputs["detection_classes"][index, :count], reference["class_ids"])
    np.testing.assert_allclose(outputs["detection_scores"][index, :count], reference["scores"], atol=1e-4)
    masks = outputs["detection_masks"][index, :count, :height, :width].astype(bool)
    assert not outputs["detection_masks"][index, :count, height:].any()   # padding is empty
    assert not outputs["detection_masks"][index, :count, :, width:].any()
    assert not outputs["detection_scores"][index, count:].any()           # padded rows are zeros
    for i in range(count):
        expected = reference["masks"][:, :, i]
        union = (masks[i] | expected).sum()
        if expected.sum() > 0:
            assert (masks[i] & expected).sum() / union >= 0.99, f"mask {i} of image {index}"


# ------------------------------------------------------------- fast, no model
@pytest.mark.parametrize("mode", ["square", "pad64", "none"])
@pytest.mark.parametrize("size", [(100, 150), (128, 96), (37, 201), (300, 20), (128, 128), (1, 1)])
def test_in_graph_resize_matches_resize_image(mode, size):
    image = np.random.default_rng(sum(size)).integers(0, 256, size + (3,), dtype=np.uint8)
    expected, window, scale, _, _ = resize_image(image, min_dim=64, max_dim=128, mode=mode)
    molded, graph_window, graph_scale = resize_and_pad(tf.constant(image), mode, 64, 128, 0)
    np.testing.assert_array_equal(graph_window.numpy(), window)
    assert graph_scale.numpy() == pytest.approx(scale, rel=1e-6)
    diff = np.abs(molded.numpy() - expected.astype(np.float32))
    # float64 in both; only exact .5 ties may round differently.
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_paste_masks_matches_unmold_mask():
    rng = np.random.default_rng(0)
    sizes = np.array([[40, 60], [25, 33]], np.int32)
    probs = rng.random((2, 5, 28, 28)).astype(np.float32)
    boxes = np.array([[[5.3, 7.7, 30.2, 41.9], [-4, -6, 12.5, 70], [10, 10, 10, 20],
                       [0, 0, 40, 60], [38.6, 58.2, 45.0, 64.0]]] * 2, np.float32)
    pasted = paste_masks(tf.constant(probs), tf.constant(boxes), tf.constant(sizes)).numpy()
    assert pasted.shape == (2, 5, 40, 60) and pasted.dtype == np.uint8
    for b, (height, width) in enumerate(sizes):
        for d in range(5):
            expected = unmold_mask(probs[b, d], boxes[b, d], (height, width))
            np.testing.assert_array_equal(pasted[b, d, :height, :width], expected)
            assert not pasted[b, d, height:].any() and not pasted[b, d, :, width:].any()


def test_bad_arguments_raise_before_exporting(tmp_path):
    class Fake:
        config, keras_model, mode = TinyConfig(), None, "inference"

    with pytest.raises(ValueError, match="class_names must have NUM_CLASSES=4"):
        export_saved_model(Fake(), str(tmp_path), class_names=["BG", "a"])
    with pytest.raises(ValueError, match="version must be an int >= 1"):
        export_saved_model(Fake(), str(tmp_path), version=0)
    with pytest.raises(ValueError, match="max_image_size"):
        export_saved_model(Fake(), str(tmp_path), max_image_size=0)
    with pytest.raises(TypeError, match="must be a MaskRCNN"):
        export_saved_model(object(), str(tmp_path))
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ exported
@pytest.mark.slow
def test_both_signatures_match_detect_in_fresh_process(exported, tmp_path):
    _, path, images, reference = exported
    np.savez(tmp_path / "inputs.npz", png0=np.frombuffer(_png(images[0]), np.uint8),
             png1=np.frombuffer(_png(images[1]), np.uint8), image0=images[0], image1=images[1])
    # Only TensorFlow: the SavedModel must not need mrcnn_tf, keras or Python code.
    code = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        inputs = np.load({str(tmp_path / "inputs.npz")!r})
        loaded = tf.saved_model.load({path!r})
        pngs = tf.constant([inputs["png0"].tobytes(), inputs["png1"].tobytes()])
        results = {{"encoded_" + k: v.numpy()
                    for k, v in loaded.signatures["serving_default"](images=pngs).items()}}
        for i in range(2):
            out = loaded.signatures["serving_tensor"](images=tf.constant(inputs[f"image{{i}}"][None]))
            results.update({{f"tensor{{i}}_" + k: v.numpy() for k, v in out.items()}})
        assert "mrcnn_tf" not in sys.modules, "the served model imported mrcnn_tf"
        np.savez({str(tmp_path / "out.npz")!r}, **results)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")

    def part(prefix):
        return {k[len(prefix):]: out[k] for k in out.files if k.startswith(prefix)}

    encoded = part("encoded_")
    assert encoded["detection_masks"].shape[2:] == (128, 150)  # padded to the batch max
    np.testing.assert_array_equal(encoded["image_sizes"], [[100, 150], [128, 96]])
    for i in range(2):
        _assert_matches_detect(encoded, i, reference[i])
        _assert_matches_detect(part(f"tensor{i}_"), 0, reference[i])


@pytest.mark.slow
def test_saved_model_cli_lists_signatures(exported):
    path = exported[1]
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    command = [cli] if os.path.exists(cli) else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    proc = subprocess.run(command + ["show", "--all", "--dir", path], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    sections = {name: text.split(f"signature_def['{name}']")[1].split("signature_def[")[0]
                for name in ("serving_default", "serving_tensor")}
    assert "dtype: DT_STRING\n        shape: (-1)\n" in sections["serving_default"]
    assert "dtype: DT_UINT8\n        shape: (-1, -1, -1, 3)\n" in sections["serving_tensor"]
    for section in sections.values():
        assert "inputs['images']" in section
        for name, dtype in OUTPUT_DTYPES.items():
            assert f"outputs['{name}'] tensor_info:\n        dtype: {dtype}" in section
        assert "shape: (-1, 10, -1, -1)" in section            # detection_masks [N, D, H, W]
        assert "detection_box_masks" not in section


def _parse_fields(data):
    """Minimal protobuf wire-format reader: {field number: [bytes or int]}."""
    fields, pos = {}, 0

    def varint():
        nonlocal pos
        result = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire == 2:
            length = varint()
            value, pos = data[pos:pos + length], pos + length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


@pytest.mark.slow
def test_versions_assets_and_warmup(exported, tmp_path):
    from tensorflow.core.framework import tensor_pb2

    model = exported[0]
    base = tmp_path / "shapes"
    first = export_saved_model(model, str(base))
    second = export_saved_model(model, str(base), class_names=["BG", "square", "circle", "triangle"],
                                include_box_masks=True)
    assert (first, second) == (str(base / "1"), str(base / "2"))
    assert sorted(os.listdir(base)) == ["1", "2"]  # no staging directory left behind
    with pytest.raises(FileExistsError):
        export_saved_model(model, str(base), version=2)
    with open(os.path.join(first, "assets", "class_names.txt")) as f:
        assert f.read().splitlines() == ["BG", "class_1", "class_2", "class_3"]
    with open(os.path.join(second, "assets", "class_names.txt")) as f:
        assert f.read().splitlines() == ["BG", "square", "circle", "triangle"]

    records = list(tf.data.TFRecordDataset(os.path.join(second, "assets.extra",
                                                        "tf_serving_warmup_requests")))
    assert len(records) == 1
    log = _parse_fields(records[0].numpy())                      # PredictionLog
    request = _parse_fields(_parse_fields(log[6][0])[1][0])       # predict_log.request
    spec = _parse_fields(request[1][0])
    assert spec[1] == [b"shapes"] and spec[3] == [b"serving_default"]
    entry = _parse_fields(request[2][0])
    assert entry[1] == [b"images"]
    tensor = tf.make_ndarray(tensor_pb2.TensorProto.FromString(entry[2][0]))
    assert tensor.shape == (1,)
    # The warm-up request runs, and include_box_masks adds its output.
    outputs = tf.saved_model.load(second).signatures["serving_default"](images=tf.constant(tensor))
    assert outputs["detection_box_masks"].shape == (1, 10, 28, 28)
    assert tuple(outputs["image_sizes"].numpy()[0]) == (64, 64)


@pytest.mark.slow
def test_bad_inputs_raise_clear_errors_then_serving_continues(exported):
    _, path, images, reference = exported
    loaded = tf.saved_model.load(path)
    encoded, tensor = loaded.signatures["serving_default"], loaded.signatures["serving_tensor"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG/PNG image"):
        encoded(images=tf.constant([_png(images[0]), b"definitely not an image"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="images must contain at least one image"):
        encoded(images=tf.constant([], tf.string))
    with pytest.raises(tf.errors.InvalidArgumentError, match="images must contain at least one image"):
        tensor(images=tf.zeros([0, 8, 8, 3], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="image is larger than max_image_size=4096"):
        tensor(images=tf.zeros([1, 4097, 2, 3], tf.uint8))
    outputs = {k: v.numpy() for k, v in encoded(images=tf.constant([_png(images[1])])).items()}
    _assert_matches_detect(outputs, 0, reference[1])


@pytest.mark.slow
def test_rest_server_predicts_and_survives_bad_requests(exported):
    _, path, images, _ = exported
    direct = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.constant([_png(images[0])]))
    with rest_server(os.path.dirname(path), "tiny") as server:
        base = server.base
        assert server.status["model_version_status"][0]["state"] == "AVAILABLE"

        good = {"instances": [{"b64": base64.b64encode(_png(images[0])).decode()}]}
        code, body = post(base + ":predict", good)
        assert code == 200 and len(body["predictions"]) == 1
        prediction = body["predictions"][0]
        for name, value in direct.items():
            np.testing.assert_allclose(np.array(prediction[name]), value.numpy()[0], atol=1e-6)

        code, body = post(base + ":predict", {"instances": [{"b64": base64.b64encode(b"junk").decode()}]})
        assert code == 400 and "not a JPEG/PNG image" in body["error"]
        code, body = post(base + ":predict", {"instances": [{"b64": "%%% not base64"}]})
        assert code == 400 and "base64" in body["error"]

        columnar = {"inputs": {"images": [{"b64": good["instances"][0]["b64"]}]}}
        code, body = post(base + ":predict", columnar)
        assert code == 200
        assert body["outputs"]["num_detections"] == direct["num_detections"].numpy().tolist()


@pytest.mark.slow
def test_pad64_batch_of_different_molded_sizes_matches_detect(tmp_path):
    # 100x150 molds to 128x192 and 128x96 to 128x128: the batch pads to 128x192.
    keras.utils.set_random_seed(11)
    config = TinyConfig(IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=256)
    model = MaskRCNN("inference", config, model_dir=str(tmp_path / "logs"))
    images = _images()
    path = export_saved_model(model, str(tmp_path / "pad64"))
    outputs = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.constant([_png(image) for image in images]))
    outputs = {k: v.numpy() for k, v in outputs.items()}
    for i, reference in enumerate(model.detect(images)):
        _assert_matches_detect(outputs, i, reference)


@pytest.mark.slow
def test_training_model_exports_with_its_weights(tmp_path):
    keras.utils.set_random_seed(5)
    trainer = MaskRCNN("training", TinyConfig(), model_dir=str(tmp_path / "logs"))
    path = export_saved_model(trainer, str(tmp_path / "from_training"))
    inference = MaskRCNN("inference", TinyConfig(), model_dir=str(tmp_path / "logs"))
    weights = str(tmp_path / "w.h5")
    trainer.save_weights(weights)
    inference.load_weights(weights)
    image = _images()[0]
    outputs = {k: v.numpy() for k, v in tf.saved_model.load(path).signatures["serving_tensor"](
        images=tf.constant(image[None])).items()}
    _assert_matches_detect(outputs, 0, inference.detect([image])[0])


@pytest.mark.slow
def test_keras_file_round_trip(exported, tmp_path):
    model, _, images, _ = exported
    molded, metas, _ = mold_inputs(images[:1], model.config)
    inputs = {"input_image": molded, "input_image_meta": metas}
    model.keras_model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    before, after = model.keras_model(inputs), reloaded(inputs)
    for name in ("detections", "mrcnn_mask"):
        np.testing.assert_allclose(np.asarray(after[name]), np.asarray(before[name]), atol=1e-6)
