"""Anchor generation against the loop reference and the CONTRACTS.md convention.

ratio = w / h; scale s, ratio r -> h = s / sqrt(r), w = s * sqrt(r); centres
((i + 0.5) * stride, (j + 0.5) * stride) for i in range(0, fh, anchor_stride);
order rows, columns, ratios innermost; levels concatenated, level shape ceil(H / s).
"""

import math

import numpy as np
import pytest

from mrcnn_tf.ops import anchors
from reference.numpy_ops import ref_generate_anchors, ref_pyramid_anchors

SCALES = (32, 64, 128, 256, 512)
RATIOS = (0.5, 1.0, 2.0)
STRIDES = (4, 8, 16, 32, 64)


def test_hand_written_anchors():
    # One row, two columns, stride 16: centres (8, 8) and (8, 24). Scale 32 and
    # ratios 1/4, 1, 4 give (h, w) = (64, 16), (32, 32), (16, 64).
    got = np.asarray(anchors.generate_anchors(32, (0.25, 1.0, 4.0), (1, 2), 16, 1))
    want = [[-24, 0, 40, 16], [-8, -8, 24, 24], [0, -24, 16, 40],
            [-24, 16, 40, 32], [-8, 8, 24, 40], [0, -8, 16, 56]]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("scale, ratios, shape, stride, anchor_stride", [
    (32, (0.5, 1.0, 2.0), (8, 8), 4, 1),
    (64, (1.0,), (5, 7), 8, 1),
    (128, (0.5, 1.0, 2.0), (7, 5), 16, 2),   # odd shapes with anchor stride 2
    (24.0, (0.3, 1.7), (3, 11), 6, 3),
    (512, (0.5, 1.0, 2.0), (1, 1), 64, 1),
])
def test_generate_anchors_matches_reference(scale, ratios, shape, stride, anchor_stride):
    got = np.asarray(anchors.generate_anchors(scale, ratios, shape, stride, anchor_stride))
    want = ref_generate_anchors(scale, ratios, shape, stride, anchor_stride)
    n_rows, n_cols = math.ceil(shape[0] / anchor_stride), math.ceil(shape[1] / anchor_stride)
    assert got.shape == (n_rows * n_cols * len(ratios), 4)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)

    # Centres on the (i + 0.5) * stride grid, ratios innermost.
    per_cell = got.reshape(n_rows, n_cols, len(ratios), 4)
    cy = (per_cell[..., 0] + per_cell[..., 2]) / 2
    cx = (per_cell[..., 1] + per_cell[..., 3]) / 2
    rows = (np.arange(0, shape[0], anchor_stride) + 0.5) * stride
    cols = (np.arange(0, shape[1], anchor_stride) + 0.5) * stride
    np.testing.assert_allclose(cy, np.broadcast_to(rows[:, None, None], cy.shape), atol=1e-4)
    np.testing.assert_allclose(cx, np.broadcast_to(cols[None, :, None], cx.shape), atol=1e-4)
    # Width / height is the ratio, sqrt(area) the scale.
    h = per_cell[..., 2] - per_cell[..., 0]
    w = per_cell[..., 3] - per_cell[..., 1]
    np.testing.assert_allclose(w / h, np.broadcast_to(ratios, w.shape), rtol=1e-5)
    np.testing.assert_allclose(np.sqrt(w * h), scale, rtol=1e-5)


@pytest.mark.parametrize("image_hw", [(64, 64), (100, 60), (33, 129)])
def test_backbone_feature_shapes(image_hw):
    got = [tuple(int(v) for v in s) for s in anchors.backbone_feature_shapes(image_hw, STRIDES)]
    assert got == [(math.ceil(image_hw[0] / s), math.ceil(image_hw[1] / s)) for s in STRIDES]


@pytest.mark.parametrize("image_hw, anchor_stride", [((64, 64), 1), ((100, 60), 1),
                                                     ((33, 129), 2)])
def test_pyramid_anchors_match_reference(image_hw, anchor_stride):
    shapes = anchors.backbone_feature_shapes(image_hw, STRIDES)
    got = np.asarray(anchors.generate_pyramid_anchors(SCALES, RATIOS, shapes, STRIDES,
                                                      anchor_stride))
    want = ref_pyramid_anchors(SCALES, RATIOS, image_hw, STRIDES, anchor_stride)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
    # Level order P2..P6: the first rows are the smallest scale.
    first = got[:len(RATIOS)]
    np.testing.assert_allclose(np.sqrt((first[:, 2] - first[:, 0]) * (first[:, 3] - first[:, 1])),
                               SCALES[0], rtol=1e-5)


def test_pyramid_anchors_for_image_pixels_and_normalized():
    image_hw = (96, 128)
    px = anchors.pyramid_anchors_for_image(image_hw, SCALES, RATIOS, STRIDES, 1,
                                           normalized=False)
    norm = anchors.pyramid_anchors_for_image(image_hw, SCALES, RATIOS, STRIDES, 1)
    assert isinstance(px, np.ndarray) and px.dtype == np.float32
    assert isinstance(norm, np.ndarray) and norm.dtype == np.float32
    want = ref_pyramid_anchors(SCALES, RATIOS, image_hw, STRIDES, 1)
    np.testing.assert_allclose(px, want, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(norm, want / [96, 128, 96, 128], rtol=1e-6, atol=1e-7)


def test_pyramid_anchors_cache_returns_equal_arrays():
    args = ((80, 112), list(SCALES), list(RATIOS), list(STRIDES), 1)
    first = anchors.pyramid_anchors_for_image(*args)
    second = anchors.pyramid_anchors_for_image(*args)
    np.testing.assert_array_equal(first, second)
    other = anchors.pyramid_anchors_for_image((112, 80), *args[1:])
    assert other.shape == first.shape and not np.array_equal(other, first)
    # The cached array is shared, so it must not be writable by a caller.
    with pytest.raises(ValueError):
        first[0, 0] = 123.0
    np.testing.assert_array_equal(anchors.pyramid_anchors_for_image(*args), second)
