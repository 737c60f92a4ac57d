"""Training step time of Mask R-CNN on a fixed batch (the data pipeline excluded).

    python benchmarks/train_step.py                 # R50-FPN at 512 and 1024 + small at 128, batch 1 and 2
    python benchmarks/train_step.py --quick         # small backbone at 128, batch 2 (seconds)
    python benchmarks/train_step.py --sizes 512 --batches 1 --with-peers   # and TF Model Garden's step

The batch comes from DataGenerator on ShapesDataset images of the size, built once, so the
data pipeline is excluded: each step is one ``train_on_batch`` (forward, the five losses,
backward, SGD update) of all layers. Each configuration runs in its own process.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (PEER_PACKAGE, add_grid_arguments, grid, median_seconds,  # noqa: E402
                    mixed_precision, peak_memory_mb, print_table, result_rows, run_grid, run_peers)


def measure(backbone, size, batch, repeats, precision="float32"):
    """Median seconds of one ``train_on_batch`` and the peak memory (in a subprocess)."""
    from mrcnn_tf import DataGenerator, MaskRCNN
    from mrcnn_tf.data import ShapesConfig, ShapesDataset

    overrides = {"BACKBONE": backbone, "IMAGES_PER_GPU": batch, "IMAGE_MIN_DIM": size, "IMAGE_MAX_DIM": size,
                 "MIXED_PRECISION": mixed_precision(precision)}
    if backbone != "small":  # the paper's head sizes for the ResNets
        overrides.update(TOP_DOWN_PYRAMID_SIZE=256, RPN_CONV_CHANNELS=256, FPN_CLASSIF_FC_LAYERS_SIZE=1024,
                         MASK_HEAD_CHANNELS=256,
                         TRAIN_ROIS_PER_IMAGE=200, POST_NMS_ROIS_TRAINING=2000, PRE_NMS_LIMIT=6000,
                         RPN_TRAIN_ANCHORS_PER_IMAGE=256, RPN_ANCHOR_SCALES=(32, 64, 128, 256, 512))
    config = ShapesConfig(**overrides)
    dataset = ShapesDataset()
    dataset.load_shapes(batch, size, size, seed=0)
    dataset.prepare()
    model = MaskRCNN("training", config, model_dir="/tmp")
    model.set_trainable("all")
    model.compile(0.001, 0.9)
    batch_inputs = DataGenerator(dataset, config, seed=0)[0]
    seconds = median_seconds(lambda: model.keras_model.train_on_batch(batch_inputs), repeats)
    return {"seconds": seconds, "memory_mb": peak_memory_mb()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_grid_arguments(parser, [512, 1024], ["resnet50"], [1, 2], "small backbone, 128x128, batch 2")
    parser.add_argument("--with-peers", action="store_true",
                        help=f"also time TF Model Garden's Mask R-CNN R50-FPN training step ({PEER_PACKAGE} "
                             f"in its own venv under benchmarks/.peers)")
    args = parser.parse_args(argv)
    defaults = not any(a.startswith(("--sizes", "--backbones", "--batches")) for a in (argv or sys.argv[1:]))
    configurations = grid(args)
    if args.quick:
        configurations, args.repeats = [("small", 128, 2, "float32")], 3
    elif defaults:  # the CPU-sized configuration next to the paper's
        configurations += [("small", 128, batch, "float32") for batch in args.batches]
    results = run_grid(__file__, args, measure, configurations)
    if results is None:
        return 0
    print_table("Mask R-CNN training step (fixed batch, median after 2 warm-up steps)",
                ["backbone", "size", "batch", "precision", "ms/step", "images/s", "peak MB"],
                result_rows(results, lambda r, batch: [f"{r['seconds'] * 1000:.0f}",
                                                       f"{batch / r['seconds']:.2f}",
                                                       f"{r['memory_mb']:.0f}"]))
    if args.with_peers:
        run_peers(results, args.repeats, "training step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
