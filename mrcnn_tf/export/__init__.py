"""Export a MaskRCNN with pre/post-processing in-graph: TF Serving SavedModel, LiteRT (TFLite), ONNX.

tf2onnx is imported only by ``export_onnx`` (an optional extra)."""

from mrcnn_tf.export.onnx import export_onnx
from mrcnn_tf.export.saved_model import export_saved_model
from mrcnn_tf.export.tflite import export_tflite

__all__ = ["export_onnx", "export_saved_model", "export_tflite"]
