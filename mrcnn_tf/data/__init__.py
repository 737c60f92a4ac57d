"""Datasets, their augmentation, and the generator that turns them into training batches.

The image and mask geometry (resize, pad, normalise, paste, mini masks) is
the TF ops of ``mrcnn_tf.ops.image`` and ``mrcnn_tf.ops.masks``; the meta
vector is ``mrcnn_tf.image_meta``.
"""

from mrcnn_tf.data.dataset import (
    BACKGROUND_CLASS_ID,
    BACKGROUND_CLASS_NAME,
    Dataset,
    ImageLoadError,
)
from mrcnn_tf.data.shapes import ShapesConfig, ShapesDataset
from mrcnn_tf.data.samples import extract_bboxes

from mrcnn_tf.data.generator import DataGenerator, load_image_gt, load_sample
from mrcnn_tf.data.tfdata import to_tf_dataset
from mrcnn_tf.data.coco import AnnotationFormatError, CocoDataset
from mrcnn_tf.data.via import ViaDataset
from mrcnn_tf.data.augment import (
    ColorJitter,
    Compose,
    HorizontalFlip,
    RandomCrop,
    Rotate90,
    ScaleJitter,
    VerticalFlip,
    default_augmentation,
    from_albumentations,
)

__all__ = [
    "BACKGROUND_CLASS_ID",
    "BACKGROUND_CLASS_NAME",
    "Dataset",
    "ImageLoadError",
    "ShapesConfig",
    "ShapesDataset",
    "extract_bboxes",
    "DataGenerator",
    "load_image_gt",
    "load_sample",
    "to_tf_dataset",
    "AnnotationFormatError",
    "CocoDataset",
    "ViaDataset",
    "ColorJitter",
    "Compose",
    "HorizontalFlip",
    "RandomCrop",
    "Rotate90",
    "ScaleJitter",
    "VerticalFlip",
    "default_augmentation",
    "from_albumentations",
]
