"""The Mask R-CNN functional graphs, one per mode, over shared sub-models. Only this module reads Config.

Every weight lives in four sub-models built once (:func:`build_submodels`):
``backbone_fpn``, ``rpn_model``, ``box_head`` and ``mask_head``. Each graph
is a view over them: it adds only weightless layers (anchors, proposals,
RoI sampling or detection, RoIAlign, batch plumbing, output activations),
so a training and an inference graph over the same sub-models share their
variables.

Training: backbone -> FPN -> RPN (anchor targets from the ground truth) ->
proposals -> sampled RoIs, then the
class/box head and the mask head run in parallel on the same RoIs.
Inference: ... -> proposals -> class/box head -> detections -> mask head on
the final detections only.
"""

from typing import NamedTuple

import keras
from keras import layers

from mrcnn_tf.image_meta import MetaField
from mrcnn_tf.modeling.backbone import build_backbone_fpn
from mrcnn_tf.modeling.cross_class import CrossClassNMS
from mrcnn_tf.modeling.detections import DetectionLayer, LeadingDetectionBoxes, PadToDetections
from mrcnn_tf.modeling.roi_heads import box_head_graph, build_box_head, build_mask_head, mask_head_graph
from mrcnn_tf.modeling.roi_sampling import DetectionTargetLayer, NormalizeBoxes
from mrcnn_tf.modeling.rpn import AnchorLevels, ProposalLayer, PyramidAnchors, build_rpn_model
from mrcnn_tf.modeling.rpn_targets import RPNTargetLayer
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


def _keras_options(config):
    """What a "keras:<Name>" backbone needs: the normalisation to undo, its ImageNet weights."""
    return dict(mean_pixel=config.MEAN_PIXEL, pixel_std=config.PIXEL_STD,
                channel_order=config.INPUT_CHANNEL_ORDER, weights=config.BACKBONE_WEIGHTS)


def build_submodels(config):
    """The four weighted sub-models of ``config``, with the classic layer names inside.

    The backbone takes the inference images' shape, the more general of the
    two modes' (training "crop" images have a fixed size, inference ones not).
    """
    channels = config.TOP_DOWN_PYRAMID_SIZE
    return SubModels(
        backbone_fpn=build_backbone_fpn(_image_shape(config, "inference"), config.BACKBONE, channels,
                                        keras_options=_keras_options(config),
                                        resnet_options={"stride_on": config.RESNET_STRIDE_ON,
                                                        "bn_epsilon": config.BACKBONE_BN_EPSILON},
                                        fpn_norm=config.FPN_NORM, fpn_bn_epsilon=config.HEAD_BN_EPSILON),
        rpn_model=build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS), channels,
                                  config.RPN_CONV_CHANNELS, objectness=config.RPN_OBJECTNESS,
                                  conv_layers=config.RPN_CONV_LAYERS),
        box_head=build_box_head(config.NUM_CLASSES, config.POOL_SIZE, channels,
                                config.FPN_CLASSIF_FC_LAYERS_SIZE, config.HEAD_NORM,
                                conv_layers=config.BOX_HEAD_CONV_LAYERS,
                                bn_epsilon=config.HEAD_BN_EPSILON),
        mask_head=build_mask_head(config.NUM_CLASSES, config.MASK_POOL_SIZE, channels,
                                  config.MASK_HEAD_CHANNELS, config.HEAD_NORM,
                                  class_agnostic=config.MASK_CLASS_AGNOSTIC, head=config.MASK_HEAD,
                                  bn_epsilon=config.HEAD_BN_EPSILON))


def _pooling(config):
    """PyramidROIAlign options of both heads (the RoI feature extractor)."""
    return {"method": config.ROI_POOLING, "aggregate": config.ROI_ALIGN_AGGREGATE,
            "sampling_ratio": config.ROI_ALIGN_SAMPLING_RATIO, "aligned": config.ROI_ALIGN_ALIGNED,
            "level_eps": config.ROI_LEVEL_MAPPER_EPS, "fixed_level": config.ROI_FEATURE_LEVEL}


def _pyramid_and_rpn(input_image, config, submodels):
    """Backbone, FPN, RPN over P2..P6 and the anchors in the RPN's order."""
    rpn_maps = submodels.backbone_fpn(input_image)
    per_level = [submodels.rpn_model(p) for p in rpn_maps]
    rpn_class_logits, rpn_class, rpn_bbox = (
        layers.Concatenate(axis=1, name=name)([outputs[i] for outputs in per_level])
        for i, name in enumerate(("rpn_class_logits", "rpn_class", "rpn_bbox")))
    anchors = PyramidAnchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                             config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE,
                             mode=config.RPN_ANCHOR_MODE, name="anchors")([input_image, *rpn_maps])
    if config.RPN_PROPOSAL_MODE == "per_level":  # which level each anchor is on
        anchors = (anchors, AnchorLevels(len(config.RPN_ANCHOR_RATIOS), name="anchor_levels")(rpn_maps))
    return list(rpn_maps[:4]), rpn_class_logits, rpn_class, rpn_bbox, anchors


def _proposals(config, count, rpn_class, rpn_bbox, anchors, meta, image_shape):
    """``count`` proposals; with RPN_PROPOSAL_MODE "per_level" ``anchors`` is the pair
    (anchors, anchor levels) of :func:`_pyramid_and_rpn` and the window and image shape
    are used too. Returns (proposals, anchors alone)."""
    layer = ProposalLayer(count, config.RPN_NMS_THRESHOLD, config.PRE_NMS_LIMIT,
                          config.RPN_BBOX_STD_DEV, mode=config.RPN_PROPOSAL_MODE, name="ROI")
    if config.RPN_PROPOSAL_MODE == "global":
        return layer([rpn_class, rpn_bbox, anchors]), anchors
    anchors, levels = anchors
    window = MetaField("window", normalized=True, name="meta_window_rpn")(meta)
    return layer([rpn_class, rpn_bbox, anchors, window, image_shape, levels]), anchors


def build_training_graph(config, submodels):
    """Inputs and outputs of the training model over ``submodels`` (a SubModels).

    Returns:
        (inputs dict, outputs dict). Inputs: the molded images, their image
        meta (image info and active classes) and the ground truth, padded to
        MAX_GT_INSTANCES (``DataGenerator`` / ``to_tf_dataset`` batches).
        Outputs hold what the losses need:
        rpn_class_logits [B, A, 2], rpn_bbox [B, A, 4], rpn_match int32
        [B, A] and target_rpn_bbox [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4] (the
        in-graph RPN targets), rois [B, T, 4],
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
    rpn_rois, anchors = _proposals(config, config.POST_NMS_ROIS_TRAINING, rpn_class, rpn_bbox, anchors,
                                   meta, image_shape)
    rpn_match, target_rpn_bbox = RPNTargetLayer(
        config.RPN_TRAIN_ANCHORS_PER_IMAGE, config.RPN_BBOX_STD_DEV, config.RPN_POSITIVE_IOU,
        config.RPN_NEGATIVE_IOU, config.CROWD_IOU_THRESHOLD,
        name="rpn_targets")([anchors, inputs["input_gt_class_ids"], gt_boxes])
    rois, target_class_ids, target_deltas, target_masks = DetectionTargetLayer(
        config.TRAIN_ROIS_PER_IMAGE, config.ROI_POSITIVE_RATIO, config.BBOX_STD_DEV,
        config.MASK_SHAPE, config.USE_MINI_MASK, config.ROI_POSITIVE_IOU, config.CROWD_IOU_THRESHOLD,
        name="proposal_targets")(
        [rpn_rois, inputs["input_gt_class_ids"], gt_boxes, inputs["input_gt_masks"]])

    # The two heads run in parallel on the same sampled RoIs (the paper's
    # design). The mask loss is defined on positives only, and positives come
    # first, so the mask head sees just the first P rows (3x less work).
    class_logits, _, bbox = box_head_graph(submodels.box_head, rois, image_shape, feature_maps,
                                           **_pooling(config))
    _, mask_logits = mask_head_graph(submodels.mask_head, rois[:, :target_masks.shape[1]],
                                     image_shape, feature_maps, config.MASK_LOSS, **_pooling(config))

    outputs = {
        "rpn_class_logits": rpn_class_logits, "rpn_bbox": rpn_bbox, "rpn_rois": rpn_rois,
        "rpn_match": rpn_match, "target_rpn_bbox": target_rpn_bbox,
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
        (one map instead of K with MASK_CLASS_AGNOSTIC)
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
    rpn_rois, anchors = _proposals(config, config.POST_NMS_ROIS_INFERENCE, rpn_class, rpn_bbox,
                                   anchors, meta, image_shape)
    _, class_probs, bbox = box_head_graph(submodels.box_head, rpn_rois, image_shape, feature_maps,
                                          **_pooling(config))
    detections = DetectionLayer(config.DETECTION_MAX_INSTANCES, config.DETECTION_MIN_CONFIDENCE,
                                config.DETECTION_NMS_THRESHOLD, config.BBOX_STD_DEV,
                                mode=config.DETECTION_MODE, name="mrcnn_detection")(
        [rpn_rois, class_probs, bbox, window] + ([image_shape] if config.DETECTION_MODE == "torchvision" else []))
    # The mask head runs on the detections only, and only on the leading rows
    # that hold one in some image (none of its work goes to padding slots).
    detection_boxes = LeadingDetectionBoxes(name="detection_boxes")(detections)
    mask_probs, _ = mask_head_graph(submodels.mask_head, detection_boxes, image_shape, feature_maps,
                                    config.MASK_LOSS, **_pooling(config))
    mask_probs = PadToDetections(dtype="float32", name="mrcnn_mask_padded")([mask_probs, detections])
    if config.DETECTION_CROSS_CLASS_NMS_THRESHOLD is not None:
        detections, mask_probs = CrossClassNMS(
            config.DETECTION_CROSS_CLASS_NMS_THRESHOLD, config.DETECTION_CROSS_CLASS_NMS_ON,
            name="mrcnn_cross_class_nms")([detections, mask_probs])
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
        return MaskRCNNTrainer(inputs, outputs, loss_weights=config.LOSS_WEIGHTS,
                               mask_loss=config.MASK_LOSS, name="mask_rcnn")
    inputs, outputs = build_inference_graph(config, submodels)
    return keras.Model(inputs, outputs, name="mask_rcnn")
