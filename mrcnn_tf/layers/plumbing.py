"""Small graph-plumbing layers: anchors, image-meta fields, RoI batching.

They exist so the functional graph needs no ``Lambda`` closures and
serialises with ``get_config``.
"""

import keras
import tensorflow as tf

from mrcnn_tf.image_meta import META_COLUMNS
from mrcnn_tf.layers.common import check_positive_int
from mrcnn_tf.ops.anchors import generate_pyramid_anchors

@keras.saving.register_keras_serializable(package="mrcnn_tf")
class PyramidAnchors(keras.layers.Layer):
    """Anchors for the actual feature-map sizes, normalised to the image.

    Inputs (a list): the image [B, H, W, C], then one feature map per level.
    Output: float32 [B, A, (y1, x1, y2, x2)] in the order the RPN head
    emits its per-anchor outputs. With static shapes TF folds this to a
    constant, so it costs nothing per step.
    """

    def __init__(self, scales, ratios, feature_strides, anchor_stride=1, **kwargs):
        super().__init__(**kwargs)
        self.scales = tuple(float(s) for s in scales)
        self.ratios = tuple(float(r) for r in ratios)
        self.feature_strides = tuple(int(s) for s in feature_strides)
        self.anchor_stride = check_positive_int(anchor_stride, "anchor_stride")

    def call(self, inputs):
        image, *feature_maps = inputs
        shapes = [tf.shape(f)[1:3] for f in feature_maps]
        anchors = generate_pyramid_anchors(self.scales, self.ratios, shapes,
                                           self.feature_strides, self.anchor_stride)
        hw = tf.cast(tf.shape(image)[1:3], tf.float32)
        anchors = anchors / tf.concat([hw, hw], axis=0)
        return tf.tile(anchors[None], [tf.shape(image)[0], 1, 1])

    def get_config(self):
        return {**super().get_config(), "scales": list(self.scales), "ratios": list(self.ratios),
                "feature_strides": list(self.feature_strides), "anchor_stride": self.anchor_stride}


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class MetaField(keras.layers.Layer):
    """One field of the image-meta vector: [B, META_SIZE] -> [B, width].

    ``window`` can be returned normalised by the molded image shape.
    """

    def __init__(self, field, normalized=False, **kwargs):
        super().__init__(**kwargs)
        if field not in META_COLUMNS:
            raise ValueError(f"field must be one of {sorted(META_COLUMNS)}, got {field!r}")
        self.field = field
        self.normalized = bool(normalized)

    def call(self, image_meta):
        start, end = META_COLUMNS[self.field]
        value = tf.cast(image_meta[:, start:end], tf.float32)
        if self.normalized:
            start = META_COLUMNS["image_shape"][0]
            hw = image_meta[:, start:start + 2]
            value = value / tf.cast(tf.concat([hw, hw], axis=1), tf.float32)
        return value

    def get_config(self):
        return {**super().get_config(), "field": self.field, "normalized": self.normalized}


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
class LeadingDetectionBoxes(keras.layers.Layer):
    """Boxes of the detection rows that hold a detection in some image.

    Detections are best first with padding (score 0) last, so the first
    ``n = max over the batch of the valid count`` rows hold every detection.
    The mask head then runs on n RoIs per image instead of all D slots.

    Input: float [B, D, (y1, x1, y2, x2, class_id, score)].
    Output: float [B, n, 4], 1 <= n <= D (one padding row when there is no
    detection at all; :class:`PadToDetections` zeroes its values).
    """

    def call(self, detections):
        valid = tf.cast(detections[..., 5] > 0, tf.int32)
        # At least one row: TF's CPU 1x1 convolution mishandles an empty batch.
        count = tf.maximum(tf.reduce_max(tf.reduce_sum(valid, axis=1)), 1)
        return detections[:, :count, :4]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, 4)


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class PadToDetections(keras.layers.Layer):
    """Per-detection values back on all D detection slots, 0 where there is none.

    Inputs (a list): values [B, n, ...] computed on
    :class:`LeadingDetectionBoxes` (n <= D), and the detections
    [B, D, 6] (score 0 rows are padding).
    Output: [B, D, ...]; rows without a detection in their image are 0.
    """

    def call(self, inputs):
        values, detections = inputs
        rows = tf.shape(detections)[1]
        padding = [[0, 0], [0, rows - tf.shape(values)[1]]] + [[0, 0]] * (values.shape.rank - 2)
        values = tf.pad(values, padding)
        valid = tf.cast(detections[..., 5] > 0, values.dtype)
        return values * tf.reshape(valid, [tf.shape(valid)[0], rows] + [1] * (values.shape.rank - 2))

    def compute_output_shape(self, input_shapes):
        values_shape, detections_shape = input_shapes
        return (values_shape[0], detections_shape[1], *values_shape[2:])


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class NormalizeBoxes(keras.layers.Layer):
    """Pixel boxes [B, N, 4] -> boxes normalised by the image shape [B, >=2]."""

    def call(self, inputs):
        boxes_px, image_shape = inputs
        hw = tf.cast(image_shape[:, :2], tf.float32)
        return tf.cast(boxes_px, tf.float32) / tf.concat([hw, hw], axis=1)[:, None, :]
