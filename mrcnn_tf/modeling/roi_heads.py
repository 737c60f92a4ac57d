"""The per-RoI heads: pyramid RoIAlign, the class/box head and the mask FCN, their losses.

Each head is a Keras model over pooled RoI features (``box_head``,
``mask_head``), built once and shared by the training and inference graphs;
``box_head_graph`` and ``mask_head_graph`` wire one into a graph: pool the
RoIs from the pyramid, run the head, restore the batch axis, float32 outputs.
The two heads run in parallel on the same RoIs (the paper's design).
"""

import math

import keras
import tensorflow as tf
from keras import layers

from mrcnn_tf.modeling.checks import check_choice, check_positive_int
from mrcnn_tf.modeling.losses_common import safe_mean, smooth_l1
from mrcnn_tf.ops.roi_align import check_aggregate, fpn_level, roi_align_unchecked, unaligned_boxes
from mrcnn_tf.ops.roi_pool import roi_pool_unchecked, roi_warp_unchecked

# RoI feature extractors (Mask R-CNN Table 2c): exact RoIAlign, Fast R-CNN's
# RoIPool, MNC's RoIWarp (ops/roi_align.py, ops/roi_pool.py).
POOLING_METHODS = ("align", "pool", "warp")
MASK_LOSSES = ("sigmoid", "softmax")
MASK_HEADS = ("fcn", "mlp")


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class PyramidROIAlign(keras.layers.Layer):
    """Pools every box from its FPN level (FPN paper, eq. 1), keeping box order.

    ``method`` picks the extractor: "align" (RoIAlign, ``sampling_ratio`` x
    ``sampling_ratio`` samples per bin combined by ``aggregate``), "warp"
    (RoIWarp: the same on the box snapped to the level's grid) or "pool"
    (RoIPool: snapped box and bins, max over cells; ignores
    ``sampling_ratio`` and ``aggregate``). ``fixed_level`` (an int) pools
    every box from that one level instead of the FPN rule (the paper's
    Table 2d: a single stride-32 feature).

    Inputs (a list):
        boxes: float [B, N, (y1, x1, y2, x2)] normalised to the molded image.
        image_shape: float/int [B, >=2], the molded image (H, W, ...) in
            pixels; only the first row is read (a batch shares one shape).
        feature_maps: P2, P3, ..., one [B, h_l, w_l, C] map per level,
            level ``min_level + i`` having stride ``2 ** (min_level + i)``.
    Output:
        [B, N, pool_size, pool_size, C] in the feature maps' dtype.
    """

    def __init__(self, pool_size, sampling_ratio=2, k0=4, canonical_size=224, min_level=2,
                 method="align", aggregate="avg", aligned=True, level_eps=0.0, fixed_level=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.pool_size = check_positive_int(pool_size, "pool_size")
        self.sampling_ratio = check_positive_int(sampling_ratio, "sampling_ratio")
        check_choice(method, POOLING_METHODS, "method")
        self.method = method
        self.aggregate = check_aggregate(aggregate)
        self.k0 = int(k0)
        self.canonical_size = float(canonical_size)
        self.min_level = check_positive_int(min_level, "min_level")
        # aligned=False: torchvision v1's RoIAlign (ops.roi_align.unaligned_boxes); level_eps:
        # its LevelMapper's 1e-6 (ops.roi_align.fpn_level).
        self.aligned = bool(aligned)
        self.level_eps = float(level_eps)
        self.fixed_level = None if fixed_level is None else check_positive_int(fixed_level, "fixed_level")

    def call(self, inputs):
        boxes, image_shape, *feature_maps = inputs
        if not feature_maps:
            raise ValueError("PyramidROIAlign needs at least one feature map after boxes, image_shape")
        max_level = self.min_level + len(feature_maps) - 1
        if self.fixed_level is not None and not self.min_level <= self.fixed_level <= max_level:
            raise ValueError(f"PyramidROIAlign fixed_level {self.fixed_level} is not one of the "
                             f"given levels {self.min_level}..{max_level}")
        # RoIAlign is not trained through its box coordinates (as in the paper);
        # their gradient would also cost more than the rest of the backward pass.
        boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
        batch, num_boxes = tf.shape(boxes)[0], tf.shape(boxes)[1]
        image_hw = tf.cast(image_shape[0, :2], tf.float32)

        flat_boxes = tf.reshape(boxes, [-1, 4])
        flat_image_index = tf.repeat(tf.range(batch), num_boxes)
        boxes_px = flat_boxes * tf.concat([image_hw, image_hw], axis=0)
        if self.fixed_level is None:
            levels = fpn_level(boxes_px, self.k0, self.canonical_size, self.min_level, max_level,
                               self.level_eps)
        else:
            levels = tf.fill(tf.shape(boxes_px)[:1], self.fixed_level)

        pooled, order = [], []
        for offset, feature_map in enumerate(feature_maps):
            level = self.min_level + offset
            index = tf.where(tf.equal(levels, level))[:, 0]
            stride = float(2 ** level)
            level_boxes = tf.gather(boxes_px, index) / stride
            if not self.aligned:
                level_boxes = unaligned_boxes(level_boxes)
            pooled.append(self._pool(feature_map, level_boxes, tf.gather(flat_image_index, index)))
            order.append(index)
        # Rows come out grouped by level; scatter them back to box order.
        pooled = tf.concat(pooled, axis=0)
        order = tf.cast(tf.concat(order, axis=0), tf.int32)
        # The inverse permutation as a scatter: InvertPermutation has no TFLite builtin.
        inverse = tf.scatter_nd(order[:, None], tf.range(tf.shape(order)[0]), tf.shape(order))
        pooled = tf.gather(pooled, inverse)
        channels = feature_maps[0].shape[-1]
        return tf.reshape(pooled, [batch, num_boxes, self.pool_size, self.pool_size,
                                   channels if channels is not None else -1])

    def _pool(self, feature_map, boxes, box_indices):
        size = self.pool_size
        if self.method == "pool":
            return roi_pool_unchecked(feature_map, boxes, box_indices, size, size)
        extract = roi_warp_unchecked if self.method == "warp" else roi_align_unchecked
        return extract(feature_map, boxes, box_indices, size, size, self.sampling_ratio,
                       aggregate=self.aggregate)

    def compute_output_shape(self, input_shapes):
        boxes_shape, _, first_map = input_shapes[0], input_shapes[1], input_shapes[2]
        return (boxes_shape[0], boxes_shape[1], self.pool_size, self.pool_size, first_map[-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size,
                "sampling_ratio": self.sampling_ratio, "k0": self.k0,
                "canonical_size": self.canonical_size, "min_level": self.min_level,
                "method": self.method, "aggregate": self.aggregate, "aligned": self.aligned,
                "level_eps": self.level_eps, "fixed_level": self.fixed_level}


def _trailing_dims(tensor, start):
    """Dims from ``start`` on: static where known (conv layers need them)."""
    dynamic = tf.shape(tensor)
    return [dim if dim is not None else dynamic[i]
            for i, dim in enumerate(tensor.shape[start:], start)]


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class MergeRoiBatch(keras.layers.Layer):
    """[B, N, ...] -> [B * N, ...], so per-RoI heads are plain conv layers.

    (``TimeDistributed`` in Keras 3 loops in Python over the N RoIs.)
    """

    def call(self, rois):
        return tf.reshape(rois, [-1, *_trailing_dims(rois, 2)])

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[2:])


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class SplitRoiBatch(keras.layers.Layer):
    """[B * N, ...] -> [B, N, ...], the inverse of :class:`MergeRoiBatch`.

    Inputs (a list): the flat tensor [B * N, ...] and the RoIs [B, N, 4] it
    was pooled from, which give B and N (N may vary from call to call).
    """

    def call(self, inputs):
        flat, rois = inputs
        rois_shape = tf.shape(rois)
        return tf.reshape(flat, [rois_shape[0], rois_shape[1], *_trailing_dims(flat, 1)])

    def compute_output_shape(self, input_shapes):
        flat_shape, rois_shape = input_shapes
        return (rois_shape[0], rois_shape[1], *flat_shape[1:])


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class FullyConnectedConv2D(layers.Conv2D):
    """A fully connected layer in the classic conv layout: a "valid" Conv2D whose
    kernel spans its whole input, computed as one matmul.

    [R, kh, kw, C] -> [R, 1, 1, filters], with the kernel kept 4-D
    [kh, kw, C, filters] as in the classic files (and optimizer state and
    ``.keras`` files), so weights need no conversion. Both operands are
    flattened row-major, ``[R, kh * kw * C] @ [kh * kw * C, filters]``: RoI
    element (i, j, c) meets kernel row (i, j, c), as in the convolution. It is
    faster on CPU: the R50 box head's forward and backward pass over 400 RoIs
    took 1.1 s as convolutions, 0.25 s as matmuls (2 cores, TF 2.21).
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        fixed = {"strides": (self.strides, (1, 1)), "padding": (self.padding, "valid"),
                 "dilation_rate": (self.dilation_rate, (1, 1)), "groups": (self.groups, 1),
                 "data_format": (self.data_format, "channels_last")}
        for name, (value, required) in fixed.items():
            if value != required:
                raise ValueError(f"FullyConnectedConv2D needs {name}={required!r}, got {value!r}")

    def build(self, input_shape):
        if tuple(input_shape[1:3]) != tuple(self.kernel_size):
            raise ValueError(f"FullyConnectedConv2D {self.name!r}: the kernel {self.kernel_size} "
                             f"must span the input's height and width, got input {tuple(input_shape)}")
        super().build(input_shape)

    def convolution_op(self, inputs, kernel):
        rows = math.prod(kernel.shape[:-1])  # kh * kw * C
        outputs = tf.matmul(tf.reshape(inputs, [-1, rows]), tf.reshape(kernel, [rows, self.filters]))
        return tf.reshape(outputs, [-1, 1, 1, self.filters])


def _norm(kind, name, bn_epsilon=1e-3):
    """The head normalisation: frozen/trainable BatchNorm, GroupNorm or none."""
    if kind == "batch":
        return layers.BatchNormalization(epsilon=bn_epsilon, name=name)
    if kind == "group":
        return layers.GroupNormalization(groups=32, name=name.replace("_bn", "_gn"))
    if kind == "none":
        return layers.Identity(name=name)
    raise ValueError(f"HEAD_NORM must be 'batch', 'group' or 'none', got {kind!r}")


def build_box_head(num_classes, pool_size=7, channels=256, fc_size=1024, norm="batch",
                   conv_layers=0, bn_epsilon=1e-3):
    """Class and box head (two ``fc_size``-wide fully connected layers, then class and box).

    With ``conv_layers`` > 0 it is the "4conv1fc" head (torchvision v2's
    ``FastRCNNConvFCHead``): that many 3x3 convolutions (``mrcnn_box_conv<i>``,
    ``channels`` wide), each with ``norm`` and ReLU, then one plain
    ``fc_size``-wide fully connected layer.

    Args:
        num_classes: classes including background (K).
        pool_size: side of the pooled features.
        channels: their channels (the pyramid's width).
        fc_size: width of the shared fully connected layers.
        norm: "batch", "group" or "none" after each shared layer (each
            convolution, with ``conv_layers``).
        conv_layers: 3x3 convolutions before a single fully connected layer.
        bn_epsilon: epsilon of the "batch" norms.
    Returns:
        keras.Model ``box_head``: pooled RoI features [R, pool_size,
        pool_size, channels] -> [class_logits [R, K],
        bbox_deltas [R, K, (dy, dx, log(dh), log(dw))]], in the compute dtype.
    """
    pooled = keras.Input((pool_size, pool_size, channels), name="input_box_head_features")
    x = pooled
    for i in range(1, conv_layers + 1):
        x = layers.Conv2D(channels, 3, padding="same", name=f"mrcnn_box_conv{i}")(x)
        x = layers.Activation("relu")(_norm(norm, f"mrcnn_box_bn{i}", bn_epsilon)(x))
    # The fully connected layers keep the classic pool_size x pool_size and 1x1 conv
    # kernels (and names), but run as matmuls: [R, pool, pool, C] -> [R, 1, 1, fc_size].
    x = FullyConnectedConv2D(fc_size, pool_size, name="mrcnn_class_conv1")(x)
    if conv_layers:
        x = layers.Activation("relu")(x)
    else:
        x = layers.Activation("relu")(_norm(norm, "mrcnn_class_bn1", bn_epsilon)(x))
        x = FullyConnectedConv2D(fc_size, 1, name="mrcnn_class_conv2")(x)
        x = layers.Activation("relu")(_norm(norm, "mrcnn_class_bn2", bn_epsilon)(x))
    shared = layers.Flatten(name="pool_squeeze")(x)

    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    deltas = layers.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared)
    deltas = layers.Reshape((num_classes, 4), name="mrcnn_bbox")(deltas)
    return keras.Model(pooled, [logits, deltas], name="box_head")


def build_mask_head(num_classes, pool_size=14, channels=256, conv_channels=256, norm="batch",
                    class_agnostic=False, head="fcn", mlp_size=1024, bn_epsilon=1e-3):
    """The mask head: the FCN (four 3x3 convs, a 2x deconvolution, a 1x1 conv to
    the mask maps), or the paper's MLP ablation (Table 2e).

    Args:
        num_classes: classes including background (K).
        pool_size: side of the pooled features (14 gives 28x28 masks).
        channels: their channels (the pyramid's width).
        conv_channels: width of the FCN's convolutions.
        norm: "batch", "group" or "none" after each 3x3 conv / hidden FC layer.
        class_agnostic: one mask for every class (the last layer has 1
            output map) instead of one per class.
        head: "fcn", or "mlp": two ``mlp_size``-wide fully connected layers,
            then ``maps * (2 pool_size)^2`` outputs reshaped to the masks.
        mlp_size: width of the MLP's hidden layers (the paper's 1024).
        bn_epsilon: epsilon of the FCN's "batch" norms.
    Returns:
        keras.Model ``mask_head``: pooled RoI features [R, pool_size,
        pool_size, channels] -> mask logits [R, 2 * pool_size, 2 * pool_size,
        maps], maps = 1 if ``class_agnostic`` else K (no activation), compute dtype.
    """
    check_choice(head, MASK_HEADS, "head")
    maps = 1 if class_agnostic else num_classes
    side = 2 * pool_size
    pooled = keras.Input((pool_size, pool_size, channels), name="input_mask_head_features")
    x = pooled
    if head == "mlp":
        # As the box head's FC layers: matmuls in the classic conv layout.
        x = FullyConnectedConv2D(mlp_size, pool_size, name="mrcnn_mask_fc1")(x)
        x = layers.Activation("relu")(_norm(norm, "mrcnn_mask_fc_bn1")(x))
        x = FullyConnectedConv2D(mlp_size, 1, name="mrcnn_mask_fc2")(x)
        x = layers.Activation("relu")(_norm(norm, "mrcnn_mask_fc_bn2")(x))
        x = FullyConnectedConv2D(maps * side * side, 1, name="mrcnn_mask")(x)
        logits = layers.Reshape((side, side, maps), name="mrcnn_mask_reshape")(x)
        return keras.Model(pooled, logits, name="mask_head")
    for i in range(1, 5):
        x = layers.Conv2D(conv_channels, 3, padding="same", name=f"mrcnn_mask_conv{i}")(x)
        x = layers.Activation("relu")(_norm(norm, f"mrcnn_mask_bn{i}", bn_epsilon)(x))
    x = layers.Conv2DTranspose(conv_channels, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    logits = layers.Conv2D(maps, 1, name="mrcnn_mask")(x)
    return keras.Model(pooled, logits, name="mask_head")


def _pool_side(head):
    return int(head.inputs[0].shape[1])


def box_head_graph(box_head, rois, image_shape, feature_maps, **pooling):
    """Run ``box_head`` on RoIs pooled from the pyramid.

    Args:
        box_head: from :func:`build_box_head` (its input gives the pool size).
        rois: [B, N, (y1, x1, y2, x2)] normalised to the molded image.
        image_shape: [B, 3] molded image shape (pixels).
        feature_maps: [P2, P3, P4, P5].
        **pooling: :class:`PyramidROIAlign` options (method, aggregate,
            sampling_ratio).
    Returns:
        class_logits [B, N, K], class_probs [B, N, K] (softmax),
        bbox_deltas [B, N, K, (dy, dx, log(dh), log(dw))], all float32.
    """
    x = PyramidROIAlign(_pool_side(box_head), **pooling, name="roi_align_classifier")(
        [rois, image_shape, *feature_maps])
    logits, deltas = box_head(MergeRoiBatch(name="mrcnn_class_merge_rois")(x))
    # Back to [B, N, ...], in float32 whatever the compute policy (losses, NMS).
    logits = SplitRoiBatch(dtype="float32", name="mrcnn_class_split_rois")([logits, rois])
    deltas = SplitRoiBatch(dtype="float32", name="mrcnn_bbox_split_rois")([deltas, rois])
    probs = layers.Activation("softmax", dtype="float32", name="mrcnn_class_probs")(logits)
    return logits, probs, deltas


def mask_head_graph(mask_head, rois, image_shape, feature_maps, mask_loss="sigmoid", **pooling):
    """Run ``mask_head`` on RoIs pooled from the pyramid.

    Args: as :func:`box_head_graph`, with ``mask_head`` from
        :func:`build_mask_head`. N may be dynamic (inference runs it on the
        valid detections only). ``mask_loss`` ("sigmoid" or "softmax", as
        :func:`mrcnn_mask_loss`) picks the probabilities.
    Returns:
        mask_probs float32 [B, N, mh, mw, M] (mh = mw = 2 * pool size; M = K
        maps, or 1 for a class-agnostic head): a sigmoid per map, or with
        "softmax" the softmax across the K maps at each pixel; and the
        float32 logits.
    """
    check_choice(mask_loss, MASK_LOSSES, "mask_loss")
    x = PyramidROIAlign(_pool_side(mask_head), **pooling, name="roi_align_mask")(
        [rois, image_shape, *feature_maps])
    logits = mask_head(MergeRoiBatch(name="mrcnn_mask_merge_rois")(x))
    logits = SplitRoiBatch(dtype="float32", name="mrcnn_mask_split_rois")([logits, rois])
    probs = layers.Activation(mask_loss, dtype="float32", name="mrcnn_mask_probs")(logits)
    return probs, logits


# ------------------------------------------------------------------ losses
def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """RoI classification cross-entropy over the classes of the image's dataset.

    Args:
        target_class_ids: int [B, N]; negative ids mark padding rows (ignored).
        pred_class_logits: float [B, N, K].
        active_class_ids: [B, K], 1 for classes of the image's source dataset.
            Inactive classes are removed from the softmax, so a model trained
            on several datasets is never pushed away from another dataset's
            classes it cannot see labelled here.
    Returns:
        float32 scalar: mean over non-padding RoIs.
    """
    logits = tf.cast(pred_class_logits, tf.float32)
    active = tf.cast(active_class_ids, tf.bool)[:, None, :]
    logits = tf.where(active, logits, tf.float32.min / 2.0)
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    used = tf.where(target_class_ids >= 0)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.gather_nd(target_class_ids, used), tf.gather_nd(logits, used))
    return safe_mean(losses)


def _positive_rois(target_class_ids):
    """(indices [P, 2] of positive RoIs, their class ids [P])."""
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    positive = tf.where(target_class_ids > 0)
    return positive, tf.gather_nd(target_class_ids, positive)


def mrcnn_bbox_loss(target_deltas, target_class_ids, pred_bbox):
    """Smooth L1 on positive RoIs, using the deltas of the ground-truth class only.

    Args:
        target_deltas: float [B, N, 4].
        target_class_ids: int [B, N].
        pred_bbox: float [B, N, K, 4].
    Returns:
        float32 scalar: mean over the positives' 4 coordinates.
    """
    positive, classes = _positive_rois(target_class_ids)
    pred = tf.gather_nd(tf.cast(pred_bbox, tf.float32), tf.concat([positive, tf.cast(classes, tf.int64)[:, None]], 1))
    target = tf.gather_nd(tf.cast(target_deltas, tf.float32), positive)
    return safe_mean(smooth_l1(target - pred))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_mask_logits, loss="sigmoid"):
    """The mask loss of the positive RoIs.

    Args:
        target_masks: float [B, N, h, w] in {0, 1}.
        target_class_ids: int [B, N]; > 0 marks a positive RoI.
        pred_mask_logits: float [B, N, h, w, M] mask logits, M = K maps (one
            per class) or M = 1 (a class-agnostic head, known statically).
        loss: "sigmoid": per-pixel binary cross-entropy on the ground-truth
            class's map only (the only map when M = 1); the other maps get no
            gradient (the paper's decoupled masks). "softmax": the paper's
            multinomial ablation (Table 2b), a softmax across the K maps at
            every pixel and cross-entropy against the ground-truth class
            inside the mask, background (class 0) outside; needs M = K.
    Returns:
        float32 scalar: mean over the positives' pixels; 0 without positives.
    """
    check_choice(loss, MASK_LOSSES, "loss")
    agnostic = pred_mask_logits.shape[-1] == 1
    if agnostic and loss == "softmax":
        raise ValueError("the softmax mask loss needs one mask map per class, got 1 "
                         "(a class-agnostic head)")
    positive, classes = _positive_rois(target_class_ids)
    target = tf.gather_nd(tf.cast(target_masks, tf.float32), positive)
    if loss == "softmax":
        logits = tf.gather_nd(tf.cast(pred_mask_logits, tf.float32), positive)  # [P, h, w, K]
        labels = tf.where(target >= 0.5, classes[:, None, None], 0)
        return safe_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    channel = tf.zeros_like(classes) if agnostic else classes
    logits = tf.transpose(tf.cast(pred_mask_logits, tf.float32), [0, 1, 4, 2, 3])
    logits = tf.gather_nd(logits, tf.concat([positive, tf.cast(channel, tf.int64)[:, None]], 1))
    return safe_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits))
