"""Input pipeline throughput (DataGenerator and to_tf_dataset) next to the training step rates.

    python benchmarks/data_pipeline.py              # balloon + shapes; small 256, R50-FPN 512, 1024
    python benchmarks/data_pipeline.py --model-step-seconds 0.2 9 40   # known s/image per column
    python benchmarks/data_pipeline.py --quick      # shapes at 128, small backbone, a few batches

One column per training configuration (``--columns``, default the small model at 256^2
batch 2 and R50-FPN at 512^2 and 1024^2 batch 1: ``train_step.py``'s model_config). Each
input path builds that configuration's batches, with ``default_augmentation()`` (flip,
scale jitter, colour jitter), from the shared balloon photos (1-2k px JPEGs, VIA polygons
decoded to masks) and from ShapesDataset images drawn at the size:

* ``DataGenerator`` as ``fit`` reads it, through Keras's PyDataset adapter: ``workers=0``
  (built in the training loop's thread), 1 and 2 worker processes (started by
  'forkserver': the generator's TF ops hang in forked processes) and 2 worker threads
  (Keras starts a thread pool only for ``workers > 1``);
* ``mrcnn_tf.data.to_tf_dataset`` (parallel map, prefetch), iterated as ``fit`` does.

Timing starts after the first batch (after one batch per worker process): thread/process
start-up and tracing are excluded. The
training rate is ``train_step.py``'s step (fixed balloon batch; ``--quick``: shapes) run
in a subprocess, unless ``--model-step-seconds`` gives it. Goals (issue #17): the input path
delivers at least 3x the images/s R50-FPN training consumes, and is never the bottleneck
(>= 1x) of the small model.
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, load_dataset, print_table  # noqa: E402

GOALS = {"small": 1.0, "resnet50": 3.0}  # input images/s over training images/s, by backbone
COLUMNS = ("small,256,2", "resnet50,512,1", "resnet50,1024,1")
QUICK_COLUMNS = ("small,128,2",)
PATHS = (("DataGenerator workers=0", {"workers": 0}),
         ("DataGenerator 1 process", {"workers": 1, "use_multiprocessing": True}),
         ("DataGenerator 2 threads", {"workers": 2}),
         ("DataGenerator 2 processes", {"workers": 2, "use_multiprocessing": True}),
         ("to_tf_dataset", None))


def _column(text):
    backbone, size, batch = text.split(",")
    if backbone not in GOALS:
        raise argparse.ArgumentTypeError(f"backbone must be one of {sorted(GOALS)}, got {backbone!r}")
    return backbone, int(size), int(batch)


def generator_images_per_second(dataset, config, batches, **generator_kwargs):
    """Images/s of a seeded, augmenting DataGenerator read through Keras's PyDataset adapter."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from mrcnn_tf import DataGenerator
    from mrcnn_tf.data.augment import default_augmentation

    # Worker processes start (import TensorFlow) together: after one batch from each, all run.
    warmup = generator_kwargs.get("workers", 1) if generator_kwargs.get("use_multiprocessing") else 1
    generator = DataGenerator(dataset, config, seed=0, augmentation=default_augmentation(),
                              batches_per_epoch=batches + warmup, **generator_kwargs)
    adapter = PyDatasetAdapter(generator, shuffle=False)
    adapter.on_epoch_begin()
    iterator = adapter.get_numpy_iterator()
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    elapsed = time.perf_counter() - start
    adapter.on_epoch_end()
    return count * config.BATCH_SIZE / elapsed


def tf_dataset_images_per_second(dataset, config, batches):
    """Images/s of ``to_tf_dataset`` with default_augmentation(), iterated eagerly as fit does."""
    from mrcnn_tf.data import to_tf_dataset
    from mrcnn_tf.data.augment import default_augmentation

    iterator = iter(to_tf_dataset(dataset, config, shuffle=True, augmentation=default_augmentation(), seed=0,
                                  batches_per_epoch=batches + 1).take(batches + 1))
    next(iterator)  # map workers started, the graph traced
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    elapsed = time.perf_counter() - start
    return count * config.BATCH_SIZE / elapsed


def training_seconds_per_image(backbone, size, batch, data, repeats):
    """Seconds per image of one training step: train_step.py's median, in a subprocess."""
    run = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "train_step.py"), "--one",
                          f"{backbone},{size},{batch},float32", "--repeats", str(repeats), "--data", data,
                          "--no-profile"], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"train_step.py {backbone} {size} batch {batch} gave no step time: "
                           f"{(run.stderr or run.stdout)[-500:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])["seconds"] / batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--columns", type=_column, nargs="+", default=None, metavar="BACKBONE,SIZE,BATCH",
                        help=f"training configurations to compare with (default {' '.join(COLUMNS)})")
    parser.add_argument("--data", nargs="+", choices=["balloon", "shapes"], default=["balloon", "shapes"])
    parser.add_argument("--batches", type=int, default=8, help="timed batches per input path and column")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps per column")
    parser.add_argument("--model-step-seconds", type=float, nargs="+",
                        help="training seconds per image, one per column (default: measured now)")
    parser.add_argument("--quick", action="store_true", help="shapes at 128, small backbone, 3 batches")
    args = parser.parse_args(argv)
    if args.quick:
        args.columns = args.columns or [_column(c) for c in QUICK_COLUMNS]
        args.data, args.batches, args.repeats = ["shapes"], 3, 2
    columns = args.columns or [_column(c) for c in COLUMNS]
    if args.model_step_seconds and len(args.model_step_seconds) != len(columns):
        parser.error(f"--model-step-seconds: give one value per column ({len(columns)}), "
                     f"got {len(args.model_step_seconds)}")
    # Before any worker starts: TensorFlow is not fork-safe (DataGenerator refuses 'fork').
    multiprocessing.set_start_method("forkserver", force=True)

    from train_step import model_config

    if args.model_step_seconds:
        step, source = args.model_step_seconds, "given"
    else:
        step_data = "shapes" if args.quick else "balloon"
        step = [training_seconds_per_image(*column, step_data, args.repeats) for column in columns]
        source = f"measured now on a {step_data} batch"
    training_rate = [1.0 / s for s in step]

    rows = []
    for data in args.data:
        datasets = {}
        for label, kwargs in PATHS:
            row = [data, label]
            for (backbone, size, batch), rate in zip(columns, training_rate):
                if (data, size) not in datasets:
                    datasets[data, size] = load_dataset(data, 16, size)
                dataset = datasets[data, size]
                config = model_config(backbone, size, batch, num_classes=dataset.num_classes)
                try:
                    images_s = (tf_dataset_images_per_second(dataset, config, args.batches) if kwargs is None
                                else generator_images_per_second(dataset, config, args.batches, **kwargs))
                except ImportError as error:  # to_tf_dataset not in this checkout
                    row += ["n/a", str(error)[:30]]
                    continue
                ratio = images_s / rate
                row += [f"{images_s:.2f}", f"{ratio:.1f}x {'ok' if ratio >= GOALS[backbone] else 'NO'}"]
            rows.append(row)
    header = ["data", "input path"]
    for backbone, size, batch in columns:
        header += [f"{size}^2 img/s", f"vs {backbone} (>= {GOALS[backbone]:.0f}x)"]
    rates = ", ".join(f"{backbone} {size}^2 b{batch} {rate:.2f}" for (backbone, size, batch), rate
                      in zip(columns, training_rate))
    print_table(f"Input images/s with default_augmentation() vs training images/s ({rates}; {source})",
                header, rows, left=(0, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
