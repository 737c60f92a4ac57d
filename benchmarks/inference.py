"""Inference latency and throughput of Mask R-CNN, next to the machine's matmul peak.

    python benchmarks/inference.py                       # R50/R101-FPN at 640 and 1024
    python benchmarks/inference.py --quick               # small backbone at 256 (seconds)

Each configuration runs in a fresh subprocess so its peak memory is its own. FLOPs are
counted by TF's profiler on the traced graph (float operations of every op).
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import matmul_peak_gflops, median_seconds, peak_memory_mb, print_table  # noqa: E402


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
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1024])
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "resnet101"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small backbone, 256x256, batch 1")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration
    args = parser.parse_args(argv)
    if args.one:
        backbone, size, batch = args.one.split(",")
        print(json.dumps(measure(backbone, int(size), int(batch), args.repeats)))
        return 0
    if args.quick:
        args.sizes, args.backbones, args.batches, args.repeats = [256], ["small"], [1], 3

    peak = matmul_peak_gflops()
    rows = []
    for backbone in args.backbones:
        for size in args.sizes:
            for batch in args.batches:
                run = subprocess.run([sys.executable, __file__, "--one", f"{backbone},{size},{batch}",
                                      "--repeats", str(args.repeats)], capture_output=True, text=True)
                if run.returncode != 0:
                    rows.append([backbone, size, batch, "failed", run.stderr.strip().splitlines()[-1][:60],
                                 "", "", "", ""])
                    continue
                r = json.loads(run.stdout.strip().splitlines()[-1])
                achieved = r["gflop"] / r["seconds"]
                backbone_achieved = r["backbone_gflop"] / r["backbone_seconds"]
                rows.append([backbone, size, batch, f"{r['seconds'] * 1000:.0f}", f"{batch / r['seconds']:.2f}",
                             f"{r['gflop']:.1f}", f"{achieved:.0f}", f"{100 * backbone_achieved / peak:.0f}%",
                             f"{r['memory_mb']:.0f}"])
    print_table(f"Mask R-CNN inference (tf.matmul peak measured now: {peak:.0f} GFLOP/s)",
                ["backbone", "size", "batch", "ms/batch", "images/s", "GFLOP", "GFLOP/s",
                 "backbone+FPN % of peak", "peak MB"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
