"""Template: Mask R-CNN on your own images. Edit CustomDataset, then train and detect.

Default layout this template reads (replace ``load_custom`` for yours):

    DATASET/train/images/NAME.png    the image
    DATASET/train/masks/NAME.png     one integer label per pixel: 0 background,
                                     1..N the instances (each its own value)
    DATASET/classes.txt              one class name per line (all instances use class 1
                                     unless DATASET/train/classes/NAME.txt lists a class
                                     name per instance, in label order)

    python samples/custom/custom.py train --dataset DATASET
    python samples/custom/custom.py detect --dataset DATASET --image photo.jpg
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

from mrcnn_tf import Config, Dataset, MaskRCNN


class CustomDataset(Dataset):
    """Edit these two methods for your annotation format."""

    def load_custom(self, dataset_dir, subset):
        with open(os.path.join(dataset_dir, "classes.txt"), encoding="utf-8") as f:
            self.names = [line.strip() for line in f if line.strip()]
        for class_id, name in enumerate(self.names, 1):
            self.add_class("custom", class_id, name)
        image_dir = os.path.join(dataset_dir, subset, "images")
        for file_name in sorted(os.listdir(image_dir)):
            stem = os.path.splitext(file_name)[0]
            self.add_image("custom", stem, os.path.join(image_dir, file_name),
                           mask_path=os.path.join(dataset_dir, subset, "masks", stem + ".png"),
                           classes_path=os.path.join(dataset_dir, subset, "classes", stem + ".txt"))

    def load_mask(self, image_id):
        """bool [H, W, N] instance masks and int32 [N] class ids."""
        info = self.image_info[image_id]
        labels = np.asarray(Image.open(info["mask_path"]))
        values = [v for v in np.unique(labels) if v != 0]
        masks = np.stack([labels == v for v in values], axis=-1) if values else \
            np.zeros(labels.shape[:2] + (0,), bool)
        class_ids = np.ones(len(values), np.int32)
        if os.path.isfile(info["classes_path"]):
            with open(info["classes_path"], encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip()]
            class_ids = np.array([self.names.index(n) + 1 for n in names], np.int32)
        return masks, class_ids


class CustomConfig(Config):
    NAME = "custom"
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 1
    STEPS_PER_EPOCH = 100


TINY = dict(BACKBONE="small", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, STEPS_PER_EPOCH=2, VALIDATION_STEPS=1,
            RPN_ANCHOR_SCALES=(8, 16, 24, 32, 48), TOP_DOWN_PYRAMID_SIZE=32, FPN_CLASSIF_FC_LAYERS_SIZE=64,
            MASK_HEAD_CHANNELS=32, POST_NMS_ROIS_TRAINING=64, POST_NMS_ROIS_INFERENCE=32,
            TRAIN_ROIS_PER_IMAGE=16, DETECTION_MIN_CONFIDENCE=0.0, DETECTION_MAX_INSTANCES=8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train", "detect"])
    parser.add_argument("--dataset", required=True, help="dataset directory (see the layout above)")
    parser.add_argument("--image", help="detect: an image file")
    parser.add_argument("--model-dir", default="logs")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="tiny CPU settings (smoke test)")
    args = parser.parse_args(argv)

    train = CustomDataset()
    train.load_custom(args.dataset, "train")
    train.prepare()
    config = CustomConfig(NUM_CLASSES=train.num_classes, **(TINY if args.tiny else {}))
    if args.command == "train":
        model = MaskRCNN("training", config, args.model_dir)
        model.train(train, None, config.LEARNING_RATE, args.epochs, "all", verbose=2)
        return 0
    model = MaskRCNN("inference", config, args.model_dir)
    model.load_weights(model.find_last())
    image = np.asarray(Image.open(args.image).convert("RGB"))
    result = model.detect([image])[0]
    for box, class_id, score in zip(result["rois"], result["class_ids"], result["scores"]):
        print(f"{train.class_names[class_id]} {score:.2f} {box.tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
