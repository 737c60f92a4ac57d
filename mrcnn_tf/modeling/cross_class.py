"""Cross-class NMS: one object, one class (DETECTION_CROSS_CLASS_NMS_THRESHOLD).

The per-class NMS of :class:`~mrcnn_tf.modeling.detections.DetectionLayer`
lets one object come out twice under two classes (matterport #809, #2238).
This step, after the mask head, drops a detection whose box or mask IoU with
a higher-scoring detection of another class exceeds the threshold. It is in
the inference graph, so ``detect()``, the SavedModel and tiled inference
(which runs the same pipeline per tile, then :func:`cross_class_keep` on the
merged detections) all apply it.
"""

import keras
import tensorflow as tf

from mrcnn_tf.modeling.checks import check_choice, check_fraction
from mrcnn_tf.ops.boxes import box_iou
from mrcnn_tf.ops.masks import box_mask_iou
from mrcnn_tf.ops.nms import cross_class_nms

CROSS_CLASS_NMS_ON = ("box", "mask")


def check_overlap_kind(on):
    """``on`` if it is "box" or "mask", else a ValueError naming it."""
    return check_choice(on, CROSS_CLASS_NMS_ON, "DETECTION_CROSS_CLASS_NMS_ON")


def cross_class_keep(boxes, scores, class_ids, threshold, on="box", box_masks=None):
    """Which detections of one image survive the cross-class NMS.

    Args:
        boxes: float32 [N, (y1, x1, y2, x2)], any one frame.
        scores: float32 [N]; <= 0 is padding (never kept).
        class_ids: int [N].
        threshold: IoU above which the lower-scoring detection is dropped.
        on: "box" (box IoU) or "mask" (IoU of the box-relative masks).
        box_masks: float32 [N, mh, mw] mask probabilities covering ``boxes``
            (needed for "mask").
    Returns:
        bool [N].
    """
    if check_overlap_kind(on) == "mask":
        if box_masks is None:
            raise ValueError("cross-class NMS on 'mask' needs the box-relative masks")
        overlaps = box_mask_iou(box_masks, boxes)
    else:
        overlaps = box_iou(boxes, boxes)
    return cross_class_nms(overlaps, scores, class_ids, threshold)


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class CrossClassNMS(keras.layers.Layer):
    """Drop detections overlapping a higher-scoring one of another class.

    Inputs (a list):
        detections: float [B, D, (y1, x1, y2, x2, class_id, score)]
            normalised, best first; score 0 rows are padding.
        mask_probs: float [B, D, mh, mw, K] (zeros on padding rows).
    Outputs (a list): the same two with the suppressed rows removed; the
    survivors keep their order at the front, the rest are zeros.
    """

    def __init__(self, threshold, on="box", **kwargs):
        super().__init__(**kwargs)
        self.threshold = check_fraction(threshold, "threshold")
        self.on = check_overlap_kind(on)

    def call(self, inputs):
        detections, mask_probs = inputs
        detections = tf.cast(detections, tf.float32)
        mask_probs = tf.cast(mask_probs, tf.float32)
        return tf.map_fn(self._one_image, (detections, mask_probs),
                         fn_output_signature=(tf.TensorSpec(detections.shape[1:], tf.float32),
                                              tf.TensorSpec(mask_probs.shape[1:], tf.float32)))

    def _one_image(self, args):
        detections, mask_probs = args
        class_ids = tf.cast(detections[:, 4], tf.int32)
        box_masks = None
        if self.on == "mask":  # the predicted class's mask [D, mh, mw] (map 0 if class-agnostic)
            channels = class_ids if mask_probs.shape[-1] != 1 else tf.zeros_like(class_ids)
            box_masks = tf.gather(tf.transpose(mask_probs, [0, 3, 1, 2]), channels, batch_dims=1)
        keep = cross_class_keep(detections[:, :4], detections[:, 5], class_ids, self.threshold,
                                self.on, box_masks)
        slots = tf.shape(keep)[0]
        index = tf.range(slots)
        # Stable compaction, as in inference.postprocess: survivors first, in score order.
        order = tf.argsort(tf.where(keep, index, index + slots), stable=True)
        kept = tf.cast(tf.gather(keep, order), tf.float32)
        return (tf.gather(detections, order) * kept[:, None],
                tf.gather(mask_probs, order) * kept[:, None, None, None])

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "on": self.on}
