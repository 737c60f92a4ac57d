"""Keras layers of Mask R-CNN: explicit arguments, serialisable, no Config."""

from mrcnn_tf.layers.common import PADDING_CLASS_ID
from mrcnn_tf.layers.detection import DetectionLayer
from mrcnn_tf.layers.detection_target import DetectionTargetLayer
from mrcnn_tf.layers.plumbing import (LeadingDetectionBoxes, MergeRoiBatch, MetaField,
                                      NormalizeBoxes, PadToDetections, PyramidAnchors, SplitRoiBatch)
from mrcnn_tf.layers.proposal import ProposalLayer
from mrcnn_tf.layers.pyramid_roi_align import PyramidROIAlign

__all__ = ["PADDING_CLASS_ID", "DetectionLayer", "DetectionTargetLayer", "LeadingDetectionBoxes",
           "MergeRoiBatch", "MetaField", "NormalizeBoxes", "PadToDetections", "PyramidAnchors",
           "ProposalLayer", "PyramidROIAlign", "SplitRoiBatch"]
