"""Cross-class NMS: the greedy rule, mask IoU without pasting, and the step in the inference graph."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf import MaskRCNN, presets
from mrcnn_tf.data import ShapesConfig
from mrcnn_tf.modeling.cross_class import CrossClassNMS, cross_class_keep
from mrcnn_tf.ops.masks import box_mask_iou
from mrcnn_tf.ops.nms import cross_class_nms
from reference.numpy_ops import ref_box_iou, ref_paste_mask


def test_greedy_rule_other_classes_only_strict_and_padding():
    overlaps = np.array([[1.0, 0.6, 0.9, 0.5],
                         [0.6, 1.0, 0.0, 0.0],
                         [0.9, 0.0, 1.0, 0.0],
                         [0.5, 0.0, 0.0, 1.0]], np.float32)
    scores = [0.9, 0.8, 0.7, 0.6]
    classes = [1, 2, 1, 3]
    keep = cross_class_nms(overlaps, scores, classes, 0.5).numpy()
    # 1: other class, 0.6 > 0.5 -> dropped; 2: same class as 0 -> this step keeps it;
    # 3: 0.5 is not above 0.5 -> kept.
    np.testing.assert_array_equal(keep, [True, False, True, True])
    # A suppressed detection suppresses nothing: 2 (class 3) only overlaps 1 (dropped).
    overlaps = np.array([[1, 0.8, 0], [0.8, 1, 0.8], [0, 0.8, 1]], np.float32)
    np.testing.assert_array_equal(cross_class_nms(overlaps, [0.9, 0.8, 0.7], [1, 2, 3], 0.5).numpy(),
                                  [True, False, True])
    # Padding (score 0) is never kept.
    np.testing.assert_array_equal(cross_class_nms(np.eye(2, dtype=np.float32), [0.9, 0.0], [1, 2], 0.5),
                                  [True, False])


def test_box_mask_iou_matches_pasted_masks():
    rng = np.random.default_rng(0)
    count, size = 7, 14
    raw = rng.random((count, size, size)).astype(np.float32)
    masks = tf.nn.avg_pool2d(raw[..., None], 3, 1, "SAME")[..., 0].numpy()  # blobs, not noise
    y1, x1 = rng.uniform(0, 30, count), rng.uniform(0, 30, count)
    boxes = np.stack([y1, x1, y1 + rng.uniform(15, 40, count), x1 + rng.uniform(15, 40, count)], 1)
    iou = box_mask_iou(masks, boxes.astype(np.float32)).numpy()
    pasted = np.stack([ref_paste_mask(m, b, (80, 80)) for m, b in zip(masks, boxes)]).reshape(count, -1)
    inter = pasted.astype(float) @ pasted.T.astype(float)
    area = pasted.sum(1)
    reference = inter / (area[:, None] + area[None] - inter)
    assert np.abs(iou - reference).max() < 0.05, np.abs(iou - reference).max()
    assert np.allclose(iou, iou.T)
    # Disjoint boxes give exactly 0 (never computed).
    far = box_mask_iou(masks[:2], np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)).numpy()
    assert far[0, 1] == 0.0


def _two_classes_on_one_object(mask_split):
    """Detections [1, 3, 6] and masks [1, 3, 28, 28, 3]: classes 1 and 2 on one box, a far class 1."""
    detections = np.zeros([1, 3, 6], np.float32)
    detections[0, 0] = [0.1, 0.1, 0.5, 0.5, 1, 0.9]
    detections[0, 1] = [0.12, 0.1, 0.5, 0.52, 2, 0.8]
    detections[0, 2] = [0.6, 0.6, 0.9, 0.9, 1, 0.7]
    masks = np.zeros([1, 3, 28, 28, 3], np.float32)
    masks[0, 0, :, :, 1] = 1.0
    masks[0, 1, :, :, 2] = 1.0
    masks[0, 2, :, :, 1] = 1.0
    if mask_split:  # the two masks cover the two halves of the box: no mask overlap
        masks[0, 0, :, 14:, 1] = 0.0
        masks[0, 1, :, :14, 2] = 0.0
    return detections, masks


@pytest.mark.parametrize("on, split, kept_classes", [
    ("box", False, [1, 1]), ("mask", False, [1, 1]),
    ("box", True, [1, 1]), ("mask", True, [1, 2, 1])])
def test_layer_drops_the_other_class_on_one_object(on, split, kept_classes):
    detections, masks = _two_classes_on_one_object(split)
    out_detections, out_masks = CrossClassNMS(0.5, on)([detections, masks])
    out_detections, out_masks = out_detections.numpy(), out_masks.numpy()
    valid = out_detections[0, :, 5] > 0
    assert out_detections[0, valid, 4].tolist() == kept_classes
    # Survivors first in score order, rows after them zero, masks moved with their rows.
    assert valid.tolist() == [True] * len(kept_classes) + [False] * (3 - len(kept_classes))
    assert (out_detections[0, ~valid] == 0).all() and (out_masks[0, ~valid] == 0).all()
    kept_rows = [0, 2] if len(kept_classes) == 2 else [0, 1, 2]
    np.testing.assert_array_equal(out_masks[0, valid], masks[0, kept_rows])
    assert CrossClassNMS.from_config(CrossClassNMS(0.5, on).get_config()).on == on


def test_bad_settings_name_the_attribute():
    with pytest.raises(ValueError, match="DETECTION_CROSS_CLASS_NMS_ON"):
        ShapesConfig(DETECTION_CROSS_CLASS_NMS_ON="polygon")
    with pytest.raises(ValueError, match="DETECTION_CROSS_CLASS_NMS_THRESHOLD"):
        ShapesConfig(DETECTION_CROSS_CLASS_NMS_THRESHOLD=1.5)
    with pytest.raises(ValueError, match="box-relative masks"):
        cross_class_keep(np.zeros([1, 4], np.float32), [1.0], [1], 0.5, "mask")


def _cross_class_pairs(result, threshold):
    iou = ref_box_iou(result["boxes"], result["boxes"])
    other = result["class_ids"][:, None] != result["class_ids"][None, :]
    return int(np.triu(other & (iou > threshold), 1).sum())


def test_detect_and_the_saved_model_apply_it(tmp_path):
    """An untrained model with every detection kept: one class per object only with the step.

    One model: what the step received is read off the same graph (its input layers' outputs),
    through the same post-processing, run eagerly (no second model, no second trace).
    """
    import keras
    from mrcnn_tf.export.signatures import ServingModule
    from mrcnn_tf.inference import InferencePipeline, unbatch_results

    keras.utils.set_random_seed(5)
    strict = MaskRCNN("inference", ShapesConfig(**presets.tiny(
        64, IMAGES_PER_GPU=1, DETECTION_MAX_INSTANCES=16, DETECTION_CROSS_CLASS_NMS_THRESHOLD=0.5)), tmp_path)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    after = strict.detect([image])[0]
    graph = strict.inference_model
    unstepped = keras.Model(graph.inputs, {"detections": strict.find_layer("mrcnn_detection").output,
                                           "mrcnn_mask": strict.find_layer("mrcnn_mask_padded").output})
    outputs = InferencePipeline(unstepped, strict.config).run(tf.constant(image[None]), tf.constant([[64, 64]]))
    before = unbatch_results({name: value.numpy() for name, value in outputs.items()})[0]
    assert _cross_class_pairs(before, 0.5) > 0  # the untrained model does repeat objects
    assert _cross_class_pairs(after, 0.5) == 0
    assert 0 < len(after["class_ids"]) < len(before["class_ids"])
    # Every survivor is a detection the step received (same rows), with its mask.
    for box, class_id, mask in zip(after["boxes"], after["class_ids"], np.moveaxis(after["masks"], -1, 0)):
        assert any(np.allclose(box, b) and c == class_id and (mask == m).all()
                   for b, c, m in zip(before["boxes"], before["class_ids"], np.moveaxis(before["masks"], -1, 0)))
    # The SavedModel serves the same inference graph, with the step in it.
    assert ServingModule(graph, strict.config, 256, False).pipeline.keras_model is graph
