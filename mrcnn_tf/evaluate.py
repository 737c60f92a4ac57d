"""Scoring detections: VOC-style AP for quick checks, COCO metrics for reports.

Every function takes detections in the ``model.detect()`` shape: per image
``rois`` int32 [N, (y1, x1, y2, x2)] pixels (y2/x2 exclusive), ``class_ids``
int32 [N], ``scores`` float32 [N], ``masks`` bool [H, W, N]. Only a
``detect(images)`` method is needed, so any object with one can be scored.

Crowd ground truth (negative class id ``-c``) is a region of class ``c``
whose detections are neither true nor false positives, as in COCO: a
prediction of class ``c`` lying at least ``iou_threshold`` inside it (its
intersection over the *prediction's* area) is ignored.
"""

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_tf.data import extract_bboxes

UNMATCHED = -1  # in gt_match / pred_match: no partner
IGNORED = -2    # in pred_match: the prediction lies on a crowd region
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")  # order of COCOeval.stats
# The COCO protocol's detection settings (detectron2, torchvision, Model Garden): scores
# down to 0.05, per-class NMS at IoU 0.5, 100 detections per image, whatever the model
# displays with.
PROTOCOL_MIN_CONFIDENCE = 0.05
PROTOCOL_NMS_THRESHOLD = 0.5
PROTOCOL_MAX_DETECTIONS = 100


# ---------------------------------------------------------------- overlaps
def compute_overlaps(boxes1, boxes2):
    """IoU of boxes: float32 [N, M] for [N, (y1, x1, y2, x2)] and [M, 4] pixels."""
    b1 = np.asarray(boxes1, np.float64).reshape(-1, 4)
    b2 = np.asarray(boxes2, np.float64).reshape(-1, 4)
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    top_left = np.maximum(b1[:, None, :2], b2[None, :, :2])
    bottom_right = np.minimum(b1[:, None, 2:], b2[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = area1[:, None] + area2[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def _mask_intersections(masks1, masks2):
    """Pixel counts: (intersection [N, M], area1 [N], area2 [M]), float64."""
    m1 = np.asarray(masks1, bool)
    m2 = np.asarray(masks2, bool)
    if m1.ndim != 3 or m2.ndim != 3:
        raise ValueError(f"masks must be [H, W, N] and [H, W, M], got {m1.shape} and {m2.shape}")
    n, m = m1.shape[2], m2.shape[2]
    if n == 0 or m == 0:  # no instances on one side: the size need not match
        return np.zeros([n, m]), m1.sum(axis=(0, 1), dtype=np.float64), \
            m2.sum(axis=(0, 1), dtype=np.float64)
    if m1.shape[:2] != m2.shape[:2]:
        raise ValueError(f"masks must have one image size, got {m1.shape} and {m2.shape}")
    flat1 = m1.reshape(-1, n).astype(np.float64)
    flat2 = m2.reshape(-1, m).astype(np.float64)
    return flat1.T @ flat2, flat1.sum(axis=0), flat2.sum(axis=0)


def compute_overlaps_masks(masks1, masks2):
    """IoU of masks: float32 [N, M] for bool [H, W, N] and [H, W, M].

    Two empty masks have IoU 0 (nothing to agree on).
    """
    inter, area1, area2 = _mask_intersections(masks1, masks2)
    union = area1[:, None] + area2[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)


# ------------------------------------------------------------ VOC-style AP
def compute_matches(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids,
                    pred_scores, pred_masks, iou_threshold=0.5):
    """Match predictions to ground truth greedily, highest score first.

    A prediction takes the unmatched GT of its class with the highest mask
    IoU, if that IoU is >= ``iou_threshold``; each GT is matched at most once
    (matterport semantics). Boxes are accepted for the matterport signature;
    matching is on masks.

    Args:
        gt_boxes: int32 [G, 4] (unused). gt_class_ids: int32 [G], negative
            for crowd regions. gt_masks: bool [H, W, G].
        pred_boxes: int32 [P, 4] (unused). pred_class_ids: int32 [P].
        pred_scores: float32 [P]. pred_masks: bool [H, W, P].
    Returns:
        gt_match: int32 [G], index (in score order) of the matched prediction
            or UNMATCHED; crowd GTs are always UNMATCHED.
        pred_match: int32 [P] *in descending score order*, index of the
            matched GT, UNMATCHED (a false positive) or IGNORED (on a crowd).
        overlaps: float32 [P, G] mask IoU, predictions in score order.
    """
    del gt_boxes, pred_boxes
    gt_class_ids = np.asarray(gt_class_ids, np.int32).reshape(-1)
    pred_class_ids = np.asarray(pred_class_ids, np.int32).reshape(-1)
    order = np.argsort(-np.asarray(pred_scores, np.float64).reshape(-1), kind="stable")
    pred_class_ids = pred_class_ids[order]
    pred_masks = np.asarray(pred_masks, bool)[:, :, order]
    gt_masks = np.asarray(gt_masks, bool)

    overlaps = compute_overlaps_masks(pred_masks, gt_masks)
    inter, pred_area, _ = _mask_intersections(pred_masks, gt_masks)
    # Crowd regions are scored by how much of the prediction lies inside them.
    inside = inter / np.maximum(pred_area[:, None], 1)
    gt_match = np.full(len(gt_class_ids), UNMATCHED, np.int32)
    pred_match = np.full(len(pred_class_ids), UNMATCHED, np.int32)
    for i in range(len(pred_class_ids)):
        for j in np.argsort(-overlaps[i], kind="stable"):
            if overlaps[i, j] < iou_threshold:
                break  # sorted: no later GT overlaps enough
            if gt_match[j] == UNMATCHED and gt_class_ids[j] == pred_class_ids[i]:
                gt_match[j], pred_match[i] = i, j
                break
        if pred_match[i] == UNMATCHED:
            crowd = gt_class_ids == -pred_class_ids[i]
            if crowd.any() and inside[i, crowd].max() >= iou_threshold:
                pred_match[i] = IGNORED
    return gt_match, pred_match, overlaps


def voc_ap(is_true_positive, num_gt):
    """All-point interpolated AP of a ranked list of predictions.

    Args:
        is_true_positive: bool [P], predictions in descending score order
            (ignored ones already removed).
        num_gt: number of (non-crowd) ground truth instances, > 0.
    Returns:
        (ap, precisions float32 [P + 2], recalls float32 [P + 2]); the curve
        is padded with (recall 0, precision 0) and (recall 1, precision 0),
        precisions made monotone, as matterport and VOC 2010+.
    """
    hits = np.cumsum(np.asarray(is_true_positive, bool))
    precisions = hits / np.arange(1, len(hits) + 1)
    recalls = hits / float(num_gt)
    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    # Precision at recall r is the best precision at any recall >= r.
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.flatnonzero(recalls[:-1] != recalls[1:]) + 1
    ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return ap, precisions.astype(np.float32), recalls.astype(np.float32)


def compute_ap(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids,
               pred_scores, pred_masks, iou_threshold=0.5):
    """VOC AP of one image on masks (arguments as in ``compute_matches``).

    Returns:
        (mAP, precisions, recalls, overlaps). mAP is NaN if the image has no
        non-crowd GT (AP is undefined; ``compute_mAP`` skips such images).
        No predictions with some GT give 0.0.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
        pred_masks, iou_threshold)
    num_gt = int(np.sum(np.asarray(gt_class_ids) > 0))
    kept = pred_match[pred_match != IGNORED]
    if num_gt == 0:
        return float("nan"), np.zeros([0], np.float32), np.zeros([0], np.float32), overlaps
    ap, precisions, recalls = voc_ap(kept >= 0, num_gt)
    return ap, precisions, recalls, overlaps


def compute_recall(pred_boxes, gt_boxes, iou):
    """Share of GT boxes hit by some prediction with box IoU >= ``iou``.

    Args:
        pred_boxes: [P, (y1, x1, y2, x2)], gt_boxes: [G, 4], pixels.
    Returns:
        (recall float, positive_ids int [K]: predictions with a hit).
    """
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    if overlaps.shape[0] == 0 or overlaps.shape[1] == 0:
        return 0.0, np.zeros([0], np.int64)
    best_iou, best_gt = overlaps.max(axis=1), overlaps.argmax(axis=1)
    positive_ids = np.flatnonzero(best_iou >= iou)
    return len(set(best_gt[positive_ids].tolist())) / overlaps.shape[1], positive_ids


# ------------------------------------------------------- running a model
def _select_ids(dataset, image_ids, limit):
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    return [int(i) for i in (ids if limit is None else ids[:int(limit)])]


def run_detections(model, dataset, image_ids=None, limit=None, verbose=False):
    """``model.detect([image])`` on each image: (image_ids list, results list)."""
    ids = _select_ids(dataset, image_ids, limit)
    progbar = None
    if verbose:
        import keras  # only for its progress bar; the scoring itself needs no TF
        progbar = keras.utils.Progbar(len(ids), unit_name="image")
    results = []
    for step, image_id in enumerate(ids):
        results.append(model.detect([dataset.load_image(image_id)])[0])
        if progbar is not None:
            progbar.update(step + 1)
    return ids, results


def compute_mAP(model, dataset, config=None, image_ids=None, iou_threshold=0.5,
                limit=None, results=None):
    """Mean over images of ``compute_ap`` (VOC, masks) at ``iou_threshold``.

    Images without non-crowd GT are skipped (matterport evaluates only
    annotated images). ``config`` is accepted for matterport compatibility
    and unused: detections are compared at the original image size.
    ``results`` (one per selected image) skips running the model.

    Returns:
        float, NaN if no selected image has GT.
    """
    del config
    ids, results = _detections(model, dataset, image_ids, limit, results)
    aps = []
    for image_id, r in zip(ids, results):
        gt_masks, gt_class_ids = dataset.load_mask(image_id)
        if np.sum(gt_class_ids > 0) == 0:
            continue
        ap = compute_ap(extract_bboxes(gt_masks), gt_class_ids, gt_masks, r["rois"],
                        r["class_ids"], r["scores"], r["masks"], iou_threshold)[0]
        aps.append(ap)
    return float(np.mean(aps)) if aps else float("nan")


def _detections(model, dataset, image_ids, limit, results):
    if results is None:
        return run_detections(model, dataset, image_ids, limit)
    ids = _select_ids(dataset, image_ids, limit)
    if len(results) < len(ids):
        raise ValueError(f"results has {len(results)} entries for {len(ids)} images")
    return ids, list(results)[:len(ids)]


def per_class_precision_recall(model, dataset, image_ids=None, iou_threshold=0.5,
                               limit=None, results=None):
    """Per class: detections pooled over the images, ranked by score, VOC AP.

    Returns:
        {class_name: (ap, precisions, recalls)} for each class with GT in
        the images (AP is undefined for the others, which are left out).
    """
    ids, results = _detections(model, dataset, image_ids, limit, results)
    ranked = {}  # class id -> list of (score, is_tp)
    num_gt = {}
    for image_id, r in zip(ids, results):
        gt_masks, gt_class_ids = dataset.load_mask(image_id)
        _, pred_match, _ = compute_matches(
            None, gt_class_ids, gt_masks, None, r["class_ids"], r["scores"], r["masks"],
            iou_threshold)
        # pred_match is in compute_matches' order: descending score, stable.
        order = np.argsort(-np.asarray(r["scores"], np.float64), kind="stable")
        scores = np.asarray(r["scores"], np.float64)[order]
        classes = np.asarray(r["class_ids"])[order]
        for score, class_id, match in zip(scores, classes, pred_match):
            if match != IGNORED:
                ranked.setdefault(int(class_id), []).append((score, match >= 0))
        for class_id in gt_class_ids[gt_class_ids > 0]:
            num_gt[int(class_id)] = num_gt.get(int(class_id), 0) + 1
    curves = {}
    for class_id in sorted(num_gt):
        entries = sorted(ranked.get(class_id, []), key=lambda e: -e[0])
        curves[dataset.class_names[class_id]] = voc_ap([tp for _, tp in entries],
                                                       num_gt[class_id])
    return curves


def per_class_ap(model, dataset, image_ids=None, iou_threshold=0.5, limit=None,
                 results=None):
    """{class_name: VOC AP} with detections pooled per class over the images."""
    curves = per_class_precision_recall(model, dataset, image_ids, iou_threshold,
                                        limit, results)
    return {name: ap for name, (ap, _, _) in curves.items()}


# -------------------------------------------------------------------- COCO
def _encode(mask):
    """bool [H, W] -> RLE dict with str counts (JSON-safe)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _annotation_ground_truth(dataset, image_id, first_id):
    """(image dict, annotation dicts) from a COCO-style image's own annotations.

    Boxes, areas and ``iscrowd`` are the file's (computed from the
    segmentation only where the file has none), segmentations as loaded:
    what pycocotools scores against when given the file itself.
    """
    from mrcnn_tf.data.coco import segmentation_to_rle

    info = dataset.image_info[image_id]
    height, width = int(info["height"]), int(info["width"])
    annotations = []
    for ann in info["annotations"]:
        rle = None
        if "bbox" not in ann or "area" not in ann:
            rle = segmentation_to_rle(ann["segmentation"], height, width)
        annotations.append({
            "id": first_id + len(annotations), "image_id": image_id,
            "category_id": dataset.map_source_class_id(f"{info['source']}.{ann['category_id']}"),
            "iscrowd": int(ann.get("iscrowd", 0)), "segmentation": ann["segmentation"],
            "area": float(ann["area"]) if "area" in ann else float(mask_utils.area(rle)),
            "bbox": [float(v) for v in (ann["bbox"] if "bbox" in ann else mask_utils.toBbox(rle))]})
    return {"id": image_id, "height": height, "width": width}, annotations


def build_coco_ground_truth(dataset, image_ids=None):
    """COCO object of the dataset's ground truth, built in memory.

    Category ids are the internal class ids (1 .. num_classes - 1); image ids
    the internal image ids. Images with COCO annotations (``image_info``
    entries with ``annotations``, ``height``, ``width``: a CocoDataset) give
    their annotations' boxes, areas, ``iscrowd`` and segmentations. Other
    images give their masks: boxes and areas from the pixels, crowd instances
    (class ``-c``) as ``iscrowd=1`` annotations of category ``c``, empty masks
    dropped (nothing could match them).
    """
    ids = _select_ids(dataset, image_ids, None)
    images, annotations = [], []
    for image_id in ids:
        info = dataset.image_info[image_id]
        if "annotations" in info and "height" in info and "width" in info:
            image, anns = _annotation_ground_truth(dataset, image_id, len(annotations) + 1)
            images.append(image)
            annotations.extend(anns)
            continue
        masks, class_ids = dataset.load_mask(image_id)
        images.append({"id": image_id, "height": int(masks.shape[0]),
                       "width": int(masks.shape[1])})
        for k, (y1, x1, y2, x2) in enumerate(extract_bboxes(masks)):
            area = int(masks[:, :, k].sum())
            if area == 0:
                continue
            annotations.append({
                # ids from 1: COCOeval treats a matched GT id of 0 as "no match".
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": abs(int(class_ids[k])),
                "iscrowd": int(class_ids[k] < 0),
                "segmentation": _encode(masks[:, :, k]), "area": float(area),
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]})
    categories = [{"id": i, "name": name} for i, name in enumerate(dataset.class_names)
                  if i > 0]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):  # "creating index..."
        coco.createIndex()
    return coco


def detections_to_coco(results, image_ids):
    """COCO result dicts (bbox [x, y, w, h], score, category_id, RLE
    segmentation) of ``model.detect`` outputs, ``results[k]`` for image
    ``image_ids[k]``. Boxes are the unrounded float ``boxes`` (``rois``, the
    rounded ones, for results that have no ``boxes``). Category ids are the
    internal class ids: :func:`to_coco_results` without a ``class_map``."""
    return to_coco_results(results, image_ids)


def to_coco_results(results, image_ids, class_map=None):
    """``detect()`` / ``detect_tiled()`` outputs -> the COCO results list ``COCO.loadRes`` reads.

    Args:
        results: one dict per image: ``boxes`` float [N, (y1, x1, y2, x2)]
            pixels (or only ``rois``), ``class_ids`` [N], ``scores`` [N],
            ``masks`` bool [H, W, N] or a list of N COCO RLEs
            (``mask_format="rle"``).
        image_ids: the COCO image id of each result.
        class_map: internal class id -> COCO ``category_id``: a dict, a
            sequence indexed by class id, or None (the ids as they are). For
            a COCO-file dataset, ``[c["id"] for c in dataset.class_info]`` gives
            back the file's category ids.
    Returns:
        list of dicts ``image_id``, ``category_id``, ``bbox`` float
        [x, y, w, h], ``score``, ``segmentation`` (compressed RLE, counts as
        str: JSON-safe).
    Raises:
        ValueError: lengths of ``results`` and ``image_ids`` differ, a result
            lacks a key, or a class id is not in ``class_map``.
    """
    if len(results) != len(image_ids):
        raise ValueError(f"results has {len(results)} entries for {len(image_ids)} image_ids")
    coco_results = []
    for image_id, r in zip(image_ids, results):
        missing = [k for k in ("class_ids", "scores", "masks") if k not in r]
        if missing or ("boxes" not in r and "rois" not in r):
            raise ValueError(f"result of image {image_id!r} lacks {missing or ['boxes']}")
        boxes = np.asarray(r["boxes"] if "boxes" in r else r["rois"], np.float64).reshape(-1, 4)
        masks = r["masks"]
        rles = list(masks) if isinstance(masks, (list, tuple)) else None
        if rles is None:
            masks = np.asarray(masks, bool)
        for k, (y1, x1, y2, x2) in enumerate(boxes):
            if rles is not None:
                rle = dict(rles[k])
                if isinstance(rle["counts"], bytes):
                    rle["counts"] = rle["counts"].decode("ascii")
            else:
                rle = _encode(masks[:, :, k])
            coco_results.append({
                "image_id": int(image_id), "category_id": _category_id(r["class_ids"][k], class_map),
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                "score": float(r["scores"][k]), "segmentation": rle})
    return coco_results


def _category_id(class_id, class_map):
    class_id = int(class_id)
    if class_map is None:
        return class_id
    try:
        return int(class_map[class_id])
    except (KeyError, IndexError):
        raise ValueError(f"class id {class_id} is not in class_map") from None


def _load_results(coco_gt, coco_results, iou_type):
    """COCO of the results for one iou_type; empty results work too."""
    # loadRes takes the det area from the bbox when both are present, which
    # would put segm detections in the wrong size range: keep only one.
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    anns = [{k: v for k, v in d.items() if k != drop} for d in coco_results]
    if anns:
        return coco_gt.loadRes(anns)
    coco_dt = COCO()  # loadRes indexes anns[0]: build the empty set directly
    coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                       "categories": list(coco_gt.dataset["categories"])}
    coco_dt.createIndex()
    return coco_dt


def protocol_detector(model):
    """What COCO evaluation runs: ``model``'s weights with the protocol's detection settings.

    A MaskRCNN (anything with ``detector(**config_overrides)`` and a
    ``config``) gives a detector over the same variables with scores down to
    PROTOCOL_MIN_CONFIDENCE (or the model's own lower threshold), NMS at
    PROTOCOL_NMS_THRESHOLD and PROTOCOL_MAX_DETECTIONS per image; any other
    object with ``detect()`` is used as it is.
    """
    if not callable(getattr(model, "detector", None)) or getattr(model, "config", None) is None:
        return model
    return model.detector(
        DETECTION_MIN_CONFIDENCE=min(PROTOCOL_MIN_CONFIDENCE, model.config.DETECTION_MIN_CONFIDENCE),
        DETECTION_NMS_THRESHOLD=PROTOCOL_NMS_THRESHOLD,
        DETECTION_MAX_INSTANCES=PROTOCOL_MAX_DETECTIONS)


def coco_evaluate(model, dataset, image_ids=None, iou_type=("bbox", "segm"), limit=None,
                  verbose=True, results=None, per_class=False):
    """COCO AP/AR of a model on any Dataset, by the protocol.

    The model detects with the protocol's settings (:func:`protocol_detector`:
    score >= 0.05, NMS 0.5, 100 per image, whatever its display
    thresholds); boxes are the unrounded float ``boxes``; the ground truth
    is the annotations' boxes, areas and ``iscrowd`` for a COCO dataset, the
    masks otherwise (:func:`build_coco_ground_truth`). bbox results carry no
    segmentation and segm results no box, so segm areas are mask areas (as
    detectron2 passes them to pycocotools).

    Args:
        model: a MaskRCNN, or anything with ``detect(list of uint8 [H, W, 3])
            -> list of dict`` (then used with its own settings).
        iou_type: "bbox", "segm" or a sequence of them.
        verbose: progress bar and pycocotools' 12-line summary per type.
        results: precomputed detections, one per selected image (no model run).
        per_class: also return ``metrics[iou_type]["per_class"]``,
            {class_name: AP@[.5:.95]} (area all, 100 detections; NaN for a
            class without GT in the images), as detectron2's per-category table.
    Returns:
        {iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
        "AR100", "ARs", "ARm", "ARl"}} floats. A metric is -1.0 when the
        images have no GT in its size range (pycocotools' convention); with
        no detections the others are 0.0.
    """
    types = (iou_type,) if isinstance(iou_type, str) else tuple(iou_type)
    for t in types:
        if t not in ("bbox", "segm"):
            raise ValueError(f"iou_type must be 'bbox' or 'segm', got {t!r}")
    if results is None:
        ids, results = run_detections(protocol_detector(model), dataset, image_ids, limit, verbose)
    else:
        ids, results = _detections(model, dataset, image_ids, limit, results)
    coco_gt = build_coco_ground_truth(dataset, ids)
    coco_results = detections_to_coco(results, ids)
    metrics = {}
    for t in types:
        # pycocotools prints progress; only show it when asked.
        out = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
        with out:
            if verbose:
                print(f"COCO evaluation, iou_type={t}:")
            coco_eval = COCOeval(coco_gt, _load_results(coco_gt, coco_results, t), t)
            coco_eval.params.imgIds = ids
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        metrics[t] = {name: float(v) for name, v in zip(COCO_METRICS, coco_eval.stats)}
        if per_class:
            metrics[t]["per_class"] = coco_per_class_ap(coco_eval, dataset.class_names)
    return metrics


def coco_per_class_ap(coco_eval, class_names):
    """{class_name: AP@[.5:.95]} of an accumulated COCOeval (area "all", the last maxDets).

    The mean of the precision table over IoU thresholds and recall points
    where defined, as detectron2's ``_derive_coco_results``; NaN for a
    category without GT. Category ids are indices of ``class_names``.
    """
    precision = coco_eval.eval["precision"]  # [T, R, K, A, M]
    table = {}
    for k, category_id in enumerate(coco_eval.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        table[class_names[category_id]] = float(np.mean(values)) if values.size else float("nan")
    return table


# ------------------------------------------------------- confusion matrix
BACKGROUND = 0  # row: a prediction on no GT (false positive); column: a GT nothing found


def confusion_matrix(model, dataset, image_ids=None, iou_threshold=0.5, min_score=0.5,
                     limit=None, results=None):
    """Class confusion at mask IoU ``iou_threshold``, predictions scoring >= ``min_score``.

    Per image, predictions (best score first) take the unmatched non-crowd
    GT of *any* class with the highest mask IoU >= ``iou_threshold``; a
    prediction lying on a crowd region (as in :func:`compute_matches`) is
    left out.

    Returns:
        int64 [K, K] (K = ``dataset.num_classes``): ``[g, p]`` counts GT of
        class ``g`` matched by a prediction of class ``p``; row BACKGROUND
        counts unmatched predictions by class, column BACKGROUND unmatched GT.
    """
    ids, results = _detections(model, dataset, image_ids, limit, results)
    count = dataset.num_classes
    matrix = np.zeros([count, count], np.int64)
    for image_id, r in zip(ids, results):
        gt_masks, gt_class_ids = dataset.load_mask(image_id)
        gt_class_ids = np.asarray(gt_class_ids, np.int64).reshape(-1)
        keep = np.asarray(r["scores"], np.float64) >= min_score
        order = np.argsort(-np.asarray(r["scores"], np.float64)[keep], kind="stable")
        pred_classes = np.asarray(r["class_ids"], np.int64)[keep][order]
        pred_masks = np.asarray(r["masks"], bool)[:, :, keep][:, :, order]
        overlaps = compute_overlaps_masks(pred_masks, gt_masks)
        inter, pred_area, _ = _mask_intersections(pred_masks, gt_masks)
        inside = inter / np.maximum(pred_area[:, None], 1)
        crowd = gt_class_ids < 0
        matched = np.zeros(len(gt_class_ids), bool)
        for i, pred_class in enumerate(pred_classes):
            candidates = np.where(~crowd & ~matched, overlaps[i], -1.0)
            j = int(np.argmax(candidates)) if candidates.size else -1
            if j >= 0 and candidates[j] >= iou_threshold:
                matched[j] = True
                matrix[gt_class_ids[j], pred_class] += 1
            elif not (crowd.any() and inside[i, crowd].max() >= iou_threshold):
                matrix[BACKGROUND, pred_class] += 1
        for class_id in gt_class_ids[~crowd & ~matched]:
            matrix[class_id, BACKGROUND] += 1
    return matrix


def format_confusion_matrix(matrix, class_names):
    """The matrix as text: one row per GT class, one column per predicted class."""
    names = ["BG/missed"] + list(class_names[1:])
    width = max(8, *(len(n) for n in names)) + 1
    lines = [" " * width + "".join(f"{n:>{width}}" for n in names)]
    for name, row in zip(["BG/false+"] + list(class_names[1:]), matrix):
        lines.append(f"{name:<{width}}" + "".join(f"{int(v):>{width}}" for v in row))
    return "\n".join(lines)
