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

from mrcnn_tf import Config, MaskRCNN, presets
from mrcnn_tf.export import export_saved_model
from mrcnn_tf.image_meta import compose_image_meta
from mrcnn_tf.ops.image import mold_batch
from loopback import post, rest_server

OUTPUT_DTYPES = {"num_detections": "DT_INT32", "detection_boxes": "DT_FLOAT",
                 "detection_classes": "DT_INT32", "detection_scores": "DT_FLOAT",
                 "detection_masks": "DT_UINT8", "image_sizes": "DT_INT32"}


# presets.tiny at 128 px, with what these tests count on: 4 classes, 2 images per batch,
# 10 detections, every detection kept, and a fixed mean pixel.
TinyConfig = type("TinyConfig", (Config,), presets.tiny(
    128, NAME="tiny", NUM_CLASSES=4, BACKBONE="small", IMAGES_PER_GPU=2, DETECTION_MAX_INSTANCES=10,
    DETECTION_MIN_CONFIDENCE=0.0, MEAN_PIXEL=(128, 128, 128)))


def _images():
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (100, 150, 3), dtype=np.uint8),
            rng.integers(0, 256, (128, 96, 3), dtype=np.uint8)]


def _png(image):
    return tf.io.encode_png(image).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, export version dir, images, detect() results of the two in one batch), built once."""
    keras.utils.set_random_seed(3)
    base = tmp_path_factory.mktemp("export")
    model = MaskRCNN("inference", TinyConfig(), model_dir=str(base / "logs"))
    images = _images()
    path = export_saved_model(model, str(base / "tiny"))
    return model, path, images, model.detect(images)


def _assert_matches_detect(outputs, index, reference):
    """One image's served outputs (numpy dict, batch axis kept) are detect()'s dict, to the bit."""
    count = int(outputs["num_detections"][index])
    assert count == len(reference["scores"])
    height, width = outputs["image_sizes"][index]
    assert (height, width) == reference["masks"].shape[:2]
    np.testing.assert_array_equal(outputs["detection_boxes"][index, :count], reference["boxes"])
    np.testing.assert_array_equal(np.round(reference["boxes"]).astype(np.int32), reference["rois"])
    np.testing.assert_array_equal(outputs["detection_classes"][index, :count], reference["class_ids"])
    np.testing.assert_array_equal(outputs["detection_scores"][index, :count], reference["scores"])
    masks = outputs["detection_masks"][index, :count]
    np.testing.assert_array_equal(masks[:, :height, :width].astype(bool),
                                  np.moveaxis(reference["masks"], -1, 0))
    assert not masks[:, height:].any() and not masks[:, :, width:].any()  # padding is empty
    assert not outputs["detection_scores"][index, count:].any()           # padded rows are zeros


# ------------------------------------------------------------- fast, no model
def test_bad_arguments_raise_before_exporting(tmp_path):
    class Fake:
        config, keras_model, mode = TinyConfig(), None, "inference"

    with pytest.raises(ValueError, match="class_names must have NUM_CLASSES=4"):
        export_saved_model(Fake(), str(tmp_path), class_names=["BG", "a"])
    with pytest.raises(ValueError, match="version must be an int >= 1"):
        export_saved_model(Fake(), str(tmp_path), version=0)
    with pytest.raises(ValueError, match="max_image_size"):
        export_saved_model(Fake(), str(tmp_path), max_image_size=0)
    with pytest.raises(ValueError, match="signatures must be some of"):
        export_saved_model(Fake(), str(tmp_path), signatures=("serving_tensor", "serving_png"))
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
        _assert_matches_detect(part(f"tensor{i}_"), 0, exported[0].detect([images[i]])[0])


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
                for name in ("serving_default", "serving_tensor", "serving_padded")}
    assert "dtype: DT_STRING\n        shape: (-1)\n" in sections["serving_default"]
    assert "dtype: DT_UINT8\n        shape: (-1, -1, -1, 3)\n" in sections["serving_tensor"]
    assert "inputs['image_sizes'] tensor_info:\n        dtype: DT_INT32\n        shape: (-1, 2)" \
        in sections["serving_padded"]
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
    _assert_matches_detect(outputs, 0, exported[0].detect([images[1]])[0])


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


# Per resize mode: settings and three image sizes for a batch of different sizes.
MODE_CASES = {
    "square": ({}, [(100, 150), (128, 96), (37, 201)]),
    "pad64": ({"IMAGE_MIN_DIM": 64, "IMAGE_MAX_DIM": 256}, [(100, 150), (128, 96), (37, 201)]),
    "crop": ({"IMAGE_MIN_DIM": 64, "IMAGE_MAX_DIM": 256}, [(100, 150), (128, 96), (70, 70)]),
    "none": ({}, [(128, 192), (64, 128), (128, 128)]),       # the FPN needs sides of 64k
    "shortest_edge": ({"IMAGE_MIN_DIM": 96, "IMAGE_MAX_DIM": 160}, [(100, 150), (128, 96), (37, 201)]),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODE_CASES))
def test_serving_and_detect_are_identical(mode, tmp_path):
    """serving_tensor (batches 1 and 3) and serving_padded (3 sizes) give detect()'s results exactly."""
    settings, sizes = MODE_CASES[mode]
    keras.utils.set_random_seed(11)
    config = TinyConfig(IMAGE_RESIZE_MODE=mode, IMAGES_PER_GPU=3, **settings)
    model = MaskRCNN("inference", config, model_dir=str(tmp_path / "logs"))
    signatures = tf.saved_model.load(export_saved_model(model, str(tmp_path / mode))).signatures
    rng = np.random.default_rng(1)
    same = [rng.integers(0, 256, sizes[0] + (3,), dtype=np.uint8) for _ in range(3)]
    mixed = [same[0]] + [rng.integers(0, 256, size + (3,), dtype=np.uint8) for size in sizes[1:]]
    padded = np.zeros((3, *np.max(sizes, axis=0), 3), np.uint8)
    for i, image in enumerate(mixed):
        padded[i, :image.shape[0], :image.shape[1]] = image
    runs = [
        (signatures["serving_tensor"](images=tf.constant(np.stack(same[:1]))), model.detect(same[:1])),
        (signatures["serving_tensor"](images=tf.constant(np.stack(same))), model.detect(same)),
        (signatures["serving_padded"](images=tf.constant(padded), image_sizes=tf.constant(sizes, tf.int32)),
         model.detect(mixed)),
    ]
    found = 0
    for served, references in runs:
        served = {k: v.numpy() for k, v in served.items()}
        for i, reference in enumerate(references):
            _assert_matches_detect(served, i, reference)
            found += len(reference["scores"])
    assert found > 0, "no detections to compare"


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
    config = model.config
    molded, info = mold_batch(images[:1], [images[0].shape[:2]], config.IMAGE_RESIZE_MODE,
                              config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, mean_pixel=config.MEAN_PIXEL)
    inputs = {"input_image": molded, "input_image_meta": compose_image_meta(info, np.ones(4))}
    model.keras_model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    before, after = model.keras_model(inputs), reloaded(inputs)
    for name in ("detections", "mrcnn_mask"):
        np.testing.assert_allclose(np.asarray(after[name]), np.asarray(before[name]), atol=1e-6)
