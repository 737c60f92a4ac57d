"""mrcnn_tf.evaluate: VOC AP by hand, COCO metrics on prescribed detections.

No TF model: ``FakeModel.detect`` returns the detections a test prescribes,
and ``FixedDataset`` holds hand-drawn masks so IoUs are known exactly.
"""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn_tf.data.dataset import Dataset
from mrcnn_tf.data.shapes import ShapesDataset
from mrcnn_tf.data import extract_bboxes
from mrcnn_tf.evaluate import (IGNORED, UNMATCHED, build_coco_ground_truth, coco_evaluate,
                               compute_ap, compute_mAP, compute_matches, compute_overlaps,
                               compute_overlaps_masks, compute_recall, detections_to_coco,
                               per_class_ap)

H, W = 64, 80


class FakeModel:
    """``detect([image])`` returns ``results[k]`` on the k-th call."""

    def __init__(self, results):
        self.results = list(results)
        self.calls = 0

    def detect(self, images):
        assert len(images) == 1 and images[0].ndim == 3  # test double, not library code
        result = self.results[self.calls]
        self.calls += 1
        return [result]


class FixedDataset(Dataset):
    """Grey images whose masks and class ids are given per image."""

    def __init__(self, instances):
        super().__init__()
        self.add_class("t", 1, "box")
        self.add_class("t", 2, "blob")
        for k, (masks, class_ids) in enumerate(instances):
            self.add_image("t", k, None, masks=masks, class_ids=np.asarray(class_ids, np.int32))
        self.prepare()

    def load_image(self, image_id):
        masks = self.image_info[image_id]["masks"]
        return np.full(masks.shape[:2] + (3,), 100, np.uint8)

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        return info["masks"], info["class_ids"]


def rect(y1, x1, y2, x2, hw=(H, W)):
    """bool [H, W] with pixels y1..y2-1, x1..x2-1 set."""
    mask = np.zeros(hw, bool)
    mask[y1:y2, x1:x2] = True
    return mask


def stack(*masks, hw=(H, W)):
    return np.stack(masks, axis=-1) if masks else np.zeros(hw + (0,), bool)


def detections(masks, class_ids, scores, rois=None):
    masks = np.asarray(masks, bool)
    return {"rois": extract_bboxes(masks) if rois is None else np.asarray(rois, np.int32),
            "class_ids": np.asarray(class_ids, np.int32),
            "scores": np.asarray(scores, np.float32), "masks": masks}


def ground_truth_as_detections(dataset):
    results = []
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        results.append(detections(masks, class_ids, np.ones(len(class_ids))))
    return results


@pytest.fixture(scope="module")
def shapes():
    dataset = ShapesDataset()
    dataset.load_shapes(4, 64, 64, seed=3, min_instances=2, max_instances=4)
    dataset.prepare()
    return dataset


def ap_args(gt_masks, gt_class_ids, result):
    return (extract_bboxes(gt_masks), np.asarray(gt_class_ids, np.int32), gt_masks,
            result["rois"], result["class_ids"], result["scores"], result["masks"])


# ------------------------------------------------------------------ overlaps
def test_overlaps_by_hand():
    a, b = rect(0, 0, 2, 2), rect(0, 1, 2, 3)  # 4 and 4 pixels sharing 2
    empty = np.zeros((H, W), bool)
    iou = compute_overlaps_masks(stack(a, empty), stack(a, b, empty))
    np.testing.assert_allclose(iou, [[1, 2 / 6, 0], [0, 0, 0]], rtol=1e-6)
    box_iou = compute_overlaps([[0, 0, 2, 2]], [[0, 1, 2, 3], [5, 5, 6, 6]])
    np.testing.assert_allclose(box_iou, [[2 / 6, 0]], rtol=1e-6)


# ------------------------------------------------------------------- VOC AP
def test_compute_ap_perfect_on_shapes(shapes):
    for image_id, result in zip(shapes.image_ids, ground_truth_as_detections(shapes)):
        gt_masks, gt_class_ids = shapes.load_mask(image_id)
        ap, precisions, recalls, overlaps = compute_ap(*ap_args(gt_masks, gt_class_ids, result))
        assert ap == pytest.approx(1.0)
        assert overlaps.shape == (len(gt_class_ids), len(gt_class_ids))
        assert recalls[-2] == pytest.approx(1.0) and precisions[1] == pytest.approx(1.0)


def test_compute_ap_ranked_by_hand():
    gt = stack(rect(0, 0, 10, 10), rect(20, 20, 30, 30))
    # Scores 0.9 hit GT 0, 0.8 misses, 0.7 hits GT 1: precision 1, 1/2, 2/3 at
    # recall 1/2, 1/2, 1; interpolated AP = 0.5 * 1 + 0.5 * 2/3.
    pred = detections(stack(rect(20, 20, 30, 30), rect(40, 40, 50, 50), rect(0, 0, 10, 10)),
                      [1, 1, 1], [0.7, 0.8, 0.9])
    ap, precisions, recalls, _ = compute_ap(*ap_args(gt, [1, 1], pred))
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    np.testing.assert_allclose(recalls, [0, 0.5, 0.5, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(precisions, [1, 1, 2 / 3, 2 / 3, 0], rtol=1e-6)


def test_compute_matches_greedy_same_class_once():
    gt = stack(rect(0, 0, 10, 10))
    pred_masks = stack(rect(0, 0, 10, 10), rect(0, 0, 10, 9), rect(0, 0, 10, 10))
    gt_match, pred_match, overlaps = compute_matches(
        None, [1], gt, None, [1, 1, 2], [0.5, 0.9, 0.95], pred_masks)
    # Score order: class-2 (0.95, wrong class), 0.9 (IoU 0.9, takes the GT), 0.5 (GT taken).
    assert pred_match.tolist() == [UNMATCHED, 0, UNMATCHED]
    assert gt_match.tolist() == [1]
    np.testing.assert_allclose(overlaps[:, 0], [1.0, 0.9, 1.0], rtol=1e-6)
    # Below the threshold nothing matches.
    _, pred_match, _ = compute_matches(None, [1], gt, None, [1], [1.0],
                                       stack(rect(0, 0, 10, 4)), iou_threshold=0.5)
    assert pred_match.tolist() == [UNMATCHED]


def test_compute_ap_empty_cases():
    gt = stack(rect(0, 0, 10, 10))
    no_pred = detections(stack(), [], [])
    assert compute_ap(*ap_args(gt, [1], no_pred))[0] == 0.0
    assert np.isnan(compute_ap(*ap_args(stack(), [], no_pred))[0])


def test_compute_ap_crowd_detection_ignored():
    gt = stack(rect(0, 0, 10, 10), rect(30, 30, 50, 60))
    pred = detections(stack(rect(0, 0, 10, 10), rect(32, 32, 48, 58)), [1, 1], [0.8, 0.95])
    gt_match, pred_match, _ = compute_matches(*ap_args(gt, [1, -1], pred))
    assert pred_match.tolist() == [IGNORED, 0] and gt_match.tolist() == [1, UNMATCHED]
    assert compute_ap(*ap_args(gt, [1, -1], pred))[0] == pytest.approx(1.0)
    # Without the crowd region the same detection is a false positive ranked first.
    assert compute_ap(*ap_args(gt[:, :, :1], [1], pred))[0] == pytest.approx(0.5)


def test_compute_recall_by_hand():
    gt_boxes = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]
    pred_boxes = [[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 24]]  # IoU 1, 0.9, 0.4
    recall, positive_ids = compute_recall(pred_boxes, gt_boxes, 0.5)
    assert recall == pytest.approx(1 / 3)
    assert positive_ids.tolist() == [0, 1]


def test_compute_mAP_perfect_and_skips_images_without_gt(shapes):
    model = FakeModel(ground_truth_as_detections(shapes))
    assert compute_mAP(model, shapes) == pytest.approx(1.0)
    assert model.calls == len(shapes.image_ids)
    dataset = FixedDataset([(stack(rect(0, 0, 10, 10)), [1]), (stack(), [])])
    model = FakeModel([detections(stack(rect(0, 0, 10, 10)), [1], [1.0]),
                       detections(stack(rect(5, 5, 9, 9)), [2], [0.9])])
    assert compute_mAP(model, dataset) == pytest.approx(1.0)
    wrong = FakeModel([detections(stack(rect(30, 30, 40, 40)), [1], [1.0])])
    assert compute_mAP(wrong, dataset, limit=1) == 0.0


def test_per_class_ap_pools_detections():
    # Class 1: image 0 hit at 0.9, image 1 miss at 0.95 -> ranked FP, TP of
    # 2 GT: AP = 0.5 * 1/2 = 0.25 (a per-image mean would say 0.5).
    dataset = FixedDataset([
        (stack(rect(0, 0, 10, 10), rect(20, 20, 30, 40)), [1, 2]),
        (stack(rect(0, 0, 10, 10)), [1])])
    results = [detections(stack(rect(0, 0, 10, 10), rect(20, 20, 30, 40)), [1, 2], [0.9, 0.6]),
               detections(stack(rect(40, 40, 50, 50)), [1], [0.95])]
    aps = per_class_ap(FakeModel(results), dataset)
    assert aps == pytest.approx({"box": 0.25, "blob": 1.0})


# --------------------------------------------------------------------- COCO
def test_build_coco_ground_truth_fields():
    masks = stack(rect(10, 20, 30, 60), rect(40, 5, 50, 15))
    coco = build_coco_ground_truth(FixedDataset([(masks, [2, -1])]))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[0]))
    assert [a["id"] for a in anns] == [1, 2]
    assert anns[0]["bbox"] == [20.0, 10.0, 40.0, 20.0] and anns[0]["area"] == 800.0
    assert (anns[0]["category_id"], anns[0]["iscrowd"]) == (2, 0)
    assert (anns[1]["category_id"], anns[1]["iscrowd"]) == (1, 1)
    np.testing.assert_array_equal(mask_utils.decode(anns[0]["segmentation"]), masks[:, :, 0])
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["box", "blob"]
    assert coco.imgs[0]["height"] == H and coco.imgs[0]["width"] == W


def test_detections_to_coco_is_json_and_xywh():
    result = detections(stack(rect(10, 20, 30, 60)), [2], [0.75])
    (entry,) = detections_to_coco([result], [7])
    json.dumps(entry)  # str RLE counts, plain floats
    assert entry["bbox"] == [20.0, 10.0, 40.0, 20.0]
    assert (entry["image_id"], entry["category_id"], entry["score"]) == (7, 2, 0.75)
    np.testing.assert_array_equal(mask_utils.decode(entry["segmentation"]), result["masks"][..., 0])


def test_coco_perfect_predictions_on_shapes(shapes):
    model = FakeModel(ground_truth_as_detections(shapes))
    metrics = coco_evaluate(model, shapes, verbose=False)
    for iou_type in ("bbox", "segm"):
        assert set(metrics[iou_type]) == {"AP", "AP50", "AP75", "APs", "APm", "APl",
                                          "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}
        for name in ("AP", "AP50", "AP75", "AR100"):
            assert metrics[iou_type][name] == pytest.approx(1.0), (iou_type, name)


def test_coco_shifted_box_between_thresholds():
    # 20 x 40 GT, prediction shifted 11 px right: IoU = 29 / 51 = 0.569, which
    # passes the thresholds 0.50 and 0.55 only. One GT, one TP: precision 1
    # at all 101 recall points for those 2 of 10 thresholds -> AP = 0.2.
    gt, pred = rect(10, 10, 30, 50), rect(10, 21, 30, 61)
    assert compute_overlaps_masks(stack(gt), stack(pred))[0, 0] == pytest.approx(29 / 51)
    dataset = FixedDataset([(stack(gt), [1])])
    metrics = coco_evaluate(FakeModel([detections(stack(pred), [1], [0.9])]), dataset,
                            verbose=False)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(0.2)
        assert metrics[iou_type]["AP50"] == pytest.approx(1.0)
        assert metrics[iou_type]["AP75"] == pytest.approx(0.0)
        assert metrics[iou_type]["APm"] == -1.0  # no medium objects: pycocotools' -1


def test_coco_mask_with_hole_changes_segm_only():
    # 800-pixel GT, prediction = GT with a 10 x 22 hole: mask IoU 580 / 800 =
    # 0.725 -> thresholds 0.50 .. 0.70 (5 of 10) -> segm AP 0.5; same box -> bbox AP 1.
    gt = rect(10, 10, 30, 50)
    pred = gt & ~rect(15, 20, 25, 42)
    dataset = FixedDataset([(stack(gt), [1])])
    model = FakeModel([detections(stack(pred), [1], [0.9], rois=[[10, 10, 30, 50]])])
    metrics = coco_evaluate(model, dataset, verbose=False)
    assert metrics["segm"]["AP"] == pytest.approx(0.5)
    assert metrics["segm"]["AP75"] == pytest.approx(0.0)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)


def test_coco_empty_predictions_give_zero(shapes):
    empty = [detections(np.zeros((64, 64, 0), bool), [], []) for _ in shapes.image_ids]
    metrics = coco_evaluate(FakeModel(empty), shapes, verbose=False)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == 0.0 and metrics[iou_type]["AR100"] == 0.0


def test_coco_crowd_region_is_ignored():
    masks = stack(rect(5, 5, 25, 45), rect(35, 10, 60, 70))
    hit = detections(stack(rect(5, 5, 25, 45), rect(35, 10, 60, 70)), [1, 1], [0.8, 0.95])
    with_crowd = coco_evaluate(FakeModel([hit]), FixedDataset([(masks, [1, -1])]),
                               verbose=False)
    assert with_crowd["bbox"]["AP"] == pytest.approx(1.0)
    assert with_crowd["segm"]["AP"] == pytest.approx(1.0)
    # The same detection with no crowd region there is a top-ranked false
    # positive: precision 1/2 at every recall -> AP 0.5.
    without = coco_evaluate(FakeModel([hit]), FixedDataset([(masks[:, :, :1], [1])]),
                            verbose=False)
    assert without["segm"]["AP"] == pytest.approx(0.5)


def test_coco_verbose_prints_summary_and_quiet_prints_nothing(capsys):
    dataset = FixedDataset([(stack(rect(10, 10, 30, 50)), [1])])
    result = detections(stack(rect(10, 10, 30, 50)), [1], [1.0])
    coco_evaluate(FakeModel([result]), dataset, iou_type="segm", verbose=False)
    assert capsys.readouterr().out == ""
    metrics = coco_evaluate(FakeModel([result]), dataset, iou_type="segm", verbose=True)
    out = capsys.readouterr().out
    assert out.count("Average Precision") == 6 and out.count("Average Recall") == 6
    assert set(metrics) == {"segm"}


def test_coco_rejects_unknown_iou_type():
    dataset = FixedDataset([(stack(rect(10, 10, 30, 50)), [1])])
    with pytest.raises(ValueError, match="keypoints"):
        coco_evaluate(FakeModel([]), dataset, iou_type="keypoints", verbose=False)
