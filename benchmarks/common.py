"""Shared pieces of the benchmark scripts: timing, the matmul peak, memory, tables."""

import os
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402


def median_seconds(fn, repeats, warmup=2):
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(size=2048, repeats=5):
    """Achieved float32 GFLOP/s of a square tf.matmul on this machine, now."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    step = tf.function(lambda: tf.matmul(a, b))
    seconds = median_seconds(lambda: step().numpy(), repeats)
    return 2.0 * size ** 3 / seconds / 1e9


def peak_memory_mb():
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def print_table(title, header, rows):
    """A plain aligned table, one row per configuration."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
