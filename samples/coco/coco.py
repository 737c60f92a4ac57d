"""Train or evaluate Mask R-CNN on any COCO-format annotation file.

    python samples/coco/coco.py train --annotations train.json --images train/ \\
        --val-annotations val.json --val-images val/ --weights imagenet
    python samples/coco/coco.py evaluate --annotations val.json --images val/ --weights last

Evaluation is pycocotools' COCOeval (bbox and segm) against the same file.
"""

import argparse
import sys


def coco_config(num_classes, backbone="resnet50", tiny=False, imagenet=False):
    from mrcnn_tf import Config

    values = {"NAME": "coco", "NUM_CLASSES": num_classes, "BACKBONE": backbone, "IMAGES_PER_GPU": 1,
              "BACKBONE_WEIGHTS": "imagenet" if imagenet else None}
    if tiny:  # CPU smoke settings
        values.update(IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, STEPS_PER_EPOCH=2, VALIDATION_STEPS=1,
                      RPN_ANCHOR_SCALES=(8, 16, 24, 32, 48), TOP_DOWN_PYRAMID_SIZE=32,
                      FPN_CLASSIF_FC_LAYERS_SIZE=64, MASK_HEAD_CHANNELS=32, POST_NMS_ROIS_TRAINING=64,
                      POST_NMS_ROIS_INFERENCE=32, TRAIN_ROIS_PER_IMAGE=16, DETECTION_MIN_CONFIDENCE=0.0,
                      DETECTION_MAX_INSTANCES=8)
    return Config(**values)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train", "evaluate"])
    parser.add_argument("--annotations", required=True, help="COCO JSON (train, or the set to evaluate)")
    parser.add_argument("--images", required=True, help="image directory of --annotations")
    parser.add_argument("--val-annotations", help="train: validation COCO JSON")
    parser.add_argument("--val-images", help="train: validation image directory")
    parser.add_argument("--class-ids", type=int, nargs="+", help="only these COCO category ids")
    parser.add_argument("--weights", default="none", help="'imagenet', 'last', 'none' or a checkpoint .h5")
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101", "small"])
    parser.add_argument("--model-dir", default="logs")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--limit", type=int, help="evaluate: at most this many images")
    parser.add_argument("--tiny", action="store_true", help="tiny CPU settings (smoke test)")
    args = parser.parse_args(argv)

    from mrcnn_tf import MaskRCNN
    from mrcnn_tf.data import CocoDataset
    from mrcnn_tf.model.mask_rcnn import latest_checkpoint

    dataset = CocoDataset.from_json(args.annotations, args.images, class_ids=args.class_ids)
    config = coco_config(dataset.num_classes, args.backbone, args.tiny, args.weights == "imagenet")
    model = MaskRCNN("training" if args.command == "train" else "inference", config, args.model_dir)
    if args.weights == "last":
        model.load_weights(latest_checkpoint(args.model_dir, config.NAME))
    elif args.weights not in ("none", "imagenet"):
        model.load_weights(args.weights)

    if args.command == "train":
        val = None
        if args.val_annotations:
            val = CocoDataset.from_json(args.val_annotations, args.val_images or args.images,
                                        class_ids=args.class_ids)
        model.train(dataset, val, config.LEARNING_RATE, args.epochs, "all", verbose=2)
    else:
        from mrcnn_tf.evaluate import coco_evaluate

        metrics = coco_evaluate(model, dataset, limit=args.limit)
        print(f"bbox AP {metrics['bbox']['AP']:.3f}  segm AP {metrics['segm']['AP']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
