"""RoI sampling for training: proposals matched to ground truth, sampled, with head targets."""

import keras
import tensorflow as tf

from mrcnn_tf.modeling.checks import check_fraction, check_positive_int, check_std_dev
from mrcnn_tf.modeling.matching import CROWD_IOU_THRESHOLD, crowd_rows, match_boxes, sample_balanced
from mrcnn_tf.ops.boxes import box_iou, encode_boxes, nonzero_rows, pad_rows
from mrcnn_tf.ops.masks import MASK_THRESHOLD
from mrcnn_tf.ops.roi_align import roi_align_unchecked

# Target class id of a padding row (not a RoI): losses skip these rows.
PADDING_CLASS_ID = -1


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class DetectionTargetLayer(keras.layers.Layer):
    """Samples training RoIs and computes their class, box and mask targets.

    Per image, the ground-truth boxes are added to the proposals (so the
    heads see positives from the first step), then up to
    ``P = max(1, round(rois_per_image * positive_ratio))`` positives (IoU >=
    positive_iou with a non-crowd box) are drawn at random and the rest
    filled with negatives (IoU < positive_iou, and < crowd_iou with every
    crowd box), by the matcher and sampler the RPN uses (``modeling/matching.py``).
    Positives come first, so the mask head only needs the first P
    rows: mask targets are returned for those alone.

    Inputs (a list):
        proposals: float [B, P, (y1, x1, y2, x2)] normalised; zero rows are padding.
        gt_class_ids: int [B, G]; 0 is padding, negative ids are crowd regions.
        gt_boxes: float [B, G, (y1, x1, y2, x2)] normalised.
        gt_masks: bool/float [B, mh, mw, G]: full-image masks, or with
            ``use_mini_mask`` each mask resized into its own box.
    Outputs (a list):
        rois: float32 [B, T, 4] normalised, positives first; zero rows are padding.
        target_class_ids: int32 [B, T]; 0 background, PADDING_CLASS_ID padding.
        target_deltas: float32 [B, T, 4] box deltas / bbox_std_dev (0 for non-positives).
        target_masks: float32 [B, P, mask_h, mask_w] in {0, 1} for the first P
            rows (0 for rows that are not positives).
    """

    def __init__(self, rois_per_image, positive_ratio=0.33, bbox_std_dev=(0.1, 0.1, 0.2, 0.2),
                 mask_shape=(28, 28), use_mini_mask=True, positive_iou=0.5,
                 crowd_iou=CROWD_IOU_THRESHOLD, **kwargs):
        super().__init__(**kwargs)
        self.rois_per_image = check_positive_int(rois_per_image, "rois_per_image")
        self.positive_ratio = check_fraction(positive_ratio, "positive_ratio")
        self.bbox_std_dev = check_std_dev(bbox_std_dev, "bbox_std_dev")
        self.mask_shape = tuple(check_positive_int(v, "mask_shape") for v in mask_shape)
        self.use_mini_mask = bool(use_mini_mask)
        self.positive_iou = check_fraction(positive_iou, "positive_iou")
        if self.positive_iou <= 0.0:  # IoU 0 would make every RoI "match" even no ground truth
            raise ValueError(f"positive_iou must be > 0, got {positive_iou!r}")
        self.crowd_iou = check_fraction(crowd_iou, "crowd_iou")
        self.max_positives = max(1, int(round(self.rois_per_image * self.positive_ratio)))

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        elems = (tf.cast(proposals, tf.float32), tf.cast(gt_class_ids, tf.int32),
                 tf.cast(gt_boxes, tf.float32),
                 tf.transpose(tf.cast(gt_masks, tf.float32), [0, 3, 1, 2]))
        t, p, (mh, mw) = self.rois_per_image, self.max_positives, self.mask_shape
        signature = (tf.TensorSpec([t, 4], tf.float32), tf.TensorSpec([t], tf.int32),
                     tf.TensorSpec([t, 4], tf.float32), tf.TensorSpec([p, mh, mw], tf.float32))
        targets = tf.map_fn(self._sample_image, tf.nest.map_structure(tf.stop_gradient, elems),
                            fn_output_signature=signature)
        return [tf.stop_gradient(t) for t in targets]

    def _sample_image(self, args):
        proposals, gt_class_ids, gt_boxes, gt_masks = args
        proposals = tf.boolean_mask(proposals, nonzero_rows(proposals))
        real = tf.not_equal(gt_class_ids, 0) & nonzero_rows(gt_boxes)
        is_crowd = gt_class_ids < 0
        object_index = tf.where(real & ~is_crowd)[:, 0]
        gt_class_ids = tf.gather(gt_class_ids, object_index)
        crowd_boxes = tf.boolean_mask(gt_boxes, real & is_crowd)
        gt_boxes = tf.gather(gt_boxes, object_index)
        gt_masks = tf.gather(gt_masks, object_index)
        candidates = tf.concat([proposals, gt_boxes], axis=0)

        matches = match_boxes(box_iou(candidates, gt_boxes), self.positive_iou, self.positive_iou,
                              not_negative=crowd_rows(candidates, crowd_boxes, self.crowd_iou))
        positive, negative = sample_balanced(matches, self.rois_per_image, self.max_positives)
        positive_rois = tf.gather(candidates, positive)
        negative_rois = tf.gather(candidates, negative)

        assigned = tf.gather(matches, positive)
        assigned_boxes = tf.gather(gt_boxes, assigned)
        deltas = encode_boxes(positive_rois, assigned_boxes, self.bbox_std_dev)
        masks = self._mask_targets(positive_rois, assigned_boxes, assigned, gt_masks)

        t = self.rois_per_image
        num_negative = tf.shape(negative_rois)[0]
        rois = pad_rows(tf.concat([positive_rois, negative_rois], axis=0), t)
        class_ids = tf.concat([tf.gather(gt_class_ids, assigned),
                               tf.zeros([num_negative], tf.int32)], axis=0)
        class_ids = pad_rows(class_ids, t, PADDING_CLASS_ID)
        return rois, class_ids, pad_rows(deltas, t), pad_rows(masks, self.max_positives)

    def _mask_targets(self, rois, assigned_boxes, assigned, gt_masks):
        """Crop each positive's ground-truth mask to the RoI, RoIAlign geometry.

        rois, assigned_boxes: [n, 4] normalised; assigned: int32 [n];
        gt_masks: [G, mh, mw]. Returns float32 [n, mask_h, mask_w] in {0, 1}.
        """
        mask_hw = tf.cast(tf.shape(gt_masks)[1:3], tf.float32)
        if self.use_mini_mask:
            # A mini mask spans its own box: express the RoI in that frame.
            gy1, gx1, gy2, gx2 = tf.unstack(assigned_boxes, 4, axis=1)
            gh, gw = tf.maximum(gy2 - gy1, 1e-8), tf.maximum(gx2 - gx1, 1e-8)
            y1, x1, y2, x2 = tf.unstack(rois, 4, axis=1)
            rois = tf.stack([(y1 - gy1) / gh, (x1 - gx1) / gw, (y2 - gy1) / gh, (x2 - gx1) / gw], 1)
        boxes_in_mask_px = rois * tf.concat([mask_hw, mask_hw], axis=0)
        crops = roi_align_unchecked(gt_masks[..., None], boxes_in_mask_px, assigned,
                                    self.mask_shape[0], self.mask_shape[1], 2)
        return tf.cast(crops[..., 0] >= MASK_THRESHOLD, tf.float32)

    def compute_output_shape(self, input_shapes):
        b, t, (mh, mw) = input_shapes[0][0], self.rois_per_image, self.mask_shape
        return [(b, t, 4), (b, t), (b, t, 4), (b, self.max_positives, mh, mw)]

    def get_config(self):
        return {**super().get_config(), "rois_per_image": self.rois_per_image,
                "positive_ratio": self.positive_ratio, "bbox_std_dev": list(self.bbox_std_dev),
                "mask_shape": list(self.mask_shape), "use_mini_mask": self.use_mini_mask,
                "positive_iou": self.positive_iou, "crowd_iou": self.crowd_iou}


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class NormalizeBoxes(keras.layers.Layer):
    """Pixel boxes [B, N, 4] -> boxes normalised by the image shape [B, >=2]."""

    def call(self, inputs):
        boxes_px, image_shape = inputs
        hw = tf.cast(image_shape[:, :2], tf.float32)
        return tf.cast(boxes_px, tf.float32) / tf.concat([hw, hw], axis=1)[:, None, :]
