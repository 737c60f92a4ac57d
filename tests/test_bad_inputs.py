"""A corpus of bad inputs, written by the tests: each gets a clear error naming the item,
or is handled as documented (docs/RELIABILITY.md) and trains with finite losses."""

import json

import numpy as np
import pytest
from PIL import Image

from mrcnn_tf import DataGenerator, Dataset, MaskRCNN
from mrcnn_tf.data import AnnotationFormatError, CocoDataset, ImageLoadError, ShapesDataset, ViaDataset
from test_model import TinyConfig


def write_image(path, kind):
    """One file of the corpus; returns the path."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    if kind == "truncated_jpeg":
        Image.fromarray(rgb).save(path.with_suffix(".jpg"))
        data = path.with_suffix(".jpg").read_bytes()
        path.with_suffix(".jpg").write_bytes(data[: len(data) // 3])
        return path.with_suffix(".jpg")
    if kind == "corrupt_png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "grey":
        Image.fromarray(rgb[..., 0]).save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(path)
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(path)
    elif kind == "16_bit":
        Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(path)
    elif kind == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(path.with_suffix(".jpg"))
        return path.with_suffix(".jpg")
    elif kind == "exif_rotated":
        image = Image.fromarray(rgb)
        exif = image.getexif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise on display
        image.save(path.with_suffix(".jpg"), exif=exif)
        return path.with_suffix(".jpg")
    elif kind == "tiny":
        Image.fromarray(rgb[:6, :5]).save(path)
    elif kind == "huge_strip":
        Image.fromarray(np.zeros((300, 5000, 3), np.uint8)).save(path)
    return path


UNREADABLE = ["truncated_jpeg", "corrupt_png", "zero_bytes"]
CONVERTED = {"grey": (40, 60), "rgba": (40, 60), "palette": (40, 60), "16_bit": (40, 60),
             "cmyk": (40, 60), "exif_rotated": (60, 40), "tiny": (6, 5), "huge_strip": (300, 5000)}


def one_image_dataset(path):
    dataset = Dataset()
    dataset.add_class("files", 1, "thing")
    dataset.add_image("files", "item", str(path))
    dataset.prepare()
    return dataset


@pytest.mark.parametrize("kind", UNREADABLE)
def test_unreadable_files_name_the_file_and_id(tmp_path, kind):
    path = write_image(tmp_path / f"{kind}.png", kind)
    dataset = one_image_dataset(path)
    with pytest.raises(ImageLoadError) as error:
        dataset.load_image(0)
    assert path.name in str(error.value) and "image 0 (files.item)" in str(error.value)
    with pytest.raises(ImageLoadError, match=path.name):  # the generator does not hide it
        DataGenerator(dataset, TinyConfig(IMAGES_PER_GPU=1), seed=0)[0]


@pytest.mark.parametrize("kind", sorted(CONVERTED))
def test_odd_images_become_rgb_batches(tmp_path, kind):
    path = write_image(tmp_path / f"{kind}.png", kind)
    dataset = one_image_dataset(path)
    image = dataset.load_image(0)
    assert image.dtype == np.uint8 and image.shape == CONVERTED[kind] + (3,)
    batch = DataGenerator(dataset, TinyConfig(IMAGES_PER_GPU=1), seed=0)[0]
    assert batch["input_image"].shape == (1, 64, 64, 3) and np.isfinite(batch["input_image"]).all()


@pytest.mark.slow
def test_handled_corpus_trains_with_finite_losses(tmp_path):
    dataset = Dataset()
    dataset.add_class("files", 1, "thing")
    for kind in sorted(CONVERTED):
        dataset.add_image("files", kind, str(write_image(tmp_path / f"{kind}.png", kind)))
    dataset.prepare()
    config = TinyConfig(IMAGES_PER_GPU=2, NUM_CLASSES=2)
    trainer = MaskRCNN("training", config, tmp_path)
    trainer.set_trainable("all")
    trainer.compile(0.01, 0.9)
    history = trainer.keras_model.fit(DataGenerator(dataset, config, seed=0), epochs=1, verbose=0).history
    assert all(np.isfinite(values).all() for values in history.values())


class Annotated(ShapesDataset):
    """Shapes with one deliberately broken annotation per test."""

    fault = None

    def load_mask(self, image_id):
        masks, class_ids = super().load_mask(image_id)
        if self.fault == "empty":
            return masks[:, :, :0], class_ids[:0]
        if self.fault == "mask_larger_than_image":
            return np.pad(masks, [(0, 8), (0, 8), (0, 0)]), class_ids
        if self.fault == "class_out_of_range":
            return masks, np.full_like(class_ids, 99)
        if self.fault == "count_mismatch":
            return masks, class_ids[:-1]
        return masks, class_ids


@pytest.mark.parametrize("fault, message", [
    ("mask_larger_than_image", r"image 0 .*masks have shape"),
    ("class_out_of_range", r"image 0 .*class id 99"),
    ("count_mismatch", r"image 0 .*masks but class_ids"),
])
def test_bad_annotations_name_the_image(fault, message):
    dataset = Annotated()
    dataset.fault = fault
    dataset.load_shapes(1, 64, 64, seed=0)
    dataset.prepare()
    with pytest.raises(ValueError, match=message):
        DataGenerator(dataset, TinyConfig(IMAGES_PER_GPU=1), seed=0)[0]


def test_images_without_instances_are_valid_negatives():
    dataset = Annotated()
    dataset.fault = "empty"
    dataset.load_shapes(2, 64, 64, seed=0)
    dataset.prepare()
    batch = DataGenerator(dataset, TinyConfig(), seed=0)[0]
    assert (batch["input_gt_class_ids"] == 0).all()
    assert (batch["input_rpn_match"] == 1).sum() == 0 and (batch["input_rpn_match"] == -1).sum() > 0


def test_duplicate_image_ids_are_refused():
    dataset = Dataset()
    dataset.add_image("files", "a", "a.png")
    with pytest.raises(ValueError, match="files.a"):
        dataset.add_image("files", "a", "b.png")


@pytest.mark.parametrize("loader", ["coco", "via"])
@pytest.mark.parametrize("text", ['{"images": [', '{"images": [}', "", "[1, 2"])
def test_malformed_json_says_where(tmp_path, loader, text):
    if loader == "coco":
        path = tmp_path / "annotations.json"
        path.write_text(text)
        call = lambda: CocoDataset.from_json(str(path), str(tmp_path))  # noqa: E731
    else:
        (tmp_path / "via_region_data.json").write_text(text)
        call = lambda: ViaDataset.from_directory(str(tmp_path))  # noqa: E731
    with pytest.raises(AnnotationFormatError, match=r"line \d+|char \d+|column \d+"):
        call()


@pytest.mark.parametrize("loader", ["coco", "via"])
def test_paths_cannot_escape_the_dataset_directory(tmp_path, loader):
    inner = tmp_path / "data"
    inner.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "outside.png")
    if loader == "coco":
        (inner / "a.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "../outside.png", "height": 8, "width": 8}],
            "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
        call = lambda: CocoDataset.from_json(str(inner / "a.json"), str(inner))  # noqa: E731
    else:
        (inner / "via_region_data.json").write_text(json.dumps({
            "x": {"filename": "../outside.png", "size": 1, "regions": {}, "file_attributes": {}}}))
        call = lambda: ViaDataset.from_directory(str(inner))  # noqa: E731
    with pytest.raises(ValueError, match="outside.png"):
        call()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_float_pixels_are_refused(tmp_path, value):
    image = np.full((32, 32, 3), 100.0, np.float32)
    image[0, 0, 0] = value
    with pytest.raises(ValueError, match="NaN or Inf"):
        MaskRCNN("inference", TinyConfig(), tmp_path).detect([image])


def test_no_pickle_eval_or_exec_in_the_package():
    import pathlib
    import re

    package = pathlib.Path(__file__).resolve().parent.parent / "mrcnn_tf"
    pattern = re.compile(r"\bimport pickle\b|\bpickle\.|(?<![\w.])eval\(|(?<![\w.])exec\(|yaml\.load\(")
    offenders = [f"{p.name}:{i}" for p in package.rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, offenders


def test_more_dataset_classes_than_the_model_has_is_refused():
    dataset = ShapesDataset()
    dataset.load_shapes(1, 64, 64, seed=0)
    dataset.prepare()
    with pytest.raises(ValueError, match="4 classes .* NUM_CLASSES is 3"):
        DataGenerator(dataset, TinyConfig(NUM_CLASSES=3), seed=0)
