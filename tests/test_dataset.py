"""Tests of the base Dataset: registration, id maps, and reading image files."""

import numpy as np
import pytest
from PIL import Image

from mrcnn_tf.data import Dataset, ImageLoadError

ORIENTATION_TAG = 274  # EXIF "Orientation"


def two_source_dataset():
    dataset = Dataset()
    dataset.add_class("coco", 18, "dog")
    dataset.add_class("coco", 1, "person, human")
    dataset.add_class("via", 1, "balloon")
    dataset.add_image("coco", 42, "/data/42.jpg")
    dataset.add_image("via", "a.png", "/data/a.png", height=10, width=20)
    dataset.prepare()
    return dataset


# ----------------------------------------------------------- classes and maps
def test_background_is_class_zero():
    dataset = Dataset()
    assert dataset.class_info == [{"source": "", "id": 0, "name": "BG"}]
    dataset.prepare()
    assert dataset.class_names == ["BG"] and dataset.num_classes == 1
    assert len(dataset.image_ids) == 0


def test_prepare_builds_the_lookup_tables():
    dataset = two_source_dataset()
    assert dataset.class_names == ["BG", "dog", "person", "balloon"]
    assert dataset.num_classes == 4
    assert dataset.source_class_ids["coco"] == [0, 1, 2]
    assert dataset.source_class_ids["via"] == [0, 3]
    assert dataset.class_from_source_map == {".0": 0, "coco.18": 1, "coco.1": 2, "via.1": 3}
    assert dataset.map_source_class_id("coco.1") == 2
    assert dataset.map_source_class_id("via.1") == 3
    assert dataset.get_source_class_id(1, "coco") == 18
    assert dataset.get_source_class_id(3, "via") == 1
    np.testing.assert_array_equal(dataset.image_ids, [0, 1])
    assert dataset.image_from_source_map == {"coco.42": 0, "via.a.png": 1}
    assert dataset.num_images == 2


def test_lookups_reject_unknown_or_foreign_ids():
    dataset = two_source_dataset()
    with pytest.raises(KeyError, match="coco.99"):
        dataset.map_source_class_id("coco.99")
    with pytest.raises(ValueError, match="via"):
        dataset.get_source_class_id(1, "via")


def test_add_class_twice():
    dataset = Dataset()
    dataset.add_class("coco", 1, "person")
    dataset.add_class("coco", 1, "person")  # same name: no-op
    assert len(dataset.class_info) == 2
    with pytest.raises(ValueError, match="coco.1"):
        dataset.add_class("coco", 1, "people")
    with pytest.raises(ValueError, match="dot"):
        dataset.add_class("my.source", 1, "x")


def test_duplicate_image_is_rejected_by_name():
    dataset = Dataset()
    dataset.add_image("coco", 7, "/a.jpg")
    dataset.add_image("via", 7, "/b.jpg")  # same id, another source: fine
    with pytest.raises(ValueError, match="coco.7"):
        dataset.add_image("coco", 7, "/c.jpg")
    assert len(dataset.image_info) == 2


def test_tables_need_prepare():
    dataset = Dataset()
    dataset.add_class("coco", 1, "person")
    for name in ("class_names", "num_classes", "image_ids", "source_class_ids"):
        with pytest.raises(RuntimeError, match="prepare"):
            getattr(dataset, name)
    with pytest.raises(RuntimeError, match="prepare"):
        dataset.map_source_class_id("coco.1")
    dataset.prepare()
    assert dataset.num_classes == 2
    dataset.add_image("coco", 1, "/x.jpg")  # stale tables must not be used
    with pytest.raises(RuntimeError, match="prepare"):
        dataset.image_ids
    dataset.prepare()
    assert len(dataset.image_ids) == 1


def test_image_info_and_references():
    dataset = two_source_dataset()
    assert dataset.image_info[1] == {"id": "a.png", "source": "via", "path": "/data/a.png",
                                     "height": 10, "width": 20}
    assert dataset.image_reference(0) == "/data/42.jpg"
    assert dataset.source_image_link(1) == "/data/a.png"
    dataset.add_image("gen", 3, None)
    assert "gen" in dataset.image_reference(2) and "3" in dataset.image_reference(2)


# ------------------------------------------------------------------ load_image
def dataset_of(path):
    dataset = Dataset()
    dataset.add_image("files", "img1", str(path))
    dataset.prepare()
    return dataset


def test_rgb_png_round_trip(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    loaded = dataset_of(tmp_path / "rgb.png").load_image(0)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, pixels)


def test_grey_becomes_three_equal_channels(tmp_path):
    grey = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    loaded = dataset_of(tmp_path / "grey.png").load_image(0)
    assert loaded.shape == (5, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[:, :, channel], grey)


def test_rgba_and_la_drop_alpha(tmp_path):
    rgba = np.zeros([4, 6, 4], np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 10, 120, 250
    rgba[..., 3] = np.arange(24).reshape(4, 6)  # mostly transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    loaded = dataset_of(tmp_path / "rgba.png").load_image(0)
    assert loaded.shape == (4, 6, 3)
    np.testing.assert_array_equal(loaded, rgba[..., :3])

    Image.new("LA", (6, 4), (77, 0)).save(tmp_path / "la.png")
    assert (dataset_of(tmp_path / "la.png").load_image(0) == 77).all()


def test_palette_image_uses_its_palette(tmp_path):
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "palette.png", transparency=2)
    loaded = dataset_of(tmp_path / "palette.png").load_image(0)
    np.testing.assert_array_equal(loaded, [[[255, 0, 0], [0, 255, 0]],
                                           [[0, 0, 255], [0, 255, 0]]])


def test_sixteen_bit_is_divided_by_257(tmp_path):
    values = np.array([[0, 257 * 10, 257 * 200, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    loaded = dataset_of(tmp_path / "deep.png").load_image(0)
    assert loaded.dtype == np.uint8 and loaded.shape == (1, 4, 3)
    np.testing.assert_array_equal(loaded[..., 0], [[0, 10, 200, 255]])
    np.testing.assert_array_equal(loaded[..., 2], loaded[..., 0])


def test_float_image_in_unit_range_is_scaled_by_255(tmp_path):
    values = np.array([[0.0, 0.5, 1.0]], np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "float.tiff")
    loaded = dataset_of(tmp_path / "float.tiff").load_image(0)
    np.testing.assert_array_equal(loaded[..., 1], [[0, 128, 255]])


def test_cmyk_is_converted(tmp_path):
    Image.new("CMYK", (3, 2), (255, 0, 0, 0)).save(tmp_path / "cmyk.tiff")
    loaded = dataset_of(tmp_path / "cmyk.tiff").load_image(0)
    assert loaded.shape == (2, 3, 3)
    assert (loaded == (0, 255, 255)).all()  # pure cyan


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    stored = np.zeros([32, 64, 3], np.uint8)  # H=32, W=64 as stored
    stored[:, :32] = (255, 0, 0)
    stored[:, 32:] = (0, 0, 255)
    stored[:8, :8] = (0, 255, 0)  # marks the stored top-left corner
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    loaded = dataset_of(tmp_path / "rotated.jpg").load_image(0)
    assert loaded.shape == (64, 32, 3)  # width and height swapped
    expected = np.rot90(stored, k=-1)  # clockwise
    assert np.abs(loaded.astype(int) - expected.astype(int)).mean() < 8
    assert loaded[2:6, -6:-2, 1].mean() > 200  # stored top-left is now top-right


def test_unreadable_files_raise_naming_path_and_image(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "whole.png")
    Image.fromarray(pixels).save(tmp_path / "whole.jpg")
    for name in ("whole.png", "whole.jpg"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.png").write_text("not an image at all")
    for name in ("cut_whole.png", "cut_whole.jpg", "text.png", "missing.png"):
        path = tmp_path / name
        with pytest.raises(ValueError) as error:
            dataset_of(path).load_image(0)
        assert isinstance(error.value, ImageLoadError)
        assert str(path) in str(error.value) and "img1" in str(error.value)


# ------------------------------------------------------------------- load_mask
def test_base_load_mask_is_empty_with_the_image_size(tmp_path):
    dataset = two_source_dataset()
    masks, class_ids = dataset.load_mask(1)  # height/width from image_info
    assert masks.shape == (10, 20, 0) and masks.dtype == bool
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32

    Image.new("RGB", (9, 5)).save(tmp_path / "small.png")
    masks, _ = dataset_of(tmp_path / "small.png").load_mask(0)  # size read from the file
    assert masks.shape == (5, 9, 0)
