"""Training step time of Mask R-CNN on a fixed batch (the data pipeline excluded).

    python benchmarks/train_step.py                 # R50-FPN at 512 and 1024, batch 1 and 2
    python benchmarks/train_step.py --quick         # small backbone at 128 (seconds)
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_grid_arguments, median_seconds, peak_memory_mb, print_table, run_grid  # noqa: E402


def measure(backbone, size, batch, repeats):
    """Median seconds of one ``train_on_batch`` and the peak memory (in a subprocess)."""
    from mrcnn_tf import DataGenerator, MaskRCNN
    from mrcnn_tf.data import ShapesConfig, ShapesDataset

    overrides = {"BACKBONE": backbone, "IMAGES_PER_GPU": batch, "IMAGE_MIN_DIM": size, "IMAGE_MAX_DIM": size}
    if backbone != "small":  # the paper's head sizes for the ResNets
        overrides.update(TOP_DOWN_PYRAMID_SIZE=256, FPN_CLASSIF_FC_LAYERS_SIZE=1024, MASK_HEAD_CHANNELS=256,
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
    add_grid_arguments(parser, [512, 1024], ["resnet50"], [1, 2], "small backbone, 128x128, batch 4")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.backbones, args.batches, args.repeats = [128], ["small"], [4], 3
    rows = run_grid(__file__, args, measure, lambda r, batch: [
        f"{r['seconds'] * 1000:.0f}", f"{batch / r['seconds']:.2f}", f"{r['memory_mb']:.0f}"])
    if rows is not None:
        print_table("Mask R-CNN training step (fixed batch, median)",
                    ["backbone", "size", "batch", "ms/step", "images/s", "peak MB"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
