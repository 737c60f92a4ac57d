"""COCO: train or evaluate Mask R-CNN on any COCO-format annotation file.

    python samples/coco/coco.py train --annotations train.json --images train/ \\
        --val-annotations val.json --val-images val/ --weights imagenet
    python samples/coco/coco.py evaluate --annotations val.json --images val/ --weights last

The annotation file is the COCO "instances" format (polygons or RLE, crowd
regions honoured; category ids need not be contiguous: ``--class-ids`` keeps
a subset). Evaluation is pycocotools' COCOeval, bbox and segm, of the
model's detections against the same file: it prints the 12-line tables and a
summary line ``bbox AP x  segm AP y``.

``--weights``: ``none``, ``imagenet`` (backbone; the Keras Applications file
must be on disk), ``last`` (newest checkpoint under ``--model-dir``) or an
``.h5`` path (matterport's ``mask_rcnn_coco.h5`` loads by layer name).
``--backbone small --tiny`` is the CPU smoke setting the tests use.
"""

import argparse
import os
import sys

from mrcnn_tf import Config, presets
from mrcnn_tf.cli import backbone_weights_for, load_model
from mrcnn_tf.config import BACKBONES


class CocoConfig(Config):
    """COCO-style training: ResNet-50, one image per step; NUM_CLASSES comes from the file."""

    NAME = "coco"
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 1
    STEPS_PER_EPOCH = 1000


def make_config(num_classes, backbone="resnet50", weights="none", tiny=False):
    """CocoConfig for the command line; fails early and clearly on unusable weights."""
    return CocoConfig(NUM_CLASSES=num_classes, BACKBONE=backbone,
                      BACKBONE_WEIGHTS=backbone_weights_for(weights, backbone),
                      **(presets.tiny(64) if tiny else {}))  # --tiny: 64 px, narrow heads, few RoIs


def load_dataset(annotations, images, class_ids):
    from mrcnn_tf.data import CocoDataset

    for path, what in ((annotations, "annotation file"), (images, "image directory")):
        if not os.path.exists(path):
            raise SystemExit(f"no such {what}: {path}")
    return CocoDataset.from_json(annotations, images, class_ids=class_ids)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train", "evaluate"])
    parser.add_argument("--annotations", required=True, help="COCO JSON (train, or the set to evaluate)")
    parser.add_argument("--images", required=True, help="image directory of --annotations")
    parser.add_argument("--val-annotations", help="train: validation COCO JSON")
    parser.add_argument("--val-images", help="train: validation image directory (default: --images)")
    parser.add_argument("--class-ids", type=int, nargs="+", help="only these COCO category ids")
    parser.add_argument("--weights", help="'none', 'imagenet', 'last' or a checkpoint .h5 "
                                          "(default: none for train, last for evaluate)")
    parser.add_argument("--backbone", default="resnet50", choices=BACKBONES)
    parser.add_argument("--model-dir", default="logs", help="directory of training runs (default: logs)")
    parser.add_argument("--epochs", type=int, default=40, help="train: the epoch to stop at")
    parser.add_argument("--layers", default=None,
                        help="train: 'heads', '3+', '4+', '5+', 'all' or a regex (default: heads then "
                             "all when pretrained, all from scratch)")
    parser.add_argument("--seed", type=int, default=0, help="train: data order seed")
    parser.add_argument("--limit", type=int, help="evaluate: at most this many images")
    parser.add_argument("--tiny", action="store_true", help="tiny CPU settings (64 px, 2 steps; smoke test)")
    args = parser.parse_args(argv)
    if args.weights is None:
        args.weights = "none" if args.command == "train" else "last"
    return args


def main(argv=None):
    args = parse_args(argv)
    dataset = load_dataset(args.annotations, args.images, args.class_ids)
    print(f"{args.annotations}: {len(dataset.image_ids)} images, classes {dataset.class_names}")
    config = make_config(dataset.num_classes, args.backbone, args.weights if args.command == "train" else
                         "none", args.tiny)
    model = load_model("training" if args.command == "train" else "inference", config, args.weights,
                       args.model_dir)

    if args.command == "train":
        val = None
        if args.val_annotations:
            val = load_dataset(args.val_annotations, args.val_images or args.images, args.class_ids)
        common = dict(verbose=2, seed=args.seed, log_images=0 if args.tiny else 2)
        if args.layers:
            model.train(dataset, val, config.LEARNING_RATE, args.epochs, args.layers, **common)
        elif args.weights == "none":
            model.train(dataset, val, config.LEARNING_RATE, args.epochs, "all", **common)
        else:
            heads = max(1, args.epochs // 4)
            model.train(dataset, val, config.LEARNING_RATE, heads, "heads", **common)
            if args.epochs > heads:
                model.train(dataset, val, config.LEARNING_RATE / 10, args.epochs, "all", **common)
        print(f"checkpoints in {model.log_dir}")
    else:
        from mrcnn_tf.evaluate import coco_evaluate

        metrics = coco_evaluate(model, dataset, limit=args.limit)
        print(f"bbox AP {metrics['bbox']['AP']:.3f}  segm AP {metrics['segm']['AP']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
