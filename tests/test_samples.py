"""The samples run from the command line: --help, and a tiny balloon train + splash."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("MRCNN_SHARED_DIR", os.path.join(REPO, "..", "shared"))
BALLOON = os.path.join(SHARED, "data", "balloon")


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.parametrize("script, options", [
    ("samples/balloon/balloon.py", ["--dataset", "--weights", "--image", "--frames", "--tiny"]),
    ("samples/shapes/train_shapes.py", ["--output", "--epochs", "--steps", "--no-export"]),
    ("samples/serving/rest_server.py", ["--model_base_path", "--model_name", "--port"]),
    ("samples/serving/client.py", ["--url", "--model_name"]),
    ("samples/coco/coco.py", ["--annotations", "--images", "--val-annotations", "--weights", "--tiny"]),
    ("samples/custom/custom.py", ["--dataset", "--image", "--tiny"]),
])
def test_sample_help(script, options):
    result = run(os.path.join(REPO, script), "--help")
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout, option


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(BALLOON), reason=f"balloon data not found at {BALLOON}")
def test_balloon_trains_and_splashes(tmp_path):
    script = os.path.join(REPO, "samples", "balloon", "balloon.py")
    logs = str(tmp_path / "logs")
    train = run(script, "train", "--dataset", BALLOON, "--backbone", "small", "--tiny", "--epochs", "2",
                "--model-dir", logs)
    assert train.returncode == 0, train.stderr[-3000:]

    image_path = os.path.join(BALLOON, "val", sorted(f for f in os.listdir(os.path.join(BALLOON, "val"))
                                                     if f.endswith(".jpg"))[0])
    out = tmp_path / "splash"
    splash = run(script, "splash", "--backbone", "small", "--tiny", "--weights", "last", "--model-dir", logs,
                 "--image", image_path, "--output", str(out))
    assert splash.returncode == 0, splash.stderr[-3000:]
    (png,) = list(out.iterdir())
    result = np.asarray(Image.open(png).convert("RGB")).astype(int)
    original = np.asarray(Image.open(image_path).convert("RGB")).astype(int)
    assert result.shape == original.shape
    grey = (result[..., 0] == result[..., 1]) & (result[..., 1] == result[..., 2])
    kept = (result == original).all(axis=-1) & ~grey
    # Every pixel is either grey (outside the masks) or its original colour (inside).
    assert (grey | kept).all()
    assert grey.any()


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


@pytest.mark.slow
def test_coco_sample_trains_and_evaluates_a_coco_file(tmp_path):
    import json

    from pycocotools import mask as mask_utils

    class_names, items = write_shapes(str(tmp_path / "images"), 4)
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
    annotations = tmp_path / "train.json"
    annotations.write_text(json.dumps(coco))
    script = os.path.join(REPO, "samples", "coco", "coco.py")
    common = ["--annotations", str(annotations), "--images", str(tmp_path / "images"),
              "--backbone", "small", "--tiny", "--model-dir", str(tmp_path / "logs")]
    train = run(script, "train", *common, "--epochs", "1")
    assert train.returncode == 0, train.stderr[-3000:]
    evaluate = run(script, "evaluate", *common, "--weights", "last")
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert re.search(r"bbox AP -?[\d.]+  segm AP -?[\d.]+", evaluate.stdout), evaluate.stdout


@pytest.mark.slow
def test_custom_template_trains_and_detects_on_its_folder_layout(tmp_path):
    class_names, items = write_shapes(str(tmp_path / "train" / "images"), 3)
    (tmp_path / "classes.txt").write_text("\n".join(class_names[1:]))
    for directory in ("masks", "classes"):
        (tmp_path / "train" / directory).mkdir()
    for path, masks, class_ids in items:
        stem = os.path.splitext(os.path.basename(path))[0]
        labels = np.zeros(masks.shape[:2], np.uint8)
        for value, m in enumerate(np.moveaxis(masks, -1, 0), 1):
            labels[m] = value
        Image.fromarray(labels).save(tmp_path / "train" / "masks" / f"{stem}.png")
        (tmp_path / "train" / "classes" / f"{stem}.txt").write_text(
            "\n".join(class_names[c] for c in class_ids))
    script = os.path.join(REPO, "samples", "custom", "custom.py")
    train = run(script, "train", "--dataset", str(tmp_path), "--tiny", "--epochs", "1",
                "--model-dir", str(tmp_path / "logs"))
    assert train.returncode == 0, train.stderr[-3000:]
    detect = run(script, "detect", "--dataset", str(tmp_path), "--tiny", "--image", items[0][0],
                 "--model-dir", str(tmp_path / "logs"))
    assert detect.returncode == 0, detect.stderr[-3000:]
    lines = [line for line in detect.stdout.splitlines() if re.match(r"^\S+ [\d.]+ \[", line)]
    assert lines and all(line.split()[0] in class_names[1:] for line in lines), detect.stdout
