"""The Mask R-CNN functional graphs, one per mode, over shared sub-models. Only this module reads Config.

Every weight lives in four sub-models built once (:func:`build_submodels`):
``backbone_fpn``, ``rpn_model``, ``box_head`` and ``mask_head``. Each graph
is a view over them: it adds only weightless layers (anchors, proposals,
RoI sampling or detection, RoIAlign, batch plumbing, output activations),
so a training and an inference graph over the same sub-models share their
variables.

Training: backbone -> FPN -> RPN -> proposals -> sampled RoIs, then the
class/box head and the mask head run in parallel on the same RoIs.
Inference: ... -> proposals -> class/box head -> detections -> mask head on
the final detections only.
"""

from typing import NamedTuple

import keras
from keras import layers

from mrcnn_tf.image_meta import MetaField
from mrcnn_tf.modeling.backbone import build_backbone_fpn
from mrcnn_tf.modeling.detections import DetectionLayer, LeadingDetectionBoxes, PadToDetections
from mrcnn_tf.modeling.roi_heads import box_head_graph, build_box_head, build_mask_head, mask_head_graph
from mrcnn_tf.modeling.roi_sampling import DetectionTargetLayer, NormalizeBoxes
from mrcnn_tf.modeling.rpn import ProposalLayer, PyramidAnchors, build_rpn_model
from mrcnn_tf.training.trainer import MaskRCNNTrainer

MODES = ("training", "inference")


class SubModels(NamedTuple):
    """The Keras models holding every weight; both graphs call these same objects.

    backbone_fpn: image [B, H, W, C] -> [P2, P3, P4, P5, P6].
    rpn_model: one pyramid level [B, h, w, D] -> [rpn_class_logits, rpn_probs, rpn_bbox].
    box_head: pooled RoIs [R, pool, pool, D] -> [class_logits [R, K], bbox [R, K, 4]].
    mask_head: pooled RoIs [R, mpool, mpool, D] -> mask logits [R, 2 mpool, 2 mpool, K].
    """

    backbone_fpn: keras.Model
    rpn_model: keras.Model
    box_head: keras.Model
    mask_head: keras.Model


def _image_shape(config, mode):
    """(H, W, C) of the molded images of ``mode``; H, W None where sizes vary."""
    # Fixed sizes only where every molded image has one; "crop" trains on fixed
    # crops but detects on whole (pad64-molded) images.
    variable = config.IMAGE_RESIZE_MODE in ("pad64", "none", "shortest_edge") or (
        config.IMAGE_RESIZE_MODE == "crop" and mode == "inference")
    height, width = (None, None) if variable else tuple(int(v) for v in config.IMAGE_SHAPE[:2])
    return height, width, config.IMAGE_CHANNEL_COUNT


def _image_input(config, mode):
    return keras.Input(_image_shape(config, mode), name="input_image")


def build_submodels(config):
    """The four weighted sub-models of ``config``, with the classic layer names inside.

    The backbone takes the inference images' shape, the more general of the
    two modes' (training "crop" images have a fixed size, inference ones not).
    """
    channels = config.TOP_DOWN_PYRAMID_SIZE
    return SubModels(
        backbone_fpn=build_backbone_fpn(_image_shape(config, "inference"), config.BACKBONE, channels),
        rpn_model=build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS), channels,
                                  config.RPN_CONV_CHANNELS),
        box_head=build_box_head(config.NUM_CLASSES, config.POOL_SIZE, channels,
                                config.FPN_CLASSIF_FC_LAYERS_SIZE, config.HEAD_NORM),
        mask_head=build_mask_head(config.NUM_CLASSES, config.MASK_POOL_SIZE, channels,
                                  config.MASK_HEAD_CHANNELS, config.HEAD_NORM))


def _pyramid_and_rpn(input_image, config, submodels):
    """Backbone, FPN, RPN over P2..P6 and the anchors in the RPN's order."""
    rpn_maps = submodels.backbone_fpn(input_image)
    per_level = [submodels.rpn_model(p) for p in rpn_maps]
    rpn_class_logits, rpn_class, rpn_bbox = (
        layers.Concatenate(axis=1, name=name)([outputs[i] for outputs in per_level])
        for i, name in enumerate(("rpn_class_logits", "rpn_class", "rpn_bbox")))
    anchors = PyramidAnchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                             config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE,
                             name="anchors")([input_image, *rpn_maps])
    return list(rpn_maps[:4]), rpn_class_logits, rpn_class, rpn_bbox, anchors


def build_training_graph(config, submodels):
    """Inputs and outputs of the training model over ``submodels`` (a SubModels).

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
        inputs["input_image"], config, submodels)
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
    class_logits, _, bbox = box_head_graph(submodels.box_head, rois, image_shape, feature_maps)
    _, mask_logits = mask_head_graph(submodels.mask_head, rois[:, :target_masks.shape[1]],
                                     image_shape, feature_maps)

    outputs = {
        "rpn_class_logits": rpn_class_logits, "rpn_bbox": rpn_bbox, "rpn_rois": rpn_rois,
        "rois": rois, "target_class_ids": target_class_ids, "target_deltas": target_deltas,
        "target_masks": target_masks, "mrcnn_class_logits": class_logits, "mrcnn_bbox": bbox,
        "mrcnn_mask_logits": mask_logits, "active_class_ids": active_class_ids,
    }
    return inputs, outputs


def build_inference_graph(config, submodels):
    """Inputs and outputs of the inference model over ``submodels`` (a SubModels).

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

    feature_maps, _, rpn_class, rpn_bbox, anchors = _pyramid_and_rpn(inputs["input_image"], config,
                                                                      submodels)
    rpn_rois = ProposalLayer(config.POST_NMS_ROIS_INFERENCE, config.RPN_NMS_THRESHOLD,
                             config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV,
                             name="ROI")([rpn_class, rpn_bbox, anchors])
    _, class_probs, bbox = box_head_graph(submodels.box_head, rpn_rois, image_shape, feature_maps)
    detections = DetectionLayer(config.DETECTION_MAX_INSTANCES, config.DETECTION_MIN_CONFIDENCE,
                                config.DETECTION_NMS_THRESHOLD, config.BBOX_STD_DEV,
                                name="mrcnn_detection")([rpn_rois, class_probs, bbox, window])
    # The mask head runs on the detections only, and only on the leading rows
    # that hold one in some image (none of its work goes to padding slots).
    detection_boxes = LeadingDetectionBoxes(name="detection_boxes")(detections)
    mask_probs, _ = mask_head_graph(submodels.mask_head, detection_boxes, image_shape, feature_maps)
    mask_probs = PadToDetections(dtype="float32", name="mrcnn_mask_padded")([mask_probs, detections])
    outputs = {
        "detections": detections, "mrcnn_mask": mask_probs, "rpn_rois": rpn_rois,
        "mrcnn_class": class_probs, "mrcnn_bbox": bbox, "rpn_class": rpn_class,
        "rpn_bbox": rpn_bbox, "anchors": anchors,
    }
    return inputs, outputs


def build_keras_model(mode, config, submodels=None):
    """The Keras model for ``mode`` ("training" or "inference") over ``submodels``.

    Args:
        mode: "training" or "inference".
        config: the model Config.
        submodels: a SubModels to share (e.g. the training model's, for an
            inference view on the same variables); None builds new ones.
    Returns:
        keras.Model named ``mask_rcnn`` (a MaskRCNNTrainer for training).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    submodels = build_submodels(config) if submodels is None else submodels
    if mode == "training":
        inputs, outputs = build_training_graph(config, submodels)
        return MaskRCNNTrainer(inputs, outputs, loss_weights=config.LOSS_WEIGHTS, name="mask_rcnn")
    inputs, outputs = build_inference_graph(config, submodels)
    return keras.Model(inputs, outputs, name="mask_rcnn")
