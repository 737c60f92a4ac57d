"""Inference: class/box head outputs -> final detections, and the mask head on them only."""

import keras
import tensorflow as tf

from mrcnn_tf.modeling.checks import check_choice, check_fraction, check_positive_int, check_std_dev
from mrcnn_tf.ops.batching import map_images
from mrcnn_tf.ops.boxes import box_area, clip_boxes, decode_boxes, nonzero_rows, pad_rows
from mrcnn_tf.ops.nms import batched_nms

DETECTION_MODES = ("classic", "torchvision")
# torchvision's postprocess_detections drops boxes with a side under this many pixels.
TORCHVISION_MIN_SIDE = 1e-2


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class DetectionLayer(keras.layers.Layer):
    """Final detections from the class/box head.

    Every (RoI, foreground class) pair scoring at least ``min_confidence``
    is a candidate, its box refined by that class's deltas and clipped to
    the image window; NMS runs per class and the best ``max_detections``
    survive (detectron2's rule: one RoI may yield several classes).
    ``mode="torchvision"`` applies torchvision's candidate rule instead
    (``postprocess_detections``): score strictly above ``min_confidence``
    and both sides at least 1e-2 pixels.

    Inputs (a list):
        rois: float [B, N, (y1, x1, y2, x2)] normalised; zero rows are padding.
        class_probs: float [B, N, K] softmax over classes (0 = background).
        bbox_deltas: float [B, N, K, (dy, dx, log(dh), log(dw))] / bbox_std_dev.
        window: float [B, (y1, x1, y2, x2)] normalised, the real image area.
        "torchvision" only: image_shape [B, >=2], the molded image (H, W, ...)
        in pixels.
    Output:
        float32 [B, max_detections, (y1, x1, y2, x2, class_id, score)],
        boxes normalised, best first; rows with score 0 are padding.
    """

    def __init__(self, max_detections, min_confidence=0.7, nms_threshold=0.3,
                 bbox_std_dev=(0.1, 0.1, 0.2, 0.2), mode="classic", **kwargs):
        super().__init__(**kwargs)
        self.max_detections = check_positive_int(max_detections, "max_detections")
        self.min_confidence = check_fraction(min_confidence, "min_confidence")
        self.nms_threshold = check_fraction(nms_threshold, "nms_threshold")
        self.bbox_std_dev = check_std_dev(bbox_std_dev, "bbox_std_dev")
        check_choice(mode, DETECTION_MODES, "mode")
        self.mode = mode

    def call(self, inputs):
        rois, class_probs, bbox_deltas, window = inputs[:4]
        # The molded image size in pixels (torchvision's minimum box side); 1 x 1 unused otherwise.
        image_hw = (tf.cast(inputs[4][:, :2], tf.float32) if self.mode == "torchvision"
                    else tf.ones([tf.shape(rois)[0], 2]))
        elems = (tf.cast(rois, tf.float32), tf.cast(class_probs, tf.float32),
                 tf.cast(bbox_deltas, tf.float32), tf.cast(window, tf.float32), image_hw)
        signature = tf.TensorSpec([self.max_detections, 6], tf.float32)
        return tf.stop_gradient(map_images(self._detect_image, elems, signature))

    def _detect_image(self, args):
        rois, class_probs, bbox_deltas, window, image_hw = args
        num_classes = tf.shape(class_probs)[1]
        # Foreground classes only: background is never a detection.
        boxes = decode_boxes(rois[:, None, :], bbox_deltas[:, 1:], self.bbox_std_dev)
        boxes = clip_boxes(boxes, window)
        scores = class_probs[:, 1:]
        class_ids = tf.broadcast_to(tf.range(1, num_classes)[None, :], tf.shape(scores))

        if self.mode == "torchvision":
            sides_px = (boxes[..., 2:] - boxes[..., :2]) * image_hw
            kept = (scores > self.min_confidence) & tf.reduce_all(sides_px >= TORCHVISION_MIN_SIDE, -1)
        else:
            kept = (scores >= self.min_confidence) & (box_area(boxes) > 0.0)
        candidate = kept & nonzero_rows(rois)[:, None]
        boxes = tf.boolean_mask(boxes, candidate)
        scores = tf.boolean_mask(scores, candidate)
        class_ids = tf.boolean_mask(class_ids, candidate)
        keep = batched_nms(boxes, scores, class_ids, self.max_detections, self.nms_threshold)
        detections = tf.concat([tf.gather(boxes, keep),
                                tf.cast(tf.gather(class_ids, keep), tf.float32)[:, None],
                                tf.gather(scores, keep)[:, None]], axis=1)
        return pad_rows(detections, self.max_detections)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.max_detections, 6)

    def get_config(self):
        return {**super().get_config(), "max_detections": self.max_detections,
                "min_confidence": self.min_confidence, "nms_threshold": self.nms_threshold,
                "bbox_std_dev": list(self.bbox_std_dev), "mode": self.mode}


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
