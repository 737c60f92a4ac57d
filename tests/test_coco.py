"""CocoDataset: polygons, both RLE forms, crowd, sparse ids, subsets, export, errors.

Reference masks are drawn independently with numpy slices; RLE counts are
written by a column-major run-length loop here, not by pycocotools.
"""

import copy
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mrcnn_tf.data.coco import AnnotationFormatError, CocoDataset

H1, W1 = 40, 50  # image 1
H2, W2 = 30, 32  # image 2
H3, W3 = 10, 12  # image 3: no annotations (a negative)


def block(height, width, y1, x1, y2, x2):
    mask = np.zeros([height, width], bool)
    mask[y1:y2, x1:x2] = True
    return mask


def runs_column_major(mask):
    """Uncompressed COCO RLE counts: run lengths in column-major order, 0s first."""
    flat = mask.flatten(order="F").astype(int)
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return counts


def compressed(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


# Independent references.
POLY_REF = block(H1, W1, 4, 5, 20, 25)          # polygon x 5..25, y 4..20
RLE_LIST_REF = block(H1, W1, 25, 30, 35, 45)    # uncompressed RLE
CROWD_REF = block(H1, W1, 30, 2, 38, 12)        # crowd, uncompressed RLE
_rng = np.random.default_rng(3)
BLOB_REF = np.zeros([H2, W2], bool)             # compressed RLE of an irregular blob
for _ in range(6):
    y, x = _rng.integers(0, H2 - 6), _rng.integers(0, W2 - 6)
    BLOB_REF[y:y + _rng.integers(2, 7), x:x + _rng.integers(2, 7)] = True
BIRD_REF = block(H2, W2, 2, 2, 10, 30)


def coco_dict():
    return {
        "images": [{"id": 11, "file_name": "a.png", "height": H1, "width": W1},
                   {"id": 12, "file_name": "sub/b.png", "height": H2, "width": W2},
                   {"id": 13, "file_name": "c.png", "height": H3, "width": W3}],
        "categories": [{"id": 42, "name": "dog"}, {"id": 7, "name": "cat"},
                       {"id": 3, "name": "bird"}],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 7, "iscrowd": 0,
             "segmentation": [[5, 4, 25, 4, 25, 20, 5, 20]]},
            {"id": 2, "image_id": 11, "category_id": 42, "iscrowd": 0,
             "segmentation": {"size": [H1, W1], "counts": runs_column_major(RLE_LIST_REF)}},
            {"id": 3, "image_id": 11, "category_id": 7, "iscrowd": 1,
             "segmentation": {"size": [H1, W1], "counts": runs_column_major(CROWD_REF)}},
            {"id": 4, "image_id": 12, "category_id": 42, "iscrowd": 0,
             "segmentation": compressed(BLOB_REF)},
            {"id": 5, "image_id": 12, "category_id": 3, "iscrowd": 0,
             "segmentation": [[2, 2, 30, 2, 30, 10, 2, 10]]},
            # Degenerate: collinear (zero area) and too short -> both dropped.
            {"id": 6, "image_id": 12, "category_id": 3, "iscrowd": 0,
             "segmentation": [[1, 1, 2, 2, 3, 3], [1, 1, 5, 5]]},
        ],
    }


@pytest.fixture
def coco_dir(tmp_path):
    os.makedirs(tmp_path / "images" / "sub")
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a.png", (H1, W1)), ("sub/b.png", (H2, W2)), ("c.png", (H3, W3))):
        Image.fromarray(rng.integers(0, 255, [h, w, 3], dtype=np.uint8)).save(
            tmp_path / "images" / name)
    return tmp_path


def write(tmp_path, data, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def load(coco_dir, data=None, warns=True, **kwargs):
    """from_json; by default expects the warning about annotation 6's two polygons."""
    path = write(coco_dir, coco_dict() if data is None else data)
    if not warns:
        return CocoDataset.from_json(path, str(coco_dir / "images"), **kwargs)
    with pytest.warns(UserWarning, match="dropped 2 zero-area or degenerate"):
        return CocoDataset.from_json(path, str(coco_dir / "images"), **kwargs)


def test_classes_sparse_ids_and_images(coco_dir):
    ds = load(coco_dir)
    assert ds.class_names == ["BG", "bird", "cat", "dog"]  # ascending COCO id: 3, 7, 42
    assert ds.map_source_class_id("coco.3") == 1
    assert ds.map_source_class_id("coco.7") == 2
    assert ds.map_source_class_id("coco.42") == 3
    assert [info["id"] for info in ds.image_info] == [11, 12, 13]
    assert ds.image_reference(1) == os.path.abspath(coco_dir / "images" / "sub" / "b.png")
    image = ds.load_image(0)
    assert image.shape == (H1, W1, 3) and image.dtype == np.uint8


def test_masks_polygon_rle_crowd(coco_dir):
    ds = load(coco_dir)
    masks, class_ids = ds.load_mask(0)
    assert masks.shape == (H1, W1, 3) and masks.dtype == bool
    np.testing.assert_array_equal(class_ids, [2, 3, -2])  # cat, dog, crowd cat negated
    assert iou(masks[:, :, 0], POLY_REF) > 0.95
    np.testing.assert_array_equal(masks[:, :, 1], RLE_LIST_REF)
    np.testing.assert_array_equal(masks[:, :, 2], CROWD_REF)

    masks, class_ids = ds.load_mask(1)
    np.testing.assert_array_equal(class_ids, [3, 1])  # degenerate annotation 6 dropped
    np.testing.assert_array_equal(masks[:, :, 0], BLOB_REF)
    assert iou(masks[:, :, 1], BIRD_REF) > 0.95

    masks, class_ids = ds.load_mask(2)
    assert masks.shape == (H3, W3, 0) and class_ids.shape == (0,)


def test_compressed_rle_of_random_masks(coco_dir):
    """Many random masks: exercises the RLE-string validator on long delta runs."""
    rng = np.random.default_rng(7)
    data = coco_dict()
    refs = [rng.random([H2, W2]) < p for p in (0.05, 0.5, 0.95)]
    data["annotations"] = [{"id": i + 1, "image_id": 12, "category_id": 42,
                            "segmentation": compressed(ref)} for i, ref in enumerate(refs)]
    ds = CocoDataset.from_json(write(coco_dir, data), str(coco_dir / "images"))
    masks, _ = ds.load_mask(1)
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(masks[:, :, i], ref)


def test_class_subset_keeps_negatives_unless_skip_empty(coco_dir):
    ds = load(coco_dir, warns=False, class_ids=[42])  # bird's bad polygons not read
    assert ds.class_names == ["BG", "dog"]
    assert ds.num_images == 3
    np.testing.assert_array_equal(ds.load_mask(0)[1], [1])
    np.testing.assert_array_equal(ds.load_mask(1)[1], [1])
    assert ds.load_mask(2)[0].shape[2] == 0

    ds = load(coco_dir, class_ids=[3], skip_empty=True)
    assert [info["id"] for info in ds.image_info] == [12]
    masks, class_ids = ds.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1])
    assert iou(masks[:, :, 0], BIRD_REF) > 0.95

    ds = load(coco_dir, warns=False, class_names=["cat"], skip_empty=True)
    assert ds.class_names == ["BG", "cat"] and ds.num_images == 1
    with pytest.raises(ValueError, match=r"class_ids \[99\]"):
        load(coco_dir, warns=False, class_ids=[99])


def test_to_coco_json_round_trip(coco_dir):
    ds = load(coco_dir)
    out = str(coco_dir / "export.json")
    exported = ds.to_coco_json(out)
    assert sorted(c["id"] for c in exported["categories"]) == [3, 7, 42]
    assert {a["id"]: a["area"] for a in exported["annotations"]}[2] == RLE_LIST_REF.sum()
    assert {a["id"]: a["bbox"] for a in exported["annotations"]}[2] == [30, 25, 15, 10]
    assert json.load(open(out)) == exported
    again = CocoDataset.from_json(out, str(coco_dir / "images"))
    assert again.class_names == ds.class_names
    for i in ds.image_ids:
        masks, ids = ds.load_mask(i)
        masks2, ids2 = again.load_mask(i)
        np.testing.assert_array_equal(masks, masks2)
        np.testing.assert_array_equal(ids, ids2)
    subset = ds.to_coco_json(image_ids=[1])
    assert [im["id"] for im in subset["images"]] == [12]
    assert {a["image_id"] for a in subset["annotations"]} == {12}


# ---------------------------------------------------------------------- errors
def broken(mutate):
    data = coco_dict()
    mutate(data)
    return data


def test_missing_file_and_bad_json(coco_dir):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDataset.from_json(str(coco_dir / "nope.json"), str(coco_dir))
    path = coco_dir / "bad.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(AnnotationFormatError, match=r"not valid JSON: .* line 2 column"):
        CocoDataset.from_json(str(path), str(coco_dir))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["annotations"][3].pop("image_id"),
     r"missing required key annotations\[3\]\.image_id"),
    (lambda d: d["annotations"][0].pop("segmentation"),
     r"missing required key annotations\[0\]\.segmentation"),
    (lambda d: d["images"][1].pop("height"), r"missing required key images\[1\]\.height"),
    (lambda d: d["categories"][2].pop("name"), r"missing required key categories\[2\]\.name"),
    (lambda d: d.pop("images"), r"missing required key images"),
    (lambda d: d["annotations"][0].update(image_id=999),
     r"annotations\[0\]\.image_id 999 is not in images"),
    (lambda d: d["annotations"][1].update(category_id=5),
     r"annotations\[1\]\.category_id 5 is not in categories"),
    (lambda d: d["annotations"][1]["segmentation"].update(size=[H1, W1 + 1]),
     r"annotations\[1\]\.segmentation: mask size \[40, 51\] differs from the image's "
     r"height/width \[40, 50\]"),
    (lambda d: d["annotations"][1]["segmentation"]["counts"].append(5),
     r"annotations\[1\]\.segmentation: RLE decodes to 2005 pixels"),
    (lambda d: d["annotations"][3]["segmentation"].update(size=[H1, W1]),
     r"annotations\[3\]\.segmentation: mask size"),
    (lambda d: d["annotations"][3]["segmentation"].update(
        counts=d["annotations"][3]["segmentation"]["counts"][:-3]),
     r"annotations\[3\]\.segmentation: RLE decodes to \d+ pixels.* has 960"),
    (lambda d: d["images"][0].update(file_name="../escape.png"),
     r"images\[0\]\.file_name '\.\./escape\.png' points outside the image directory"),
    (lambda d: d["images"][0].update(file_name="/etc/passwd"),
     r"images\[0\]\.file_name '/etc/passwd' points outside.*absolute path"),
    (lambda d: d["images"][1].update(file_name="sub/../../escape.png"),
     r"images\[1\]\.file_name 'sub/\.\./\.\./escape\.png' points outside.*'\.\.' component"),
    (lambda d: d["images"][1].update(file_name="sub/../b.png"),  # stays inside, still refused
     r"images\[1\]\.file_name 'sub/\.\./b\.png' points outside.*'\.\.' component"),
    (lambda d: d["images"][0].update(file_name="..\\escape.png"),
     r"images\[0\]\.file_name '\.\.\\\\escape\.png' points outside.*'\.\.' component"),
    (lambda d: d["images"][0].update(file_name="\\\\host\\share\\x.png"),
     r"images\[0\]\.file_name .*host.* points outside.*absolute path"),
    (lambda d: d["images"][0].update(file_name="C:\\x.png"),
     r"images\[0\]\.file_name 'C:.*x\.png' points outside.*drive letter"),
    (lambda d: d["images"][0].update(file_name="c:x.png"),
     r"images\[0\]\.file_name 'c:x\.png' points outside.*drive letter"),
    (lambda d: d["images"][0].update(file_name="a\0.png"),
     r"images\[0\]\.file_name 'a\\x00\.png' is not a valid file name: .*NUL"),
    (lambda d: d["images"][0].update(file_name=""),
     r"images\[0\]\.file_name must be a non-empty string"),
])
def test_format_errors_name_the_problem(coco_dir, mutate, message):
    path = write(coco_dir, broken(mutate))
    with pytest.raises(AnnotationFormatError, match=message):
        CocoDataset.from_json(path, str(coco_dir / "images"))


def test_escape_error_names_the_file_and_image_id(coco_dir):
    path = write(coco_dir, broken(lambda d: d["images"][2].update(file_name="../c.png")))
    with pytest.raises(AnnotationFormatError) as err:
        CocoDataset.from_json(path, str(coco_dir / "images"))
    message = str(err.value)
    assert message.startswith(f"{path} (image id 13): images[2].file_name '../c.png' points "
                              f"outside the image directory {str(coco_dir / 'images')!r}")


def test_split_made_of_symlinks_loads_and_reads(coco_dir):
    """A split folder of links into another folder: links are the user's own, followed."""
    pool, split = coco_dir / "images", coco_dir / "split"
    split.mkdir()
    os.symlink(pool / "a.png", split / "a.png")          # absolute link
    os.symlink(os.path.join("..", "images", "c.png"), split / "c.png")  # relative link
    os.symlink(pool / "sub", split / "sub")              # linked directory: sub/b.png
    path = write(coco_dir, coco_dict())
    with pytest.warns(UserWarning, match="dropped 2"):
        linked = CocoDataset.from_json(path, str(split))
    with pytest.warns(UserWarning, match="dropped 2"):
        direct = CocoDataset.from_json(path, str(pool))
    assert linked.num_images == 3
    assert linked.image_reference(1) == str(split / "sub" / "b.png")  # the link, not its target
    for i in linked.image_ids:
        np.testing.assert_array_equal(linked.load_image(i), direct.load_image(i))
        np.testing.assert_array_equal(linked.load_mask(i)[0], direct.load_mask(i)[0])


def test_unreadable_image_is_named(coco_dir):
    data = broken(lambda d: d["images"][2].update(file_name="missing.png"))
    ds = load(coco_dir, data)
    with pytest.raises(ValueError, match="missing.png"):
        ds.load_image(2)


def test_load_coco_twice_needs_distinct_images(coco_dir):
    ds = CocoDataset()
    path = write(coco_dir, copy.deepcopy(coco_dict()))
    with pytest.warns(UserWarning):
        assert ds.load_coco(path, str(coco_dir / "images")) == [3, 7, 42]
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="Duplicate image"):
        ds.load_coco(path, str(coco_dir / "images"))
