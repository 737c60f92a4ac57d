"""export_onnx / export_tflite: argument checks, the export-time tracing switches, ONNX Runtime
and the builtin-only LiteRT file against detect() on real photos (one conversion per format).

Needs the extras ``onnx`` (tf2onnx, onnx, onnxruntime) and ``tflite`` (ai-edge-litert).
"""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf import Config, MaskRCNN, presets
from mrcnn_tf.export import export_onnx, export_tflite
from mrcnn_tf.export.tflite import input_size
from mrcnn_tf.inference import OUTPUT_NAMES, InferencePipeline
from mrcnn_tf.ops import roi_align
from mrcnn_tf.ops.batching import unrolled_batch
from mrcnn_tf.ops.masks import paste_masks
from mrcnn_tf.ops.roi_align import builtin_sampling, gather_crop_and_resize
from reference.numpy_ops import ref_roi_align

BALLOON = "/work/shared/data/balloon/val"
TinyConfig = type("TinyConfig", (Config,), presets.tiny(
    64, NAME="formats", NUM_CLASSES=3, BACKBONE="small", IMAGES_PER_GPU=1, DETECTION_MAX_INSTANCES=6))


def _photos(count=3, long_side=80):
    """Real balloon photos shrunk to ``long_side`` (aspect kept: the graph resizes and pads)."""
    images = []
    for path in sorted(glob.glob(os.path.join(BALLOON, "*.jpg")))[:count]:
        image = tf.io.decode_jpeg(tf.io.read_file(path))
        scale = long_side / max(image.shape[:2])
        size = [round(image.shape[0] * scale), round(image.shape[1] * scale)]
        images.append(tf.cast(tf.image.resize(image, size, antialias=True), tf.uint8).numpy())
    assert len(images) == count, f"need {count} photos in {BALLOON}"
    return images


def _iou_boxes(a, b):
    y1, x1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    y2, x2 = np.minimum(a[:, 2], b[:, 2]), np.minimum(a[:, 3], b[:, 3])
    inter = np.clip(y2 - y1, 0, None) * np.clip(x2 - x1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def assert_agrees_with_detect(outputs, want, min_score=0.5):
    """One image's exported outputs (batch 1) match detect(): same detections, the issue's bar
    (box IoU >= 0.98, mask IoU >= 0.95) on those scoring above ``min_score``; returns their count."""
    count = int(outputs["num_detections"][0])
    assert count == len(want["scores"])
    np.testing.assert_array_equal(outputs["detection_classes"][0, :count], want["class_ids"])
    np.testing.assert_allclose(outputs["detection_scores"][0, :count], want["scores"], atol=1e-4)
    keep = want["scores"] > min_score
    boxes = outputs["detection_boxes"][0, :count][keep]
    assert (_iou_boxes(boxes, want["boxes"][keep]) >= 0.98).all()
    masks = outputs["detection_masks"][0, :count][keep].astype(bool)
    ref = np.moveaxis(want["masks"], -1, 0)[keep]
    union = (masks | ref).sum(axis=(1, 2))
    inter = (masks & ref).sum(axis=(1, 2))
    assert (inter >= 0.95 * union).all(), (inter, union)
    return int(keep.sum())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    keras.utils.set_random_seed(11)
    return MaskRCNN("inference", TinyConfig(), model_dir=str(tmp_path_factory.mktemp("formats")))


# ------------------------------------------------------------- fast, no conversion
def test_bad_arguments_name_the_problem(tmp_path):
    class Fake:
        config, inference_model = TinyConfig(), None

    with pytest.raises(ValueError, match="quantize must be one of"):
        export_tflite(Fake(), tmp_path / "m.tflite", quantize="int4")
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        export_tflite(Fake(), tmp_path / "m.tflite", image_size=(64, 0))
    with pytest.raises(ValueError, match=r"opset must be an int in \[13, 18\]"):
        export_onnx(Fake(), tmp_path / "m.onnx", opset=9)
    with pytest.raises(TypeError, match="must be a MaskRCNN"):
        export_onnx(object(), tmp_path / "m.onnx")
    assert input_size(TinyConfig()) == (64, 64)
    assert input_size(TinyConfig(), (48, 80)) == (48, 80)
    with pytest.raises(ValueError, match="image_size is required"):
        input_size(Config(IMAGE_RESIZE_MODE="pad64"))


# ------------------------------------------------------------- the export's RoIAlign sampler
@pytest.mark.parametrize("crop", [(1, 1), (1, 5), (6, 4)])
def test_gather_sampler_equals_crop_and_resize(crop):
    rng = np.random.default_rng(sum(crop))
    image = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
    boxes = rng.uniform(-0.4, 1.4, size=(40, 4)).astype(np.float32)  # inside, outside, inverted
    indices = rng.integers(0, 2, 40).astype(np.int32)
    want = tf.image.crop_and_resize(image, boxes, indices, crop, extrapolation_value=0.0).numpy()
    got = gather_crop_and_resize(tf.constant(image), tf.constant(boxes), tf.constant(indices), *crop)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-6)


def test_builtin_sampling_traces_the_same_roi_align():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(2, 8, 10, 4)).astype(np.float32)
    y, x = np.sort(rng.uniform(-1.5, 9.5, (30, 2)), 1), np.sort(rng.uniform(-1.5, 11.5, (30, 2)), 1)
    boxes = np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], 1).astype(np.float32)
    indices = rng.integers(0, 2, 30).astype(np.int32)
    spec = [tf.TensorSpec([None, None, None, 4]), tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int32)]
    pool = lambda f, b, i: roi_align(f, b, i, (7, 5), 2)  # noqa: E731
    with builtin_sampling():
        graph = tf.function(pool, input_signature=spec).get_concrete_function().graph
        got = tf.function(pool, input_signature=spec)(features, boxes, indices).numpy()
    ops = {op.type for op in graph.get_operations()}
    assert "CropAndResize" not in ops and "PartitionedCall" not in ops and "GatherV2" in ops
    np.testing.assert_allclose(got, pool(features, boxes, indices).numpy(), atol=1e-5)  # float rounding
    ref = np.stack([ref_roi_align(features[i], box, (7, 5), 2) for box, i in zip(boxes, indices)])
    np.testing.assert_allclose(got, ref, atol=1e-5)


# ------------------------------------------------------------- ONNX Runtime vs detect()
@pytest.mark.slow
def test_onnx_runtime_matches_detect_on_photos(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = export_onnx(model, tmp_path / "tiny.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    names = [o.name for o in session.get_outputs()]
    assert sorted(names) == sorted(OUTPUT_NAMES)
    compared = 0
    for image in _photos(2):  # sizes differ: one file serves every input size
        outputs = dict(zip(names, session.run(None, {"images": image[None]})))
        assert outputs["detection_masks"].shape[2:] == image.shape[:2]
        compared += assert_agrees_with_detect(outputs, model.detect([image])[0], min_score=0.0)
    assert compared > 0


# ------------------------------------------------------------- static-batch unrolling
def _graph_op_types(concrete):
    graph_def = concrete.graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_unrolled_batch_traces_the_same_pipeline_without_loops(model):
    """ops.batching.unrolled_batch: the static batch looped in Python (molding, proposals,
    detection) gives the detections of the map_fn/TensorArray path detect() runs, and no loop
    op is left. Counts and classes are equal; values to float rounding (static shapes let TF's
    graph optimiser fold constants differently: measured <= 8e-6 px)."""
    pipeline = InferencePipeline(model.inference_model, model.config, include_box_masks=True,
                                 include_masks=False)
    photos = _photos(2, long_side=64)
    sizes = np.array([p.shape[:2] for p in photos], np.int32)
    images = np.zeros([2, *sizes.max(0), 3], np.uint8)
    for i, photo in enumerate(photos):
        images[i, :sizes[i, 0], :sizes[i, 1]] = photo
    spec = [tf.TensorSpec(images.shape, tf.uint8), tf.TensorSpec([2, 2], tf.int32)]
    with unrolled_batch():
        unrolled = tf.function(pipeline.run, input_signature=spec).get_concrete_function()
    looped = tf.function(pipeline.run, input_signature=spec).get_concrete_function()
    is_loop = lambda op: "While" in op or "TensorList" in op or "TensorArray" in op  # noqa: E731
    assert any(is_loop(op) for op in _graph_op_types(looped))  # the default path keeps its loops
    loops = {op for op in _graph_op_types(unrolled) if is_loop(op)}
    assert not loops
    got, want = unrolled(images, sizes), pipeline.run_padded(images, sizes)
    assert int(tf.reduce_sum(want["num_detections"])) > 0
    for name in ("num_detections", "detection_classes", "image_sizes"):
        np.testing.assert_array_equal(got[name].numpy(), want[name].numpy(), err_msg=name)
    for name in ("detection_boxes", "detection_scores", "detection_box_masks"):
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), rtol=1e-5, atol=1e-4, err_msg=name)


# ------------------------------------------------------------- LiteRT file vs detect()
TFLITE_HW = (48, 80)


@pytest.fixture(scope="module")
def tflite_path(model, tmp_path_factory):
    """One float32 builtin-only conversion shared by the LiteRT tests."""
    pytest.importorskip("ai_edge_litert.interpreter")
    return export_tflite(model, tmp_path_factory.mktemp("tflite") / "tiny.tflite", image_size=TFLITE_HW)


@pytest.mark.slow
def test_tflite_is_builtin_only_and_matches_detect_on_photos(model, tflite_path):
    from ai_edge_litert.interpreter import Interpreter

    # The weights are in the file as constants (float32: 4 bytes each), not empty resource variables.
    assert os.path.getsize(tflite_path) >= 4 * model.keras_model.count_params()
    interpreter = Interpreter(model_path=tflite_path)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops
    assert {"NON_MAX_SUPPRESSION_V4", "GATHER", "CONV_2D"} <= ops
    signature = interpreter.get_signature_list()["serving_default"]
    assert signature["inputs"] == ["images"]
    assert sorted(signature["outputs"]) == sorted(OUTPUT_NAMES)
    runner = interpreter.get_signature_runner()
    detail = runner.get_input_details()["images"]
    assert list(detail["shape"]) == [1, *TFLITE_HW, 3] and detail["dtype"] == np.uint8
    compared = 0
    for photo in _photos(2):
        image = tf.cast(tf.image.resize(photo, TFLITE_HW), tf.uint8).numpy()
        outputs = runner(images=image[None])
        box_masks = outputs["detection_masks"]
        assert box_masks.shape == (1, model.config.DETECTION_MAX_INSTANCES, *model.config.MASK_SHAPE)
        # Box-relative probabilities over detection_boxes: paste them as detect() does.
        outputs["detection_masks"] = paste_masks(
            box_masks[0], outputs["detection_boxes"][0], np.tile([TFLITE_HW], [len(box_masks[0]), 1]),
            dtype=tf.uint8, mode=model.config.MASK_PASTE_MODE).numpy()[None]
        compared += assert_agrees_with_detect(outputs, model.detect([image])[0], min_score=0.0)
    assert compared > 0
