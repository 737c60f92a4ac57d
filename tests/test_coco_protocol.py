"""COCO evaluation by the protocol: pycocotools' own COCO.loadRes + COCOeval on a hand-built GT
file give the reference; coco_evaluate's scoring path must give the same 12 numbers (bbox, segm).
Also: the protocol's thresholds whatever the display ones, per-class AP, the confusion matrix."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_tf import MaskRCNN
from mrcnn_tf.data import CocoDataset
from mrcnn_tf.evaluate import (COCO_METRICS, coco_evaluate, confusion_matrix, format_confusion_matrix,
                               protocol_detector)
from test_model import TinyConfig


def box_polygon(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def write_ground_truth(path):
    """Two images, sparse category ids 3 and 7, boxes/areas as a COCO file has them (from the
    annotation tool, not the raster: they differ from the masks' pixel boxes), a crowd region,
    objects of the three size ranges (small < 32^2 <= medium < 96^2 <= large)."""
    crowd = mask_utils.encode(np.asfortranarray(np.pad(np.ones([20, 30], np.uint8), [[100, 8], [0, 98]])))
    anns = [
        (1, 3, box_polygon(10, 10, 40, 30), [10.0, 10.0, 40.0, 30.0], 1180.0, 0),
        (1, 3, box_polygon(60, 5, 12, 14), [60.0, 5.0, 12.0, 14.0], 160.0, 0),
        (1, 7, box_polygon(20, 50, 100, 60), [20.0, 50.0, 100.0, 60.0], 6100.0, 0),
        (1, 7, {"size": [128, 128], "counts": crowd["counts"].decode()}, [0.0, 100.0, 30.0, 20.0],
         600.0, 1),
        (2, 3, box_polygon(5, 5, 110, 100), [5.0, 5.0, 110.0, 100.0], 10900.0, 0),
        (2, 7, box_polygon(70, 10, 20, 25), [70.0, 10.0, 20.0, 25.0], 480.0, 0),
    ]
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 128, "width": 128},
                   {"id": 2, "file_name": "b.jpg", "height": 128, "width": 128}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "segmentation": seg,
                         "bbox": box, "area": area, "iscrowd": crowd_flag}
                        for k, (i, c, seg, box, area, crowd_flag) in enumerate(anns)],
    }
    path.write_text(json.dumps(data))


def rle_of_box(x, y, w, h, size=128):
    mask = np.zeros([size, size], np.uint8)
    mask[int(y):int(y + h), int(x):int(x + w)] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode()
    return rle


# (image, category, bbox [x, y, w, h] in quarter pixels: exact in float32, rounding would move them,
# score); the masks are the boxes' pixels, shifted for some, so bbox and segm scores differ.
DETECTIONS = [
    (1, 3, [10.25, 10.5, 39.5, 29.75], 0.9), (1, 3, [11.0, 9.0, 38.0, 30.0], 0.6),  # duplicate
    (1, 3, [59.5, 6.25, 13.0, 12.5], 0.4), (1, 7, [22.0, 48.0, 96.0, 64.0], 0.8),
    (1, 7, [2.0, 101.0, 20.0, 15.0], 0.7),  # on the crowd region: ignored
    (1, 7, [90.0, 90.0, 20.0, 20.0], 0.3),  # false positive
    (2, 3, [8.0, 4.0, 100.0, 104.0], 0.95), (2, 7, [72.0, 12.25, 16.5, 20.0], 0.5),
    (2, 3, [70.0, 10.0, 20.0, 25.0], 0.45),  # right place, wrong class
]


def reference_stats(gt_path, iou_type):
    coco_gt = COCO(str(gt_path))
    results = []
    for image_id, category, box, score in DETECTIONS:
        entry = {"image_id": image_id, "category_id": category, "score": score}
        # As detectron2 passes them: bbox results with boxes, segm results with masks only.
        entry.update({"bbox": box} if iou_type == "bbox" else {"segmentation": rle_of_box(*box)})
        results.append(entry)
    evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return dict(zip(COCO_METRICS, map(float, evaluator.stats)))


def as_detect_results(dataset):
    """DETECTIONS in the model.detect() form, per internal image id."""
    internal = {dataset.image_info[i]["id"]: i for i in dataset.image_ids}
    per_image = {i: [] for i in dataset.image_ids}
    for image_id, category, box, score in DETECTIONS:
        per_image[internal[image_id]].append((category, box, score))
    results = []
    for i in dataset.image_ids:
        entries = per_image[i]
        masks = np.stack([mask_utils.decode(rle_of_box(*b)).astype(bool) for _, b, _ in entries], axis=2)
        results.append({
            "boxes": np.array([[y, x, y + h, x + w] for _, (x, y, w, h), _ in entries], np.float32),
            "class_ids": np.array([dataset.map_source_class_id(f"coco.{c}") for c, _, _ in entries],
                                  np.int32),
            "scores": np.array([s for _, _, s in entries], np.float32), "masks": masks})
    return results


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    write_ground_truth(root / "gt.json")
    dataset = CocoDataset.from_json(root / "gt.json", root)
    return root / "gt.json", dataset


def test_coco_evaluate_matches_pycocotools_on_a_hand_built_file(hand_built):
    gt_path, dataset = hand_built
    ours = coco_evaluate(None, dataset, results=as_detect_results(dataset), verbose=False,
                         per_class=True)
    for iou_type in ("bbox", "segm"):
        reference = reference_stats(gt_path, iou_type)
        assert {k: ours[iou_type][k] for k in COCO_METRICS} == reference, iou_type
        # Not a degenerate case: every size range has GT, AP is neither 0 nor 1.
        assert 0.2 < reference["AP"] < 0.95 and min(reference.values()) >= 0.0, reference
    assert ours["bbox"] != ours["segm"]
    per_class = ours["segm"]["per_class"]
    assert set(per_class) == {"cat", "dog"} and 0 < per_class["dog"] < per_class["cat"] <= 1
    assert ours["segm"]["AP"] == pytest.approx(np.mean(list(per_class.values())))


def test_confusion_matrix_counts_matches_misses_and_confusions(hand_built):
    _, dataset = hand_built
    matrix = confusion_matrix(None, dataset, results=as_detect_results(dataset), min_score=0.4)
    cat, dog = (dataset.map_source_class_id(f"coco.{c}") for c in (3, 7))
    expected = np.zeros([3, 3], np.int64)
    # image 1: cat 0.9 hits the big cat; the duplicate (0.6) takes the nearest free GT, none at
    # IoU 0.5: false positive; cat 0.4 hits the small cat; dog 0.8 hits the dog; dog 0.7 is
    # on the crowd (left out); dog 0.3 is below min_score.
    # image 2: cat 0.95 hits the cat; dog 0.5 hits the dog; cat 0.45 on the dog's place: false +.
    expected[cat, cat], expected[dog, dog], expected[0, cat] = 3, 2, 2
    np.testing.assert_array_equal(matrix, expected)
    text = format_confusion_matrix(matrix, dataset.class_names)
    assert "cat" in text and "dog" in text and len(text.splitlines()) == 4


def test_coco_evaluate_detects_with_the_protocols_thresholds(tmp_path):
    model = MaskRCNN("inference", TinyConfig(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.9,
                                             DETECTION_NMS_THRESHOLD=0.3), tmp_path)
    detector = protocol_detector(model)
    assert (detector.config.DETECTION_MIN_CONFIDENCE, detector.config.DETECTION_NMS_THRESHOLD,
            detector.config.DETECTION_MAX_INSTANCES) == (0.05, 0.5, 100)
    assert model.config.DETECTION_MIN_CONFIDENCE == 0.9  # the model's own config is left alone
    # Same variables, no copy: the detector's graph reads the model's own weight objects.
    model_weights = {id(w) for w in model.keras_model.weights}
    assert {id(w) for w in detector.inference_model.weights} == model_weights
    # The detector's graph detects with the protocol's values (running it would only add the
    # trace time; the pipeline's own tests run detection).
    layer = detector.inference_model.get_layer("mrcnn_detection")
    assert (layer.min_confidence, layer.nms_threshold, layer.max_detections) == (0.05, 0.5, 100)
    shown = model.keras_model.get_layer("mrcnn_detection")
    assert (shown.min_confidence, shown.nms_threshold) == (0.9, 0.3)
    assert protocol_detector(model) is detector  # built once
