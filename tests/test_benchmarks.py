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


def table(out, title_start, key_columns=1):
    """{first column (or tuple of the first ``key_columns``): {header: cell}} of the table
    whose title starts with ``title_start``."""
    lines = out.splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith(title_start)]
    header = re.split(r"\s{2,}", lines[start + 1].strip())
    rows = {}
    for line in lines[start + 3:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(header), (header, line)
        rows[cells[0] if key_columns == 1 else tuple(cells[:key_columns])] = dict(zip(header, cells))
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
    for column in ("params M", "ms/batch", "images/s", "GFLOP", "GFLOP/s", "matmul peak GFLOP/s", "% of peak",
                   "backbone+FPN % of peak", "peak MB"):
        figure(row[column])
    assert figure(row["images/s"]) == pytest.approx(1000 / figure(row["ms/batch"]), rel=0.05)


def _hand_built_trace():
    """A host plane, one thread: a While op (0-100 ps) holding a MatMul (10-40) and an Add
    (50-60), executor and eager-launcher events around them, and a MatMul on a second thread."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    names = ["ExecutorState::Process", "EagerLocalExecute: __inference_step_1", "head/while:While",
             "head/fc/MatMul:MatMul", "head/add:Add", "mask/MatMul:_MklMatMul"]
    for i, name in enumerate(names, start=1):
        plane.event_metadata[i].name = name
    thread = plane.lines.add(name="tf_Compute/1")
    for metadata_id, offset, duration in [(1, 0, 100), (2, 0, 100), (3, 0, 100), (4, 10, 30), (5, 50, 10)]:
        thread.events.add(metadata_id=metadata_id, offset_ps=offset, duration_ps=duration)
    plane.lines.add(name="tf_Compute/2").events.add(metadata_id=6, offset_ps=20, duration_ps=25)
    return space


@pytest.mark.slow
def test_train_step_benchmark_prints_step_time_memory_and_top_ops():
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from op_profile import _op_self_times

    # Self time = duration minus the nested ops; scheduling and the step's launcher left out.
    assert {key: tuple(v) for key, v in _op_self_times(_hand_built_trace()).items()} == {
        ("head/while", "While"): (1, 100 - 30 - 10), ("head/fc/MatMul", "MatMul"): (1, 30),
        ("head/add", "Add"): (1, 10), ("mask/MatMul", "_MklMatMul"): (1, 25)}

    out = run_quick("train_step.py")
    _, rows = table(out, "Mask R-CNN training step")
    row = rows["small"]
    assert row["size"] == "128"
    for column in ("ms/step", "images/s", "peak MB"):
        figure(row[column])
    title, types = table(out, "Top 5 op types, small 128x128 batch 2 float32")
    step_ms, op_ms = (float(x) for x in re.findall(r"(\d+) ms", title))
    # Two inter-op threads: the ops' self times add up to between a fraction and twice the step.
    assert 0.3 * step_ms < op_ms < 2.5 * step_ms, title
    shares = [figure(r["% of op time"]) for r in types.values()]
    assert len(shares) == 5 and shares == sorted(shares, reverse=True) and sum(shares) <= 100
    assert any("Conv2D" in op_type for op_type in types), types  # a conv net's step is convolutions
    _, names = table(out, "Top 5 ops by name, small 128x128 batch 2 float32")
    # Layer paths; on a loaded machine an unscoped op (a function call, the iterator) can
    # also reach the top 5, so most, not all, must be paths.
    assert len(names) == 5 and sum("/" in name for name in names) >= 3, names


@pytest.mark.slow
def test_data_pipeline_benchmark_compares_with_training():
    # The training step rate is given (train_step.py --quick is run by the test above).
    title, rows = table(run_quick("data_pipeline.py", "--model-step-seconds", "0.05"), "Input images/s",
                        key_columns=2)
    assert "small 128^2 b2 20.00; given" in title, title
    assert set(rows) == {("shapes", f"DataGenerator {w}") for w in
                         ("workers=0", "1 process", "2 threads", "2 processes")} | {("shapes", "to_tf_dataset")}
    for row in rows.values():
        rate = figure(row["128^2 img/s"])
        ratio, verdict = row["vs small (>= 1x)"].split()
        assert figure(ratio) == pytest.approx(rate / 20.0, abs=0.06)
        assert verdict == ("ok" if rate / 20.0 >= 1 else "NO")


@pytest.mark.slow
def test_detect_benchmark_prints_each_part_and_detect():
    title, rows = table(run_quick("detect.py"), "detect(), median seconds")
    assert "480x640 (HxW)" in title, title
    for stage in ("pre-processing", "graph", "post-processing", "mask pasting (in post)",
                  "conversion to dicts", "detect() end to end", "detections", "box Mpixels pasted"):
        row = rows[stage]
        assert (row["backbone"], row["size"], row["batch"]) == ("small", "256", "1")
        figure(row["new s"])
