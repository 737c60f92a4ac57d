"""The five Mask R-CNN losses against hand arithmetic on tiny cases.

Every expected value is written out term by term. Smooth L1 (beta 1) is
0.5 d^2 for |d| < 1 and |d| - 0.5 otherwise; cross-entropy is -log softmax.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.modeling import roi_heads, rpn

LN2, LN3 = math.log(2.0), math.log(3.0)


def _f(x):
    return tf.constant(np.asarray(x, np.float32))


def _i(x):
    return tf.constant(np.asarray(x, np.int32))


def _value(loss):
    value = float(loss.numpy())
    assert np.isfinite(value)
    return value


# --- rpn_class_loss -----------------------------------------------------------

@pytest.mark.parametrize("match_shape", ["[B, A]", "[B, A, 1]"])
def test_rpn_class_loss_hand_case(match_shape):
    # Anchors: positive, negative, neutral, positive. Logits (background, object).
    rpn_match = np.array([[1, -1, 0, 1]])
    if match_shape == "[B, A, 1]":
        rpn_match = rpn_match[..., None]
    logits = [[[0.0, LN3],     # positive: p(obj) = 3 / (1 + 3) = 3/4  -> CE ln(4/3)
               [0.0, 0.0],     # negative: p(bg) = 1/2                  -> CE ln 2
               [100.0, -100.0],  # neutral: ignored (would add ~200)
               [1.0, -1.0]]]   # positive: p(obj) = e^-1/(e^1+e^-1) = 1/(1+e^2) -> CE ln(1+e^2)
    want = (math.log(4 / 3) + LN2 + math.log(1 + math.e ** 2)) / 3
    assert _value(rpn.rpn_class_loss(_i(rpn_match), _f(logits))) == pytest.approx(want, rel=1e-6)


def test_rpn_class_loss_all_neutral_is_zero():
    loss = rpn.rpn_class_loss(_i([[0, 0, 0]]), _f(np.full([1, 3, 2], 50.0)))
    assert _value(loss) == 0.0


# --- rpn_bbox_loss ------------------------------------------------------------

def _rpn_bbox_case():
    # Image 0: positives at anchors 0, 2, 4; image 1: one positive at anchor 1.
    rpn_match = np.array([[1, 0, 1, -1, 1], [0, 1, 0, -1, 0]])
    target = np.zeros([2, 4, 4], np.float32)        # packed, anchor order, zero padded
    target[0, 0] = [0.5, 0, 0, 0]                   # anchor 0
    target[0, 1] = [0, 2.0, 0, 0]                   # anchor 2
    target[0, 2] = [0, 0, -0.2, 0]                  # anchor 4
    target[1, 0] = [0, 0, 0, 3.0]                   # anchor 1 of image 1
    pred = np.full([2, 5, 4], 7.0, np.float32)      # non-positives: far off, must not count
    pred[0, 0] = [0, 0, 0, 0]                       # d = (.5, 0, 0, 0)  -> 0.5*.25 = 0.125
    pred[0, 2] = [0, 0, 0, 0]                       # d = (0, 2, 0, 0)   -> 2 - .5 = 1.5
    pred[0, 4] = [0, 0, 0.2, 0]                     # d = (0, 0, -.4, 0) -> 0.5*.16 = 0.08
    pred[1, 1] = [0, 0, 0, 1.0]                     # d = (0, 0, 0, 2)   -> 2 - .5 = 1.5
    return rpn_match, target, pred


def test_rpn_bbox_loss_packed_targets_batch2():
    rpn_match, target, pred = _rpn_bbox_case()
    want = (0.125 + 1.5 + 0.08 + 1.5) / (4 * 4)     # 4 positives x 4 coordinates
    got = _value(rpn.rpn_bbox_loss(_f(target), _i(rpn_match), _f(pred)))
    assert got == pytest.approx(want, rel=1e-6)
    # Same case with rpn_match [B, A, 1].
    got = _value(rpn.rpn_bbox_loss(_f(target), _i(rpn_match[..., None]), _f(pred)))
    assert got == pytest.approx(want, rel=1e-6)


def test_rpn_bbox_loss_no_positive_is_zero():
    loss = rpn.rpn_bbox_loss(_f(np.zeros([2, 3, 4])), _i([[0, -1], [-1, 0]]),
                                _f(np.full([2, 2, 4], 5.0)))
    assert _value(loss) == 0.0


# --- mrcnn_class_loss ---------------------------------------------------------

def _class_case():
    target = [[1, 0, -1], [2, -1, -1]]
    active = [[1, 1, 0, 1],          # image 0: class 2 not in its dataset
              [1, 1, 1, 1]]
    logits = np.full([2, 3, 4], 9.0, np.float32)  # padding rows: anything
    logits[0, 0] = [0, 1, 5, 0]      # softmax over {0,1,3}: e^0, e^1, e^0 -> p1 = e/(e+2)
    logits[0, 1] = [0, 0, 5, LN2]    # softmax over {0,1,3}: 1, 1, 2       -> p0 = 1/4
    logits[1, 0] = [0, 0, LN3, 0]    # all active: 1, 1, 3, 1              -> p2 = 3/6
    return target, logits, active


def test_mrcnn_class_loss_hand_softmax_over_active_classes():
    target, logits, active = _class_case()
    want = (math.log((math.e + 2) / math.e) + math.log(4.0) + LN2) / 3  # 3 non-padding rows
    got = _value(roi_heads.mrcnn_class_loss(_i(target), _f(logits), _f(active)))
    assert got == pytest.approx(want, rel=1e-6)


def test_mrcnn_class_loss_inactive_and_padding_do_not_matter():
    target, logits, active = _class_case()
    base = _value(roi_heads.mrcnn_class_loss(_i(target), _f(logits), _f(active)))
    changed = logits.copy()
    changed[0, :, 2] = -30.0          # an inactive class's logit
    changed[1, 1:] = -4.0             # padding rows
    got = _value(roi_heads.mrcnn_class_loss(_i(target), _f(changed), _f(active)))
    assert got == pytest.approx(base, rel=1e-6)
    # ...whereas making class 2 active changes row 0 and row 1 of image 0.
    all_active = _value(roi_heads.mrcnn_class_loss(_i(target), _f(logits), _f(np.ones([2, 4]))))
    assert all_active > base + 1.0


def test_mrcnn_class_loss_all_padding_is_zero():
    loss = roi_heads.mrcnn_class_loss(_i([[-1, -1]]), _f(np.ones([1, 2, 3])), _f(np.ones([1, 3])))
    assert _value(loss) == 0.0


# --- mrcnn_bbox_loss ----------------------------------------------------------

def test_mrcnn_bbox_loss_uses_gt_class_deltas():
    target_class_ids = [[2, 0, -1]]
    target = np.zeros([1, 3, 4], np.float32)
    target[0, 0] = [1.0, 0, 0, 0]
    target[0, 1:] = 4.0                                # not positives: ignored
    pred = np.full([1, 3, 3, 4], -6.0, np.float32)
    pred[0, 0, 1] = [1.0, 0, 0, 0]                     # class 1 would match exactly (loss 0)
    pred[0, 0, 2] = [0, 0.5, 0, 3.0]                   # class 2: d = (1, -.5, 0, -3)
    # smooth L1: |1| -> 1 - .5 = .5; |-.5| -> .5*.25 = .125; 0 -> 0; |-3| -> 2.5
    want = (0.5 + 0.125 + 0.0 + 2.5) / 4              # one positive x 4 coordinates
    got = _value(roi_heads.mrcnn_bbox_loss(_f(target), _i(target_class_ids), _f(pred)))
    assert got == pytest.approx(want, rel=1e-6)


def test_mrcnn_bbox_loss_no_positive_is_zero():
    loss = roi_heads.mrcnn_bbox_loss(_f(np.ones([1, 2, 4])), _i([[0, -1]]), _f(np.ones([1, 2, 3, 4])))
    assert _value(loss) == 0.0


# --- mrcnn_mask_loss ----------------------------------------------------------

def _mask_case():
    target_class_ids = [[2, 0]]                        # RoI 0 positive (class 2), RoI 1 negative
    target_masks = np.zeros([1, 2, 2, 2], np.float32)
    target_masks[0, 0] = [[1, 0], [0, 1]]
    target_masks[0, 1] = 1.0
    logits = np.random.default_rng(0).normal(size=[1, 2, 2, 2, 3]).astype(np.float32) * 3
    logits[0, 0, :, :, 2] = [[0.0, 0.0], [LN3, -LN3]]
    return target_masks, target_class_ids, logits


def test_mrcnn_mask_loss_hand_case():
    target_masks, target_class_ids, logits = _mask_case()
    # label 1, logit 0     -> -ln(1/2)                 = ln 2
    # label 0, logit 0     -> -ln(1 - 1/2)             = ln 2
    # label 0, logit ln 3  -> -ln(1 - 3/4)             = ln 4
    # label 1, logit -ln 3 -> -ln(1/4)                 = ln 4
    want = (LN2 + LN2 + 2 * LN2 + 2 * LN2) / 4         # mean over the positive's 4 pixels
    got = _value(roi_heads.mrcnn_mask_loss(_f(target_masks), _i(target_class_ids), _f(logits)))
    assert got == pytest.approx(want, rel=1e-6)


def test_mrcnn_mask_loss_is_decoupled_per_class():
    target_masks, target_class_ids, logits = _mask_case()
    base = _value(roi_heads.mrcnn_mask_loss(_f(target_masks), _i(target_class_ids), _f(logits)))
    other = logits.copy()
    other[0, 0, :, :, :2] += 5.0                        # other classes of the positive RoI
    other[0, 1] -= 5.0                                  # every channel of the negative RoI
    got = _value(roi_heads.mrcnn_mask_loss(_f(target_masks), _i(target_class_ids), _f(other)))
    assert got == pytest.approx(base, rel=1e-6)
    gt_channel = logits.copy()
    gt_channel[0, 0, 0, 0, 2] += 1.0
    got = _value(roi_heads.mrcnn_mask_loss(_f(target_masks), _i(target_class_ids), _f(gt_channel)))
    assert abs(got - base) > 1e-3

    logits_t = _f(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits_t)
        loss = roi_heads.mrcnn_mask_loss(_f(target_masks), _i(target_class_ids), logits_t)
    grad = tape.gradient(loss, logits_t).numpy()
    assert np.all(grad[0, 0, :, :, 2] != 0.0)
    grad[0, 0, :, :, 2] = 0.0
    np.testing.assert_array_equal(grad, 0.0)            # nothing flows to other channels


@pytest.mark.parametrize("class_ids", [[[0, 0]], [[-1, -1]], [[0, -1]]])
def test_mrcnn_mask_loss_no_positive_is_zero(class_ids):
    logits_t = _f(np.ones([1, 2, 2, 2, 3]))
    with tf.GradientTape() as tape:
        tape.watch(logits_t)
        loss = roi_heads.mrcnn_mask_loss(_f(np.ones([1, 2, 2, 2])), _i(class_ids), logits_t)
    assert _value(loss) == 0.0
    grad = tape.gradient(loss, logits_t)
    assert grad is None or np.all(grad.numpy() == 0.0)


def test_losses_under_tf_function_match_eager():
    target, logits, active = _class_case()
    fn = tf.function(roi_heads.mrcnn_class_loss)
    eager = _value(roi_heads.mrcnn_class_loss(_i(target), _f(logits), _f(active)))
    assert _value(fn(_i(target), _f(logits), _f(active))) == pytest.approx(eager, rel=1e-6)
    rpn_match, target_b, pred = _rpn_bbox_case()
    fn = tf.function(rpn.rpn_bbox_loss)
    eager = _value(rpn.rpn_bbox_loss(_f(target_b), _i(rpn_match), _f(pred)))
    assert _value(fn(_f(target_b), _i(rpn_match), _f(pred))) == pytest.approx(eager, rel=1e-6)
