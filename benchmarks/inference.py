"""Inference latency and throughput of Mask R-CNN, next to the machine's matmul peak.

    python benchmarks/inference.py                       # R50/R101-FPN at 640 and 1024, batch 1 and 4
    python benchmarks/inference.py --quick               # small backbone at 256 (seconds)
    python benchmarks/inference.py --with-peers          # also TF Model Garden's R50-FPN, and ratios
    python benchmarks/inference.py --precisions float32 mixed_bfloat16   # the MIXED_PRECISION switch

What is timed: ``MaskRCNN("inference").keras_model(inputs, training=False)`` inside one
``tf.function(reduce_retracing=True)`` (the graph, not Keras's predict loop), on seeded random
images, median of ``--repeats`` calls after 2 warm-up calls; outputs are copied to numpy.
Batch 1 gives the latency, batch 4 the throughput. ResNets: 81 classes and the default
(paper) heads, 1000 proposals, 100 detections (DETECTION_MIN_CONFIDENCE 0, so the mask head
always runs on all 100); "small": ShapesConfig's CPU-sized heads.

Parameters: ``count_params()`` of the whole inference model and of its backbone+FPN.

FLOPs: counted by TF's profiler (``tf.compat.v1`` model_analyzer, ``float_operation()``) on the
traced concrete function's graph: 2 per multiply-add of every Conv2D/MatMul, plus the
elementwise ops whose shapes are static; the mask head, which runs on as many rows as there
are detections, is added from its kernels times the detections of the run. Achieved GFLOP/s = that count / median time. The
backbone+FPN (C2..C5 -> P2..P5) is traced and timed on its own too. Both are set against a
float32 ``tf.matmul`` (2048x2048) peak measured in the same process just before the model, so
that a shared machine's load at that moment weighs on both alike.

Peak memory: ``ru_maxrss`` of a fresh subprocess per configuration (model, trace, runs).

Precision: ``mixed_bfloat16`` computes convolutions in bfloat16 (fast on CPUs with AVX512-BF16
or AMX, and on GPUs/TPUs); its "% of peak" is still against the float32 matmul.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (PEER_PACKAGE, add_grid_arguments, matmul_peak_gflops,  # noqa: E402
                    median_seconds, mixed_precision, peak_memory_mb, print_table, result_rows,
                    run_grid, run_peers)


def graph_gflops(concrete_function):
    """Float operations of one call of a concrete function, in GFLOP (TF profiler)."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = model_analyzer.profile(concrete_function.graph, options=options)
    return profile.total_float_ops / 1e9


def mask_head_gflop_per_roi(mask_head):
    """GFLOP of the mask head's convolutions for one RoI, from its layers' kernels.

    ``mask_head`` is the model's ``mask_head`` sub-model (``MaskRCNN.find_layer``).

    The profiler cannot count them: the mask head runs on as many rows as there are
    detections, a shape known only at run time. 2 FLOPs per multiply-add: a convolution
    does one kernel's worth per output pixel, a transposed one per input pixel.
    """
    import keras
    import numpy as np

    total = 0
    for layer in mask_head.layers:
        if layer.name.startswith("mrcnn_mask") and isinstance(layer, keras.layers.Conv2D):
            pixels = layer.input if isinstance(layer, keras.layers.Conv2DTranspose) else layer.output
            total += 2 * int(np.prod(pixels.shape[1:3])) * int(np.prod(layer.kernel.shape))
    return total / 1e9


def measure(backbone, size, batch, repeats, precision="float32"):
    """One configuration: latency, FLOPs, backbone+FPN alone, memory (run in a subprocess)."""
    import keras
    import numpy as np
    import tensorflow as tf

    peak = matmul_peak_gflops()

    from mrcnn_tf import Config, MaskRCNN
    from mrcnn_tf.data import ShapesConfig
    from mrcnn_tf.image_meta import compose_image_meta
    from mrcnn_tf.ops.image import mold_batch

    # The ResNets with COCO's 81 classes and the paper's heads; "small" with the CPU-sized
    # heads it is made for (ShapesConfig: 64-channel FPN, 100 proposals, 16 detections).
    base = ShapesConfig if backbone == "small" else Config
    config = base(NAME="bench", NUM_CLASSES=base.NUM_CLASSES if backbone == "small" else 81,
                  BACKBONE=backbone, IMAGES_PER_GPU=batch, IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size,
                  DETECTION_MIN_CONFIDENCE=0.0, MIXED_PRECISION=mixed_precision(precision))
    model = MaskRCNN("inference", config, model_dir="unused")
    images = [np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8)
              for i in range(batch)]
    molded, info = mold_batch(np.stack(images), [[size, size]] * batch, config.IMAGE_RESIZE_MODE,
                              config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, mean_pixel=config.MEAN_PIXEL,
                              pixel_std=config.PIXEL_STD, channel_order=config.INPUT_CHANNEL_ORDER)
    inputs = {"input_image": molded,
              "input_image_meta": compose_image_meta(info, np.ones(config.NUM_CLASSES))}
    forward = tf.function(lambda x: model.keras_model(x, training=False), reduce_retracing=True)
    seconds = median_seconds(lambda: tf.nest.map_structure(lambda t: t.numpy(), forward(inputs)), repeats)

    backbone_fpn = model.find_layer("backbone_fpn")  # image -> [P2, ..., P6]; P2..P5 timed
    features = keras.Model(backbone_fpn.inputs, backbone_fpn.outputs[:4])
    features_fn = tf.function(lambda x: features(x, training=False), reduce_retracing=True)
    features_seconds = median_seconds(lambda: [t.numpy() for t in features_fn(inputs["input_image"])], repeats)
    detections = int((forward(inputs)["detections"][..., 5] > 0).numpy().sum())
    mask_head = detections * mask_head_gflop_per_roi(model.find_layer("mask_head"))
    return {"seconds": seconds, "gflop": graph_gflops(forward.get_concrete_function(inputs)) + mask_head,
            "backbone_seconds": features_seconds,
            "backbone_gflop": graph_gflops(features_fn.get_concrete_function(inputs["input_image"])),
            "memory_mb": peak_memory_mb(), "peak_gflops": peak,
            "params": model.keras_model.count_params(), "backbone_params": backbone_fpn.count_params()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_grid_arguments(parser, [640, 1024], ["resnet50", "resnet101"], [1, 4],
                       "small backbone, 256x256, batch 1")
    parser.add_argument("--with-peers", action="store_true",
                        help=f"also time TF Model Garden's Mask R-CNN R50-FPN ({PEER_PACKAGE} in "
                             f"its own venv under benchmarks/.peers)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.backbones, args.batches, args.repeats = [256], ["small"], [1], 3
    results = run_grid(__file__, args, measure)
    if results is None:
        return 0

    def format_row(r, batch):
        peak = r["peak_gflops"]
        return [f"{r['params'] / 1e6:.1f}", f"{r['backbone_params'] / 1e6:.1f}",
                f"{r['seconds'] * 1000:.0f}", f"{batch / r['seconds']:.2f}", f"{r['gflop']:.1f}",
                f"{r['gflop'] / r['seconds']:.0f}", f"{peak:.0f}", f"{100 * r['gflop'] / r['seconds'] / peak:.0f}%",
                f"{100 * r['backbone_gflop'] / r['backbone_seconds'] / peak:.0f}%", f"{r['memory_mb']:.0f}"]

    print_table("Mask R-CNN inference, median after warm-up (FLOPs by the TF profiler; peak: "
                "tf.matmul 2048^2 float32 measured in each configuration's process)",
                ["backbone", "size", "batch", "precision", "params M", "backbone+FPN params M", "ms/batch",
                 "images/s", "GFLOP", "GFLOP/s",
                 "matmul peak GFLOP/s", "% of peak", "backbone+FPN % of peak", "peak MB"],
                result_rows(results, format_row))
    if args.with_peers:
        run_peers(results, args.repeats, "inference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
