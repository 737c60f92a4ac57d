"""ViaDataset on the real balloon files, on a VIA 2.x file written here, and errors."""

import json
import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from mrcnn_tf.data.coco import AnnotationFormatError
from mrcnn_tf.data import extract_bboxes
from mrcnn_tf.data.via import ViaDataset

BALLOON = "/work/shared/data/balloon"
needs_balloon = pytest.mark.skipif(not os.path.isdir(BALLOON), reason="balloon data not present")


def read_regions(subset):
    """{file name: [region]} read straight from the JSON, independently of ViaDataset."""
    with open(os.path.join(BALLOON, subset, "via_region_data.json")) as handle:
        data = json.load(handle)
    return {entry["filename"]: list(entry["regions"].values()) for entry in data.values()}


def iou_(a, b):
    return (a & b).sum() / (a | b).sum()


def shoelace(xs, ys):
    return 0.5 * abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))


@pytest.fixture(scope="module")
def balloon_train():
    return ViaDataset.from_directory(os.path.join(BALLOON, "train"))


@needs_balloon
@pytest.mark.parametrize("subset, expected", [("train", 61), ("val", 13)])
def test_balloon_counts(subset, expected):
    regions = read_regions(subset)
    assert len(regions) == expected
    ds = ViaDataset.from_directory(os.path.join(BALLOON, subset))
    assert ds.num_images == expected
    assert ds.class_names == ["BG", "object"]  # balloon regions have no attributes
    assert sorted(info["id"] for info in ds.image_info) == sorted(regions)
    assert sum(len(info["regions"]) for info in ds.image_info) == sum(
        len(r) for r in regions.values())


@needs_balloon
def test_balloon_images_and_masks(balloon_train):
    ds = balloon_train
    regions = read_regions("train")
    for image_id in (0, 17, 30, 45, 60):  # a handful: full-size JPEG decoding is slow
        info = ds.image_info[image_id]
        image = ds.load_image(image_id)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.shape[:2] == (info["height"], info["width"])  # header size is right
        masks, class_ids = ds.load_mask(image_id)
        assert masks.shape == image.shape[:2] + (len(regions[info["id"]]),)
        np.testing.assert_array_equal(class_ids, np.ones(masks.shape[2]))
        assert masks.any(axis=(0, 1)).all()
        boxes = extract_bboxes(masks)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= image.shape[0]).all() \
            and (boxes[:, 3] <= image.shape[1]).all()
        # Mask area against the polygon's analytic area (boundary pixels differ).
        for i, region in enumerate(regions[info["id"]]):
            shape = region["shape_attributes"]
            xs, ys = np.array(shape["all_points_x"]), np.array(shape["all_points_y"])
            perimeter = np.hypot(np.diff(xs, append=xs[0]), np.diff(ys, append=ys[0])).sum()
            assert abs(masks[:, :, i].sum() - shoelace(xs, ys)) <= perimeter
            # The box follows the polygon's extent (clipped to the image).
            assert boxes[i, 1] == pytest.approx(max(xs.min(), 0), abs=1)
            assert boxes[i, 3] == pytest.approx(min(xs.max(), image.shape[1]), abs=1)


@needs_balloon
def test_balloon_val_all_masks_non_empty_and_inside():
    # Every val image (13); train is sampled above to keep the suite fast.
    ds = ViaDataset.from_directory(os.path.join(BALLOON, "val"))
    for image_id in ds.image_ids:
        info = ds.image_info[image_id]
        masks, _ = ds.load_mask(image_id)
        assert masks.shape[:2] == (info["height"], info["width"])
        assert masks.shape[2] == len(info["regions"]) > 0
        assert masks.any(axis=(0, 1)).all()


# ----------------------------------------------------------- a VIA 2.x project
H, W = 60, 100


def region(shape, **attributes):
    return {"shape_attributes": shape, "region_attributes": attributes}


def via2_regions():
    return [
        region({"name": "rect", "x": 10.3, "y": 5.2, "width": 30, "height": 15}, kind="car"),
        region({"name": "circle", "cx": 70, "cy": 30, "r": 12}, kind="tree"),
        region({"name": "ellipse", "cx": 30, "cy": 42, "rx": 16, "ry": 6, "theta": math.pi / 4},
               kind="person"),
        region({"name": "polyline", "all_points_x": [60, 95, 95], "all_points_y": [50, 50, 58]},
               kind="car"),
        region({"name": "point", "cx": 3, "cy": 3}, kind="car"),             # no area: dropped
        region({"name": "rect", "x": 1, "y": 1, "width": 0, "height": 5}, kind="car"),  # dropped
    ]


def write_via(directory, regions_by_file, project=True, name="via_region_data.json"):
    os.makedirs(directory, exist_ok=True)
    metadata = {}
    for file_name, regions in regions_by_file.items():
        if not os.path.exists(os.path.join(directory, file_name)):
            Image.new("RGB", (W, H), (90, 120, 30)).save(os.path.join(directory, file_name))
        metadata[file_name + "123"] = {"filename": file_name, "size": 123, "regions": regions,
                                       "file_attributes": {}}
    data = {"_via_settings": {}, "_via_img_metadata": metadata,
            "_via_attributes": {"region": {}, "file": {}}} if project else metadata
    with open(os.path.join(directory, name), "w") as handle:
        json.dump(data, handle)
    return directory


def test_via2_shapes_classes_and_areas(tmp_path):
    write_via(tmp_path, {"a.png": via2_regions(), "empty.png": []})
    with pytest.warns(UserWarning, match="dropped 2 zero-area region"):
        ds = ViaDataset.from_directory(tmp_path, class_attribute="kind")
    assert ds.class_names == ["BG", "car", "person", "tree"]
    assert ds.num_images == 2
    masks, class_ids = ds.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1, 3, 2, 1])
    # rect: the pixels whose centres i + 0.5 lie in [5.2, 20.2) x [10.3, 40.3).
    expected = np.zeros([H, W], bool)
    expected[5:20, 10:40] = True
    np.testing.assert_array_equal(masks[:, :, 0], expected)
    assert masks[:, :, 1].sum() == pytest.approx(math.pi * 12 ** 2, rel=0.05)
    assert masks[:, :, 2].sum() == pytest.approx(math.pi * 16 * 6, rel=0.08)
    assert masks[:, :, 3].sum() == pytest.approx(0.5 * 35 * 8, rel=0.15)
    # theta turns the long axis clockwise on screen: down-right is in, up-right out.
    d = 11 / math.sqrt(2)
    assert masks[int(42 + d), int(30 + d), 2] and not masks[int(42 - d), int(30 + d), 2]
    empty_masks, empty_ids = ds.load_mask(1)  # images without regions are negatives
    assert empty_masks.shape == (H, W, 0) and empty_ids.shape == (0,)


def test_via1_layout_clipping_and_default_class(tmp_path):
    regions = {str(i): r for i, r in enumerate(via2_regions()[:3])}
    regions["1"] = region({"name": "circle", "cx": 95, "cy": 55, "r": 10}, kind="car")  # clipped
    write_via(tmp_path, {"a.png": regions}, project=False)
    ds = ViaDataset.from_directory(tmp_path / "via_region_data.json")  # a file path works too
    assert ds.class_names == ["BG", "object"]  # values differ: one class "object"
    masks, class_ids = ds.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1, 1, 1])
    # The clipped circle keeps the pixels whose centres are within r and in the image.
    rows, cols = np.mgrid[0:H, 0:W] + 0.5
    inside = np.hypot(rows - 55, cols - 95) <= 10
    assert inside.sum() < 0.7 * math.pi * 100  # really clipped
    assert iou_(masks[:, :, 1], inside) > 0.9


def test_single_attribute_value_names_the_class(tmp_path):
    shape = {"name": "rect", "x": 10, "y": 5, "width": 30, "height": 15}
    write_via(tmp_path, {"a.png": [region(shape, kind="balloon"), region(shape, kind="balloon")]})
    assert ViaDataset.from_directory(tmp_path).class_names == ["BG", "balloon"]


@pytest.mark.parametrize("regions, message", [
    ([{"region_attributes": {}}], r"missing required key \['a.png123'\]\.regions\[0\]\.shape_attributes"),
    ([region({"name": "polygon", "all_points_y": [1, 5, 9]})],
     r"missing required key \['a.png123'\]\.regions\[0\]\.shape_attributes\.all_points_x"),
    ([region({"name": "hexagon"})], r"unknown shape 'hexagon'"),
    ([region({"name": "circle", "cx": 3, "cy": 4})], r"shape_attributes\.r\b"),
    ([region({"name": "rect", "x": 1, "y": 1, "width": 4, "height": 5})],
     r"missing required key .*region_attributes\.kind"),
])
def test_region_errors(tmp_path, regions, message):
    write_via(tmp_path, {"a.png": regions})
    with pytest.raises(AnnotationFormatError, match=message):
        ViaDataset.from_directory(tmp_path, class_attribute="kind")


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="via_region_data.json"):
        ViaDataset.from_directory(tmp_path)
    (tmp_path / "via_region_data.json").write_text('{"a.png": {"filename": "a.png",,}}')
    with pytest.raises(AnnotationFormatError, match=r"not valid JSON: .* line 1 column 32"):
        ViaDataset.from_directory(tmp_path)

    write_via(tmp_path / "d", {"a.png": []})
    os.remove(tmp_path / "d" / "a.png")
    with pytest.raises(FileNotFoundError, match=r"image file 'a.png' does not exist"):
        ViaDataset.from_directory(tmp_path / "d")

    write_via(tmp_path / "e", {"a.png": []})
    shutil.copy(tmp_path / "e" / "a.png", tmp_path / "outside.png")
    data = json.loads((tmp_path / "e" / "via_region_data.json").read_text())
    data["_via_img_metadata"]["a.png123"]["filename"] = "../outside.png"
    (tmp_path / "e" / "via_region_data.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationFormatError, match=r"'\.\./outside\.png' points outside"):
        ViaDataset.from_directory(tmp_path / "e")


def test_project_of_symlinked_images_loads_and_reads(tmp_path):
    """A VIA project whose images are links into another folder: links are followed."""
    rect = region({"name": "rect", "x": 10, "y": 5, "width": 30, "height": 15}, kind="car")
    pool = write_via(tmp_path / "pool", {"a.png": [rect], "b.png": []})
    Image.new("RGB", (W, H), (200, 10, 10)).save(pool / "b.png")  # tell the images apart
    split = tmp_path / "split"
    split.mkdir()
    os.symlink(pool / "a.png", split / "a.png")                    # absolute link
    os.symlink(os.path.join("..", "pool", "b.png"), split / "b.png")  # relative link
    write_via(split, {"a.png": [rect], "b.png": []})  # links exist: no image is written
    assert os.path.islink(split / "a.png") and os.path.islink(split / "b.png")
    linked = ViaDataset.from_directory(split, class_attribute="kind")
    direct = ViaDataset.from_directory(pool, class_attribute="kind")
    assert linked.num_images == 2
    assert linked.image_reference(0) == str(split / "a.png")  # the link, not its target
    for i in linked.image_ids:
        assert linked.image_info[i]["height"] == H and linked.image_info[i]["width"] == W
        np.testing.assert_array_equal(linked.load_image(i), direct.load_image(i))
        np.testing.assert_array_equal(linked.load_mask(i)[0], direct.load_mask(i)[0])

    os.remove(pool / "b.png")  # a dangling link is a missing image, named as such
    with pytest.raises(FileNotFoundError, match=r"image file 'b.png' does not exist"):
        ViaDataset.from_directory(split, class_attribute="kind")


@pytest.mark.parametrize("name, reason", [
    ("../outside.png", "'..' component"),
    ("sub/../../outside.png", "'..' component"),
    ("..\\outside.png", "'..' component"),
    ("/abs/outside.png", "absolute path"),
    ("\\\\host\\share\\outside.png", "absolute path"),
    ("C:\\outside.png", "drive letter"),
])
def test_filename_escapes_are_refused(tmp_path, name, reason):
    path = write_via(tmp_path, {"a.png": []})
    data = json.loads((tmp_path / "via_region_data.json").read_text())
    data["_via_img_metadata"]["a.png123"]["filename"] = name
    (tmp_path / "via_region_data.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationFormatError) as err:
        ViaDataset.from_directory(path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'via_region_data.json'}: ['a.png123'].filename "
                              f"{name!r} points outside the image directory")
    assert reason in message
