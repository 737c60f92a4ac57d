"""One matcher and one sampler for both training stages: anchors for the RPN, proposals for the heads.

The models are torchvision's ``detection/_utils.py`` (``Matcher``,
``BalancedPositiveNegativeSampler``) and detectron2's ``modeling/matcher.py``
and ``sampling.py``. The RPN calls them with (0.7, 0.3, best anchor of each
ground-truth box kept, half positives at most); the RoI sampling with (0.5,
0.5, no low-quality matches, ROI_POSITIVE_RATIO positives at most).
"""

import tensorflow as tf

from mrcnn_tf.ops.boxes import box_iou

# Match values that are not a ground-truth column (torchvision's Matcher names).
BELOW_LOW_THRESHOLD = -1  # IoU < low with every box: a negative
BETWEEN_THRESHOLDS = -2  # neither positive nor negative: ignored by the losses

# A negative must overlap every crowd region less than this (matterport's rule; Config
# CROWD_IOU_THRESHOLD): a crowd region is ground truth that is neither matched nor background.
CROWD_IOU_THRESHOLD = 0.001


def match_boxes(iou, high_threshold, low_threshold, allow_low_quality_matches=False,
                not_negative=None):
    """Each row's ground-truth column, or why it has none.

    Rows (anchors or proposals) with IoU >= ``high_threshold`` to some box
    match the box of their highest IoU (the first on ties); rows below
    ``low_threshold`` with every box are BELOW_LOW_THRESHOLD (negatives);
    the rest BETWEEN_THRESHOLDS. With ``allow_low_quality_matches`` every
    box also keeps the row(s) of its highest IoU (ties included, if that IoU
    is > 0), matched to their own highest-IoU box, as Faster R-CNN's RPN.

    Args:
        iou: float32 [N, G] IoU of N rows with G ground-truth boxes (G may be 0).
        high_threshold, low_threshold: floats, low <= high.
        allow_low_quality_matches: bool.
        not_negative: optional bool [N]: rows that must not be negatives
            (e.g. touching a crowd region): BETWEEN_THRESHOLDS instead.
    Returns:
        int32 [N]: column in [0, G), BELOW_LOW_THRESHOLD or BETWEEN_THRESHOLDS.
    """
    if low_threshold > high_threshold:
        raise ValueError(f"low_threshold {low_threshold} > high_threshold {high_threshold}")
    iou = tf.convert_to_tensor(iou, tf.float32)
    # A zero column keeps max and argmax defined when there is no ground truth;
    # no row can reach a positive threshold > 0 through it.
    padded = tf.pad(iou, [[0, 0], [0, 1]])
    best_iou = tf.reduce_max(padded, axis=1)
    best_column = tf.argmax(padded, axis=1, output_type=tf.int32)
    negative = best_iou < low_threshold
    if not_negative is not None:
        negative &= ~not_negative
    positive = best_iou >= high_threshold
    if allow_low_quality_matches:
        best_per_box = tf.reduce_max(padded, axis=0)[:-1]  # [G]
        is_best = tf.equal(iou, best_per_box[None, :]) & (best_per_box[None, :] > 0.0)
        positive |= tf.reduce_any(is_best, axis=1)
    matches = tf.where(negative, BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS)
    return tf.where(positive, best_column, matches)


def crowd_rows(rows, crowd_boxes, threshold=CROWD_IOU_THRESHOLD):
    """bool [N]: rows overlapping some crowd box by IoU >= ``threshold``.

    rows: float32 [N, 4]; crowd_boxes: float32 [C, 4] in the same frame (C may be 0).
    """
    crowd_iou = tf.pad(box_iou(rows, crowd_boxes), [[0, 0], [0, 1]])
    return tf.reduce_max(crowd_iou, axis=1) >= threshold


def sample_balanced(matches, num_samples, max_positives):
    """Random positives and negatives for the losses (at most ``max_positives`` positives).

    Args:
        matches: int32 [N] from :func:`match_boxes`: >= 0 positive,
            BELOW_LOW_THRESHOLD negative.
        num_samples: int, rows drawn in all.
        max_positives: int, the cap on positives; negatives fill the rest.
    Returns:
        (positive_index int32 [p], negative_index int32 [n]): row indices in
        random order, p = min(#positives, max_positives, num_samples),
        n = min(#negatives, num_samples - p).
    """
    max_positives = min(int(max_positives), int(num_samples))
    positive = tf.random.shuffle(tf.where(matches >= 0)[:, 0])[:max_positives]
    negative = tf.where(tf.equal(matches, BELOW_LOW_THRESHOLD))[:, 0]
    negative = tf.random.shuffle(negative)[:num_samples - tf.shape(positive)[0]]
    return tf.cast(positive, tf.int32), tf.cast(negative, tf.int32)
