"""Independent numpy references for `mrcnn_tf.ops`, written from the design text.

Plain Python loops in float64, deliberately naive: they restate
`shared/design/roialign.md` and `docs/CONTRACTS.md` line by line and share no
code with the TensorFlow ops they check. Boxes are `(y1, x1, y2, x2)` in
continuous coordinates (pixel `i` covers `[i, i+1)`, `y2`/`x2` exclusive).
"""

import math

import numpy as np

# Decoding clamps log(dh), log(dw) here so `exp` cannot overflow (CONTRACTS.md).
BBOX_LOG_SCALE_CLIP = math.log(1000.0 / 16.0)


def _iou_pair(a, b):
    """IoU of two boxes; 0 when the union has no area (never NaN)."""
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    ih = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    iw = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = ih * iw
    union = area_a + area_b - inter
    if union <= 0.0:
        return 0.0
    return inter / union


def ref_box_iou(b1, b2):
    """IoU matrix: b1 [N, 4], b2 [M, 4] -> float64 [N, M]."""
    b1 = np.asarray(b1, np.float64).reshape(-1, 4)
    b2 = np.asarray(b2, np.float64).reshape(-1, 4)
    out = np.zeros((len(b1), len(b2)), np.float64)
    for i in range(len(b1)):
        for j in range(len(b2)):
            out[i, j] = _iou_pair(b1[i], b2[j])
    return out


def ref_encode_boxes(boxes, gt_boxes, std_dev=(1.0, 1.0, 1.0, 1.0)):
    """Deltas (dy, dx, log dh, log dw) / std_dev taking `boxes` to `gt_boxes`."""
    boxes = np.asarray(boxes, np.float64)
    gt_boxes = np.asarray(gt_boxes, np.float64)
    flat_b, flat_g = boxes.reshape(-1, 4), gt_boxes.reshape(-1, 4)
    out = np.zeros_like(flat_b)
    for n in range(len(flat_b)):
        y1, x1, y2, x2 = flat_b[n]
        gy1, gx1, gy2, gx2 = flat_g[n]
        h, w = y2 - y1, x2 - x1
        gh, gw = gy2 - gy1, gx2 - gx1
        cy, cx = y1 + 0.5 * h, x1 + 0.5 * w
        gcy, gcx = gy1 + 0.5 * gh, gx1 + 0.5 * gw
        d = [(gcy - cy) / h, (gcx - cx) / w, math.log(gh / h), math.log(gw / w)]
        out[n] = [d[k] / std_dev[k] for k in range(4)]
    return out.reshape(boxes.shape)


def ref_decode_boxes(boxes, deltas, std_dev=(1.0, 1.0, 1.0, 1.0)):
    """Inverse of `ref_encode_boxes`; log dh, log dw clamped above at log(1000/16)."""
    boxes = np.asarray(boxes, np.float64)
    deltas = np.asarray(deltas, np.float64)
    flat_b, flat_d = boxes.reshape(-1, 4), deltas.reshape(-1, 4)
    out = np.zeros_like(flat_b)
    for n in range(len(flat_b)):
        y1, x1, y2, x2 = flat_b[n]
        dy, dx, dh, dw = [flat_d[n][k] * std_dev[k] for k in range(4)]
        dh, dw = min(dh, BBOX_LOG_SCALE_CLIP), min(dw, BBOX_LOG_SCALE_CLIP)
        h, w = y2 - y1, x2 - x1
        cy, cx = y1 + 0.5 * h + dy * h, x1 + 0.5 * w + dx * w
        h, w = h * math.exp(dh), w * math.exp(dw)
        out[n] = [cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w]
    return out.reshape(boxes.shape)


def ref_generate_anchors(scale, ratios, feature_shape, feature_stride, anchor_stride):
    """Anchors of one level in pixels, order rows, columns, ratios innermost."""
    out = []
    for i in range(0, feature_shape[0], anchor_stride):
        for j in range(0, feature_shape[1], anchor_stride):
            cy, cx = (i + 0.5) * feature_stride, (j + 0.5) * feature_stride
            for r in ratios:
                h, w = scale / math.sqrt(r), scale * math.sqrt(r)
                out.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.asarray(out, np.float64).reshape(-1, 4)


def ref_pyramid_anchors(scales, ratios, image_shape_hw, feature_strides, anchor_stride):
    """All levels concatenated; level l has feature shape ceil(H / stride_l)."""
    levels = []
    for scale, stride in zip(scales, feature_strides):
        shape = (math.ceil(image_shape_hw[0] / stride), math.ceil(image_shape_hw[1] / stride))
        levels.append(ref_generate_anchors(scale, ratios, shape, stride, anchor_stride))
    return np.concatenate(levels, axis=0)


def ref_nms(boxes, scores, max_output, iou_threshold, score_threshold=-math.inf):
    """Greedy NMS: best score first, drop boxes whose IoU with a kept box is > threshold.

    Boxes with score <= score_threshold are never kept. Returns int64 indices.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if len(keep) >= max_output:
            break
        if not scores[i] > score_threshold:
            continue
        if all(_iou_pair(boxes[i], boxes[k]) <= iou_threshold for k in keep):
            keep.append(i)
    return np.asarray(keep, np.int64)


def ref_batched_nms(boxes, scores, classes, max_output, iou_threshold,
                    score_threshold=-math.inf):
    """NMS per class, then all survivors merged by score (best first) and truncated."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    kept = []
    for c in sorted(set(classes.tolist())):
        idx = [i for i in range(len(classes)) if classes[i] == c]
        sub = ref_nms(boxes[idx], scores[idx], max_output, iou_threshold, score_threshold)
        kept.extend(idx[k] for k in sub)
    kept.sort(key=lambda i: -scores[i])
    return np.asarray(kept[:max_output], np.int64)


def _axis_weights(p, n):
    """Bilinear taps along one axis at index position p of a length-n axis.

    Index position in [-1, 0) or (n-1, n] reads the edge value; further out the
    sample contributes 0 (returns None).
    """
    if p < -1.0 or p > n:
        return None
    p = min(max(p, 0.0), n - 1.0)
    lo = int(math.floor(p))
    hi = min(lo + 1, n - 1)
    t = p - lo
    return lo, hi, t


def _bilinear(features, y, x):
    """Value at continuous coordinates (y, x): bilinear at index (y - 0.5, x - 0.5)."""
    height, width = features.shape[:2]
    ay = _axis_weights(y - 0.5, height)
    ax = _axis_weights(x - 0.5, width)
    if ay is None or ax is None:
        return np.zeros(features.shape[2], np.float64)
    y0, y1, ty = ay
    x0, x1, tx = ax
    top = (1 - tx) * features[y0, x0] + tx * features[y0, x1]
    bottom = (1 - tx) * features[y1, x0] + tx * features[y1, x1]
    return (1 - ty) * top + ty * bottom


def ref_roi_align(features, box, output_size, sampling_ratio=2):
    """RoIAlign of one box on one map, exactly as in roialign.md.

    features: [H, W, C]; box: (y1, x1, y2, x2) in that map's pixel coordinates;
    output_size: int or (oh, ow). Returns float64 [oh, ow, C].
    """
    features = np.asarray(features, np.float64)
    if np.ndim(output_size) == 0:
        output_size = (int(output_size), int(output_size))
    oh, ow = output_size
    r = sampling_ratio
    y1, x1, y2, x2 = [float(v) for v in box]
    bin_h, bin_w = (y2 - y1) / oh, (x2 - x1) / ow
    out = np.zeros((oh, ow, features.shape[2]), np.float64)
    for i in range(oh):
        for j in range(ow):
            acc = np.zeros(features.shape[2], np.float64)
            for ky in range(r):
                y = y1 + (i + (ky + 0.5) / r) * bin_h
                for kx in range(r):
                    x = x1 + (j + (kx + 0.5) / r) * bin_w
                    acc += _bilinear(features, y, x)
            out[i, j] = acc / (r * r)
    return out


def ref_fpn_level(box_px, k0=4, canonical=224, min_level=2, max_level=5):
    """FPN level of one box in image pixels: clamp(floor(k0 + log2(sqrt(h*w)/224)))."""
    y1, x1, y2, x2 = [float(v) for v in box_px]
    area = (y2 - y1) * (x2 - x1)
    if area <= 0.0:
        return min_level
    k = math.floor(k0 + math.log2(math.sqrt(area) / canonical))
    return int(min(max(k, min_level), max_level))


# ------------------------------------------------------------ image and masks
# Restated from the docstrings of ops/image.py and ops/masks.py: pixel i covers
# [i, i + 1) and has its centre at i + 0.5; boxes (y1, x1, y2, x2), y2/x2 exclusive.


def ref_scaled_size(height, width, mode, min_dim=None, max_dim=None, min_scale=None):
    """(scale, new_h, new_w) of one image.

    Classic modes (matterport): scale up so the short side is at least min_dim
    (never down for it), then at least min_scale; "square"/"pad64" then scale
    down if the rounded long side would exceed max_dim; sizes rounded (half to
    even, as Python's round). "shortest_edge" (torchvision):
    scale = min(min_dim / short, max_dim / long) computed in float32, sizes
    floor(side * scale). "none": 1. Sizes are at least 1.
    """
    if mode == "none":
        return 1.0, height, width
    if mode == "shortest_edge":
        scale = min(np.float32(min_dim) / np.float32(min(height, width)),
                    np.float32(max_dim) / np.float32(max(height, width)))
        scale = float(np.float32(scale))
        new_h, new_w = math.floor(height * scale), math.floor(width * scale)
    else:
        scale = 1.0
        if min_dim:
            scale = max(scale, min_dim / min(height, width))
        if min_scale and scale < min_scale:
            scale = float(min_scale)
        if max_dim and mode in ("square", "pad64") and round(max(height, width) * scale) > max_dim:
            scale = max_dim / max(height, width)
        new_h, new_w = round(height * scale), round(width * scale)
    return scale, max(int(new_h), 1), max(int(new_w), 1)


def _linear_taps(position, length):
    """(low, high, fraction) of a bilinear read at index ``position``, clamped to the edge cells."""
    position = min(max(position, 0.0), length - 1.0)
    low = int(math.floor(position))
    return low, min(low + 1, length - 1), position - low


def ref_resize_bilinear(image, out_h, out_w):
    """Half-pixel bilinear resize, no antialiasing: output pixel (i, j) reads the
    input at index ((i + 0.5) * H / out_h - 0.5, (j + 0.5) * W / out_w - 0.5),
    clamped to the edge cells. image [H, W, C] -> float64 [out_h, out_w, C]."""
    image = np.asarray(image, np.float64)
    height, width = image.shape[:2]
    out = np.zeros((out_h, out_w, image.shape[2]), np.float64)
    for i in range(out_h):
        y0, y1, ty = _linear_taps((i + 0.5) * height / out_h - 0.5, height)
        for j in range(out_w):
            x0, x1, tx = _linear_taps((j + 0.5) * width / out_w - 0.5, width)
            top = (1 - tx) * image[y0, x0] + tx * image[y0, x1]
            bottom = (1 - tx) * image[y1, x0] + tx * image[y1, x1]
            out[i, j] = (1 - ty) * top + ty * bottom
    return out


def ref_normalize(pixels, mean_pixel, pixel_std, channel_order):
    """RGB pixels [..., 3] -> (pixel in channel_order - mean) / std, float64."""
    pixels = np.asarray(pixels, np.float64)
    if channel_order == "BGR":
        pixels = pixels[..., [2, 1, 0]]
    return (pixels - np.asarray(mean_pixel, np.float64)) / np.asarray(pixel_std, np.float64)


def ref_paste_mask(mask, box, image_hw, threshold=0.5):
    """Paste a box-relative [mh, mw] mask into an image of image_hw.

    Pixel (i, j) is in the result iff its centre (i + 0.5, j + 0.5) lies in
    [y1, y2) x [x1, x2) (and so in the image), and the mask's bilinear value
    there is >= threshold: the mask's cell k has its centre at
    y1 + (k + 0.5) * (y2 - y1) / mh, i.e. the centre reads index
    (i + 0.5 - y1) * mh / (y2 - y1) - 0.5, clamped to the edge cells.
    """
    mask = np.asarray(mask, np.float64)
    mask_h, mask_w = mask.shape
    y1, x1, y2, x2 = (float(v) for v in box)
    out = np.zeros(tuple(image_hw), bool)
    for i in range(image_hw[0]):
        cy = i + 0.5
        if not y1 <= cy < y2:
            continue
        r0, r1, ty = _linear_taps((cy - y1) * mask_h / (y2 - y1) - 0.5, mask_h)
        for j in range(image_hw[1]):
            cx = j + 0.5
            if not x1 <= cx < x2:
                continue
            c0, c1, tx = _linear_taps((cx - x1) * mask_w / (x2 - x1) - 0.5, mask_w)
            top = (1 - tx) * mask[r0, c0] + tx * mask[r0, c1]
            bottom = (1 - tx) * mask[r1, c0] + tx * mask[r1, c1]
            out[i, j] = (1 - ty) * top + ty * bottom >= threshold
    return out


def ref_crop_mask(mask, box, output_size, threshold=0.5):
    """A mini mask: cell (i, j) is the full mask's value at the cell's centre in
    the box (RoIAlign, one sample per bin), then >= threshold. mask [H, W] -> bool."""
    cells = ref_roi_align(np.asarray(mask, np.float64)[:, :, None], box, output_size,
                          sampling_ratio=1)
    return cells[:, :, 0] >= threshold


def ref_rpn_anchor_labels(anchors, gt_class_ids, gt_boxes, positive_iou=0.7, negative_iou=0.3,
                          crowd_iou=0.001):
    """Faster R-CNN anchor labels before sampling (the numpy code the graph replaced).

    Returns (labels int [A]: 1 positive, -1 negative, 0 neutral; matched int [A]: the
    positive anchors' object index among the non-crowd boxes, -1 elsewhere; ambiguous
    bool [A]: anchors whose label or match turns on an IoU within 1e-6 of a threshold,
    of a box's best IoU or of another box's, where float32 and float64 may decide
    differently).
    """
    anchors = np.asarray(anchors, np.float64)
    gt_class_ids = np.asarray(gt_class_ids)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    real = gt_class_ids != 0
    crowd, objects = gt_boxes[real & (gt_class_ids < 0)], gt_boxes[real & (gt_class_ids > 0)]
    labels = np.zeros(len(anchors), int)
    matched = np.full(len(anchors), -1)
    near_crowd = np.zeros(len(anchors), bool)
    if len(crowd):
        near_crowd = ref_box_iou(anchors, crowd).max(axis=1) >= crowd_iou
    ambiguous = np.zeros(len(anchors), bool)
    if not len(objects):
        labels[~near_crowd] = -1
        return labels, matched, ambiguous
    overlaps = ref_box_iou(anchors, objects)
    best = overlaps.max(axis=1)
    labels[(best < negative_iou) & ~near_crowd] = -1
    best_per_gt = overlaps.max(axis=0)
    is_best = ((overlaps == best_per_gt[None]) & (best_per_gt[None] > 0)).any(axis=1)
    positive = is_best | (best >= positive_iou)
    labels[positive] = 1
    matched[positive] = overlaps.argmax(axis=1)[positive]
    near = 1e-6
    ambiguous = ((np.abs(overlaps - best_per_gt[None]) < near) & ~(overlaps == best_per_gt[None])).any(1)
    ambiguous |= (np.abs(best - positive_iou) < near) | (np.abs(best - negative_iou) < near)
    if len(objects) > 1:  # two boxes (almost) tied for an anchor: either may be matched
        top2 = np.sort(overlaps, axis=1)[:, -2:]
        ambiguous |= positive & (top2[:, 1] - top2[:, 0] < near)
    return labels, matched, ambiguous
