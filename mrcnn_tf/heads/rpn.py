"""Region Proposal Network head, shared over the pyramid levels."""

import keras
from keras import layers


def build_rpn_model(anchor_stride, anchors_per_location, depth, hidden=256):
    """The RPN head as a Keras model named ``rpn_model`` (applied to each level).

    Args:
        anchor_stride: anchors every this many feature cells (conv stride).
        anchors_per_location: ratios per position.
        depth: channels of the pyramid maps.
        hidden: width of the shared 3x3 convolution (the classic Keras
            weights have 512).
    Returns:
        keras.Model: [B, h, w, depth] -> [rpn_class_logits [B, a, 2],
        rpn_probs [B, a, 2], rpn_bbox [B, a, (dy, dx, log(dh), log(dw))]],
        a = h * w * anchors_per_location in anchor order.
    """
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = layers.Conv2D(hidden, 3, padding="same", activation="relu", strides=anchor_stride,
                           name="rpn_conv_shared")(feature_map)
    logits = layers.Conv2D(2 * anchors_per_location, 1, name="rpn_class_raw")(shared)
    logits = layers.Reshape((-1, 2))(logits)
    probs = layers.Activation("softmax", dtype="float32", name="rpn_class_probs")(logits)
    deltas = layers.Conv2D(4 * anchors_per_location, 1, name="rpn_bbox_pred")(shared)
    deltas = layers.Reshape((-1, 4))(deltas)
    return keras.Model(feature_map, [logits, probs, deltas], name="rpn_model")
