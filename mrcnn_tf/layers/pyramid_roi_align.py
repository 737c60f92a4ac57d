"""PyramidROIAlign: RoIAlign on the FPN level each box belongs to."""

import keras
import tensorflow as tf

from mrcnn_tf.layers.common import check_positive_int
from mrcnn_tf.ops.roi_align import roi_align_unchecked, fpn_level


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class PyramidROIAlign(keras.layers.Layer):
    """Pools every box from its FPN level (FPN paper, eq. 1), keeping box order.

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
                 **kwargs):
        super().__init__(**kwargs)
        self.pool_size = check_positive_int(pool_size, "pool_size")
        self.sampling_ratio = check_positive_int(sampling_ratio, "sampling_ratio")
        self.k0 = int(k0)
        self.canonical_size = float(canonical_size)
        self.min_level = check_positive_int(min_level, "min_level")

    def call(self, inputs):
        boxes, image_shape, *feature_maps = inputs
        if not feature_maps:
            raise ValueError("PyramidROIAlign needs at least one feature map after boxes, image_shape")
        max_level = self.min_level + len(feature_maps) - 1
        # RoIAlign is not trained through its box coordinates (as in the paper);
        # their gradient would also cost more than the rest of the backward pass.
        boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
        batch, num_boxes = tf.shape(boxes)[0], tf.shape(boxes)[1]
        image_hw = tf.cast(image_shape[0, :2], tf.float32)

        flat_boxes = tf.reshape(boxes, [-1, 4])
        flat_image_index = tf.repeat(tf.range(batch), num_boxes)
        boxes_px = flat_boxes * tf.concat([image_hw, image_hw], axis=0)
        levels = fpn_level(boxes_px, self.k0, self.canonical_size, self.min_level, max_level)

        pooled, order = [], []
        for offset, feature_map in enumerate(feature_maps):
            level = self.min_level + offset
            index = tf.where(tf.equal(levels, level))[:, 0]
            stride = float(2 ** level)
            level_boxes = tf.gather(boxes_px, index) / stride
            pooled.append(roi_align_unchecked(
                feature_map, level_boxes, tf.gather(flat_image_index, index),
                self.pool_size, self.pool_size, self.sampling_ratio))
            order.append(index)
        # Rows come out grouped by level; scatter them back to box order.
        pooled = tf.concat(pooled, axis=0)
        order = tf.concat(order, axis=0)
        pooled = tf.gather(pooled, tf.math.invert_permutation(tf.cast(order, tf.int32)))
        channels = feature_maps[0].shape[-1]
        return tf.reshape(pooled, [batch, num_boxes, self.pool_size, self.pool_size,
                                   channels if channels is not None else -1])

    def compute_output_shape(self, input_shapes):
        boxes_shape, _, first_map = input_shapes[0], input_shapes[1], input_shapes[2]
        return (boxes_shape[0], boxes_shape[1], self.pool_size, self.pool_size, first_map[-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size,
                "sampling_ratio": self.sampling_ratio, "k0": self.k0,
                "canonical_size": self.canonical_size, "min_level": self.min_level}
