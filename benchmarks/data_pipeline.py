"""DataGenerator throughput with augmentation, next to the model's training step rate.

    python benchmarks/data_pipeline.py              # balloon images at 1024, R50 step rate
    python benchmarks/data_pipeline.py --quick      # shapes at 128, small backbone

Goal: the pipeline delivers at least 3x the images per second that training consumes.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BALLOON = os.environ.get("MRCNN_SHARED_DIR", os.path.join(REPO, "..", "shared"))


def images_per_second(dataset, config, batches, **generator_kwargs):
    from mrcnn_tf import DataGenerator
    from mrcnn_tf.data.augment import default_augmentation

    generator = DataGenerator(dataset, config, seed=0, augmentation=default_augmentation(),
                              batches_per_epoch=batches, **generator_kwargs)
    # Through Keras's own adapter, as fit() consumes it (workers run ahead in threads/processes).
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    adapter = PyDatasetAdapter(generator, shuffle=False)
    adapter.on_epoch_begin()
    start = time.perf_counter()
    count = sum(1 for _ in adapter.get_numpy_iterator())
    elapsed = time.perf_counter() - start
    adapter.on_epoch_end()
    return count * config.BATCH_SIZE / elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--model-step-seconds", type=float,
                        help="training step time to compare with (default: measured now, R50 batch 1)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    from mrcnn_tf.data import ShapesConfig, ShapesDataset, ViaDataset

    if args.quick:
        config = ShapesConfig(IMAGES_PER_GPU=2)
        dataset = ShapesDataset()
        dataset.load_shapes(16, 128, 128, seed=0)
        dataset.prepare()
        step_args = ["--quick"]
        args.batches = 4
    else:
        config = ShapesConfig(NAME="balloon", NUM_CLASSES=2, IMAGES_PER_GPU=1, IMAGE_MIN_DIM=args.size,
                              IMAGE_MAX_DIM=args.size, RPN_ANCHOR_SCALES=(32, 64, 128, 256, 512))
        dataset = ViaDataset.from_directory(os.path.join(BALLOON, "data", "balloon", "train"))
        step_args = ["--sizes", str(args.size), "--batches", "1", "--repeats", "3"]

    rows = []
    for label, kwargs in (("1 worker", {}), ("2 threads", {"workers": 2}),
                          ("2 processes", {"workers": 2, "use_multiprocessing": True})):
        rows.append([label, f"{images_per_second(dataset, config, args.batches, **kwargs):.2f}"])

    step = args.model_step_seconds
    if step is None:
        run = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "train_step.py"), *step_args],
                             capture_output=True, text=True)
        line = [l for l in run.stdout.splitlines() if l.strip() and l.split()[0] in ("small", "resnet50")]
        fields = line[-1].split() if line else []
        step = float(fields[3]) / 1000 / int(fields[2]) if fields and fields[3] != "failed" else float("nan")
    training_rate = 1.0 / step
    for row in rows:
        row.append(f"{float(row[1]) / training_rate:.1f}x")
    print_table(f"DataGenerator with augmentation ({dataset.__class__.__name__}, "
                f"training consumes {training_rate:.2f} images/s)",
                ["workers", "images/s", "vs training"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
