"""The benchmark scripts run with --quick and print their figures.

Only the presence of the figures is checked (positive, finite), never a time: the
numbers depend on the machine and its load.
"""

import math
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_quick(script, *extra):
    run = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), "--quick", *extra],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def table(out, title_start):
    """{first column: {header: cell}} of the table whose title starts with ``title_start``."""
    lines = out.splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith(title_start)]
    header = re.split(r"\s{2,}", lines[start + 1].strip())
    rows = {}
    for line in lines[start + 3:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(header), (header, line)
        rows[cells[0]] = dict(zip(header, cells))
    return lines[start], rows


def figure(cell):
    value = float(cell.rstrip("x%"))
    assert value > 0 and math.isfinite(value), cell
    return value


@pytest.mark.slow
def test_inference_benchmark_prints_latency_flops_peak_and_memory():
    title, rows = table(run_quick("inference.py"), "Mask R-CNN inference")
    assert "FLOPs by the TF profiler" in title
    row = rows["small"]
    assert (row["size"], row["batch"]) == ("256", "1")
    for column in ("ms/batch", "images/s", "GFLOP", "GFLOP/s", "matmul peak GFLOP/s", "% of peak",
                   "backbone+FPN % of peak", "peak MB"):
        figure(row[column])
    assert figure(row["images/s"]) == pytest.approx(1000 / figure(row["ms/batch"]), rel=0.05)


@pytest.mark.slow
def test_train_step_benchmark_prints_step_time_and_memory():
    _, rows = table(run_quick("train_step.py"), "Mask R-CNN training step")
    row = rows["small"]
    assert row["size"] == "128"
    for column in ("ms/step", "images/s", "peak MB"):
        figure(row[column])


@pytest.mark.slow
def test_data_pipeline_benchmark_compares_with_training():
    # The training step rate is given (train_step.py --quick is run by the test above).
    title, rows = table(run_quick("data_pipeline.py", "--model-step-seconds", "0.05"), "DataGenerator")
    assert "training consumes 20.00 images/s" in title, title
    assert set(rows) == {"1 worker", "2 threads", "2 processes"}
    for row in rows.values():
        rate, ratio = figure(row["images/s"]), figure(row["vs training"])
        assert ratio == pytest.approx(rate / 20.0, abs=0.06)
        assert row[">= 3x"] == ("yes" if rate / 20.0 >= 3 else "no")


@pytest.mark.slow
def test_detect_benchmark_prints_each_part_and_detect():
    title, rows = table(run_quick("detect.py"), "detect(), median seconds")
    assert "480x640 (HxW)" in title, title
    for stage in ("pre-processing", "graph", "post-processing", "mask pasting (in post)",
                  "conversion to dicts", "detect() end to end", "detections", "box Mpixels pasted"):
        row = rows[stage]
        assert (row["backbone"], row["size"], row["batch"]) == ("small", "256", "1")
        figure(row["new s"])
