"""The Mask R-CNN functional graphs, one per mode. Only this module reads Config.

Training: backbone -> FPN -> RPN -> proposals -> sampled RoIs, then the
class/box head and the mask head run in parallel on the same RoIs.
Inference: ... -> proposals -> class/box head -> detections -> mask head on
the final detections only.
"""

import keras
import tensorflow as tf
from keras import layers

from mrcnn_tf import losses as loss_fns
from mrcnn_tf.backbone import build_backbone, fpn_graph
from mrcnn_tf.heads.roi_heads import box_head_graph, mask_head_graph
from mrcnn_tf.heads.rpn import build_rpn_model
from mrcnn_tf.layers import (DetectionLayer, DetectionTargetLayer, LeadingDetectionBoxes,
                             MetaField, NormalizeBoxes, PadToDetections, ProposalLayer, PyramidAnchors)

MODES = ("training", "inference")


def _image_input(config, mode):
    # Fixed sizes only where every molded image has one; "crop" trains on fixed
    # crops but detects on whole (pad64-molded) images.
    variable = config.IMAGE_RESIZE_MODE in ("pad64", "none") or (
        config.IMAGE_RESIZE_MODE == "crop" and mode == "inference")
    height, width = (None, None) if variable else tuple(int(v) for v in config.IMAGE_SHAPE[:2])
    return keras.Input((height, width, config.IMAGE_CHANNEL_COUNT), name="input_image")


def _pyramid_and_rpn(input_image, config):
    """Backbone, FPN, RPN over P2..P6 and the anchors in the RPN's order."""
    c2, c3, c4, c5 = build_backbone(input_image, config.BACKBONE)
    p2, p3, p4, p5, p6 = fpn_graph(c2, c3, c4, c5, config.TOP_DOWN_PYRAMID_SIZE)
    rpn_maps = [p2, p3, p4, p5, p6]
    rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS),
                          config.TOP_DOWN_PYRAMID_SIZE, config.RPN_CONV_CHANNELS)
    per_level = [rpn(p) for p in rpn_maps]
    rpn_class_logits, rpn_class, rpn_bbox = (
        layers.Concatenate(axis=1, name=name)([outputs[i] for outputs in per_level])
        for i, name in enumerate(("rpn_class_logits", "rpn_class", "rpn_bbox")))
    anchors = PyramidAnchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                             config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE,
                             name="anchors")([input_image, *rpn_maps])
    return [p2, p3, p4, p5], rpn_class_logits, rpn_class, rpn_bbox, anchors


def build_training_graph(config):
    """Inputs and outputs of the training model.

    Returns:
        (inputs dict, outputs dict). Outputs hold what the losses need:
        rpn_class_logits [B, A, 2], rpn_bbox [B, A, 4], rois [B, T, 4],
        target_class_ids [B, T], target_deltas [B, T, 4],
        target_masks [B, P, mh, mw], mrcnn_class_logits [B, T, K],
        mrcnn_bbox [B, T, K, 4], mrcnn_mask_logits [B, P, mh, mw, K] (P: the
        leading rows of ``rois`` that can be positive),
        active_class_ids [B, K], rpn_rois [B, P, 4].
    """
    mini = config.MINI_MASK_SHAPE if config.USE_MINI_MASK else (None, None)
    inputs = {
        "input_image": _image_input(config, "training"),
        "input_image_meta": keras.Input((config.IMAGE_META_SIZE,), name="input_image_meta"),
        "input_rpn_match": keras.Input((None, 1), dtype="int32", name="input_rpn_match"),
        "input_rpn_bbox": keras.Input((None, 4), name="input_rpn_bbox"),
        "input_gt_class_ids": keras.Input((None,), dtype="int32", name="input_gt_class_ids"),
        "input_gt_boxes": keras.Input((None, 4), name="input_gt_boxes"),
        "input_gt_masks": keras.Input((mini[0], mini[1], None), dtype="bool", name="input_gt_masks"),
    }
    meta = inputs["input_image_meta"]
    image_shape = MetaField("image_shape", name="meta_image_shape")(meta)
    active_class_ids = MetaField("active_class_ids", name="meta_active_class_ids")(meta)
    gt_boxes = NormalizeBoxes(name="gt_boxes_normalized")([inputs["input_gt_boxes"], image_shape])

    feature_maps, rpn_class_logits, rpn_class, rpn_bbox, anchors = _pyramid_and_rpn(
        inputs["input_image"], config)
    rpn_rois = ProposalLayer(config.POST_NMS_ROIS_TRAINING, config.RPN_NMS_THRESHOLD,
                             config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV,
                             name="ROI")([rpn_class, rpn_bbox, anchors])
    rois, target_class_ids, target_deltas, target_masks = DetectionTargetLayer(
        config.TRAIN_ROIS_PER_IMAGE, config.ROI_POSITIVE_RATIO, config.BBOX_STD_DEV,
        config.MASK_SHAPE, config.USE_MINI_MASK, name="proposal_targets")(
        [rpn_rois, inputs["input_gt_class_ids"], gt_boxes, inputs["input_gt_masks"]])

    # The two heads run in parallel on the same sampled RoIs (the paper's
    # design). The mask loss is defined on positives only, and positives come
    # first, so the mask head sees just the first P rows (3x less work).
    class_logits, _, bbox = box_head_graph(
        rois, image_shape, feature_maps, config.NUM_CLASSES, config.POOL_SIZE,
        config.FPN_CLASSIF_FC_LAYERS_SIZE, config.HEAD_NORM)
    _, mask_logits = mask_head_graph(
        rois[:, :target_masks.shape[1]], image_shape, feature_maps, config.NUM_CLASSES,
        config.MASK_POOL_SIZE, config.MASK_HEAD_CHANNELS, config.HEAD_NORM)

    outputs = {
        "rpn_class_logits": rpn_class_logits, "rpn_bbox": rpn_bbox, "rpn_rois": rpn_rois,
        "rois": rois, "target_class_ids": target_class_ids, "target_deltas": target_deltas,
        "target_masks": target_masks, "mrcnn_class_logits": class_logits, "mrcnn_bbox": bbox,
        "mrcnn_mask_logits": mask_logits, "active_class_ids": active_class_ids,
    }
    return inputs, outputs


def build_inference_graph(config):
    """Inputs and outputs of the inference model.

    Returns:
        (inputs dict, outputs dict): ``detections`` [B, D, (y1, x1, y2, x2,
        class_id, score)] normalised (score 0 rows are padding),
        ``mrcnn_mask`` [B, D, mh, mw, K] probabilities for the detections
        (zeros on padding rows),
        and the intermediates ``rpn_rois`` [B, P, 4], ``mrcnn_class``
        [B, P, K], ``mrcnn_bbox`` [B, P, K, 4], ``rpn_class`` [B, A, 2],
        ``rpn_bbox`` [B, A, 4], ``anchors`` [B, A, 4] for inspection.
    """
    inputs = {
        "input_image": _image_input(config, "inference"),
        "input_image_meta": keras.Input((config.IMAGE_META_SIZE,), name="input_image_meta"),
    }
    meta = inputs["input_image_meta"]
    image_shape = MetaField("image_shape", name="meta_image_shape")(meta)
    window = MetaField("window", normalized=True, name="meta_window")(meta)

    feature_maps, _, rpn_class, rpn_bbox, anchors = _pyramid_and_rpn(inputs["input_image"], config)
    rpn_rois = ProposalLayer(config.POST_NMS_ROIS_INFERENCE, config.RPN_NMS_THRESHOLD,
                             config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV,
                             name="ROI")([rpn_class, rpn_bbox, anchors])
    _, class_probs, bbox = box_head_graph(
        rpn_rois, image_shape, feature_maps, config.NUM_CLASSES, config.POOL_SIZE,
        config.FPN_CLASSIF_FC_LAYERS_SIZE, config.HEAD_NORM)
    detections = DetectionLayer(config.DETECTION_MAX_INSTANCES, config.DETECTION_MIN_CONFIDENCE,
                                config.DETECTION_NMS_THRESHOLD, config.BBOX_STD_DEV,
                                name="mrcnn_detection")([rpn_rois, class_probs, bbox, window])
    # The mask head runs on the detections only, and only on the leading rows
    # that hold one in some image (none of its work goes to padding slots).
    detection_boxes = LeadingDetectionBoxes(name="detection_boxes")(detections)
    mask_probs, _ = mask_head_graph(
        detection_boxes, image_shape, feature_maps, config.NUM_CLASSES, config.MASK_POOL_SIZE,
        config.MASK_HEAD_CHANNELS, config.HEAD_NORM)
    mask_probs = PadToDetections(dtype="float32", name="mrcnn_mask_padded")([mask_probs, detections])
    outputs = {
        "detections": detections, "mrcnn_mask": mask_probs, "rpn_rois": rpn_rois,
        "mrcnn_class": class_probs, "mrcnn_bbox": bbox, "rpn_class": rpn_class,
        "rpn_bbox": rpn_bbox, "anchors": anchors,
    }
    return inputs, outputs


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class MaskRCNNTrainer(keras.Model):
    """The training-mode functional model: ``fit`` works as for any Keras model.

    ``compute_loss`` turns the graph's outputs into the five weighted losses
    and logs each as its own metric (``rpn_class_loss``, ...,
    ``mrcnn_mask_loss``), next to Keras's total ``loss``.
    """

    def __init__(self, *args, loss_weights=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_weights = dict(loss_weights or {name: 1.0 for name in loss_fns.LOSS_NAMES})
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in loss_fns.LOSS_NAMES}

    def named_losses(self, x, y_pred):
        """The five unweighted losses (float32 scalars) by name."""
        return {
            "rpn_class_loss": loss_fns.rpn_class_loss(x["input_rpn_match"], y_pred["rpn_class_logits"]),
            "rpn_bbox_loss": loss_fns.rpn_bbox_loss(x["input_rpn_bbox"], x["input_rpn_match"],
                                                    y_pred["rpn_bbox"]),
            "mrcnn_class_loss": loss_fns.mrcnn_class_loss(
                y_pred["target_class_ids"], y_pred["mrcnn_class_logits"], y_pred["active_class_ids"]),
            "mrcnn_bbox_loss": loss_fns.mrcnn_bbox_loss(
                y_pred["target_deltas"], y_pred["target_class_ids"], y_pred["mrcnn_bbox"]),
            "mrcnn_mask_loss": loss_fns.mrcnn_mask_loss(
                y_pred["target_masks"], y_pred["target_class_ids"][:, :y_pred["target_masks"].shape[1]],
                y_pred["mrcnn_mask_logits"]),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The weighted sum of the five losses, divided by the number of replicas.

        Under a tf.distribute strategy Keras sums the replicas' gradients and
        multiplies the returned loss back by the replica count for its ``loss``
        metric (what its own ``compute_loss`` expects), so the update is that
        of the mean over replicas. One device: the plain weighted sum.
        """
        named = self.named_losses(x, y_pred)
        total = 0.0
        for name, value in named.items():
            self.loss_trackers[name].update_state(value)
            total = total + self.loss_weights.get(name, 1.0) * value
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return total / replicas if replicas > 1 else total

    def train_step(self, data):
        return _with_batch_axis_for_multi_worker(super().train_step(data))

    def test_step(self, data):
        return _with_batch_axis_for_multi_worker(super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras's TF trainer builds a model under a strategy from one batch that it
        # first averages over the replicas (strategy.reduce). That all-reduce fails
        # for dict inputs under MultiWorkerMirroredStrategy (and for bool tensors
        # anywhere); the build needs shapes only, so use this worker's first
        # replica's values instead.
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for step in iterator:
            batch = next(step[-1])
            data_batch = tf.nest.map_structure(
                lambda value: strategy.experimental_local_results(value)[0]
                if isinstance(value, tf.distribute.DistributedValues) else value, batch)
            break
        return super()._maybe_symbolic_build(data_batch=data_batch)

    def get_config(self):
        return {**super().get_config(), "loss_weights": self.loss_weights}


def _with_batch_axis_for_multi_worker(logs):
    """Logs of a step as [1] tensors under MultiWorkerMirroredStrategy, else unchanged.

    Keras 3 reduces a multi-worker step's logs with ``strategy.reduce("MEAN",
    axis=0)``, which fails on scalars (tensorflow/tensorflow#72388); with a batch
    axis the reduction is the mean over all replicas, a scalar again.
    """
    strategy = tf.distribute.get_strategy()
    multi_worker = getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)()
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and multi_worker):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def build_keras_model(mode, config):
    """The Keras model for ``mode`` ("training" or "inference")."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "training":
        inputs, outputs = build_training_graph(config)
        return MaskRCNNTrainer(inputs, outputs, loss_weights=config.LOSS_WEIGHTS, name="mask_rcnn")
    inputs, outputs = build_inference_graph(config)
    return keras.Model(inputs, outputs, name="mask_rcnn")
