"""Predictions out: COCO results through pycocotools, polygons, VIA and labelme files read back."""

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn_tf.data import ShapesDataset, ViaDataset, extract_bboxes
from mrcnn_tf.data.labelme import LabelmeDataset
from mrcnn_tf.data.via import rasterize_shape
from mrcnn_tf.evaluate import to_coco_results
from mrcnn_tf.predictions import write_predictions
from mrcnn_tf.tiling import region_rle
from mrcnn_tf.visualize import mask_to_polygons


@pytest.fixture(scope="module")
def shapes_results():
    """Two shapes images and their ground truth as detect()-style results."""
    dataset = ShapesDataset()
    dataset.load_shapes(2, 96, 128, seed=3, min_instances=3, max_instances=4)
    dataset.prepare()
    images, results = [], []
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        boxes = extract_bboxes(masks).astype(np.float32) + 0.25  # unrounded boxes stay float
        results.append({"boxes": boxes, "rois": np.round(boxes).astype(np.int32),
                        "class_ids": class_ids, "masks": masks,
                        "scores": np.linspace(0.9, 0.6, len(class_ids)).astype(np.float32)})
        images.append(dataset.load_image(image_id))
    return dataset, images, results


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_to_coco_results_round_trips_through_load_res(shapes_results):
    _, images, results = shapes_results
    class_map = {1: 11, 2: 12, 3: 13}
    entries = to_coco_results(results, [5, 9], class_map)
    gt = COCO()
    gt.dataset = {"images": [{"id": i, "height": 96, "width": 128} for i in (5, 9)], "annotations": [],
                  "categories": [{"id": c, "name": str(c)} for c in class_map.values()]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        loaded = gt.loadRes(json.loads(json.dumps(entries)))  # JSON-safe, as a results file
    anns = loaded.loadAnns(loaded.getAnnIds())
    assert len(anns) == sum(len(r["class_ids"]) for r in results)
    by_image = {5: results[0], 9: results[1]}
    for k, ann in enumerate(a for a in anns if a["image_id"] == 5):
        r = by_image[5]
        y1, x1, y2, x2 = r["boxes"][k]
        np.testing.assert_allclose(ann["bbox"], [x1, y1, x2 - x1, y2 - y1], rtol=1e-6)
        assert ann["category_id"] == class_map[int(r["class_ids"][k])]
        assert ann["score"] == pytest.approx(float(r["scores"][k]))
        np.testing.assert_array_equal(loaded.annToMask(ann).astype(bool), r["masks"][:, :, k])
    # The same results with RLE masks (detect_tiled's mask_format="rle") give the same list.
    rle_results = [{**r, "masks": [mask_utils.encode(np.asfortranarray(r["masks"][:, :, k].astype(np.uint8)))
                                   for k in range(r["masks"].shape[2])]} for r in results]
    assert to_coco_results(rle_results, [5, 9], class_map) == entries
    with pytest.raises(ValueError, match="class id 3 is not in class_map"):
        to_coco_results(results, [5, 9], {1: 11, 2: 12})
    with pytest.raises(ValueError, match="2 entries for 1 image_ids"):
        to_coco_results(results, [5])


def test_region_rle_is_the_full_mask_rle():
    rng = np.random.default_rng(1)
    for top, left, h, w in [(0, 0, 5, 7), (3, 4, 10, 6), (10, 12, 10, 8), (0, 3, 20, 5), (4, 0, 6, 20)]:
        region = rng.random((h, w)) > 0.5
        region[0, 0] = True
        full = np.zeros((20, 20), np.uint8)
        full[top:top + h, left:left + w] = region
        expected = mask_utils.encode(np.asfortranarray(full))
        assert region_rle(region, top, left, 20, 20) == expected, (top, left, h, w)


def _fill(polygons, shape):
    out = np.zeros(shape, bool)
    for exterior, holes in polygons:
        out |= rasterize_shape({"name": "polygon", "xs": exterior[:, 0], "ys": exterior[:, 1]}, *shape)
        for hole in holes:
            out &= ~rasterize_shape({"name": "polygon", "xs": hole[:, 0], "ys": hole[:, 1]}, *shape)
    return out


def test_mask_to_polygons_outer_contours_and_holes():
    yy, xx = np.mgrid[:60, :80]
    ring = ((yy - 30) ** 2 + (xx - 30) ** 2 < 20 ** 2) & ((yy - 30) ** 2 + (xx - 30) ** 2 >= 8 ** 2)
    corner = (yy < 10) & (xx >= 60)  # touches the border: still a closed polygon
    mask = ring | corner
    polygons = mask_to_polygons(mask, tolerance=0)
    assert sorted(len(holes) for _, holes in polygons) == [0, 1]
    np.testing.assert_array_equal(_fill(polygons, mask.shape), mask)  # exact without simplification
    simplified = mask_to_polygons(mask, tolerance=1.0)
    assert sum(len(e) for e, _ in simplified) < sum(len(e) for e, _ in polygons) / 3
    assert _iou(_fill(simplified, mask.shape), mask) >= 0.95
    square = np.zeros((10, 10), bool)
    square[2:6, 3:8] = True  # a rectangle simplifies to its corners, on pixel edges
    (exterior, holes), = mask_to_polygons(square, tolerance=0.5)
    assert exterior[:, 0].min() == pytest.approx(3, abs=0.5) and exterior[:, 0].max() == pytest.approx(8, abs=0.5)
    assert mask_to_polygons(np.zeros((4, 4), bool)) == []
    with pytest.raises(ValueError, match="2-D"):
        mask_to_polygons(np.zeros((4, 4, 1), bool))


@pytest.mark.parametrize("fmt", ["via", "labelme"])
def test_written_files_read_back_with_the_same_masks(shapes_results, tmp_path, fmt):
    dataset, images, results = shapes_results
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(image).save(paths[-1])
    folder = write_predictions(results, paths, dataset.class_names, str(tmp_path / "out"), fmt=fmt)
    if fmt == "via":
        back = ViaDataset.from_directory(tmp_path / "out" / "via", class_attribute="class")
        assert folder.endswith("via_region_data.json")
    else:
        back = LabelmeDataset.from_directory(tmp_path / "out" / "labelme")
    names = {info["id"]: k for k, info in enumerate(back.image_info)}
    for i, result in enumerate(results):
        masks, class_ids = back.load_mask(names[f"img{i}.png"])
        assert back.load_image(names[f"img{i}.png"]).shape == images[i].shape
        assert masks.shape[2] == result["masks"].shape[2]
        for k in range(masks.shape[2]):
            assert back.class_names[class_ids[k]] == dataset.class_names[result["class_ids"][k]]
            assert _iou(masks[:, :, k], result["masks"][:, :, k]) >= 0.95


def test_labelme_reader_shapes_and_errors(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    doc = {"shapes": [{"label": "box", "shape_type": "rectangle", "points": [[2.5, 3.5], [9.5, 7.5]]},
                      {"label": "dot", "shape_type": "point", "points": [[1, 1]]}],
           "imagePath": "a.png", "imageHeight": 20, "imageWidth": 30}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="dropped 1"):
        dataset = LabelmeDataset.from_directory(tmp_path)
    masks, class_ids = dataset.load_mask(0)
    # labelme's pixel centres are integers: corners 2.5..9.5 hold columns 3..9, rows 4..7.
    expected = np.zeros((20, 30), bool)
    expected[4:8, 3:10] = True
    np.testing.assert_array_equal(masks[:, :, 0], expected)
    assert dataset.class_names == ["BG", "box"] and class_ids.tolist() == [1]
    doc["imagePath"] = "../a.png"
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.raises(Exception, match="imagePath"):
        LabelmeDataset.from_directory(tmp_path)
