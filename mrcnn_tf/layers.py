"""The custom Keras layers of Mask R-CNN in one place: explicit arguments, serialisable, no Config.

Each is defined with its stage in ``mrcnn_tf.modeling``; this module only
gathers the public names.
"""

from mrcnn_tf.image_meta import MetaField
from mrcnn_tf.modeling.detections import DetectionLayer, LeadingDetectionBoxes, PadToDetections
from mrcnn_tf.modeling.roi_heads import (FullyConnectedConv2D, MergeRoiBatch, PyramidROIAlign,
                                         SplitRoiBatch)
from mrcnn_tf.modeling.roi_sampling import PADDING_CLASS_ID, DetectionTargetLayer, NormalizeBoxes
from mrcnn_tf.modeling.rpn import ProposalLayer, PyramidAnchors

__all__ = ["PADDING_CLASS_ID", "DetectionLayer", "DetectionTargetLayer", "FullyConnectedConv2D",
           "LeadingDetectionBoxes", "MergeRoiBatch", "MetaField", "NormalizeBoxes", "PadToDetections",
           "PyramidAnchors", "ProposalLayer", "PyramidROIAlign", "SplitRoiBatch"]
