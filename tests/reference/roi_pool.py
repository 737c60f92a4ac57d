"""Numpy loop references for RoIPool, RoIWarp and RoIAlign with a max aggregate.

Written from the text of the issue (#20) and ``shared/design/roialign.md``, not
from the TF ops: float64, one box, one bin, one cell at a time.

RoIPool (Fast R-CNN, as torchvision's kernel with spatial_scale 1 on the
inclusive end ``y2 - 1``): the box starts at cell ``round(y1)`` and ends with
cell ``round(y2 - 1)`` (C rounding: halves away from zero), at least one cell;
bin ``i`` of ``m`` covers cells ``floor(i h / m)`` to ``ceil((i + 1) h / m)``
(exclusive) from the start, clipped to the map; its value is the max of those
cells, 0 if there are none. As in torchvision's kernel, ``i h / m`` is
``i * float32(h / m)`` in float32, which can round past a whole number (a box
of 7 cells in 13 bins: the last bin ends at cell 8, not 7).
"""

import math

import numpy as np

from reference.numpy_ops import _bilinear


def c_round(value):
    """C's round(): halves go away from zero."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def ref_quantise(box):
    """(start_y, start_x, size_h, size_w) in whole cells of a (y1, x1, y2, x2) box."""
    y1, x1, y2, x2 = [float(v) for v in box]
    start_y, start_x = c_round(y1), c_round(x1)
    size_h = max(c_round(y2 - 1.0) - start_y + 1, 1)
    size_w = max(c_round(x2 - 1.0) - start_x + 1, 1)
    return start_y, start_x, size_h, size_w


def _edge(index, size, bins, rounding):
    """floor or ceil of index * (size / bins), computed in float32 as torchvision does."""
    return rounding(float(np.float32(index) * (np.float32(size) / np.float32(bins))))


def _pair(output_size):
    return (int(output_size), int(output_size)) if np.ndim(output_size) == 0 else tuple(output_size)


def ref_roi_pool(features, box, output_size):
    """RoIPool of one box on one map [H, W, C]; returns float64 [oh, ow, C]."""
    features = np.asarray(features, np.float64)
    height, width, channels = features.shape
    oh, ow = _pair(output_size)
    start_y, start_x, size_h, size_w = ref_quantise(box)
    out = np.zeros((oh, ow, channels))
    for i in range(oh):
        top = min(max(start_y + _edge(i, size_h, oh, math.floor), 0), height)
        bottom = min(max(start_y + _edge(i + 1, size_h, oh, math.ceil), 0), height)
        for j in range(ow):
            left = min(max(start_x + _edge(j, size_w, ow, math.floor), 0), width)
            right = min(max(start_x + _edge(j + 1, size_w, ow, math.ceil), 0), width)
            if bottom <= top or right <= left:
                continue  # an empty bin pools 0
            out[i, j] = features[top:bottom, left:right].reshape(-1, channels).max(axis=0)
    return out


def _bilinear_ties_nan(features, y, x):
    """_bilinear, but NaN for a sample exactly one pixel outside (index -1 or H)."""
    height, width = features.shape[:2]
    if y - 0.5 in (-1.0, float(height)) or x - 0.5 in (-1.0, float(width)):
        return np.full(features.shape[2], np.nan)
    return _bilinear(features, y, x)


def ref_roi_align_aggregate(features, box, output_size, sampling_ratio=2, aggregate="avg",
                            ties_nan=False):
    """RoIAlign of roialign.md with the bin's r x r samples averaged or maxed.

    ``ties_nan``: a bin with a sample exactly at index position -1 or H (the
    limit of the edge rule: edge value there, 0 just beyond) is NaN. Whole-cell
    boxes (RoIWarp) put samples exactly there, where float rounding decides.
    """
    features = np.asarray(features, np.float64)
    oh, ow = _pair(output_size)
    r = sampling_ratio
    y1, x1, y2, x2 = [float(v) for v in box]
    bin_h, bin_w = (y2 - y1) / oh, (x2 - x1) / ow
    out = np.zeros((oh, ow, features.shape[2]))
    for i in range(oh):
        for j in range(ow):
            read = _bilinear_ties_nan if ties_nan else _bilinear
            samples = [read(features, y1 + (i + (ky + 0.5) / r) * bin_h,
                                 x1 + (j + (kx + 0.5) / r) * bin_w)
                       for ky in range(r) for kx in range(r)]
            out[i, j] = np.max(samples, axis=0) if aggregate == "max" else np.mean(samples, axis=0)
    return out


def ref_roi_warp(features, box, output_size, sampling_ratio=2, aggregate="avg", ties_nan=False):
    """RoIWarp: RoIAlign of the box quantised as RoIPool's, [start, start + size)."""
    start_y, start_x, size_h, size_w = ref_quantise(box)
    return ref_roi_align_aggregate(features, (start_y, start_x, start_y + size_h, start_x + size_w),
                                   output_size, sampling_ratio, aggregate, ties_nan)
