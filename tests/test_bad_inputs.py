"""A corpus of bad inputs, written by the tests: each gets a clear error naming the item,
or is handled as documented (docs/RELIABILITY.md) and trains with finite losses."""

import json
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mrcnn_tf import DataGenerator, Dataset, MaskRCNN
from mrcnn_tf.data import AnnotationFormatError, CocoDataset, ImageLoadError, ShapesDataset, ViaDataset
from mrcnn_tf.layers import DetectionTargetLayer, ProposalLayer
from mrcnn_tf.config import LOSS_NAMES
from mrcnn_tf.modeling.rpn_targets import rpn_targets
from mrcnn_tf.ops.anchors import pyramid_anchors_for_image
from mrcnn_tf.ops.boxes import box_iou, encode_boxes
from mrcnn_tf.ops.roi_align import roi_align
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


class CentreBoxes(Dataset):
    """Each file has one instance, a box over its central half; "empty" has none."""

    def load_mask(self, image_id):
        height, width = self.load_image(image_id).shape[:2]
        masks = np.zeros((height, width, 1), bool)
        masks[height // 4:-(-3 * height // 4), width // 4:-(-3 * width // 4)] = True
        if self.image_info[image_id]["id"] == "empty":
            return masks[:, :, :0], np.zeros(0, np.int32)
        return masks, np.ones(1, np.int32)


def handled_corpus(tmp_path):
    dataset = CentreBoxes()
    dataset.add_class("files", 1, "thing")
    for kind in sorted(CONVERTED):
        dataset.add_image("files", kind, str(write_image(tmp_path / f"{kind}.png", kind)))
    dataset.add_image("files", "empty", str(write_image(tmp_path / "empty.png", "grey")))
    dataset.prepare()
    return dataset


def test_handled_corpus_keeps_its_instances(tmp_path):
    dataset = handled_corpus(tmp_path)
    config = TinyConfig(IMAGES_PER_GPU=len(CONVERTED) + 1, NUM_CLASSES=2)
    batch = DataGenerator(dataset, config, shuffle=False)[0]
    counts = (batch["input_gt_class_ids"] > 0).sum(axis=1)
    assert counts.tolist() == [1] * len(CONVERTED) + [0]  # "empty" is last: added last
    assert np.isfinite(batch["input_gt_boxes"]).all() and np.isfinite(batch["input_image"]).all()
    filtered = DataGenerator(dataset, TinyConfig(NUM_CLASSES=2, FILTER_EMPTY_IMAGES=True))
    assert len(filtered.image_ids) == len(CONVERTED) and dataset.num_images == len(CONVERTED) + 1


@pytest.mark.slow
def test_handled_corpus_trains_with_finite_losses(tmp_path):
    dataset = handled_corpus(tmp_path)
    config = TinyConfig(IMAGES_PER_GPU=2, NUM_CLASSES=2)
    trainer = MaskRCNN("training", config, tmp_path)
    trainer.set_trainable("all")
    trainer.compile(0.01, 0.9)
    history = trainer.keras_model.fit(DataGenerator(dataset, config, seed=0), epochs=1, verbose=0).history
    assert set(LOSS_NAMES) <= set(history)
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
    config = TinyConfig()
    batch = DataGenerator(dataset, config, seed=0)[0]
    assert (batch["input_gt_class_ids"] == 0).all()
    anchors = pyramid_anchors_for_image((64, 64), config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                        config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE,
                                        normalized=False)
    match, deltas = rpn_targets(anchors, batch["input_gt_class_ids"][0], batch["input_gt_boxes"][0],
                                config.RPN_TRAIN_ANCHORS_PER_IMAGE, config.RPN_BBOX_STD_DEV)
    match = match.numpy()
    assert (match == 1).sum() == 0 and (match == -1).sum() == config.RPN_TRAIN_ANCHORS_PER_IMAGE
    assert not deltas.numpy().any()


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


@pytest.mark.parametrize("escape", ["relative", "absolute", "nested", "backslash", "drive"])
@pytest.mark.parametrize("loader", ["coco", "via"])
def test_paths_cannot_escape_the_dataset_directory(tmp_path, loader, escape):
    """The check is on the name's text; a symlink the user made in the directory is
    followed (tests/test_coco.py, tests/test_via.py: splits made of links)."""
    inner = tmp_path / "data"
    inner.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "outside.png")
    name = {"relative": "../outside.png", "absolute": str(tmp_path / "outside.png"),
            "nested": "sub/../../outside.png", "backslash": "..\\outside.png",
            "drive": "C:\\outside.png"}[escape]
    if loader == "coco":
        (inner / "a.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": name, "height": 8, "width": 8}],
            "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
        call = lambda: CocoDataset.from_json(str(inner / "a.json"), str(inner))  # noqa: E731
    else:
        (inner / "via_region_data.json").write_text(json.dumps({
            "x": {"filename": name, "size": 1, "regions": {}, "file_attributes": {}}}))
        call = lambda: ViaDataset.from_directory(str(inner))  # noqa: E731
    with pytest.raises(AnnotationFormatError, match=r"outside\.png.* points outside the image directory"):
        call()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_float_pixels_are_refused(tmp_path, value):
    image = np.full((32, 32, 3), 100.0, np.float32)
    image[0, 0, 0] = value
    with pytest.raises(ValueError, match="NaN or Inf"):
        MaskRCNN("inference", TinyConfig(), tmp_path).detect([image])


UNSAFE = re.compile(r"\bimport (?:c?pickle|dill|shelve|marshal)\b|\bfrom (?:c?pickle|dill|shelve|marshal) import"
                    r"|\b(?:c?pickle|dill|shelve|marshal)\.|(?<![\w.])eval\(|(?<![\w.])exec\("
                    r"|\byaml\.(?:load|unsafe_load|full_load)\(|allow_pickle\s*=\s*True")


@pytest.mark.parametrize("line, unsafe", [
    ("import pickle", True), ("from pickle import loads", True), ("data = pickle.loads(b)", True),
    ("eval(text)", True), ("exec(code)", True), ("yaml.load(f)", True), ("np.load(p, allow_pickle=True)", True),
    ("yaml.safe_load(f)", False), ("model.evaluate(x)", False), ("layer.eval_mode()", False),
    ("self.exec_count = 1", False), ("np.load(p, allow_pickle=False)", False),
])
def test_unsafe_pattern_catches_what_it_should(line, unsafe):
    assert bool(UNSAFE.search(line)) is unsafe


def test_no_pickle_eval_exec_or_yaml_load_in_the_package():
    package = pathlib.Path(__file__).resolve().parent.parent / "mrcnn_tf"
    sources = list(package.rglob("*.py"))
    assert len(sources) > 30  # the package, not an empty directory
    offenders = [f"{p.relative_to(package)}:{i}: {line.strip()}" for p in sources
                 for i, line in enumerate(p.read_text().splitlines(), 1) if UNSAFE.search(line)]
    assert not offenders, offenders


def test_more_dataset_classes_than_the_model_has_is_refused():
    dataset = ShapesDataset()
    dataset.load_shapes(1, 64, 64, seed=0)
    dataset.prepare()
    with pytest.raises(ValueError, match="4 classes .* NUM_CLASSES is 3"):
        DataGenerator(dataset, TinyConfig(NUM_CLASSES=3), seed=0)


# Zero-area and inverted boxes, as a bad annotation or a degenerate proposal would give them.
DEGENERATE = {"zero_area": [0.5, 0.5, 0.5, 0.5], "zero_height": [0.3, 0.1, 0.3, 0.6],
              "inverted": [0.8, 0.7, 0.2, 0.1]}


@pytest.mark.parametrize("kind", sorted(DEGENERATE))
def test_degenerate_boxes_give_finite_box_math(kind):
    box = np.array([DEGENERATE[kind]], np.float32)
    good = np.array([[0.1, 0.1, 0.6, 0.6]], np.float32)
    assert box_iou(box, good).numpy().tolist() == [[0.0]]
    assert np.isfinite(encode_boxes(good, box).numpy()).all()  # toward a degenerate target
    assert np.isfinite(encode_boxes(box, good).numpy()).all()  # from a degenerate anchor


@pytest.mark.parametrize("kind", ["zero_area", "zero_height"])
def test_empty_boxes_pool_the_points_they_cover(kind):
    features = np.arange(10 * 10, dtype=np.float32).reshape(1, 10, 10, 1)  # value 10 * y + x
    box = np.array([DEGENERATE[kind]], np.float32) * 10
    pooled = roi_align(features, box, [0], 2).numpy()[0, :, :, 0]
    assert np.isfinite(pooled).all()
    np.testing.assert_allclose(pooled, np.broadcast_to(pooled[:1], pooled.shape))  # no height: rows equal
    if kind == "zero_area":  # one point, (5, 5), read at index (4.5, 4.5)
        np.testing.assert_allclose(pooled, 49.5)
    else:
        assert pooled[0, 1] > pooled[0, 0]  # still spread along its width


def test_inverted_boxes_are_refused_by_roi_align():
    with pytest.raises(tf.errors.InvalidArgumentError, match="y2 >= y1 and x2 >= x1"):
        roi_align(np.zeros((1, 8, 8, 1), np.float32), np.array([DEGENERATE["inverted"]]) * 8, [0], 2)


@pytest.mark.parametrize("kind", sorted(DEGENERATE))
def test_degenerate_anchors_and_ground_truth_keep_layers_finite(kind):
    box = np.array(DEGENERATE[kind], np.float32)
    anchors = np.stack([box, [0.1, 0.1, 0.5, 0.5], [0.4, 0.4, 0.9, 0.9]])[None]
    probs = np.array([[[0.1, 0.9], [0.6, 0.4], [0.3, 0.7]]], np.float32)
    deltas = np.zeros((1, 3, 4), np.float32)
    proposals = ProposalLayer(3, 0.7, pre_nms_limit=3)([probs, deltas, anchors]).numpy()
    assert np.isfinite(proposals).all() and (proposals[..., 2:] >= proposals[..., :2]).all()

    gt_boxes = np.stack([box, [0.1, 0.1, 0.5, 0.5]])[None]
    gt_class_ids = np.array([[1, 2]], np.int32)
    masks = np.ones((1, 14, 14, 2), bool)
    rois, class_ids, target_deltas, target_masks = [t.numpy() for t in DetectionTargetLayer(
        8, 0.5, mask_shape=(28, 28))([proposals, gt_class_ids, gt_boxes, masks])]
    for t in (rois, target_deltas, target_masks):
        assert np.isfinite(t).all()
    assert 2 in class_ids  # the valid ground truth still trains
