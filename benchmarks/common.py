"""Shared pieces of the benchmark scripts: timing, the matmul peak, memory, tables."""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS_DIR = os.path.join(HERE, ".peers")
PEER_PACKAGE = "tf-models-official"
REPO = os.path.dirname(HERE)
SHARED = os.environ.get("MRCNN_SHARED_DIR", os.path.join(REPO, "..", "shared"))
BALLOON_TRAIN = os.path.join(SHARED, "data", "balloon", "train")
DATA_SOURCES = ("shapes", "balloon")


def load_dataset(source, count, size):
    """A prepared Dataset: ``count`` ShapesDataset images of ``size`` px (seed 0), or the
    balloon training photos (VIA polygons, 1-2k px JPEGs; all of them, ``count`` ignored)."""
    if source == "shapes":
        from mrcnn_tf.data import ShapesDataset

        dataset = ShapesDataset()
        dataset.load_shapes(count, size, size, seed=0)
        dataset.prepare()
        return dataset
    if source == "balloon":
        from mrcnn_tf.data import ViaDataset

        if not os.path.isdir(BALLOON_TRAIN):
            raise FileNotFoundError(f"--data balloon: {BALLOON_TRAIN} not found (set MRCNN_SHARED_DIR to the "
                                    "directory holding data/balloon/train)")
        return ViaDataset.from_directory(BALLOON_TRAIN)
    raise ValueError(f"data source must be one of {DATA_SOURCES}, got {source!r}")


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


def print_table(title, header, rows, left=()):
    """A plain aligned table, one row per configuration; columns ``left`` (indices) left-aligned."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) if i in left else str(x).rjust(w)
                        for i, (x, w) in enumerate(zip(row, widths))).rstrip())


def add_grid_arguments(parser, sizes, backbones, batches, quick_help):
    """The options every model benchmark takes: which configurations, how often."""
    parser.add_argument("--sizes", type=int, nargs="+", default=sizes)
    parser.add_argument("--backbones", nargs="+", default=backbones)
    parser.add_argument("--batches", type=int, nargs="+", default=batches)
    parser.add_argument("--precisions", nargs="+", default=["float32"],
                        choices=["float32", "mixed_bfloat16", "mixed_float16"],
                        help="Keras dtype policies (the model's MIXED_PRECISION)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration


def grid(args):
    """(backbone, size, batch, precision) for every combination of the grid arguments."""
    return [(backbone, size, batch, precision) for precision in args.precisions
            for backbone in args.backbones for size in args.sizes for batch in args.batches]


def mixed_precision(precision):
    """The Config value MIXED_PRECISION for a --precisions entry."""
    return None if precision == "float32" else precision


def run_grid(script, args, measure, configurations=None, child_args=(), env=None):
    """Each (backbone, size, batch, precision) measured in its own process, so peak memory is its own.

    ``child_args`` are added to each child's command line, ``env`` (default: this
    process's) is its environment.
    Returns ``[(backbone, size, batch, precision, result dict or None, failure reason)]``.
    With ``--one`` (the child side) prints ``measure``'s JSON and returns None.
    """
    if args.one:
        backbone, size, batch, precision = args.one.split(",")
        print(json.dumps(measure(backbone, int(size), int(batch), args.repeats, precision)))
        return None
    results = []
    for backbone, size, batch, precision in configurations or grid(args):
        run = subprocess.run([sys.executable, script, "--one", f"{backbone},{size},{batch},{precision}",
                              "--repeats", str(args.repeats), *child_args],
                             capture_output=True, text=True, env=env)
        if run.returncode != 0:
            reason = (run.stderr.strip().splitlines() or ["?"])[-1][:80]
            results.append((backbone, size, batch, precision, None, reason))
            continue
        results.append((backbone, size, batch, precision,
                        json.loads(run.stdout.strip().splitlines()[-1]), ""))
    return results


def result_rows(results, format_row):
    """Table rows: the configuration, then ``format_row(result, batch)`` or the failure."""
    return [[backbone, size, batch, precision,
             *(format_row(result, batch) if result else ["failed", reason])]
            for backbone, size, batch, precision, result, reason in results]


def peer_python():
    """The peers' venv python with tf-models-official, created on first use; (path, None) or (None, reason)."""
    venv = os.path.join(PEERS_DIR, "venv")
    python = os.path.join(venv, "bin", "python")
    check = [python, "-c", "import official.vision.modeling.factory"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        return python, None
    print(f"setting up {venv} with {PEER_PACKAGE} (pins its own TensorFlow; a few minutes)...", flush=True)
    for command in ([sys.executable, "-m", "venv", venv],
                    [python, "-m", "pip", "install", "--quiet", PEER_PACKAGE]):
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f"{' '.join(command[-2:])}: {error}"
        if run.returncode != 0:
            lines = [l for l in (run.stderr + run.stdout).splitlines() if "ERROR" in l or "rror" in l]
            return None, f"{' '.join(command[-2:])} failed: {(lines or ['exit ' + str(run.returncode)])[-1][:200]}"
    if subprocess.run(check, capture_output=True).returncode != 0:
        return None, f"{PEER_PACKAGE} installed but official.vision does not import"
    return python, None


def run_peers(results, repeats, what):
    """Time Model Garden's R50-FPN ``what`` ("inference" or "training step") at our float32
    resnet50 configurations, in the peers' venv; print both times and the ratios."""
    ours = [(size, batch, r) for backbone, size, batch, precision, r, _ in results
            if backbone == "resnet50" and precision == "float32" and r]
    if not ours:
        print("\n--with-peers: no resnet50 configuration measured to compare with")
        return
    python, reason = peer_python()
    if python is None:
        print(f"\n--with-peers: TF Model Garden not timed ({reason})")
        return
    rows = []
    for size, batch, r in ours:
        command = [python, os.path.join(HERE, "peer_model_garden.py"), "--size", str(size),
                   "--batch", str(batch), "--repeats", str(repeats)]
        run = subprocess.run(command + (["--train"] if what != "inference" else []),
                             capture_output=True, text=True)
        if run.returncode != 0:
            rows.append(["resnet50", size, batch, f"{r['seconds'] * 1000:.0f}", "failed",
                         (run.stderr.strip().splitlines() or ["?"])[-1][:60], ""])
            continue
        peer = json.loads(run.stdout.strip().splitlines()[-1])
        rows.append(["resnet50", size, batch, f"{r['seconds'] * 1000:.0f}", f"{peer['seconds'] * 1000:.0f}",
                     f"{peer['seconds'] / r['seconds']:.2f}x", f"TF {peer['tensorflow']}"])
    print_table(f"Ours vs TF Model Garden Mask R-CNN R50-FPN, {what} (random weights, same images; "
                "ratio > 1: ours is faster)",
                ["backbone", "size", "batch", "ours ms", "Model Garden ms", "MG / ours", "peer env"], rows)
