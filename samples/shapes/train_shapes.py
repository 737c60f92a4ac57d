"""The main job: train Mask R-CNN on synthetic shapes from scratch, on a CPU.

Trains the small backbone with ``model.fit`` (via ``MaskRCNN.train``),
evaluates mask mAP@0.5 on held-out images before and after training, draws
the detections on a validation image, exports a SavedModel for TF Serving
and queries it the way a serving client would.

    python samples/shapes/train_shapes.py --help
"""

import argparse
import os
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="outputs/shapes", help="directory for logs, picture, export")
    parser.add_argument("--train-images", type=int, default=1000, help="synthetic training images")
    parser.add_argument("--val-images", type=int, default=50, help="held-out evaluation images")
    parser.add_argument("--epochs", type=int, default=24, help="epochs of STEPS_PER_EPOCH steps")
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch")
    parser.add_argument("--seed", type=int, default=0, help="seed for data and weights")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    parser.add_argument("--recipe", action="store_true",
                        help="the detectron2-style recipe: one train() call with a linear warmup "
                             "(--warmup iterations), x0.1 for the last 4 epochs, horizontal flips")
    parser.add_argument("--warmup", type=int, default=100, help="--recipe: warmup iterations")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import keras

    from mrcnn_tf import MaskRCNN
    from mrcnn_tf.data import ShapesConfig, ShapesDataset
    from mrcnn_tf.evaluate import compute_mAP
    from mrcnn_tf.visualize import display_instances

    keras.utils.set_random_seed(args.seed)
    config = ShapesConfig(STEPS_PER_EPOCH=args.steps)
    if args.recipe:  # the same rates as the two calls below, in one schedule, plus a warmup
        config = ShapesConfig(STEPS_PER_EPOCH=args.steps, WARMUP_ITERS=args.warmup,
                              LR_STEPS=(max(1, args.epochs - 4) * args.steps,))
    train_set = ShapesDataset()
    train_set.load_shapes(args.train_images, 128, 128, seed=args.seed)
    train_set.prepare()
    val_set = ShapesDataset()
    val_set.load_shapes(args.val_images, 128, 128, seed=args.seed + 10_000)
    val_set.prepare()
    model_dir = os.path.join(args.output, "logs")

    inference = MaskRCNN("inference", config, model_dir)
    untrained = compute_mAP(inference, val_set, iou_threshold=0.5)
    print(f"untrained mask mAP@0.5: {untrained:.3f}")

    trainer = MaskRCNN("training", config, model_dir)
    start = time.time()
    # From scratch every layer trains; a pretrained backbone would start with "heads".
    if args.recipe:
        from mrcnn_tf.data.augment import HorizontalFlip
        trainer.train(train_set, val_set, config.LEARNING_RATE, epochs=args.epochs, layers="all",
                      verbose=2, seed=args.seed, augmentation=HorizontalFlip())
    else:
        trainer.train(train_set, val_set, config.LEARNING_RATE, epochs=args.epochs - 4, layers="all",
                      verbose=2, seed=args.seed)
        trainer.train(train_set, val_set, config.LEARNING_RATE / 10, epochs=args.epochs, layers="all",
                      verbose=2, seed=args.seed)
    print(f"training took {time.time() - start:.0f} s")

    inference.load_weights(trainer.find_last())
    trained = compute_mAP(inference, val_set, iou_threshold=0.5)
    print(f"mask mAP@0.5: {trained:.3f} (untrained: {untrained:.3f})")

    image = val_set.load_image(0)
    result = inference.detect([image])[0]
    picture = os.path.join(args.output, "detections.png")
    display_instances(image, result["rois"], result["masks"], result["class_ids"],
                      val_set.class_names, result["scores"], save_path=picture)
    print(f"picture: {picture}")

    if not args.no_export:
        from mrcnn_tf.export import export_saved_model
        export_dir = export_saved_model(inference, os.path.join(args.output, "export"),
                                        class_names=val_set.class_names)
        print(f"SavedModel: {export_dir}")
        query_saved_model(export_dir, image, result)
    return trained


def query_saved_model(export_dir, image, expected):
    """Load the export as TF Serving would and send it one encoded PNG."""
    import tensorflow as tf

    served = tf.saved_model.load(export_dir)
    png = tf.io.encode_png(image)
    outputs = served.signatures["serving_default"](images=tf.stack([png]))
    count = int(outputs["num_detections"][0])
    classes = outputs["detection_classes"][0, :count].numpy().tolist()
    print(f"SavedModel answered {count} detections, classes {classes}; "
          f"detect() found {len(expected['class_ids'])}, classes {expected['class_ids'].tolist()}")


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
