"""Balloon: Mask R-CNN on a custom VIA dataset, with the "colour splash" effect.

    python samples/balloon/balloon.py train --dataset ../shared/data/balloon --weights imagenet
    python samples/balloon/balloon.py evaluate --dataset ../shared/data/balloon --weights last
    python samples/balloon/balloon.py splash --weights last --image photo.jpg
    python samples/balloon/balloon.py splash --weights last --frames video_frames/

The dataset directory holds ``train/`` and ``val/``, each a VIA project
(``via_region_data.json`` + images). Video: extract frames to a folder first
(e.g. ``ffmpeg -i clip.mp4 frames/%05d.png``); each frame is splashed to PNG.
"""

import argparse
import os
import sys

import numpy as np


def balloon_config(backbone="resnet50", tiny=False, weights=None):
    """ResNet-50 at 1024 px by default; ``tiny`` for a CPU smoke run."""
    from mrcnn_tf import Config

    class BalloonConfig(Config):
        NAME = "balloon"
        NUM_CLASSES = 1 + 1  # background + balloon
        BACKBONE = backbone
        BACKBONE_WEIGHTS = weights
        IMAGES_PER_GPU = 1
        STEPS_PER_EPOCH = 100
        VALIDATION_STEPS = 5
        DETECTION_MIN_CONFIDENCE = 0.9

    if not tiny:
        return BalloonConfig()
    return BalloonConfig(IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128, STEPS_PER_EPOCH=2, VALIDATION_STEPS=1,
                         RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), TOP_DOWN_PYRAMID_SIZE=32,
                         FPN_CLASSIF_FC_LAYERS_SIZE=64, MASK_HEAD_CHANNELS=32, POST_NMS_ROIS_TRAINING=64,
                         POST_NMS_ROIS_INFERENCE=32, TRAIN_ROIS_PER_IMAGE=16, DETECTION_MIN_CONFIDENCE=0.0,
                         DETECTION_MAX_INSTANCES=8)


def load_split(dataset_dir, subset):
    from mrcnn_tf.data import ViaDataset

    path = os.path.join(dataset_dir, subset)
    if not os.path.isdir(path):
        raise SystemExit(f"--dataset: no {subset}/ directory in {dataset_dir}")
    return ViaDataset.from_directory(path)


def splash_file(model, image, out_path):
    """Detect balloons and write the splash (grey outside the masks) as PNG."""
    from PIL import Image

    from mrcnn_tf.visualize import color_splash

    result = model.detect([image])[0]
    Image.fromarray(color_splash(image, result["masks"])).save(out_path)
    return len(result["class_ids"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train", "evaluate", "splash"])
    parser.add_argument("--dataset", help="directory with train/ and val/ VIA projects")
    parser.add_argument("--weights", default="none",
                        help="'imagenet' (backbone only), 'last', 'none' or a checkpoint .h5")
    parser.add_argument("--model-dir", default="logs", help="training runs (default: logs)")
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101", "small"])
    parser.add_argument("--epochs", type=int, default=30, help="heads to a third, then all layers")
    parser.add_argument("--image", help="splash: one image file")
    parser.add_argument("--frames", help="splash: a folder of video frames")
    parser.add_argument("--output", default="splash", help="splash: output folder")
    parser.add_argument("--tiny", action="store_true", help="tiny CPU settings (smoke test)")
    args = parser.parse_args(argv)

    from mrcnn_tf import MaskRCNN
    from mrcnn_tf.model.mask_rcnn import latest_checkpoint

    imagenet = args.weights == "imagenet"
    config = balloon_config(args.backbone, args.tiny, weights="imagenet" if imagenet else None)
    mode = "training" if args.command == "train" else "inference"
    model = MaskRCNN(mode, config, args.model_dir)
    if args.weights == "last":
        model.load_weights(latest_checkpoint(args.model_dir, config.NAME))
    elif args.weights not in ("none", "imagenet"):
        model.load_weights(args.weights)

    if args.command == "train":
        train, val = load_split(args.dataset, "train"), load_split(args.dataset, "val")
        # A pretrained backbone first lets the new heads settle, then everything trains.
        model.train(train, val, config.LEARNING_RATE, max(1, args.epochs // 3), "heads", verbose=2)
        model.train(train, val, config.LEARNING_RATE / 10, args.epochs, "all", verbose=2)
    elif args.command == "evaluate":
        from mrcnn_tf.evaluate import coco_evaluate, compute_mAP

        val = load_split(args.dataset, "val")
        coco_evaluate(model, val)
        print(f"VOC mask mAP@0.5: {compute_mAP(model, val):.3f}")
    else:
        from mrcnn_tf.data import Dataset

        files = [args.image] if args.image else sorted(
            os.path.join(args.frames, f) for f in os.listdir(args.frames or ".")
            if f.lower().endswith((".png", ".jpg", ".jpeg")))
        if not files or not all(os.path.isfile(f) for f in files):
            raise SystemExit("splash: give --image FILE or --frames DIR with JPEG/PNG frames")
        reader = Dataset()  # its load_image handles EXIF, grey and RGBA files
        for i, path in enumerate(files):
            reader.add_image("files", i, path)
        reader.prepare()
        os.makedirs(args.output, exist_ok=True)
        for i, path in enumerate(files):
            out = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + "_splash.png")
            count = splash_file(model, np.asarray(reader.load_image(i)), out)
            print(f"{path}: {count} balloons -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
