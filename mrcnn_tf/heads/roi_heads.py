"""The per-RoI heads: class + box, and the mask FCN (run in parallel on the same RoIs)."""

from keras import layers

from mrcnn_tf.layers import MergeRoiBatch, PyramidROIAlign, SplitRoiBatch


def _norm(kind, name):
    """The head normalisation: frozen/trainable BatchNorm, GroupNorm or none."""
    if kind == "batch":
        return layers.BatchNormalization(epsilon=1e-3, name=name)
    if kind == "group":
        return layers.GroupNormalization(groups=32, name=name.replace("_bn", "_gn"))
    if kind == "none":
        return layers.Identity(name=name)
    raise ValueError(f"HEAD_NORM must be 'batch', 'group' or 'none', got {kind!r}")


def box_head_graph(rois, image_shape, feature_maps, num_classes, pool_size=7, fc_size=1024,
                   norm="batch"):
    """Class and box head (two 1024-wide layers, the first a pool_size conv).

    Args:
        rois: [B, N, (y1, x1, y2, x2)] normalised.
        image_shape: [B, 3] molded image shape (pixels).
        feature_maps: [P2, P3, P4, P5].
        num_classes: classes including background (K).
    Returns:
        class_logits [B, N, K], class_probs [B, N, K] (float32),
        bbox_deltas [B, N, K, (dy, dx, log(dh), log(dw))].
    """
    x = PyramidROIAlign(pool_size, name="roi_align_classifier")([rois, image_shape, *feature_maps])
    x = MergeRoiBatch(name="mrcnn_class_merge_rois")(x)
    # A pool_size x pool_size "valid" conv is the first fully connected layer (classic layout).
    x = layers.Conv2D(fc_size, pool_size, name="mrcnn_class_conv1")(x)
    x = layers.Activation("relu")(_norm(norm, "mrcnn_class_bn1")(x))
    x = layers.Conv2D(fc_size, 1, name="mrcnn_class_conv2")(x)
    x = layers.Activation("relu")(_norm(norm, "mrcnn_class_bn2")(x))
    shared = layers.Flatten(name="pool_squeeze")(x)

    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    deltas = layers.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared)
    deltas = layers.Reshape((num_classes, 4), name="mrcnn_bbox")(deltas)

    # Back to [B, N, ...], in float32 whatever the compute policy (losses, NMS).
    logits = SplitRoiBatch(dtype="float32", name="mrcnn_class_split_rois")([logits, rois])
    deltas = SplitRoiBatch(dtype="float32", name="mrcnn_bbox_split_rois")([deltas, rois])
    probs = layers.Activation("softmax", dtype="float32", name="mrcnn_class_probs")(logits)
    return logits, probs, deltas


def mask_head_graph(rois, image_shape, feature_maps, num_classes, pool_size=14, channels=256,
                    norm="batch"):
    """Mask FCN: four 3x3 convs, a 2x deconvolution, a 1x1 conv to K sigmoid maps.

    Args: as :func:`box_head_graph`; ``pool_size`` 14 gives 28x28 masks. N
        may be dynamic (inference runs it on the valid detections only).
    Returns:
        mask_probs float32 [B, N, 2 * pool_size, 2 * pool_size, K], per-class
        sigmoid probabilities (no softmax across classes), and the logits.
    """
    x = PyramidROIAlign(pool_size, name="roi_align_mask")([rois, image_shape, *feature_maps])
    x = MergeRoiBatch(name="mrcnn_mask_merge_rois")(x)
    for i in range(1, 5):
        x = layers.Conv2D(channels, 3, padding="same", name=f"mrcnn_mask_conv{i}")(x)
        x = layers.Activation("relu")(_norm(norm, f"mrcnn_mask_bn{i}")(x))
    x = layers.Conv2DTranspose(channels, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    logits = layers.Conv2D(num_classes, 1, name="mrcnn_mask")(x)
    logits = SplitRoiBatch(dtype="float32", name="mrcnn_mask_split_rois")([logits, rois])
    probs = layers.Activation("sigmoid", dtype="float32", name="mrcnn_mask_probs")(logits)
    return probs, logits
