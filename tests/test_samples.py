"""The samples run from the command line: --help, their helpers, and a tiny end-to-end run of each.

The end-to-end runs are subprocesses at the --tiny setting (small backbone, 64/128 px, one
epoch of 2 steps). The balloon run needs the VIA dataset at ``../shared/data/balloon`` (or
``$MRCNN_SHARED_DIR/data/balloon``) and is skipped, saying so, without it.
"""

import glob
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from shared_data import BALLOON, REPO, needs_balloon


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"})


def load_sample(name):
    """Import samples/<name>/<name>.py as a module (they are scripts, not a package)."""
    path = os.path.join(REPO, "samples", name, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"sample_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkpoints(model_dir, name):
    return sorted(glob.glob(os.path.join(model_dir, f"{name}*", f"mask_rcnn_{name}_*.h5")))


HELP_OPTIONS = {
    "samples/balloon/balloon.py": ["train", "evaluate", "splash", "--dataset", "--weights", "--image",
                                   "--video", "--frames", "--output", "--limit", "--backbone", "--tiny"],
    "samples/shapes/train_shapes.py": ["--output", "--epochs", "--steps", "--no-export"],
    "samples/serving/rest_server.py": ["--model_base_path", "--model_name", "--port"],
    "samples/serving/client.py": ["--url", "--model_name"],
    "samples/coco/coco.py": ["train", "evaluate", "--annotations", "--images", "--val-annotations",
                             "--weights", "--limit", "--backbone", "--tiny"],
    "samples/custom/custom.py": ["train", "detect", "--dataset", "--image", "--output", "--weights",
                                 "--tiny"],
}


@pytest.fixture(scope="module")
def help_runs():
    """Every sample's ``--help``, started at once (each imports TensorFlow: seconds apiece)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = {script: subprocess.Popen([sys.executable, os.path.join(REPO, script), "--help"],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for script in HELP_OPTIONS}
    results = {}
    for script, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        results[script] = (process.returncode, stdout, stderr)
    return results


@pytest.mark.parametrize("script", sorted(HELP_OPTIONS))
def test_sample_help(script, help_runs):
    returncode, stdout, stderr = help_runs[script]
    assert returncode == 0, stderr
    assert stdout.startswith("usage:"), stdout[:200]
    for option in HELP_OPTIONS[script]:
        assert option in stdout, option


# ------------------------------------------------------------------ balloon helpers
class SplitModel:
    """Stands in for MaskRCNN in inference: one instance, the left half of every image."""

    def __init__(self):
        self.calls = 0

    def detect(self, images):
        self.calls += len(images)
        results = []
        for image in images:
            h, w = image.shape[:2]
            masks = np.zeros((h, w, 1), bool)
            masks[:, : w // 2, 0] = True
            results.append({"rois": np.array([[0, 0, h, w // 2]], np.int32),
                            "class_ids": np.array([1], np.int32), "scores": np.array([0.9], np.float32),
                            "masks": masks})
        return results


def colourful(h=24, w=32, seed=0):
    """uint8 RGB with no grey pixel: R > G > B everywhere."""
    rng = np.random.default_rng(seed)
    blue = rng.integers(0, 80, (h, w))
    return np.stack([blue + 160, blue + 80, blue], axis=-1).astype(np.uint8)


def test_balloon_splash_file_is_grey_outside_the_masks_and_original_inside(tmp_path):
    balloon = load_sample("balloon")
    image = colourful()
    out = tmp_path / "s.png"
    assert balloon.splash_file(SplitModel(), image, str(out)) == 1
    result = np.asarray(Image.open(out).convert("RGB"))
    assert result.shape == image.shape
    np.testing.assert_array_equal(result[:, :16], image[:, :16])  # inside the mask: untouched
    right = result[:, 16:].astype(int)
    assert (right[..., 0] == right[..., 1]).all() and (right[..., 1] == right[..., 2]).all()


def test_balloon_splash_reads_images_frame_folders_and_video(tmp_path, monkeypatch):
    balloon = load_sample("balloon")
    model = SplitModel()
    monkeypatch.setattr(balloon, "load_model", lambda *args, **kwargs: model)
    Image.fromarray(colourful(seed=1)).save(tmp_path / "photo.jpg", quality=95)
    (tmp_path / "frames").mkdir()
    for i in range(2):
        Image.fromarray(colourful(seed=2 + i)).save(tmp_path / "frames" / f"{i:05d}.png")
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    gif = [Image.fromarray(colourful(seed=5 + i)) for i in range(3)]
    gif[0].save(tmp_path / "clip.gif", save_all=True, append_images=gif[1:], duration=100, loop=0)

    out = tmp_path / "out"
    balloon.main(["splash", "--image", str(tmp_path / "photo.jpg"), "--frames", str(tmp_path / "frames"),
                  "--video", str(tmp_path / "clip.gif"), "--output", str(out)])
    written = sorted(os.listdir(out))
    assert written == ["00000_splash.png", "00001_splash.png", "clip_00000_splash.png",
                       "clip_00001_splash.png", "clip_00002_splash.png", "photo_splash.png"]
    assert model.calls == 6
    for name in written:
        result = np.asarray(Image.open(out / name).convert("RGB")).astype(int)
        right = result[:, 16:]
        assert (right[..., 0] == right[..., 1]).all() and (right[..., 1] == right[..., 2]).all(), name
        assert not (result[:, :16, 0] == result[:, :16, 2]).all(), name  # the kept half has colour


def test_balloon_explains_bad_arguments(tmp_path, monkeypatch):
    balloon = load_sample("balloon")
    monkeypatch.setenv("HOME", str(tmp_path))  # no Keras Applications cache here
    with pytest.raises(SystemExit, match=r"resnet50_weights_tf_dim_ordering_tf_kernels_notop\.h5"):
        balloon.main(["train", "--dataset", str(tmp_path), "--weights", "imagenet", "--tiny"])
    with pytest.raises(SystemExit, match=r"ImageNet weights exist for"):
        balloon.main(["train", "--dataset", str(tmp_path), "--weights", "imagenet", "--backbone", "small"])
    Image.fromarray(colourful()).save(tmp_path / "a.png")
    with pytest.raises(SystemExit, match=r"--weights last: no checkpoint"):
        balloon.main(["splash", "--weights", "last", "--model-dir", str(tmp_path / "empty"),
                      "--image", str(tmp_path / "a.png"), "--tiny", "--backbone", "small"])
    with pytest.raises(SystemExit, match=r"no such image file"):
        balloon.main(["splash", "--image", str(tmp_path / "missing.png"), "--tiny", "--backbone", "small"])
    with pytest.raises(SystemExit, match=r"no train/ directory"):
        balloon.main(["train", "--dataset", str(tmp_path), "--tiny", "--backbone", "small"])
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    with pytest.raises(SystemExit, match=r"(?s)cannot read it.*--frames DIR"):
        balloon.main(["splash", "--video", str(tmp_path / "clip.mp4"), "--tiny", "--backbone", "small"])


@pytest.mark.slow
@needs_balloon
def test_balloon_trains_evaluates_and_splashes(tmp_path):
    script = os.path.join(REPO, "samples", "balloon", "balloon.py")
    logs = str(tmp_path / "logs")
    common = ["--backbone", "small", "--tiny", "--model-dir", logs]
    train = run(script, "train", "--dataset", BALLOON, "--epochs", "1", *common)
    assert train.returncode == 0, train.stderr[-3000:]
    assert [os.path.basename(p) for p in checkpoints(logs, "balloon")] == ["mask_rcnn_balloon_0001.h5"]

    evaluate = run(script, "evaluate", "--dataset", BALLOON, "--limit", "2", *common)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert re.search(r"balloon val \(2 images\): mask mAP@0\.5 (nan|[\d.]+)  COCO bbox AP -?[\d.]+  "
                     r"segm AP -?[\d.]+", evaluate.stdout), evaluate.stdout[-2000:]

    val_dir = os.path.join(BALLOON, "val")
    image_path = os.path.join(val_dir, sorted(f for f in os.listdir(val_dir) if f.endswith(".jpg"))[0])
    out = tmp_path / "splash"
    # In this process (TensorFlow is loaded already): the command line itself ran above.
    assert load_sample("balloon").main(["splash", "--image", image_path, "--output", str(out), *common]) == 0
    (png,) = list(out.iterdir())
    assert png.name.endswith("_splash.png")
    result = np.asarray(Image.open(png).convert("RGB")).astype(int)
    original = np.asarray(Image.open(image_path).convert("RGB")).astype(int)
    assert result.shape == original.shape
    grey = (result[..., 0] == result[..., 1]) & (result[..., 1] == result[..., 2])
    kept = (result == original).all(axis=-1)
    assert (grey | kept).all(), "every pixel is grey (outside the masks) or its original colour (inside)"
    original_grey = (original[..., 0] == original[..., 1]) & (original[..., 1] == original[..., 2])
    assert (grey & ~original_grey).any(), "the photo's colours outside the balloons turned grey"


# ------------------------------------------------------------------------ coco
def write_shapes(directory, count):
    """ShapesDataset images as PNG files, with their masks and class ids."""
    from mrcnn_tf.data import ShapesDataset

    shapes = ShapesDataset()
    shapes.load_shapes(count, 64, 64, seed=5)
    shapes.prepare()
    os.makedirs(directory, exist_ok=True)
    items = []
    for i in shapes.image_ids:
        path = os.path.join(directory, f"s{i}.png")
        Image.fromarray(shapes.load_image(i)).save(path)
        masks, class_ids = shapes.load_mask(i)
        items.append((path, masks, class_ids))
    return shapes.class_names, items


def write_coco_shapes(root, count):
    """``count`` shapes images under ``root/images`` and their COCO JSON ``root/train.json``
    (RLE masks, category ids 10, 20, 30: not contiguous, as in real COCO files).
    Returns (class names, annotation file path)."""
    from pycocotools import mask as mask_utils

    class_names, items = write_shapes(str(root / "images"), count)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": 10 * c, "name": n} for c, n in enumerate(class_names[1:], 1)]}
    for i, (path, masks, class_ids) in enumerate(items, 1):
        coco["images"].append({"id": i, "file_name": os.path.basename(path), "height": 64, "width": 64})
        for m, c in zip(np.moveaxis(masks, -1, 0), class_ids):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i,
                                        "category_id": 10 * int(c), "segmentation": rle, "iscrowd": 0,
                                        "area": float(m.sum()), "bbox": list(mask_utils.toBbox(rle))})
    annotations = root / "train.json"
    annotations.write_text(json.dumps(coco))
    return class_names, annotations


@pytest.mark.slow
def test_coco_sample_trains_and_evaluates_a_coco_file(tmp_path, capsys):
    # Category ids 10, 20, 30: not contiguous, as in real COCO files.
    class_names, annotations = write_coco_shapes(tmp_path, 4)
    script = os.path.join(REPO, "samples", "coco", "coco.py")
    logs = str(tmp_path / "logs")
    common = ["--annotations", str(annotations), "--images", str(tmp_path / "images"),
              "--backbone", "small", "--tiny", "--model-dir", logs]
    train = run(script, "train", *common, "--epochs", "1")
    assert train.returncode == 0, train.stderr[-3000:]
    assert f"classes {class_names}" in train.stdout, train.stdout[:2000]
    assert [os.path.basename(p) for p in checkpoints(logs, "coco")] == ["mask_rcnn_coco_0001.h5"]
    capsys.readouterr()
    assert load_sample("coco").main(["evaluate", *common]) == 0  # in this process; --weights: last
    stdout = capsys.readouterr().out
    assert stdout.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all") == 2, \
        stdout[-3000:]  # pycocotools' tables, bbox and segm
    assert re.search(r"bbox AP -?[\d.]+  segm AP -?[\d.]+", stdout), stdout[-2000:]


# ---------------------------------------------------------------------- custom
def write_custom_layout(root, count):
    """The custom template's folder layout from shapes: grey label PNGs and class lists."""
    class_names, items = write_shapes(str(root / "train" / "images"), count)
    (root / "classes.txt").write_text("\n".join(class_names[1:]))
    for directory in ("masks", "classes"):
        (root / "train" / directory).mkdir()
    for path, masks, class_ids in items:
        stem = os.path.splitext(os.path.basename(path))[0]
        labels = np.zeros(masks.shape[:2], np.uint8)
        for value, m in enumerate(np.moveaxis(masks, -1, 0), 1):
            labels[m] = value
        Image.fromarray(labels).save(root / "train" / "masks" / f"{stem}.png")
        (root / "train" / "classes" / f"{stem}.txt").write_text("\n".join(class_names[c] for c in class_ids))
    return class_names, items


def test_custom_dataset_reads_grey_and_colour_label_masks(tmp_path):
    custom = load_sample("custom")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    for directory in ("images", "masks", "classes"):
        (tmp_path / "train" / directory).mkdir(parents=True)
    Image.fromarray(colourful(8, 8)).save(tmp_path / "train" / "images" / "a.png")
    Image.fromarray(colourful(8, 8)).save(tmp_path / "train" / "images" / "b.jpg")
    grey = np.zeros((8, 8), np.uint8)
    grey[1:3, 1:3], grey[5:8, 4:6] = 7, 3  # label values need not be consecutive
    Image.fromarray(grey).save(tmp_path / "train" / "masks" / "a.png")
    (tmp_path / "train" / "classes" / "a.txt").write_text("dog\ncat\n")  # labels 3 then 7
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[0:2, 0:8] = (255, 0, 0)
    colour[4:8, 0:2] = (0, 0, 255)
    Image.fromarray(colour).save(tmp_path / "train" / "masks" / "b.png")

    dataset = custom.load_subset(str(tmp_path), "train")
    assert dataset.class_names[1:] == ["cat", "dog"]
    masks, class_ids = dataset.load_mask(0)
    assert masks.dtype == bool and masks.shape == (8, 8, 2)
    np.testing.assert_array_equal(masks[..., 0], grey == 3)
    np.testing.assert_array_equal(masks[..., 1], grey == 7)
    assert class_ids.tolist() == [2, 1]
    masks, class_ids = dataset.load_mask(1)  # colour-coded, no class list: the first class
    assert masks.shape == (8, 8, 2) and class_ids.tolist() == [1, 1]
    assert sorted(int(m.sum()) for m in np.moveaxis(masks, -1, 0)) == [8, 16]

    (tmp_path / "train" / "classes" / "a.txt").write_text("dog\n")
    with pytest.raises(ValueError, match="1 class names for 2 instances"):
        dataset.load_mask(0)


@pytest.mark.slow
def test_custom_template_trains_and_detects_on_its_folder_layout(tmp_path, capsys):
    class_names, items = write_custom_layout(tmp_path, 3)
    script = os.path.join(REPO, "samples", "custom", "custom.py")
    logs = str(tmp_path / "logs")
    train = run(script, "train", "--dataset", str(tmp_path), "--tiny", "--epochs", "1", "--model-dir", logs)
    assert train.returncode == 0, train.stderr[-3000:]
    assert [os.path.basename(p) for p in checkpoints(logs, "custom")] == ["mask_rcnn_custom_0001.h5"]
    drawn = tmp_path / "drawn.png"
    capsys.readouterr()
    assert load_sample("custom").main(["detect", "--dataset", str(tmp_path), "--tiny", "--image", items[0][0],
                                       "--model-dir", logs, "--output", str(drawn)]) == 0  # in this process
    stdout = capsys.readouterr().out
    lines = [line for line in stdout.splitlines() if re.match(r"^\S+ [\d.]+ \[", line)]
    # DETECTION_MIN_CONFIDENCE is 0 at --tiny: even a barely trained model reports its best guesses.
    assert lines and all(line.split()[0] in class_names[1:] for line in lines), stdout
    assert Image.open(drawn).size[0] > 64
