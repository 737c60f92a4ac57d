"""TF Model Garden's Mask R-CNN R50-FPN, timed like benchmarks/inference.py times ours.

Runs inside the peers' virtual environment (benchmarks/.peers/venv, tf-models-official and
the TensorFlow it pins), never imports mrcnn_tf. One configuration per call:

    python peer_model_garden.py --size 640 --batch 1 --repeats 5      # prints one JSON line

The model is ``maskrcnn_resnetfpn_coco`` (ResNet-50, FPN P2-P6, 91 classes, 1000 proposals,
100 detections) with random weights, called through ``model.call`` as Model Garden's own
serving module does, inside one ``tf.function``; the images are the same seeded random
images as ours.
"""

import argparse
import json
import os
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def build(size, batch):
    from official.core import exp_factory
    from official.vision.modeling import factory
    from official.vision.ops import anchor

    params = exp_factory.get_exp_config("maskrcnn_resnetfpn_coco").task.model
    params.input_size = [size, size, 3]
    model = factory.build_maskrcnn(
        input_specs=tf.keras.layers.InputSpec(shape=[batch, size, size, 3]), model_config=params)
    anchors = anchor.build_anchor_generator(
        min_level=params.min_level, max_level=params.max_level,
        num_scales=params.anchor.num_scales, aspect_ratios=params.anchor.aspect_ratios,
        anchor_size=params.anchor.anchor_size)(image_size=(size, size))
    anchors = {level: tf.tile(boxes[None], [batch, 1, 1, 1]) for level, boxes in anchors.items()}
    image_shape = tf.constant([[size, size]] * batch, tf.float32)

    @tf.function(reduce_retracing=True)
    def forward(images):
        return model.call(images=images, image_shape=image_shape, anchor_boxes=anchors, training=False)

    return forward


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    forward = build(args.size, args.batch)
    # The same images as ours, normalised the Model Garden way (ImageNet mean/std).
    images = np.stack([np.random.default_rng(i).integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
                       for i in range(args.batch)]).astype(np.float32)
    images = tf.constant((images - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375], tf.float32)
    for _ in range(2):
        tf.nest.map_structure(lambda t: t.numpy(), forward(images))
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), forward(images))
        times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": statistics.median(times), "tensorflow": tf.__version__,
                      "memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


if __name__ == "__main__":
    main()
