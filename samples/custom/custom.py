"""Custom: a template for Mask R-CNN on your own images. Edit CustomDataset, then train and detect.

The default ``CustomDataset`` reads this folder layout (replace ``load_custom``
and ``load_mask`` for your annotation format; nothing else needs to change):

    DATASET/classes.txt               one class name per line
    DATASET/train/images/NAME.png     the images (PNG, JPEG, BMP, GIF or TIFF)
    DATASET/train/masks/NAME.png      one label per pixel: 0 background, 1..N the
                                      instances (each its own value; grey PNG, or an
                                      RGB PNG where each instance is its own colour)
    DATASET/train/classes/NAME.txt    optional: one class name per instance, in
                                      increasing label order (default: the first class)
    DATASET/val/...                   optional: the same for validation

    python samples/custom/custom.py train --dataset DATASET
    python samples/custom/custom.py detect --dataset DATASET --image photo.jpg --output drawn.png

``--tiny`` (small backbone, 64 px, 2 steps) is the CPU smoke setting the tests use.
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

from mrcnn_tf import Config, Dataset, MaskRCNN, presets
from mrcnn_tf.cli import IMAGE_SUFFIXES


class CustomDataset(Dataset):
    """Your dataset: edit these two methods for your annotation format."""

    def load_custom(self, dataset_dir, subset):
        """Register the classes and the images of ``dataset_dir/subset``."""
        with open(os.path.join(dataset_dir, "classes.txt"), encoding="utf-8") as f:
            self.names = [line.strip() for line in f if line.strip()]
        if not self.names:
            raise ValueError(f"{dataset_dir}/classes.txt lists no class")
        for class_id, name in enumerate(self.names, 1):
            self.add_class("custom", class_id, name)
        image_dir = os.path.join(dataset_dir, subset, "images")
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"no image directory {image_dir}")
        for file_name in sorted(os.listdir(image_dir)):
            if not file_name.lower().endswith(IMAGE_SUFFIXES):
                continue
            stem = os.path.splitext(file_name)[0]
            mask_path = os.path.join(dataset_dir, subset, "masks", stem + ".png")
            if not os.path.isfile(mask_path):
                raise FileNotFoundError(f"no mask for {file_name}: expected {mask_path}")
            self.add_image("custom", stem, os.path.join(image_dir, file_name), mask_path=mask_path,
                           classes_path=os.path.join(dataset_dir, subset, "classes", stem + ".txt"))

    def load_mask(self, image_id):
        """bool [H, W, N] instance masks and int32 [N] class ids of one image."""
        info = self.image_info[image_id]
        mask_image = Image.open(info["mask_path"])
        labels = np.asarray(mask_image)
        if mask_image.mode in ("RGB", "RGBA", "LA"):  # colour-coded instances: one integer per colour
            rgb = np.asarray(mask_image.convert("RGB")).astype(np.int64)
            labels = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        values = [v for v in np.unique(labels) if v != 0]
        masks = np.stack([labels == v for v in values], axis=-1) if values else \
            np.zeros(labels.shape[:2] + (0,), bool)
        class_ids = np.ones(len(values), np.int32)  # the first class unless listed
        if os.path.isfile(info["classes_path"]):
            with open(info["classes_path"], encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip()]
            if len(names) != len(values):
                raise ValueError(f"{info['classes_path']}: {len(names)} class names for "
                                 f"{len(values)} instances in {info['mask_path']}")
            unknown = [n for n in names if n not in self.names]
            if unknown:
                raise ValueError(f"{info['classes_path']}: class {unknown[0]!r} is not in classes.txt")
            class_ids = np.array([self.names.index(n) + 1 for n in names], np.int32)
        return masks, class_ids


class CustomConfig(Config):
    """Edit for your data: NUM_CLASSES is set from classes.txt at run time."""

    NAME = "custom"
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 1
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 5


def load_subset(dataset_dir, subset):
    dataset = CustomDataset()
    dataset.load_custom(dataset_dir, subset)
    dataset.prepare()
    return dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train", "detect"])
    parser.add_argument("--dataset", required=True, help="dataset directory (see the layout above)")
    parser.add_argument("--image", help="detect: an image file")
    parser.add_argument("--output", help="detect: also draw the detections into this PNG")
    parser.add_argument("--weights", default="last", help="detect: 'last' or a checkpoint .h5")
    parser.add_argument("--model-dir", default="logs", help="directory of training runs (default: logs)")
    parser.add_argument("--epochs", type=int, default=20, help="train: the epoch to stop at")
    parser.add_argument("--seed", type=int, default=0, help="weights and data order seed")
    parser.add_argument("--tiny", action="store_true", help="tiny CPU settings (smoke test)")
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(args.seed)
    train = load_subset(args.dataset, "train")
    tiny = presets.tiny(64, BACKBONE="small") if args.tiny else {}  # 64 px, narrow heads, few RoIs
    config = CustomConfig(NUM_CLASSES=train.num_classes, **tiny)
    if args.command == "train":
        val = load_subset(args.dataset, "val") if os.path.isdir(os.path.join(args.dataset, "val")) else None
        model = MaskRCNN("training", config, args.model_dir)
        model.train(train, val, config.LEARNING_RATE, args.epochs, "all", verbose=2, seed=args.seed,
                    log_images=0 if args.tiny else 2)
        print(f"checkpoints in {model.log_dir}")
        return 0

    if not args.image or not os.path.isfile(args.image):
        parser.error(f"detect needs --image FILE, got {args.image!r}")
    model = MaskRCNN("inference", config, args.model_dir)
    model.load_weights(model.find_last() if args.weights == "last" else args.weights)
    image = np.asarray(Image.open(args.image).convert("RGB"))
    result = model.detect([image])[0]
    for box, class_id, score in zip(result["rois"], result["class_ids"], result["scores"]):
        print(f"{train.class_names[class_id]} {score:.2f} {box.tolist()}")  # name score [y1, x1, y2, x2]
    if args.output:
        from mrcnn_tf.visualize import display_instances

        display_instances(image, result["rois"], result["masks"], result["class_ids"], train.class_names,
                          result["scores"], figsize=(4, 4), save_path=args.output)
        print(f"drawn: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
