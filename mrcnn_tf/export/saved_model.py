"""export_saved_model: a MaskRCNN as a TF Serving SavedModel.

Layout written (TF Serving's ``--model_base_path``)::

    export_dir/<version>/saved_model.pb, variables/
                         assets/class_names.txt                  one name per line, id order
                         assets.extra/tf_serving_warmup_requests TFRecord of PredictionLog

Signatures (see ``signatures.py``): ``serving_default`` takes encoded
JPEG/PNG bytes ``images`` tf.string [N]; ``serving_tensor`` takes ``images``
uint8 [N, H, W, 3]; ``serving_padded`` takes ``images`` uint8 [N, Hmax, Wmax, 3]
(image i in its top-left ``image_sizes[i]``) and ``image_sizes`` int32 [N, 2],
for batches of different sizes (what ``MaskRCNN.detect`` runs). All return ``num_detections`` int32 [N],
``detection_boxes`` float32 [N, D, (y1, x1, y2, x2)] original pixels,
``detection_classes`` int32 [N, D], ``detection_scores`` float32 [N, D],
``detection_masks`` uint8 [N, D, Hmax, Wmax], ``image_sizes`` int32 [N, 2]
and, with ``include_box_masks``, ``detection_box_masks`` float32 [N, D, mh, mw].
"""

import os
import re
import shutil
import tempfile

import tensorflow as tf

from mrcnn_tf.export.signatures import ServingModule

CLASS_NAMES_FILE = "class_names.txt"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
SIGNATURE_ENCODED = "serving_default"
SIGNATURE_TENSOR = "serving_tensor"
SIGNATURE_PADDED = "serving_padded"
SIGNATURE_FUNCTIONS = {SIGNATURE_ENCODED: "serve_encoded", SIGNATURE_TENSOR: "serve_tensor",
                       SIGNATURE_PADDED: "serve_padded"}
WARMUP_IMAGE_SIDE = 64


def export_saved_model(model, export_dir, version=None, class_names=None, max_image_size=4096,
                       include_box_masks=False, signatures=None):
    """Write ``model`` as ``export_dir/<version>/``, a SavedModel for TF Serving.

    Args:
        model: a ``MaskRCNN`` of either mode: its ``inference_model`` (for a
            training-mode one, the inference graph over its own sub-models)
            is exported with the current weights.
        export_dir: the model base path; created if missing. Its basename
            is the model name in the warm-up request (TF Serving's
            ``--model_name`` is usually the same).
        version: int >= 1; default 1 + the largest existing integer
            subdirectory (1 if none).
        class_names: NUM_CLASSES names, id order (class 0 is background);
            default "BG", "class_1", ....
        max_image_size: larger images (either side) are rejected in-graph.
        include_box_masks: also output the 28x28 box-relative masks.
        signatures: names of the signatures to write, default all three
            (each traces the model once; the warm-up request needs
            ``serving_default``, and is written only with it).
    Returns:
        str, the path of the version directory.
    """
    if not (hasattr(model, "keras_model") and hasattr(model, "config")):
        raise TypeError(f"model must be a MaskRCNN, got {type(model).__name__}")
    if isinstance(max_image_size, bool) or not isinstance(max_image_size, int) or max_image_size < 1:
        raise ValueError(f"max_image_size must be an int >= 1, got {max_image_size!r}")
    names = tuple(SIGNATURE_FUNCTIONS) if signatures is None else tuple(signatures)
    if not names or any(name not in SIGNATURE_FUNCTIONS for name in names):
        raise ValueError(f"signatures must be some of {tuple(SIGNATURE_FUNCTIONS)}, got {signatures!r}")
    config = model.config
    class_names = _class_names(class_names, config.NUM_CLASSES)
    export_dir = os.path.abspath(os.fspath(export_dir))
    version = _next_version(export_dir) if version is None else _check_version(version)
    final_dir = os.path.join(export_dir, str(version))
    if os.path.exists(final_dir):
        raise FileExistsError(f"version directory already exists: {final_dir}")
    os.makedirs(export_dir, exist_ok=True)

    module = ServingModule(model.inference_model, config, max_image_size, include_box_masks,
                           functions=[SIGNATURE_FUNCTIONS[name] for name in names])
    # Written beside the final name and renamed at the end: TF Serving polls
    # the base path and must never load a half-written version (it ignores
    # names that are not integers).
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
    try:
        names_path = os.path.join(staging, CLASS_NAMES_FILE)
        with open(names_path, "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in class_names))
        module.class_names_file = tf.saved_model.Asset(names_path)
        saved = os.path.join(staging, "model")
        tf.saved_model.save(module, saved, signatures={
            name: getattr(module, SIGNATURE_FUNCTIONS[name]).get_concrete_function() for name in names})
        if SIGNATURE_ENCODED in names:
            os.makedirs(os.path.join(saved, "assets.extra"))
            model_name = os.path.basename(export_dir) or config.NAME
            write_warmup_requests(os.path.join(saved, WARMUP_FILE), model_name)
        os.rename(saved, final_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final_dir


def _class_names(class_names, num_classes):
    if class_names is None:
        return ["BG"] + [f"class_{i}" for i in range(1, num_classes)]
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names must have NUM_CLASSES={num_classes} names "
                         f"(background first), got {len(names)}")
    if any("\n" in name or "\r" in name for name in names):
        raise ValueError(f"class names cannot contain line breaks, got {names!r}")
    return names


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be an int >= 1, got {version!r}")
    return version


def _next_version(export_dir):
    """1 + the largest integer subdirectory of ``export_dir`` (1 if none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(name) for name in os.listdir(export_dir)
                if re.fullmatch(r"\d+", name) and os.path.isdir(os.path.join(export_dir, name))]
    return max(versions, default=0) + 1


# ----------------------------------------------------------------- warm-up
# tensorflow-serving-api would pull grpcio and pins TF versions, so the few
# protobuf fields of a PredictionLog are encoded by hand (wire format:
# tag = field << 3 | 2 for length-delimited fields).
PREDICTION_LOG_PREDICT_LOG = 6
PREDICT_LOG_REQUEST = 1
PREDICT_REQUEST_MODEL_SPEC = 1
PREDICT_REQUEST_INPUTS = 2
MODEL_SPEC_NAME = 1
MODEL_SPEC_SIGNATURE_NAME = 3
MAP_ENTRY_KEY, MAP_ENTRY_VALUE = 1, 2


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (string, bytes or sub-message)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_prediction_log(model_name, signature_name, inputs):
    """Serialized ``PredictionLog{predict_log{request{model_spec, inputs}}}``.

    Args:
        inputs: dict name -> ``tensorflow.TensorProto``.
    Returns:
        bytes.
    """
    model_spec = _field(MODEL_SPEC_NAME, model_name) + _field(MODEL_SPEC_SIGNATURE_NAME, signature_name)
    request = _field(PREDICT_REQUEST_MODEL_SPEC, model_spec)
    for name, tensor in sorted(inputs.items()):
        entry = _field(MAP_ENTRY_KEY, name) + _field(MAP_ENTRY_VALUE, tensor.SerializeToString())
        request += _field(PREDICT_REQUEST_INPUTS, entry)
    predict_log = _field(PREDICT_LOG_REQUEST, request)
    return _field(PREDICTION_LOG_PREDICT_LOG, predict_log)


def write_warmup_requests(path, model_name):
    """One warm-up request: a mid-grey PNG through ``serving_default``."""
    image = tf.fill([WARMUP_IMAGE_SIDE, WARMUP_IMAGE_SIDE, 3], tf.constant(128, tf.uint8))
    png = tf.io.encode_png(image).numpy()
    tensor = tf.make_tensor_proto([png], dtype=tf.string, shape=[1])
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(encode_prediction_log(model_name, SIGNATURE_ENCODED, {"images": tensor}))
