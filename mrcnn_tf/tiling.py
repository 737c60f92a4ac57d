"""Tiled inference: images far larger than the model's input (``MaskRCNN.detect_tiled``).

1. The image is cut into ``tile_size`` squares overlapping by ``overlap`` of
   a tile (:func:`tile_origins`), run through the one inference pipeline
   (:class:`~mrcnn_tf.inference.InferencePipeline`, so per-tile detection,
   per-class and cross-class NMS are ``detect()``'s) ``batch_size`` tiles at
   a time, with box-relative masks out instead of tile-size pasted ones.
2. Every detection moves to the full image's pixels. Two detections of one
   class from different tiles are one object when their boxes, both cut to
   the two tiles' common area (where both tiles saw the same pixels), have
   an IoU above DETECTION_NMS_THRESHOLD: an object cut by one tile's border
   is whole (or further cut) in the overlapping tile, and the two agree on
   the part they share. Matches are joined transitively (an object across
   three tiles), each group becoming one detection: the best score, the
   union of the boxes, the union of the masks (so a kept detection's mask is
   completed from the other tile's mask of the same object).
3. The per-class NMS on boxes over the whole image then removes any
   remaining duplicate, and DETECTION_CROSS_CLASS_NMS_THRESHOLD applies
   across tiles as inside them (:func:`~mrcnn_tf.modeling.cross_class.cross_class_keep`).
4. Cut views (:func:`_drop_cut_views`): a tile that sees only part of an
   object may call that part another class, which no same-class matching
   or IoU-based NMS removes (the part's IoU with the whole is small). A
   detection whose box touches an inner tile edge (one that is not the
   image border; within CUT_EDGE_MARGIN of the tile side) in every tile
   that saw it is a possibly-cut view; it is dropped when a kept detection
   of any class, scoring at least as high, covers at least
   CUT_COVER_THRESHOLD of its box area (intersection over the cut box's
   area), as tiled detectors do (SAHI's intersection-over-smaller
   matching, border filtering in aerial detection). Detections away from
   inner edges are never dropped this way, so two real overlapping objects
   of different classes both stay.

Memory: a detection's mask is pasted into its box's region only (one
``ops.masks.paste_masks`` call per tile batch); ``mask_format="rle"`` encodes
each region straight to a COCO RLE of the full image (:func:`region_rle`),
so no full-size mask is ever dense. ``"bool"`` returns ``[H, W, N]`` bool.
"""

import math

import numpy as np
import tensorflow as tf
from pycocotools import mask as mask_utils

from mrcnn_tf.data.validation import to_rgb_uint8
from mrcnn_tf.modeling.cross_class import cross_class_keep
from mrcnn_tf.ops.masks import crop_masks, paste_masks
from mrcnn_tf.ops.nms import batched_nms

MASK_FORMATS = ("bool", "rle")
# A box side this close to an inner edge of its tile (a fraction of the tile's side: box
# regression is about a model pixel off, and a tile is resized to the model's input) is cut.
CUT_EDGE_MARGIN = 0.01
# A cut view goes when a detection scoring at least as high covers this share of its box area.
CUT_COVER_THRESHOLD = 0.6


def tile_origins(length, tile_size, overlap):
    """Start offsets of tiles covering ``[0, length)`` with at least ``overlap * tile_size`` shared.

    Evenly spread, first at 0 and last at ``length - tile_size``; one tile
    at 0 when the image is no longer than a tile.
    """
    if length <= tile_size:
        return [0]
    step = max(tile_size - int(round(overlap * tile_size)), 1)
    count = math.ceil((length - tile_size) / step) + 1
    return [int(round(i * (length - tile_size) / (count - 1))) for i in range(count)]


def _pixel_span(start, end):
    """First pixel and end pixel whose centres ``i + 0.5`` lie in ``[start, end)``."""
    return int(math.ceil(start - 0.5)), int(math.ceil(end - 0.5))


def region_rle(region, top, left, height, width):
    """COCO compressed RLE of an image ``height x width`` that is 0 except ``region`` at (top, left).

    Args:
        region: bool [h, w], inside the image.
    Returns:
        dict ``size`` [H, W], ``counts`` bytes (pycocotools' compressed form),
        built from the region's runs alone: no [H, W] array is made.
    """
    region = np.asarray(region, bool)
    h, w = region.shape
    # Column-major (COCO's order): each region column, then the zeros down to the next one.
    values = np.zeros([w, h + 1], np.uint8)
    values[:, :h] = region.T
    weights = np.ones([w, h + 1], np.int64)
    weights[:, h] = height - h
    weights[-1, h] = height - top - h  # below the last column: the columns after count below
    values = np.concatenate([[0], values.ravel(), [0]])
    weights = np.concatenate([[left * height + top], weights.ravel(), [(width - left - w) * height]])
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    runs = np.add.reduceat(weights, starts).tolist()
    if values[0] == 1:  # COCO counts start with a run of zeros
        runs = [0] + runs
    return mask_utils.frPyObjects({"counts": runs, "size": [int(height), int(width)]},
                                  int(height), int(width))


def _run_tiles(pipeline, image, tile_size, overlap, batch_size, paste_mode="box"):
    """Detections of every tile in full-image pixels, with their masks pasted into box regions.

    ``paste_mode``: ``ops.masks.paste_masks``' mode (Config.MASK_PASTE_MODE).

    Returns:
        dict of numpy arrays over all tiles' detections: ``boxes`` [N, 4]
        float (full-image pixels), ``class_ids`` [N], ``scores`` [N],
        ``tiles`` [N, (y1, x1, y2, x2)] the tile of each, ``box_masks``
        [N, mh, mw], and ``regions``: N (top, left, bool [h, w]) masks.
    """
    height, width = image.shape[:2]
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    tiles = [(y, x) for y in tile_origins(height, tile_size, overlap)
             for x in tile_origins(width, tile_size, overlap)]
    parts = {key: [] for key in ("boxes", "class_ids", "scores", "tiles", "box_masks", "regions")}
    for start in range(0, len(tiles), batch_size):
        chunk = tiles[start:start + batch_size]
        # The tiles go straight into one tensor: no numpy copy of the batch lives beside it.
        batch = tf.stack([tf.constant(image[y:y + tile_h, x:x + tile_w]) for y, x in chunk])
        sizes = np.tile([[tile_h, tile_w]], [len(chunk), 1]).astype(np.int32)
        out = pipeline.run_padded(batch, tf.constant(sizes))
        del batch  # freed before the next batch is cut
        out = {k: v.numpy() for k, v in out.items()}
        boxes, box_masks, tile_boxes = [], [], []
        for b, (y, x) in enumerate(chunk):
            n = int(out["num_detections"][b])
            boxes.append(out["detection_boxes"][b, :n] + np.array([y, x, y, x], np.float32))
            box_masks.append(out["detection_box_masks"][b, :n])
            tile_boxes.append(np.tile([[y, x, y + tile_h, x + tile_w]], [n, 1]))
            parts["class_ids"].append(out["detection_classes"][b, :n])
            parts["scores"].append(out["detection_scores"][b, :n])
        boxes, box_masks = np.concatenate(boxes), np.concatenate(box_masks)
        parts["boxes"].append(boxes)
        parts["box_masks"].append(box_masks)
        parts["tiles"].append(np.concatenate(tile_boxes))
        parts["regions"].extend(_paste_regions(box_masks, boxes, height, width, paste_mode))
    merged = {k: np.concatenate(v) for k, v in parts.items() if k != "regions"}
    merged["regions"] = parts["regions"]
    return merged


def _paste_regions(box_masks, boxes, height, width, mode="box"):
    """Each mask pasted into its box's pixel span only: [(top, left, bool [h, w])]."""
    if len(boxes) == 0:
        return []
    spans = [(*_pixel_span(b[0], b[2]), *_pixel_span(b[1], b[3])) for b in boxes]
    spans = [(max(t, 0), min(bo, height), max(le, 0), min(r, width)) for t, bo, le, r in spans]
    origins = np.array([[t, le, t, le] for t, _, le, _ in spans], np.float32)
    region_hw = np.array([[max(bo - t, 0), max(r - le, 0)] for t, bo, le, r in spans], np.int32)
    pasted = paste_masks(box_masks, boxes - origins, region_hw, mode=mode).numpy()
    return [(t, le, pasted[k, :region_hw[k, 0], :region_hw[k, 1]])
            for k, (t, _, le, _) in enumerate(spans)]


def _common_iou(boxes, tiles):
    """[N, N] IoU of box pairs cut to their two tiles' common area (0 within one tile)."""
    window = np.concatenate([np.maximum(tiles[:, None, :2], tiles[None, :, :2]),
                             np.minimum(tiles[:, None, 2:], tiles[None, :, 2:])], axis=-1)

    def cut(b):  # b [N, 1, 4] or [1, N, 4] -> [N, N, 4] cut to the window
        return np.concatenate([np.maximum(b[..., :2], window[..., :2]),
                               np.minimum(b[..., 2:], window[..., 2:])], axis=-1)

    def area(b):
        return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)

    first, second = cut(boxes[:, None]), cut(boxes[None])
    inter = area(np.concatenate([np.maximum(first[..., :2], second[..., :2]),
                                 np.minimum(first[..., 2:], second[..., 2:])], axis=-1))
    union = area(first) + area(second) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    same_tile = (tiles[:, None] == tiles[None]).all(axis=-1)
    return np.where(same_tile, 0.0, iou)


def _groups(matches):
    """Connected components of a boolean [N, N] match matrix: a label per row."""
    labels = np.arange(len(matches))
    changed = len(labels) > 0
    while changed:  # label propagation: each row takes the smallest label it matches
        spread = np.where(matches, labels[None, :], len(labels)).min(axis=1)
        new = np.minimum(labels, spread)
        changed = bool((new != labels).any())
        labels = new
    return labels


def _union_region(members, regions):
    """(top, left, bool [h, w]): the union of the members' region masks."""
    top = min(regions[k][0] for k in members)
    left = min(regions[k][1] for k in members)
    bottom = max(regions[k][0] + regions[k][2].shape[0] for k in members)
    right = max(regions[k][1] + regions[k][2].shape[1] for k in members)
    union = np.zeros([bottom - top, right - left], bool)
    for k in members:
        t, le, mask = regions[k]
        union[t - top:t - top + mask.shape[0], le - left:le - left + mask.shape[1]] |= mask
    return top, left, union


def _touches_inner_edge(boxes, tiles, height, width, margin):
    """bool [N]: the box lies within ``margin`` (a fraction of the tile's side) of an inner tile edge.

    Args:
        boxes: float [N, (y1, x1, y2, x2)] full-image pixels.
        tiles: [N, (y1, x1, y2, x2)] the tile of each box, full-image pixels.
        height, width: the full image's size: a tile edge on its border is not inner.
    """
    tiles = np.asarray(tiles, np.float32).reshape(-1, 4)
    tile_hw = np.tile(tiles[:, 2:] - tiles[:, :2], [1, 2])   # [N, (h, w, h, w)]
    inner = np.stack([tiles[:, 0] > 0, tiles[:, 1] > 0, tiles[:, 2] < height, tiles[:, 3] < width], axis=1)
    near = np.abs(np.asarray(boxes, np.float32).reshape(-1, 4) - tiles) <= margin * tile_hw
    return (inner & near).any(axis=1)


def _drop_cut_views(boxes, scores, cut, cover_threshold):
    """Indexes of the detections kept, best first, once covered cut views are dropped.

    Greedy in score order: a detection with ``cut`` True goes when one
    already kept (so scoring at least as high, of any class) covers at least
    ``cover_threshold`` of its box area; the others always stay.

    Args:
        boxes: float [M, (y1, x1, y2, x2)]; scores: float [M]; cut: bool [M].
    Returns:
        int [K] indexes into the M detections.
    """
    kept = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if cut[i] and kept:
            others = boxes[kept]
            inter_h = np.clip(np.minimum(others[:, 2], boxes[i, 2]) - np.maximum(others[:, 0], boxes[i, 0]), 0, None)
            inter_w = np.clip(np.minimum(others[:, 3], boxes[i, 3]) - np.maximum(others[:, 1], boxes[i, 1]), 0, None)
            area = max(boxes[i, 2] - boxes[i, 0], 0) * max(boxes[i, 3] - boxes[i, 1], 0)
            if area > 0 and (inter_h * inter_w).max() >= cover_threshold * area:
                continue
        kept.append(i)
    return np.array(kept, np.int64)


def merge_tiles(found, height, width, nms_threshold, cross_class_threshold=None, cross_class_on="box",
                mask_shape=(28, 28), cut_cover_threshold=CUT_COVER_THRESHOLD, cut_edge_margin=CUT_EDGE_MARGIN):
    """Merge the detections of all tiles into one result of the full image (see the module doc).

    Args:
        found: the dict of :func:`_run_tiles`.
        height, width: the full image's size.
        nms_threshold: DETECTION_NMS_THRESHOLD (matching and the final NMS).
        cross_class_threshold, cross_class_on: DETECTION_CROSS_CLASS_NMS_*.
        mask_shape: (mh, mw) of the masks resampled for a "mask" cross-class NMS.
        cut_cover_threshold: a cut view (step 4 of the module doc) covered
            by at least this share of its box area is dropped; None keeps all.
        cut_edge_margin: how close to an inner tile edge a box side is cut,
            a fraction of the tile side.
    Returns:
        (boxes float32 [M, 4], class_ids int32 [M], scores float32 [M],
        regions: M (top, left, bool [h, w])), best first.
    """
    if cut_cover_threshold is not None and not 0.0 < cut_cover_threshold <= 1.0:
        raise ValueError(f"cut_cover_threshold must be in (0, 1] or None, got {cut_cover_threshold!r}")
    boxes, class_ids, scores = found["boxes"], found["class_ids"], found["scores"]
    same_class = class_ids[:, None] == class_ids[None, :]
    labels = _groups(same_class & (_common_iou(boxes, found["tiles"]) > nms_threshold))
    groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]
    merged_boxes = np.array([np.concatenate([boxes[m, :2].min(0), boxes[m, 2:].max(0)]) for m in groups],
                            np.float32).reshape(-1, 4)
    best = [m[np.argmax(scores[m])] for m in groups]
    merged_scores = scores[best].astype(np.float32)
    merged_classes = class_ids[best].astype(np.int32)
    regions = [_union_region(m, found["regions"]) for m in groups]
    keep = batched_nms(merged_boxes, merged_scores, merged_classes, len(groups), nms_threshold).numpy()
    if cross_class_threshold is not None and len(keep):
        box_masks = None
        if cross_class_on == "mask":  # the merged masks back in box-relative form
            box_masks = tf.stack([_box_relative(regions[k], merged_boxes[k], mask_shape) for k in keep])
        survive = cross_class_keep(merged_boxes[keep], merged_scores[keep], merged_classes[keep],
                                   cross_class_threshold, cross_class_on, box_masks).numpy()
        keep = keep[survive]
    if cut_cover_threshold is not None and len(keep):
        # A group is a cut view when every tile that saw it saw it touching an inner edge.
        touches = _touches_inner_edge(boxes, found["tiles"], height, width, cut_edge_margin)
        cut = np.array([touches[m].all() for m in groups], bool)
        keep = keep[_drop_cut_views(merged_boxes[keep], merged_scores[keep], cut[keep], cut_cover_threshold)]
    return merged_boxes[keep], merged_classes[keep], merged_scores[keep], [regions[k] for k in keep]


def _box_relative(region, box, mask_shape):
    """A region mask resampled over its box (``ops.masks.crop_masks``): float32 [mh, mw]."""
    top, left, mask = region
    shifted = box - np.array([top, left, top, left], np.float32)
    return tf.cast(crop_masks(mask[:, :, None], shifted[None], mask_shape)[:, :, 0], tf.float32)


def detect_tiled(pipeline, config, image, tile_size=1024, overlap=0.2, batch_size=None, mask_format="bool"):
    """``MaskRCNN.detect_tiled``: detections of one image of any size, by overlapping tiles.

    Merging (module doc): same-class views of one object from overlapping
    tiles are joined, NMS runs over the whole image, then cut views are
    dropped: a detection whose box touches an inner tile edge (not the
    image border) in every tile that saw it, covered over at least
    CUT_COVER_THRESHOLD (0.6) of its box area by a kept detection of any
    class scoring at least as high, is a part of that object that a tile
    cut and misclassified. Detections away from inner tile edges are never
    dropped by this rule (overlapping objects of different classes stay).

    Args:
        pipeline: an ``InferencePipeline`` built with ``include_box_masks=True,
            include_masks=False``.
        config: the model's Config (NMS thresholds, batch size).
        image: array that ``detect()`` accepts, any size.
        tile_size: tile side in pixels (>= 64).
        overlap: fraction of a tile shared with its neighbour, in [0, 1).
        batch_size: tiles per pipeline call (default BATCH_SIZE).
        mask_format: "bool" or "rle".
    Returns:
        the ``detect()`` dict at the full size (``boxes``, ``rois``,
        ``class_ids``, ``scores``, ``masks``: bool [H, W, N] or a list of N
        COCO RLEs) plus ``image_size`` (H, W).
    """
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 64:
        raise ValueError(f"tile_size must be an int >= 64, got {tile_size!r}")
    if not (isinstance(overlap, (int, float)) and 0.0 <= overlap < 1.0):
        raise ValueError(f"overlap must be a fraction in [0, 1), got {overlap!r}")
    batch_size = config.BATCH_SIZE if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
    image = to_rgb_uint8(image, "image")
    height, width = image.shape[:2]
    found = _run_tiles(pipeline, image, tile_size, overlap, batch_size, config.MASK_PASTE_MODE)
    boxes, class_ids, scores, regions = merge_tiles(
        found, height, width, config.DETECTION_NMS_THRESHOLD,
        config.DETECTION_CROSS_CLASS_NMS_THRESHOLD, config.DETECTION_CROSS_CLASS_NMS_ON,
        tuple(config.MASK_SHAPE))
    if mask_format == "rle":
        masks = [region_rle(mask, top, left, height, width) for top, left, mask in regions]
    else:
        masks = np.zeros([height, width, len(regions)], bool)
        for k, (top, left, mask) in enumerate(regions):
            masks[top:top + mask.shape[0], left:left + mask.shape[1], k] = mask
    return {"boxes": boxes, "rois": np.round(boxes).astype(np.int32), "class_ids": class_ids,
            "scores": scores, "masks": masks, "image_size": (height, width)}
