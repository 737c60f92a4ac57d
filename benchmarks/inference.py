"""Inference latency and throughput of Mask R-CNN, next to the machine's matmul peak.

    python benchmarks/inference.py                       # R50/R101-FPN at 640 and 1024
    python benchmarks/inference.py --quick               # small backbone at 256 (seconds)

Each configuration runs in a fresh subprocess so its peak memory is its own. FLOPs are
counted by TF's profiler on the traced graph (float operations of every op).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (add_grid_arguments, matmul_peak_gflops, median_seconds,  # noqa: E402
                    peak_memory_mb, print_table, run_grid)


def graph_gflops(concrete_function):
    """Float operations of one call of a concrete function, in GFLOP."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = model_analyzer.profile(concrete_function.graph, options=options)
    return profile.total_float_ops / 1e9


def measure(backbone, size, batch, repeats):
    """One configuration: latency, FLOPs, backbone+FPN share, memory (run in a subprocess)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from mrcnn_tf import Config, MaskRCNN
    from mrcnn_tf.model.inference import mold_inputs

    class BenchConfig(Config):
        NAME = "bench"
        NUM_CLASSES = 81
        BACKBONE = backbone
        IMAGES_PER_GPU = batch
        IMAGE_MIN_DIM = size
        IMAGE_MAX_DIM = size
        DETECTION_MIN_CONFIDENCE = 0.0

    model = MaskRCNN("inference", BenchConfig(), model_dir="/tmp")
    images = [np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8) for i in range(batch)]
    molded, metas, _ = mold_inputs(images, model.config)
    inputs = {"input_image": tf.constant(molded), "input_image_meta": tf.constant(metas)}
    forward = tf.function(lambda x: model.keras_model(x, training=False), reduce_retracing=True)
    seconds = median_seconds(lambda: tf.nest.map_structure(lambda t: t.numpy(), forward(inputs)), repeats)

    features = keras.Model(model.keras_model.inputs["input_image"] if isinstance(model.keras_model.inputs, dict)
                           else model.keras_model.input["input_image"],
                           [model.keras_model.get_layer(f"fpn_p{i}").output for i in range(2, 6)])
    backbone_fn = tf.function(lambda x: features(x, training=False))
    backbone_seconds = median_seconds(lambda: [t.numpy() for t in backbone_fn(inputs["input_image"])], repeats)
    total_gflop = graph_gflops(forward.get_concrete_function(inputs))
    backbone_gflop = graph_gflops(backbone_fn.get_concrete_function(inputs["input_image"]))
    return {"seconds": seconds, "gflop": total_gflop, "backbone_seconds": backbone_seconds,
            "backbone_gflop": backbone_gflop, "memory_mb": peak_memory_mb()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_grid_arguments(parser, [640, 1024], ["resnet50", "resnet101"], [1, 4],
                       "small backbone, 256x256, batch 1")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.backbones, args.batches, args.repeats = [256], ["small"], [1], 3
    peak = None if args.one else matmul_peak_gflops()

    def format_row(r, batch):
        return [f"{r['seconds'] * 1000:.0f}", f"{batch / r['seconds']:.2f}", f"{r['gflop']:.1f}",
                f"{r['gflop'] / r['seconds']:.0f}",
                f"{100 * r['backbone_gflop'] / r['backbone_seconds'] / peak:.0f}%", f"{r['memory_mb']:.0f}"]

    rows = run_grid(__file__, args, measure, format_row)
    if rows is not None:
        print_table(f"Mask R-CNN inference (tf.matmul peak measured now: {peak:.0f} GFLOP/s)",
                    ["backbone", "size", "batch", "ms/batch", "images/s", "GFLOP", "GFLOP/s",
                     "backbone+FPN % of peak", "peak MB"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
