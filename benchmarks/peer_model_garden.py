"""TF Model Garden's Mask R-CNN R50-FPN, timed like benchmarks/inference.py and train_step.py time ours.

Runs inside the peers' virtual environment (benchmarks/.peers/venv, tf-models-official and
the TensorFlow it pins), never imports mrcnn_tf. One configuration per call:

    python peer_model_garden.py --size 640 --batch 1 --repeats 5          # inference, one JSON line
    python peer_model_garden.py --train --size 512 --batch 1 --repeats 5  # one training step

The model is ``maskrcnn_resnetfpn_coco`` (ResNet-50, FPN P2-P6, 91 classes, 1000 proposals,
100 detections) with random weights, in float32; the images are the same seeded random
images as ours.

Inference: called through ``model.call`` as Model Garden's own serving module does, inside
one ``tf.function``.

Training (``--train``): the model is built by ``MaskRCNNTask.build_model`` (so with the
config's L2 weight decay) and each step is ``MaskRCNNTask.train_step`` itself inside one
``tf.function``: forward in training mode with ground truth (RPN, ROI sampling, mask
targets), Model Garden's losses (RPN score + box, Fast R-CNN class + box, mask, plus L2),
gradient, SGD(momentum 0.9) apply. The ground truth is 3 seeded boxes per image (classes
in 1..90, box-filled masks) run once through Model Garden's own training parser
(``maskrcnn_input.Parser``, augmentation off), which gives the RPN targets from its
``RpnAnchorLabeler``, the 112x112 mask crops and the padding to 100 instances, outside the
timed step as our DataGenerator batch is. The JSON also has the last step's total loss.
"""

import argparse
import json
import os
import resource
import statistics
import sys
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


def build_train(size, batch):
    """(step, images, labels): ``step(images, labels)`` runs one training step, returns the loss."""
    import tf_keras
    from official.core import exp_factory, task_factory
    from official.vision.dataloaders import maskrcnn_input

    config = exp_factory.get_exp_config("maskrcnn_resnetfpn_coco").task
    config.model.input_size = [size, size, 3]
    config.init_checkpoint = None  # random weights, as in the inference mode
    task = task_factory.get_task(config)
    model = task.build_model()
    # The config's parser thresholds and mask size, its augmentation (flip, scale jitter) off
    # so the batch is fixed and the images stay size x size.
    p = config.train_data.parser
    parser = maskrcnn_input.Parser(
        output_size=[size, size], min_level=config.model.min_level, max_level=config.model.max_level,
        num_scales=config.model.anchor.num_scales, aspect_ratios=config.model.anchor.aspect_ratios,
        anchor_size=config.model.anchor.anchor_size, rpn_match_threshold=p.rpn_match_threshold,
        rpn_unmatched_threshold=p.rpn_unmatched_threshold, rpn_batch_size_per_im=p.rpn_batch_size_per_im,
        rpn_fg_fraction=p.rpn_fg_fraction, skip_crowd_during_training=p.skip_crowd_during_training,
        max_num_instances=p.max_num_instances, include_mask=True,
        outer_boxes_scale=config.model.outer_boxes_scale, mask_crop_size=p.mask_crop_size)
    examples = []
    for i in range(batch):
        rng = np.random.default_rng(i)
        image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        # 3 boxes of S/8..S/3 a side, in pixels, and the box-filled full-image masks.
        sides = rng.integers(size // 8, size // 3, (3, 2))
        corners = rng.integers(0, size - sides)
        boxes = np.concatenate([corners, corners + sides], axis=1)
        masks = np.zeros((3, size, size), np.float32)
        for mask, (y1, x1, y2, x2) in zip(masks, boxes):
            mask[y1:y2, x1:x2] = 1.0
        # What the TF Example decoder hands the parser: boxes normalised to [0, 1].
        examples.append(parser._parse_train_data({
            "image": tf.constant(image), "groundtruth_boxes": tf.constant(boxes / size, tf.float32),
            "groundtruth_classes": tf.constant(rng.integers(1, 91, 3), tf.int64),
            "groundtruth_instance_masks": tf.constant(masks),
            "groundtruth_is_crowd": tf.zeros([3], tf.bool)}))
    images, labels = tf.nest.map_structure(lambda *xs: tf.stack(xs), *examples)
    optimizer = tf_keras.optimizers.SGD(learning_rate=0.001, momentum=0.9)  # as our compile(0.001, 0.9)

    @tf.function(reduce_retracing=True)
    def step(images, labels):
        return task.train_step((images, labels), model, optimizer)[task.loss]

    return step, images, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train", action="store_true", help="time one training step instead")
    args = parser.parse_args()
    if args.train:
        step, images, labels = build_train(args.size, args.batch)
        losses = []
        for _ in range(2):
            losses.append(float(step(images, labels).numpy()))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            losses.append(float(step(images, labels).numpy()))
            times.append(time.perf_counter() - start)
        print(json.dumps({"seconds": statistics.median(times), "tensorflow": tf.__version__,
                          "memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                          "loss": losses[-1]}))
        return 0 if np.isfinite(losses).all() else 1
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
    sys.exit(main())
