"""DataGenerator throughput with augmentation, next to the model's training step rate.

    python benchmarks/data_pipeline.py              # balloon images at 1024, R50-FPN step rate
    python benchmarks/data_pipeline.py --model-step-seconds 4.2   # compare with a known step time
    python benchmarks/data_pipeline.py --quick      # shapes at 128, small backbone

The generator runs as ``fit`` consumes it, through Keras's PyDataset adapter: ``workers=1``
(batches built in the training loop's thread), ``workers=2`` threads, and ``workers=2`` with
``use_multiprocessing`` (processes started by 'forkserver': the generator's TF ops hang in
forked processes). Each batch: load JPEG, decode the VIA polygons to masks,
``default_augmentation()`` (flip, scale jitter, crop, colour jitter), resize/pad to
IMAGE_MAX_DIM, RPN targets. Timing starts at the first batch (thread/process start-up
excluded). The training rate is ``train_step.py``'s R50-FPN, batch 1, at the same size,
measured in the same run unless ``--model-step-seconds`` is given.

Goal: the pipeline delivers at least 3x the images per second that training consumes.
"""

import argparse
import multiprocessing
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("MRCNN_SHARED_DIR", os.path.join(REPO, "..", "shared"))
GOAL = 3.0
SETTINGS = (("1 worker", {}), ("2 threads", {"workers": 2}),
            ("2 processes", {"workers": 2, "use_multiprocessing": True}))


def images_per_second(dataset, config, batches, **generator_kwargs):
    """Images/s of a seeded, augmenting DataGenerator read through Keras's PyDataset adapter."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from mrcnn_tf import DataGenerator
    from mrcnn_tf.data.augment import default_augmentation

    generator = DataGenerator(dataset, config, seed=0, augmentation=default_augmentation(),
                              batches_per_epoch=batches + 1, **generator_kwargs)
    adapter = PyDatasetAdapter(generator, shuffle=False)
    adapter.on_epoch_begin()
    iterator = adapter.get_numpy_iterator()
    next(iterator)  # workers started and running
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    elapsed = time.perf_counter() - start
    adapter.on_epoch_end()
    return count * config.BATCH_SIZE / elapsed


def training_step_seconds(step_args):
    """Seconds per image of one training step, from train_step.py in a subprocess."""
    run = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "train_step.py"), *step_args],
                         capture_output=True, text=True)
    rows = [l.split() for l in run.stdout.splitlines() if l.strip().startswith(("small", "resnet50"))]
    if not rows or rows[-1][3] == "failed":
        raise RuntimeError(f"train_step.py gave no step time: {(run.stderr or run.stdout)[-500:]}")
    return float(rows[-1][3]) / 1000 / int(rows[-1][2])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="IMAGE_MAX_DIM (square molding)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per setting")
    parser.add_argument("--model-step-seconds", type=float,
                        help="training step time per image to compare with (default: measured now, "
                             "R50-FPN batch 1 at --size)")
    parser.add_argument("--quick", action="store_true", help="shapes at 128, small backbone")
    args = parser.parse_args(argv)
    # Before any worker starts: TensorFlow is not fork-safe (DataGenerator refuses 'fork').
    multiprocessing.set_start_method("forkserver", force=True)

    from mrcnn_tf import Config
    from mrcnn_tf.data import ShapesConfig, ShapesDataset, ViaDataset

    if args.quick:
        config = ShapesConfig(IMAGES_PER_GPU=2)
        dataset = ShapesDataset()
        dataset.load_shapes(16, 128, 128, seed=0)
        dataset.prepare()
        step_args, args.batches = ["--quick"], 4
    else:  # matterport's balloon settings, at --size
        config = Config(NAME="balloon", NUM_CLASSES=2, IMAGES_PER_GPU=1, IMAGE_MIN_DIM=min(800, args.size),
                        IMAGE_MAX_DIM=args.size)
        dataset = ViaDataset.from_directory(os.path.join(SHARED, "data", "balloon", "train"))
        step_args = ["--backbones", "resnet50", "--sizes", str(args.size), "--batches", "1", "--repeats", "3"]

    rows = [[label, f"{images_per_second(dataset, config, args.batches, **kwargs):.2f}"]
            for label, kwargs in SETTINGS]
    source = "given"
    step = args.model_step_seconds
    if step is None:
        step, source = training_step_seconds(step_args), "measured now"
    training_rate = 1.0 / step
    for row in rows:
        ratio = float(row[1]) / training_rate
        row += [f"{ratio:.1f}x", "yes" if ratio >= GOAL else "no"]
    print_table(f"DataGenerator with augmentation ({type(dataset).__name__}, {len(dataset.image_ids)} images, "
                f"{config.IMAGE_MAX_DIM}x{config.IMAGE_MAX_DIM}); training consumes {training_rate:.2f} "
                f"images/s ({step:.2f} s/image, {source})",
                ["workers", "images/s", "vs training", f">= {GOAL:.0f}x"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
