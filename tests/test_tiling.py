"""Tiled inference: tile layout, the merge across tile borders, and a 4000x3000 scene of shapes."""

import os
import tracemalloc

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn_tf import MaskRCNN, presets
from mrcnn_tf.data.shapes import SHAPE_CLASSES, _shape_pixels
from mrcnn_tf.tiling import merge_tiles, tile_origins

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "shapes", "shapes_small.h5")


def test_tile_origins_cover_with_the_overlap():
    assert tile_origins(100, 128, 0.2) == [0]
    assert tile_origins(1000, 400, 0.5) == [0, 200, 400, 600]
    origins = tile_origins(4000, 1024, 0.2)
    assert origins[0] == 0 and origins[-1] == 4000 - 1024
    assert min(b - a for a, b in zip(origins, origins[1:])) > 0
    assert max(a + 1024 - b for a, b in zip(origins, origins[1:])) >= 0.2 * 1024 - 1  # shared part


def _found(detections):
    """merge_tiles' input from (tile (y1, x1, y2, x2), box, class, score, region mask) tuples."""
    return {"boxes": np.array([d[1] for d in detections], np.float32),
            "tiles": np.array([d[0] for d in detections], np.float32),
            "class_ids": np.array([d[2] for d in detections], np.int32),
            "scores": np.array([d[3] for d in detections], np.float32),
            "regions": [d[4] for d in detections]}


def _region(box):
    y1, x1, y2, x2 = (int(v) for v in box)
    return (y1, x1, np.ones([y2 - y1, x2 - x1], bool))


def test_merge_joins_an_object_cut_by_a_tile_border():
    left, right = (0, 0, 100, 100), (0, 80, 100, 180)
    cut = (10, 85, 40, 100)      # the object as the left tile sees it: cut at x = 100
    whole = (10, 85, 40, 120)    # the right tile sees all of it
    far = (60, 20, 90, 50)       # another object of the class, left tile only
    other_class = (10, 86, 40, 119)
    found = _found([(left, cut, 1, 0.8, _region(cut)), (right, whole, 1, 0.9, _region(whole)),
                    (left, far, 1, 0.7, _region(far)), (right, other_class, 2, 0.6, _region(other_class))])
    boxes, class_ids, scores, regions = merge_tiles(found, 100, 180, 0.3)
    assert class_ids.tolist() == [1, 1, 2]
    np.testing.assert_allclose(boxes[0], whole)            # the union of the two views
    np.testing.assert_allclose(scores, [0.9, 0.7, 0.6])    # the best score of each group
    top, left_px, mask = regions[0]
    assert (top, left_px, mask.shape) == (10, 85, (30, 35)) and mask.all()
    # With the cross-class NMS, the class-2 copy of the object goes.
    _, class_ids, _, _ = merge_tiles(found, 100, 180, 0.3, cross_class_threshold=0.5)
    assert class_ids.tolist() == [1, 1]
    # Two detections inside one tile are the model's own decision: never joined here.
    found = _found([(left, (10, 10, 40, 40), 1, 0.9, _region((10, 10, 40, 40))),
                    (left, (10, 30, 40, 60), 1, 0.8, _region((10, 30, 40, 60)))])
    assert len(merge_tiles(found, 100, 100, 0.3)[0]) == 2


def test_merge_drops_a_cut_view_of_another_class_covered_by_a_better_detection():
    left, right = (0, 0, 100, 100), (0, 80, 100, 180)      # image 100 x 180: x = 100 is an inner edge
    whole = (right, (20, 85, 80, 150), 1, 0.95, _region((20, 85, 80, 150)))
    cut = (20, 85, 80, 100)        # the left tile's view of it, cut at x = 100, called class 2
    inside = (right, (30, 120, 60, 140), 3, 0.8, _region((30, 120, 60, 140)))  # a real object on it
    # Box IoU of the cut view with the whole is 15 / 65: the cross-class NMS at 0.5 keeps it.
    found = _found([whole, (left, cut, 2, 0.9, _region(cut)), inside])
    kept = merge_tiles(found, 100, 180, 0.3, cross_class_threshold=0.5, cut_cover_threshold=None)[1]
    assert kept.tolist() == [1, 2, 3]
    # Covered 100% by a better detection: dropped; the object inside, off every inner edge, stays.
    boxes, class_ids, scores, regions = merge_tiles(found, 100, 180, 0.3, cross_class_threshold=0.5)
    assert class_ids.tolist() == [1, 3] and scores.tolist() == pytest.approx([0.95, 0.8])
    assert [r[:2] for r in regions] == [(20, 85), (30, 120)]
    # Scoring higher than what covers it: stays.
    found = _found([whole, (left, cut, 2, 0.97, _region(cut)), inside])
    assert merge_tiles(found, 100, 180, 0.3)[1].tolist() == [2, 1, 3]
    # Coverage 15 / 30 = 0.5 < 0.6 stays; 15 / 24 = 0.625 >= 0.6 goes.
    for cut, expected in [((20, 70, 80, 100), [1, 2]), ((20, 76, 80, 100), [1])]:
        found = _found([whole, (left, cut, 2, 0.9, _region(cut))])
        assert merge_tiles(found, 100, 180, 0.3)[1].tolist() == expected, cut
    # Touching the image border (x = 0) is not a cut: a small object on a big one stays.
    found = _found([(left, (10, 0, 90, 40), 1, 0.9, _region((10, 0, 90, 40))),
                    (left, (20, 0, 80, 10), 2, 0.5, _region((20, 0, 80, 10)))])
    assert merge_tiles(found, 100, 180, 0.3)[1].tolist() == [1, 2]
    with pytest.raises(ValueError, match="cut_cover_threshold"):
        merge_tiles(found, 100, 180, 0.3, cut_cover_threshold=1.5)


SCENE_H, SCENE_W, TILE, OVERLAP = 3000, 4000, 1024, 0.5


def _scene():
    """A 4000x3000 scene: shapes centred on tile borders and shapes away from every border.

    Returns (image, objects): objects are (class_id, (top, left, bool mask), crosses_border).
    """
    rng = np.random.default_rng(7)
    image = np.full((SCENE_H, SCENE_W, 3), (40, 60, 80), np.uint8)
    edges_x = sorted({o + TILE for o in tile_origins(SCENE_W, TILE, OVERLAP)[:-1]})
    edges_y = sorted({o + TILE for o in tile_origins(SCENE_H, TILE, OVERLAP)[:-1]})
    objects, taken = [], []
    for crossing in [True] * 10 + [False] * 10:
        for _ in range(1000):
            size = int(rng.integers(140, 230))  # half side: 18..28 px at the model's 128 px
            if crossing:
                cx = int(rng.choice(edges_x[1:-1])) + int(rng.integers(-size // 2, size // 2))
                cy = int(rng.integers(size + 1, SCENE_H - size - 1))
            else:
                cx = int(rng.integers(size + 1, SCENE_W - size - 1))
                cy = int(rng.integers(size + 1, SCENE_H - size - 1))
            if not crossing and min(min(abs(cx - e) for e in edges_x), min(abs(cy - e) for e in edges_y)) \
                    < size + 8:
                continue
            if all(abs(cx - x) > s + size + 20 or abs(cy - y) > s + size + 20 for y, x, s in taken):
                break
        taken.append((cy, cx, size))
        class_id = int(rng.integers(1, 4))
        name = dict(SHAPE_CLASSES)[class_id]
        local = np.zeros((2 * size + 3, 2 * size + 3), bool)
        local[_shape_pixels(name, size + 1, size + 1, size, local.shape)] = True
        top, left = cy - size - 1, cx - size - 1
        colour = tuple(int(c) for c in rng.integers(150, 256, 3))
        image[top:top + local.shape[0], left:left + local.shape[1]][local] = colour
        objects.append((class_id, (top, left, local), crossing))
    return image, objects


@pytest.fixture(scope="module")
def tiled():
    config = presets.shapes(IMAGES_PER_GPU=4, DETECTION_MIN_CONFIDENCE=0.7,
                            DETECTION_CROSS_CLASS_NMS_THRESHOLD=0.5)
    model = MaskRCNN("inference", config, model_dir="logs")
    model.load_weights(FIXTURE)
    image, objects = _scene()
    model.detect_tiled(image[:TILE, :TILE], tile_size=TILE)  # trace outside the measurement
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    # One tile per batch: the measured peak is then that of one tile's work.
    result = model.detect_tiled(image, tile_size=TILE, overlap=OVERLAP, mask_format="rle",
                                batch_size=1)
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    return result, objects, peak


def _full(top, left, local):
    mask = np.zeros((SCENE_H, SCENE_W), bool)
    mask[top:top + local.shape[0], left:left + local.shape[1]] = local
    return mask


@pytest.mark.slow
def test_scene_objects_across_borders_come_out_whole_and_once(tiled):
    result, objects, peak = tiled
    masks = [mask_utils.decode(rle).astype(bool) for rle in result["masks"]]
    assert result["image_size"] == (SCENE_H, SCENE_W)
    found = {True: [], False: []}
    for class_id, region, crossing in objects:
        truth = _full(*region)
        ious = np.array([(truth & m).sum() / (truth | m).sum() for m in masks])
        overlapping = np.flatnonzero(ious > 0.2)
        assert len(overlapping) <= 1, f"object {region[:2]} detected {len(overlapping)} times"
        hit = len(overlapping) == 1 and result["class_ids"][overlapping[0]] == class_id
        found[crossing].append(ious[overlapping[0]] if hit else 0.0)
    recall = {k: np.mean(np.array(v) >= 0.5) for k, v in found.items()}
    assert recall[True] >= recall[False] >= 0.75, recall
    hits = [iou for v in found.values() for iou in v if iou >= 0.5]
    assert np.mean(hits) >= 0.8, np.mean(hits)
    # Bounded by a tile batch with RLE masks: the traced peak stays below two float32 tile
    # batches (one tile per batch here, 12.6 MB), where one dense full-size mask per
    # detection would take 20 x 12 MB.
    tile_batch_bytes = TILE * TILE * 3 * 4
    assert peak < 2 * tile_batch_bytes, (peak, tile_batch_bytes)
