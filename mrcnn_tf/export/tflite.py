"""export_tflite: a MaskRCNN as one LiteRT (TFLite) flatbuffer, pre/post-processing included.

The converted function is :meth:`mrcnn_tf.inference.InferencePipeline.run`,
the one ``detect()`` and the SavedModel run, at a fixed input size:

    images              uint8 [1, H, W, 3] RGB
    -> num_detections     int32 [1]
       detection_boxes    float32 [1, D, (y1, x1, y2, x2)] input pixels
       detection_classes  int32 [1, D]
       detection_scores   float32 [1, D]
       detection_masks    float32 [1, D, mh, mw] box-relative probabilities of
                          the detection's class (mh x mw = MASK_SHAPE), over
                          its ``detection_boxes``: paste with
                          ``ops.masks.paste_masks`` (threshold 0.5) for the
                          full-size masks ``detect()`` returns
       image_sizes        int32 [1, 2]

the ``serving_tensor`` outputs by the same names (signature ``serving_default``),
except ``detection_masks``, which stays box-relative: pasting is a loop over
the boxes with per-box sizes, which has no builtin form.

Builtin ops only (``TFLITE_BUILTINS``, no Flex delegate needed):
RoIAlign is traced with :func:`mrcnn_tf.ops.roi_align.builtin_sampling`
(Gather + bilinear weights, no ``CropAndResize``), the per-image loops
(molding, proposal selection, detection) with
:func:`mrcnn_tf.ops.batching.unrolled_batch` (a Python loop over the static
batch of 1 instead of ``map_fn``/``TensorArray``); NMS is
``NON_MAX_SUPPRESSION_V4``.
"""

import os

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from mrcnn_tf.inference import InferencePipeline
from mrcnn_tf.ops.batching import unrolled_batch
from mrcnn_tf.ops.roi_align import builtin_sampling

QUANTIZE_MODES = (None, "float16", "dynamic_int8")


def export_tflite(model, path, quantize=None, image_size=None):
    """Write ``model``'s inference graph as a ``.tflite`` file.

    Args:
        model: a ``MaskRCNN`` (its ``inference_model`` is converted with the
            current weights).
        path: the file to write (parent directories are created).
        quantize: None (float32), "float16" (weights stored in float16) or
            "dynamic_int8" (weights int8, dynamic-range quantisation: no
            calibration data).
        image_size: the fixed input (H, W) or one int for a square; default
            the model's square side (IMAGE_RESIZE_MODE "square", IMAGE_MAX_DIM).
            Other sizes are resized in-graph as ``detect()`` does; boxes come
            back in (H, W) pixels.
    Returns:
        str, the path written.
    Raises:
        TypeError / ValueError: on a bad ``model``, ``quantize`` or ``image_size``.
    """
    if not (hasattr(model, "inference_model") and hasattr(model, "config")):
        raise TypeError(f"model must be a MaskRCNN, got {type(model).__name__}")
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    height, width = input_size(model.config, image_size)
    pipeline = InferencePipeline(model.inference_model, model.config, include_box_masks=True,
                                 include_masks=False)
    sizes = tf.constant([[height, width]], tf.int32)

    def serve(images):
        outputs = pipeline.run(images, sizes)
        outputs["detection_masks"] = outputs.pop("detection_box_masks")
        return outputs

    with builtin_sampling(), unrolled_batch():
        concrete = tf.function(serve, input_signature=[
            tf.TensorSpec([1, height, width, 3], tf.uint8, name="images")]).get_concrete_function()
    # Keras variables are captured inside nested functions, which the converter leaves as
    # resource variables (VAR_HANDLE, no values in the file): freeze them into constants first.
    frozen = convert_variables_to_constants_v2(concrete)
    # Freezing drops the output names (output_0, ...); tf.nest flattens a dict by sorted key.
    names = sorted(concrete.structured_outputs)

    def named(images):
        return dict(zip(names, tf.nest.flatten(frozen(images))))

    named = tf.function(named, input_signature=concrete.structured_input_signature[0]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([named], pipeline)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    flatbuffer = converter.convert()
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return path


def input_size(config, image_size=None):
    """The fixed (H, W) of an export: ``image_size`` (int or pair), or the config's square side."""
    if image_size is None:
        if config.IMAGE_RESIZE_MODE != "square" or not config.IMAGE_MAX_DIM:
            raise ValueError(f"image_size is required unless IMAGE_RESIZE_MODE is 'square' "
                             f"(got {config.IMAGE_RESIZE_MODE!r})")
        return int(config.IMAGE_MAX_DIM), int(config.IMAGE_MAX_DIM)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if (len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size)):
        raise ValueError(f"image_size must be a positive int or (H, W) of them, got {image_size!r}")
    return size
