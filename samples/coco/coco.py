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

``--preset coco_r50_fpn_1x`` (or ``_3x``) trains detectron2's recipe
(README "The COCO recipe"); ``--smoke`` runs its code path for 2 iterations
at 64 px. ``--pretrained maskrcnn_resnet50_fpn_v2 --weights FILE`` fine-tunes
from a torchvision state dict (``.pth`` needs torch; ``.safetensors`` and
``.npz`` do not: ``python -m mrcnn_tf.pretrained convert IN.pth OUT.npz``),
alone (all layers, ``--epochs``) or under a ``--preset``; with another class
count than torchvision's 91 the class-specific layers start fresh.
"""

import argparse
import contextlib
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
    parser.add_argument("--preset", choices=sorted(presets.COCO_PRESETS),
                        help="train: a detectron2 recipe (schedule, warmup, multi-scale + flip, L2 decay, "
                             "512 RoIs, COCO AP every STEPS_PER_EPOCH iterations); --epochs is ignored")
    parser.add_argument("--smoke", action="store_true",
                        help="with --preset: the same code path for a few iterations on a CPU")
    parser.add_argument("--strategy", choices=["default", "mirrored"], default="default",
                        help="train with --preset/--pretrained: 'mirrored' = tf.distribute.MirroredStrategy "
                             "over all local GPUs (GPU_COUNT = replicas, the global batch kept)")
    parser.add_argument("--pretrained", metavar="TORCHVISION_MODEL",
                        help="train: fine-tune from torchvision's maskrcnn_resnet50_fpn or _v2 (its "
                             "architecture); --weights is then its state dict (.pth/.safetensors/.npz)")
    args = parser.parse_args(argv)
    if args.weights is None:
        args.weights = "none" if args.command == "train" else "last"
    return args


# --smoke: the preset's code path (warmup then a step, multi-scale + flip, per-level proposals,
# 'l2' decay, frozen stem, COCO AP callback) at CPU size: 2 epochs of 1 iteration, the first in
# warmup, the second past the step. Both short sides pad to one 64 px batch shape (no retrace).
SMOKE = dict(presets.tiny(64), BACKBONE="small", GPU_COUNT=1, IMAGES_PER_GPU=1, STEPS_PER_EPOCH=1,
             IMAGE_MIN_DIM=(48, 64), IMAGE_MAX_DIM=96, WARMUP_ITERS=1, LR_STEPS=(1,),
             TRAIN_ROIS_PER_IMAGE=16, PRE_NMS_LIMIT=200, POST_NMS_ROIS_TRAINING=64,
             POST_NMS_ROIS_INFERENCE=32, DETECTION_MIN_CONFIDENCE=0.05)
SMOKE_EPOCHS = 2
SMOKE_EVAL_IMAGES = 1


def train_preset(args, dataset):
    """``--preset`` and/or ``--pretrained``: one train() call of the recipe (flips, COCO AP of
    --val-annotations each epoch with --preset), from torchvision's weights with --pretrained."""
    from mrcnn_tf.training.recipe import fine_tune_from, mirrored, recipe_setup, train_recipe

    if args.pretrained and args.smoke:
        raise SystemExit("--smoke uses a small backbone: it cannot load --pretrained weights")
    if args.pretrained and not os.path.isfile(args.weights):
        raise SystemExit(f"--pretrained {args.pretrained} needs --weights FILE (.pth, .safetensors or "
                         f".npz), got {args.weights!r}")
    overrides = {"NUM_CLASSES": dataset.num_classes, **(SMOKE if args.smoke else {})}
    if not args.smoke and not args.pretrained:
        overrides["BACKBONE_WEIGHTS"] = backbone_weights_for(args.weights, "resnet50")
    if not args.preset:
        overrides["NAME"] = "coco"
    try:
        config, epochs = recipe_setup(args.preset, args.pretrained, **overrides)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    epochs = SMOKE_EPOCHS if args.smoke else epochs or args.epochs
    strategy = None
    if args.strategy == "mirrored":  # the preset's 16 images per step, split over the local GPUs
        strategy, config = mirrored(config)
    val = None
    if args.val_annotations:
        val = load_dataset(args.val_annotations, args.val_images or args.images, args.class_ids)
    common = dict(verbose=2, seed=args.seed, log_images=0)
    with strategy.scope() if strategy else contextlib.nullcontext():
        if args.pretrained:
            model = load_model("training", config, "none", args.model_dir)
            fine_tune_from(model, args.pretrained, args.weights)
        else:
            model = load_model("training", config, args.weights if args.weights != "imagenet" else "none",
                               args.model_dir)
        if args.preset:
            history = train_recipe(model, dataset, val, epochs, layers=args.layers or "all",
                                   max_eval_images=SMOKE_EVAL_IMAGES if args.smoke else None, **common)
            if val is not None:
                print(f"val segm AP by epoch: {history.history.get('val_segm_AP')}")
        else:
            model.train(dataset, val, config.LEARNING_RATE, epochs, args.layers or "all", **common)
    print(f"checkpoints in {model.log_dir}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    dataset = load_dataset(args.annotations, args.images, args.class_ids)
    if args.strategy != "default" and not (args.preset or args.pretrained):
        raise SystemExit("--strategy mirrored needs --preset or --pretrained")
    if (args.preset or args.pretrained) and args.command == "train":
        print(f"{args.annotations}: {len(dataset.image_ids)} images, classes {dataset.class_names}")
        return train_preset(args, dataset)
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
