"""The samples run from the command line: --help, and a tiny balloon train + splash."""

import os
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
