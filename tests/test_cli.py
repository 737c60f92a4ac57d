"""mrcnn-tf: help, argument errors naming the argument, and a tiny train -> export -> detect run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mrcnn_tf import presets
from mrcnn_tf.cli import build_parser, main

# presets.tiny as --set KEY=JSON pairs; DETECTION_MIN_CONFIDENCE=0: an untrained model detects.
TINY = [arg for key, value in presets.tiny(64, IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0,
                                            DETECTION_MAX_INSTANCES=4).items()
        for arg in ("--set", f"{key}={json.dumps(value)}")]


def run_module(*args):
    return subprocess.run([sys.executable, "-m", "mrcnn_tf", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.parametrize("command", ["train", "evaluate", "detect", "export"])
def test_help_lists_every_option(command):
    run = run_module(command, "--help")
    assert run.returncode == 0, run.stderr
    subparser = build_parser()._subparsers._group_actions[0].choices[command]
    for action in subparser._actions:
        for flag in action.option_strings:
            assert flag in run.stdout, (command, flag)


def test_bad_arguments_name_the_argument(tmp_path):
    run = run_module("train", "--dataset", "via", "--data", str(tmp_path / "missing"))
    assert run.returncode == 2 and "--data: directory not found" in run.stderr
    run = run_module("train", "--dataset", "pascal")
    assert run.returncode == 2 and "--dataset" in run.stderr
    run = run_module("train", "--dataset", "shapes", "--set", "FOO=1")
    assert run.returncode == 2 and "--set" in run.stderr and "FOO" in run.stderr
    run = run_module("train", "--dataset", "shapes", "--set", "IMAGE_MAX_DIMS=64")
    assert run.returncode == 2 and "IMAGE_MAX_DIM" in run.stderr  # names the key, suggests the fix
    run = run_module("train", "--dataset", "coco", "--data", str(tmp_path),
                     "--annotations", str(tmp_path / "none.json"))
    assert run.returncode == 2 and "--annotations: file not found" in run.stderr
    assert "Traceback" not in run.stderr
    run = run_module("train", "--dataset", "shapes", "--set", "NOEQUALS")
    assert run.returncode == 2 and "--set: expected KEY=VALUE" in run.stderr
    run = run_module("export", "--model-dir", str(tmp_path), "--export-dir", str(tmp_path / "e"))
    assert run.returncode == 1 and "no checkpoint" in run.stderr


@pytest.mark.slow
def test_train_export_detect_round_trip(tmp_path, capsys):
    logs = str(tmp_path / "logs")
    assert main(["train", "--dataset", "shapes", "--shapes-count", "4", "--epochs", "1",
                 "--model-dir", logs, *TINY]) == 0
    runs = os.listdir(logs)
    assert len(runs) == 1 and os.path.isfile(os.path.join(logs, runs[0], "config.json"))

    run_dir = os.path.join(logs, runs[0])
    checkpoint = os.path.join(run_dir, sorted(f for f in os.listdir(run_dir) if f.endswith(".h5"))[-1])
    assert main(["export", "--weights", checkpoint, "--export-dir", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "1" / "saved_model.pb").is_file()

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("a.png", (64, 80, 3)), ("b.png", (50, 64, 3))):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(images / name)
    out = tmp_path / "out"
    assert main(["detect", "--model-dir", logs, "--images", str(images), "--output", str(out)]) == 0
    assert (out / "a.png").is_file() and (out / "b.png").is_file()
    with open(out / "detections.json") as f:
        detections = json.load(f)
    assert [i["file_name"] for i in detections["images"]] == ["a.png", "b.png"]
    assert detections["annotations"], "DETECTION_MIN_CONFIDENCE=0 must yield detections"
    for annotation in detections["annotations"]:
        assert annotation["image_id"] in (0, 1) and "counts" in annotation["segmentation"]


def test_imagenet_weights_without_the_file_say_where_to_put_it(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mrcnn_tf", "train", "--dataset", "shapes", "--weights",
                          "imagenet", "--backbone", "resnet50", "--model-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(tmp_path)})
    assert run.returncode == 1
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in run.stderr
    assert os.path.join(str(tmp_path), ".keras", "models") in run.stderr
    assert "BACKBONE_WEIGHTS=PATH" in run.stderr and "Traceback" not in run.stderr
