"""RPN training targets in the graph: which anchors are objects, and their box deltas.

Faster R-CNN's rules through the shared matcher and sampler
(``modeling/matching.py``): an anchor is positive with IoU >= the positive
threshold to a non-crowd box, or when it is a box's best anchor (ties
included); negative below the negative threshold with every box and not
touching a crowd region; otherwise neutral. At most half of the sampled
anchors are positive; negatives fill the rest.
"""

import keras
import tensorflow as tf

from mrcnn_tf.modeling.checks import check_fraction, check_positive_int, check_std_dev
from mrcnn_tf.modeling.matching import CROWD_IOU_THRESHOLD, crowd_rows, match_boxes, sample_balanced
from mrcnn_tf.modeling.rpn import NEGATIVE_ANCHOR, NEUTRAL_ANCHOR, POSITIVE_ANCHOR
from mrcnn_tf.ops.boxes import box_iou, encode_boxes, nonzero_rows, pad_rows


def rpn_targets(anchors, gt_class_ids, gt_boxes, anchors_per_image, std_dev,
                positive_iou=0.7, negative_iou=0.3, crowd_iou=CROWD_IOU_THRESHOLD):
    """Labels and deltas of one image's anchors.

    Args:
        anchors: float32 [A, (y1, x1, y2, x2)].
        gt_class_ids: int32 [G]: > 0 objects, < 0 crowd regions, 0 padding.
        gt_boxes: float32 [G, 4], the same frame as ``anchors`` (pixels or
            normalised: IoU and deltas do not depend on the scale).
        anchors_per_image: anchors labelled for the loss (positives + negatives).
        std_dev: 4 floats the deltas are divided by.
        positive_iou, negative_iou: the matcher's thresholds.
        crowd_iou: anchors overlapping a crowd region this much are not negatives.
    Returns:
        rpn_match int32 [A]: POSITIVE_ANCHOR, NEGATIVE_ANCHOR or NEUTRAL_ANCHOR
        (not sampled); rpn_bbox float32 [anchors_per_image, (dy, dx,
        log(dh), log(dw))]: the sampled positives' deltas in anchor order,
        zero-padded.
    """
    real = tf.not_equal(gt_class_ids, 0) & nonzero_rows(gt_boxes)
    crowd_boxes = tf.boolean_mask(gt_boxes, real & (gt_class_ids < 0))
    gt_boxes = tf.boolean_mask(gt_boxes, real & (gt_class_ids > 0))

    matches = match_boxes(box_iou(anchors, gt_boxes), positive_iou, negative_iou,
                          allow_low_quality_matches=True,
                          not_negative=crowd_rows(anchors, crowd_boxes, crowd_iou))
    positive, negative = sample_balanced(matches, anchors_per_image, anchors_per_image // 2)
    positive = tf.sort(positive)  # the deltas are packed in anchor order
    num_anchors = tf.shape(anchors)[0]
    # Anchors that are not sampled keep scatter_nd's zeros: NEUTRAL_ANCHOR.
    rpn_match = NEUTRAL_ANCHOR + tf.scatter_nd(positive[:, None], tf.fill(tf.shape(positive), POSITIVE_ANCHOR),
                              [num_anchors])
    rpn_match += tf.scatter_nd(negative[:, None], tf.fill(tf.shape(negative), NEGATIVE_ANCHOR),
                               [num_anchors])
    deltas = encode_boxes(tf.gather(anchors, positive),
                          tf.gather(gt_boxes, tf.gather(matches, positive)), std_dev)
    return rpn_match, pad_rows(deltas, anchors_per_image)


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class RPNTargetLayer(keras.layers.Layer):
    """:func:`rpn_targets` over a batch.

    Inputs (a list):
        anchors: float [B, A, 4], the RPN's anchors in its output order.
        gt_class_ids: int [B, G]; 0 is padding, negative ids are crowd regions.
        gt_boxes: float [B, G, 4] in the anchors' frame.
    Outputs (a list):
        rpn_match int32 [B, A] (1 positive, -1 negative, 0 neutral), and
        rpn_bbox float32 [B, anchors_per_image, 4].
    """

    def __init__(self, anchors_per_image, std_dev=(0.1, 0.1, 0.2, 0.2), positive_iou=0.7,
                 negative_iou=0.3, crowd_iou=CROWD_IOU_THRESHOLD, **kwargs):
        super().__init__(**kwargs)
        self.anchors_per_image = check_positive_int(anchors_per_image, "anchors_per_image")
        self.std_dev = check_std_dev(std_dev, "std_dev")
        self.positive_iou = check_fraction(positive_iou, "positive_iou")
        self.negative_iou = check_fraction(negative_iou, "negative_iou")
        self.crowd_iou = check_fraction(crowd_iou, "crowd_iou")
        if not 0.0 < self.positive_iou:
            raise ValueError(f"positive_iou must be > 0, got {positive_iou!r}")
        if self.negative_iou > self.positive_iou:
            raise ValueError(f"negative_iou ({negative_iou!r}) must not exceed positive_iou "
                             f"({positive_iou!r})")

    def call(self, inputs):
        anchors, gt_class_ids, gt_boxes = (tf.stop_gradient(tf.cast(t, dtype)) for t, dtype in
                                           zip(inputs, (tf.float32, tf.int32, tf.float32)))

        def one_image(args):
            return rpn_targets(*args, self.anchors_per_image, self.std_dev, self.positive_iou,
                               self.negative_iou, self.crowd_iou)

        signature = (tf.TensorSpec([None], tf.int32),
                     tf.TensorSpec([self.anchors_per_image, 4], tf.float32))
        rpn_match, rpn_bbox = tf.map_fn(one_image, (anchors, gt_class_ids, gt_boxes),
                                        fn_output_signature=signature)
        return [tf.stop_gradient(rpn_match), tf.stop_gradient(rpn_bbox)]

    def compute_output_shape(self, input_shapes):
        batch, num_anchors = input_shapes[0][0], input_shapes[0][1]
        return [(batch, num_anchors), (batch, self.anchors_per_image, 4)]

    def get_config(self):
        return {**super().get_config(), "anchors_per_image": self.anchors_per_image,
                "std_dev": list(self.std_dev), "positive_iou": self.positive_iou,
                "negative_iou": self.negative_iou, "crowd_iou": self.crowd_iou}
