"""The benchmark scripts run and print their figures (never asserted against a time)."""

import math
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_quick(script):
    run = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), "--quick"],
                         capture_output=True, text=True, timeout=900,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def numbers(line):
    return [float(x.rstrip("x%")) for x in line.split() if re.fullmatch(r"[\d.]+[x%]?", x)]


@pytest.mark.slow
@pytest.mark.parametrize("script, first_column, columns", [
    ("inference.py", "small", 8), ("train_step.py", "small", 5)])
def test_benchmark_prints_a_row_of_positive_figures(script, first_column, columns):
    out = run_quick(script)
    rows = [line for line in out.splitlines() if line.strip().startswith(first_column)]
    assert len(rows) == 1, out
    values = numbers(rows[0])
    assert len(values) == columns and all(v > 0 and math.isfinite(v) for v in values), rows[0]


@pytest.mark.slow
def test_data_pipeline_benchmark_compares_with_training():
    out = run_quick("data_pipeline.py")
    assert re.search(r"training consumes [\d.]+ images/s", out), out
    for label in ("1 worker", "2 threads", "2 processes"):
        (line,) = [l for l in out.splitlines() if l.strip().startswith(label)]
        rate, ratio = numbers(line)[-2:]
        assert rate > 0 and ratio > 0, line
