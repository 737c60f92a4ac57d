"""Pure TensorFlow operations of Mask R-CNN. They never read a Config."""

from mrcnn_tf.ops import anchors, boxes, nms
from mrcnn_tf.ops.roi_align import fpn_level, roi_align
from mrcnn_tf.ops.roi_pool import roi_pool, roi_warp

__all__ = ["anchors", "boxes", "nms", "roi_align", "roi_pool", "roi_warp", "fpn_level"]
