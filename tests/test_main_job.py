"""The README's main command, at a tiny size: every stage runs and reports."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_main_job_trains_evaluates_draws_exports_and_queries(tmp_path):
    script = os.path.join(REPO, "samples", "shapes", "train_shapes.py")
    run = subprocess.run(
        [sys.executable, script, "--output", str(tmp_path), "--epochs", "5", "--steps", "2",
         "--train-images", "8", "--val-images", "4"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert re.search(r"^untrained mask mAP@0\.5: \d\.\d{3}$", out, re.M), out
    assert re.search(r"^mask mAP@0\.5: \d\.\d{3} \(untrained: \d\.\d{3}\)$", out, re.M), out
    assert os.path.getsize(tmp_path / "detections.png") > 1000
    assert (tmp_path / "export" / "1" / "saved_model.pb").is_file()
    assert re.search(r"^SavedModel answered \d+ detections", out, re.M), out
    checkpoints = [f for _, _, files in os.walk(tmp_path / "logs") for f in files if f.endswith(".h5")]
    assert len(checkpoints) == 5  # one per epoch across both stages
