"""The region proposal stage: RPN head, anchors, proposals and the RPN losses.

Anchor labelling (matching anchors to ground truth) is ``modeling/rpn_targets.py``,
in the training graph; its labels arrive at the losses as ``rpn_match``.
"""

import keras
import tensorflow as tf
from keras import layers

from mrcnn_tf.modeling.checks import check_choice, check_fraction, check_positive_int, check_std_dev
from mrcnn_tf.ops.anchors import ANCHOR_MODES, generate_anchors_torchvision, generate_pyramid_anchors
from mrcnn_tf.ops.batching import map_images
from mrcnn_tf.ops.boxes import box_area, clip_boxes, decode_boxes, pad_rows
from mrcnn_tf.ops.nms import batched_nms, non_max_suppression
from mrcnn_tf.modeling.losses_common import safe_mean, smooth_l1

# Anchor labels in rpn_match.
POSITIVE_ANCHOR, NEUTRAL_ANCHOR, NEGATIVE_ANCHOR = 1, 0, -1


RPN_OBJECTNESS = ("softmax", "sigmoid")
PROPOSAL_MODES = ("global", "per_level")


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class BinaryLogits(keras.layers.Layer):
    """One objectness logit z per anchor -> the two-class logits (0, z).

    softmax((0, z)) = (1 - sigmoid(z), sigmoid(z)), so a sigmoid RPN head
    (torchvision's, one logit per anchor) feeds the same proposal layer and
    two-class loss (whose cross-entropy is then exactly the binary one).
    Input [B, a, 1], output [B, a, 2].
    """

    def call(self, logits):
        return tf.concat([tf.zeros_like(logits), logits], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2)


def build_rpn_model(anchor_stride, anchors_per_location, depth, hidden=256, objectness="softmax",
                    conv_layers=1):
    """The RPN head as a Keras model named ``rpn_model`` (applied to each level).

    Args:
        anchor_stride: anchors every this many feature cells (conv stride).
        anchors_per_location: ratios per position.
        depth: channels of the pyramid maps.
        hidden: width of the shared 3x3 convolution (the classic Keras
            weights have 512).
        objectness: "softmax" (two logits per anchor, the classic head) or
            "sigmoid" (one logit per anchor, torchvision's; see
            :class:`BinaryLogits`).
        conv_layers: shared 3x3 convolutions (torchvision v2 has 2; the
            second is ``rpn_conv_shared2``).
    Returns:
        keras.Model: [B, h, w, depth] -> [rpn_class_logits [B, a, 2],
        rpn_probs [B, a, 2], rpn_bbox [B, a, (dy, dx, log(dh), log(dw))]],
        a = h * w * anchors_per_location in anchor order.
    """
    check_choice(objectness, RPN_OBJECTNESS, "objectness")
    check_positive_int(conv_layers, "conv_layers")
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = layers.Conv2D(hidden, 3, padding="same", activation="relu", strides=anchor_stride,
                           name="rpn_conv_shared")(feature_map)
    for i in range(2, conv_layers + 1):
        shared = layers.Conv2D(hidden, 3, padding="same", activation="relu",
                               name=f"rpn_conv_shared{i}")(shared)
    if objectness == "sigmoid":
        logits = layers.Conv2D(anchors_per_location, 1, name="rpn_class_raw")(shared)
        logits = BinaryLogits(name="rpn_binary_logits")(layers.Reshape((-1, 1))(logits))
    else:
        logits = layers.Conv2D(2 * anchors_per_location, 1, name="rpn_class_raw")(shared)
        logits = layers.Reshape((-1, 2))(logits)
    probs = layers.Activation("softmax", dtype="float32", name="rpn_class_probs")(logits)
    deltas = layers.Conv2D(4 * anchors_per_location, 1, name="rpn_bbox_pred")(shared)
    deltas = layers.Reshape((-1, 4))(deltas)
    return keras.Model(feature_map, [logits, probs, deltas], name="rpn_model")


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class PyramidAnchors(keras.layers.Layer):
    """Anchors for the actual feature-map sizes, normalised to the image.

    Inputs (a list): the image [B, H, W, C], then one feature map per level.
    Output: float32 [B, A, (y1, x1, y2, x2)] in the order the RPN head
    emits its per-anchor outputs. With static shapes TF folds this to a
    constant, so it costs nothing per step.
    """

    def __init__(self, scales, ratios, feature_strides, anchor_stride=1, mode="classic", **kwargs):
        super().__init__(**kwargs)
        self.scales = tuple(float(s) for s in scales)
        self.ratios = tuple(float(r) for r in ratios)
        self.feature_strides = tuple(int(s) for s in feature_strides)
        self.anchor_stride = check_positive_int(anchor_stride, "anchor_stride")
        check_choice(mode, ANCHOR_MODES, "anchor mode")
        if mode == "torchvision" and self.anchor_stride != 1:
            raise ValueError(f"torchvision anchors need anchor_stride 1, got {anchor_stride!r}")
        self.mode = mode

    def call(self, inputs):
        image, *feature_maps = inputs
        shapes = [tf.shape(f)[1:3] for f in feature_maps]
        hw = tf.cast(tf.shape(image)[1:3], tf.float32)
        if self.mode == "torchvision":
            # Its strides are image side // map side (see generate_anchors_torchvision).
            image_hw = tf.shape(image)[1:3]
            anchors = tf.concat([generate_anchors_torchvision(scale, self.ratios, shape, image_hw // shape)
                                 for scale, shape in zip(self.scales, shapes)], axis=0)
        else:
            anchors = generate_pyramid_anchors(self.scales, self.ratios, shapes,
                                               self.feature_strides, self.anchor_stride)
        anchors = anchors / tf.concat([hw, hw], axis=0)
        return tf.tile(anchors[None], [tf.shape(image)[0], 1, 1])

    def get_config(self):
        return {**super().get_config(), "scales": list(self.scales), "ratios": list(self.ratios),
                "feature_strides": list(self.feature_strides), "anchor_stride": self.anchor_stride,
                "mode": self.mode}


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class AnchorLevels(keras.layers.Layer):
    """The pyramid level (0 = P2) of every anchor, in anchor order.

    Inputs (a list): one feature map [B, h_l, w_l, C] per level, finest first.
    Output: int32 [A], level l repeated h_l * w_l * anchors_per_location times.
    """

    def __init__(self, anchors_per_location, **kwargs):
        super().__init__(**kwargs)
        self.anchors_per_location = check_positive_int(anchors_per_location, "anchors_per_location")

    def call(self, feature_maps):
        counts = tf.stack([tf.shape(f)[1] * tf.shape(f)[2] for f in feature_maps])
        return tf.repeat(tf.range(len(feature_maps)), counts * self.anchors_per_location)

    def compute_output_shape(self, input_shapes):
        return (None,)

    def get_config(self):
        return {**super().get_config(), "anchors_per_location": self.anchors_per_location}


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class ProposalLayer(keras.layers.Layer):
    """Turns anchor scores and deltas into NMS-filtered proposals.

    ``mode="global"`` (the classic one): per image, keep the
    ``pre_nms_limit`` highest-scoring anchors, apply their deltas, clip to
    the image, drop empty boxes, run NMS and keep ``proposal_count`` boxes,
    best first, padded with zero rows.

    ``mode="per_level"`` (torchvision's and detectron2's): the
    ``pre_nms_limit`` best anchors *of each level*, decoded, clipped to the
    image window, boxes with a side under ``min_size`` pixels dropped, NMS
    within each level, then the ``proposal_count`` best over all levels.

    Inputs (a list):
        rpn_probs: float [B, A, 2], softmax (background, object) per anchor.
        rpn_deltas: float [B, A, (dy, dx, log(dh), log(dw))] / rpn_bbox_std_dev.
        anchors: float [B, A, (y1, x1, y2, x2)] normalised to the image.
        "per_level" only: window float [B, (y1, x1, y2, x2)] normalised (the
        real image in the padded batch), image_shape [B, >=2] molded pixels
        (H, W, ...), anchor_levels int32 [A] (:class:`AnchorLevels`).
    Output:
        float32 [B, proposal_count, (y1, x1, y2, x2)] normalised; zero rows
        are padding.
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit=6000,
                 rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.2), mode="global", min_size=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.proposal_count = check_positive_int(proposal_count, "proposal_count")
        self.nms_threshold = check_fraction(nms_threshold, "nms_threshold")
        self.pre_nms_limit = check_positive_int(pre_nms_limit, "pre_nms_limit")
        self.rpn_bbox_std_dev = check_std_dev(rpn_bbox_std_dev, "rpn_bbox_std_dev")
        check_choice(mode, PROPOSAL_MODES, "mode")
        self.mode = mode
        self.min_size = float(min_size)

    def call(self, inputs):
        if self.mode == "per_level":
            return self._per_level(*inputs)
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

        proposals = map_images(select, (boxes, scores), tf.TensorSpec([None, 4], tf.float32))
        # Proposals are treated as constants by the heads (no gradient into the RPN).
        return tf.stop_gradient(tf.ensure_shape(proposals, [None, self.proposal_count, 4]))

    def _per_level(self, rpn_probs, rpn_deltas, anchors, window, image_shape, anchor_levels):
        levels = tf.cast(anchor_levels, tf.int32)
        # Where each level starts in a level-sorted list (anchors come level by level).
        starts = tf.cumsum(tf.math.bincount(levels, dtype=tf.int32), exclusive=True)
        image_hw = tf.cast(image_shape[0, :2], tf.float32)

        def select(args):
            scores, deltas, image_anchors, image_window = args
            # Best first within each level: a stable sort by score, then by level.
            order = tf.argsort(scores, direction="DESCENDING", stable=True)
            order = tf.gather(order, tf.argsort(tf.gather(levels, order), stable=True))
            order_levels = tf.gather(levels, order)
            rank = tf.range(tf.shape(order)[0]) - tf.gather(starts, order_levels)
            top = tf.boolean_mask(order, rank < self.pre_nms_limit)
            boxes = decode_boxes(tf.gather(image_anchors, top), tf.gather(deltas, top),
                                 self.rpn_bbox_std_dev)
            boxes = clip_boxes(boxes, image_window)
            sides_px = (boxes[:, 2:] - boxes[:, :2]) * image_hw
            big = tf.reduce_all(sides_px >= self.min_size, axis=1)
            boxes = tf.boolean_mask(boxes, big)
            keep = batched_nms(boxes, tf.boolean_mask(tf.gather(scores, top), big),
                               tf.boolean_mask(tf.gather(levels, top), big),
                               self.proposal_count, self.nms_threshold)
            return pad_rows(tf.gather(boxes, keep), self.proposal_count)

        elems = (tf.cast(rpn_probs[..., 1], tf.float32), tf.cast(rpn_deltas, tf.float32),
                 tf.cast(anchors, tf.float32), tf.cast(window, tf.float32))
        proposals = map_images(select, elems, tf.TensorSpec([None, 4], tf.float32))
        return tf.stop_gradient(tf.ensure_shape(proposals, [None, self.proposal_count, 4]))

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.proposal_count, 4)

    def get_config(self):
        return {**super().get_config(), "proposal_count": self.proposal_count,
                "nms_threshold": self.nms_threshold, "pre_nms_limit": self.pre_nms_limit,
                "rpn_bbox_std_dev": list(self.rpn_bbox_std_dev), "mode": self.mode,
                "min_size": self.min_size}


# ------------------------------------------------------------------ losses
def rpn_class_loss(rpn_match, rpn_class_logits):
    """Anchor object/background cross-entropy over non-neutral anchors.

    Args:
        rpn_match: int [B, A] (or [B, A, 1]): 1 positive, -1 negative, 0 neutral.
        rpn_class_logits: float [B, A, 2] (background, object) logits.
    Returns:
        float32 scalar: mean cross-entropy over positive and negative anchors.
    """
    rpn_match = tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(rpn_class_logits)[:2])
    used = tf.where(tf.not_equal(rpn_match, NEUTRAL_ANCHOR))
    labels = tf.cast(tf.equal(tf.gather_nd(rpn_match, used), POSITIVE_ANCHOR), tf.int32)
    logits = tf.cast(tf.gather_nd(rpn_class_logits, used), tf.float32)
    return safe_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


def rpn_bbox_loss(target_rpn_bbox, rpn_match, rpn_bbox):
    """Smooth L1 on the deltas of positive anchors.

    Args:
        target_rpn_bbox: float [B, M, 4]: the deltas of each image's positive
            anchors, in anchor order, packed at the top and zero-padded.
        rpn_match: int [B, A] (or [B, A, 1]).
        rpn_bbox: float [B, A, 4] predicted deltas.
    Returns:
        float32 scalar: mean over the positive anchors' 4 coordinates.
    """
    rpn_bbox = tf.cast(rpn_bbox, tf.float32)
    target_rpn_bbox = tf.cast(target_rpn_bbox, tf.float32)
    rpn_match = tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(rpn_bbox)[:2])
    positive = tf.cast(tf.equal(rpn_match, POSITIVE_ANCHOR), tf.int32)
    # The targets are packed: image i's positives, in anchor order, fill its
    # first rows. Positives beyond the target rows have no target and are skipped.
    max_rows = tf.shape(target_rpn_bbox)[1]
    rank = tf.cumsum(positive, axis=1, exclusive=True)
    pred = tf.boolean_mask(rpn_bbox, (positive > 0) & (rank < max_rows))
    counts = tf.minimum(tf.reduce_sum(positive, axis=1), max_rows)
    target = tf.boolean_mask(target_rpn_bbox, tf.sequence_mask(counts, max_rows))
    return safe_mean(smooth_l1(target - pred))
