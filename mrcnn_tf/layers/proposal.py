"""ProposalLayer: RPN scores and deltas on anchors -> a fixed number of proposals."""

import keras
import tensorflow as tf

from mrcnn_tf.layers.common import (check_fraction, check_positive_int, check_std_dev,
                                    map_over_batch, pad_rows)
from mrcnn_tf.ops.boxes import box_area, clip_boxes, decode_boxes
from mrcnn_tf.ops.nms import non_max_suppression


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class ProposalLayer(keras.layers.Layer):
    """Turns anchor scores and deltas into NMS-filtered proposals.

    Per image: keep the ``pre_nms_limit`` highest-scoring anchors, apply
    their deltas, clip to the image, drop empty boxes, run NMS and keep
    ``proposal_count`` boxes, best first, padded with zero rows.

    Inputs (a list):
        rpn_probs: float [B, A, 2], softmax (background, object) per anchor.
        rpn_deltas: float [B, A, (dy, dx, log(dh), log(dw))] / rpn_bbox_std_dev.
        anchors: float [B, A, (y1, x1, y2, x2)] normalised to the image.
    Output:
        float32 [B, proposal_count, (y1, x1, y2, x2)] normalised; zero rows
        are padding.
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit=6000,
                 rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.2), **kwargs):
        super().__init__(**kwargs)
        self.proposal_count = check_positive_int(proposal_count, "proposal_count")
        self.nms_threshold = check_fraction(nms_threshold, "nms_threshold")
        self.pre_nms_limit = check_positive_int(pre_nms_limit, "pre_nms_limit")
        self.rpn_bbox_std_dev = check_std_dev(rpn_bbox_std_dev, "rpn_bbox_std_dev")

    def call(self, inputs):
        rpn_probs, rpn_deltas, anchors = inputs
        scores = tf.cast(rpn_probs[..., 1], tf.float32)
        rpn_deltas = tf.cast(rpn_deltas, tf.float32)
        anchors = tf.cast(anchors, tf.float32)

        # Top-k over the whole batch at once: NMS is the only per-image step.
        k = tf.minimum(self.pre_nms_limit, tf.shape(scores)[1])
        scores, top = tf.math.top_k(scores, k=k, sorted=True)
        deltas = tf.gather(rpn_deltas, top, batch_dims=1)
        top_anchors = tf.gather(anchors, top, batch_dims=1)
        boxes = decode_boxes(top_anchors, deltas, self.rpn_bbox_std_dev)
        boxes = clip_boxes(boxes, [0.0, 0.0, 1.0, 1.0])
        # Boxes clipped to nothing must not be proposed; scores are >= 0.
        scores = tf.where(box_area(boxes) > 0.0, scores, -1.0)

        def select(args):
            image_boxes, image_scores = args
            keep = non_max_suppression(image_boxes, image_scores, self.proposal_count,
                                       self.nms_threshold, score_threshold=-0.5)
            return pad_rows(tf.gather(image_boxes, keep), self.proposal_count)

        proposals = map_over_batch(select, (boxes, scores), tf.TensorSpec([None, 4], tf.float32))
        # Proposals are treated as constants by the heads (no gradient into the RPN).
        return tf.stop_gradient(tf.ensure_shape(proposals, [None, self.proposal_count, 4]))

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.proposal_count, 4)

    def get_config(self):
        return {**super().get_config(), "proposal_count": self.proposal_count,
                "nms_threshold": self.nms_threshold, "pre_nms_limit": self.pre_nms_limit,
                "rpn_bbox_std_dev": list(self.rpn_bbox_std_dev)}
