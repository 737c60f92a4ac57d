"""Export a MaskRCNN as a TF Serving SavedModel (pre/post-processing in-graph)."""

from mrcnn_tf.export.saved_model import export_saved_model

__all__ = ["export_saved_model"]
