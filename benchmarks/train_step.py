"""Training step time of Mask R-CNN on a fixed batch (the data pipeline excluded).

    python benchmarks/train_step.py                 # R50-FPN at 512 and 1024 + small at 128, batch 1 and 2
    python benchmarks/train_step.py --quick         # small backbone at 128, batch 2 (seconds)
    python benchmarks/train_step.py --sizes 512 --batches 1 --with-peers   # and TF Model Garden's step
    python benchmarks/train_step.py --data balloon  # the batch from the balloon photos
    python benchmarks/train_step.py --no-profile    # without the per-op tables

The batch comes from DataGenerator (no augmentation, seed 0), built once, so the data
pipeline is excluded: ShapesDataset images of the size, or with ``--data balloon`` the
first photos of the shared balloon set (1-2k px JPEGs, molded to the size). Each step is
one ``train_on_batch`` (forward, the five losses, backward, SGD update) of all layers. Each
configuration runs in its own process. With ``--profile`` (the default) one more step runs
under the TF profiler after the timed ones, and the five most expensive ops by type and by
name (the name shows the layer; ``gradient_tape/...`` is its backward pass) are printed.
"""

import argparse
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (DATA_SOURCES, PEER_PACKAGE, add_grid_arguments, grid, load_dataset,  # noqa: E402
                    median_seconds, mixed_precision, peak_memory_mb, print_table, result_rows, run_grid,
                    run_peers)

TOP_OPS = 5


def model_config(backbone, size, batch, precision="float32", num_classes=None):
    """The benchmarked Config: ShapesConfig's settings with ``backbone`` at ``size``^2,
    the paper's head sizes for the ResNets; ``num_classes`` (with background) for
    another dataset, the model being otherwise the same."""
    from mrcnn_tf.data import ShapesConfig

    overrides = {"BACKBONE": backbone, "IMAGES_PER_GPU": batch, "IMAGE_MIN_DIM": size, "IMAGE_MAX_DIM": size,
                 "MIXED_PRECISION": mixed_precision(precision)}
    if num_classes is not None:
        overrides["NUM_CLASSES"] = num_classes
    if backbone != "small":  # the paper's head sizes for the ResNets
        overrides.update(TOP_DOWN_PYRAMID_SIZE=256, RPN_CONV_CHANNELS=256, FPN_CLASSIF_FC_LAYERS_SIZE=1024,
                         MASK_HEAD_CHANNELS=256,
                         TRAIN_ROIS_PER_IMAGE=200, POST_NMS_ROIS_TRAINING=2000, PRE_NMS_LIMIT=6000,
                         RPN_TRAIN_ANCHORS_PER_IMAGE=256, RPN_ANCHOR_SCALES=(32, 64, 128, 256, 512))
    return ShapesConfig(**overrides)


def measure(backbone, size, batch, repeats, precision="float32", data="shapes", profile=True):
    """Median seconds of one ``train_on_batch``, the peak memory and (``profile``) the
    top ops of one profiled step (in a subprocess)."""
    from mrcnn_tf import DataGenerator, MaskRCNN

    dataset = load_dataset(data, batch, size)
    config = model_config(backbone, size, batch, precision, num_classes=dataset.num_classes)
    model = MaskRCNN("training", config, model_dir="/tmp")
    model.set_trainable("all")
    model.compile(0.001, 0.9)
    batch_inputs = DataGenerator(dataset, config, shuffle=False, seed=0)[0]
    step = functools.partial(model.keras_model.train_on_batch, batch_inputs)
    result = {"seconds": median_seconds(step, repeats), "memory_mb": peak_memory_mb()}
    if profile:
        from op_profile import profile_ops

        result["profile"] = profile_ops(step, steps=1, top=TOP_OPS)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_grid_arguments(parser, [512, 1024], ["resnet50"], [1, 2], "small backbone, 128x128, batch 2")
    parser.add_argument("--with-peers", action="store_true",
                        help=f"also time TF Model Garden's Mask R-CNN R50-FPN training step ({PEER_PACKAGE} "
                             f"in its own venv under benchmarks/.peers)")
    parser.add_argument("--data", choices=DATA_SOURCES, default="shapes",
                        help="images of the fixed batch: synthetic shapes, or the shared balloon photos")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                        help=f"print the {TOP_OPS} most expensive ops of one profiled step (TF profiler)")
    args = parser.parse_args(argv)
    defaults = not any(a.startswith(("--sizes", "--backbones", "--batches")) for a in (argv or sys.argv[1:]))
    configurations = grid(args)
    if args.quick:
        configurations, args.repeats = [("small", 128, 2, "float32")], 3
    elif defaults:  # the CPU-sized configuration next to the paper's
        configurations += [("small", 128, batch, "float32") for batch in args.batches]
    child_args = ["--data", args.data, "--profile" if args.profile else "--no-profile"]
    results = run_grid(__file__, args, functools.partial(measure, data=args.data, profile=args.profile),
                       configurations, child_args=child_args)
    if results is None:
        return 0
    print_table(f"Mask R-CNN training step ({args.data} batch, fixed; median after 2 warm-up steps)",
                ["backbone", "size", "batch", "precision", "ms/step", "images/s", "peak MB"],
                result_rows(results, lambda r, batch: [f"{r['seconds'] * 1000:.0f}",
                                                       f"{batch / r['seconds']:.2f}",
                                                       f"{r['memory_mb']:.0f}"]))
    if args.profile:
        from op_profile import print_op_tables

        for backbone, size, batch, precision, r, _ in results:
            if r:
                print_op_tables(r["profile"], f"{backbone} {size}x{size} batch {batch} {precision}", TOP_OPS)
    if args.with_peers:
        run_peers(results, args.repeats, "training step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
