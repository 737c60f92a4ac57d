"""export_onnx: a MaskRCNN as an ONNX model through tf2onnx, pre/post-processing included.

The converted function is :meth:`mrcnn_tf.inference.InferencePipeline.run`
(what ``detect()`` and the SavedModel run) on one image of any size:

    images              uint8 [1, H, W, 3] RGB (H, W dynamic)
    -> num_detections, detection_boxes, detection_classes, detection_scores,
       detection_masks, image_sizes (, detection_box_masks)

the names, dtypes and frames of the LiteRT export (``export/tflite.py``).
RoIAlign is traced with :func:`mrcnn_tf.ops.roi_align.builtin_sampling`:
``Gather`` and bilinear arithmetic, the fused kernel's samples exactly (tf2onnx
has no ``CropAndResize`` -> ``RoiAlign`` rewrite, and our kernel is wrapped in
a non-inlined function it cannot see through). NMS is ONNX
``NonMaxSuppression``; the per-image loops are ``Loop``.
"""

import os

import tensorflow as tf

from mrcnn_tf.inference import InferencePipeline
from mrcnn_tf.ops.batching import unrolled_batch
from mrcnn_tf.ops.roi_align import builtin_sampling

# tf2onnx 1.17 emits opsets 13..18 for this graph (Loop with sequences needs 13+).
MIN_OPSET, MAX_OPSET = 13, 18


def _tf2onnx():
    try:
        import tf2onnx
    except ImportError as error:
        raise ImportError("export_onnx needs tf2onnx and onnx: pip install 'mrcnn_tf[onnx]' "
                          f"(tf2onnx>=1.17, onnx, onnxruntime to run it) ({error})") from error
    return tf2onnx


def export_onnx(model, path, opset=17, include_box_masks=False):
    """Write ``model``'s inference graph as an ``.onnx`` file.

    Args:
        model: a ``MaskRCNN`` (its ``inference_model``, current weights).
        path: the file to write (parent directories are created).
        opset: ONNX opset, 13..18.
        include_box_masks: also output ``detection_box_masks``.
    Returns:
        str, the path written.
    Raises:
        TypeError / ValueError: on a bad ``model`` or ``opset``;
        ImportError: without tf2onnx (says what to install).
    """
    if not (hasattr(model, "inference_model") and hasattr(model, "config")):
        raise TypeError(f"model must be a MaskRCNN, got {type(model).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be an int in [{MIN_OPSET}, {MAX_OPSET}], got {opset!r}")
    tf2onnx = _tf2onnx()
    pipeline = InferencePipeline(model.inference_model, model.config, include_box_masks=include_box_masks)
    spec = [tf.TensorSpec([1, None, None, 3], tf.uint8, name="images")]

    def serve(images):
        return pipeline.run(images, tf.shape(images)[1:3][None])

    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with builtin_sampling(), unrolled_batch():
        tf2onnx.convert.from_function(tf.function(serve, input_signature=spec), input_signature=spec,
                                      opset=opset, output_path=path)
    return path
