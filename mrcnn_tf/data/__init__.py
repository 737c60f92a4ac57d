"""Datasets and the numpy geometry that turns their images into model inputs."""

from mrcnn_tf.data.dataset import (
    BACKGROUND_CLASS_ID,
    BACKGROUND_CLASS_NAME,
    Dataset,
    ImageLoadError,
)
from mrcnn_tf.data.shapes import ShapesConfig, ShapesDataset
from mrcnn_tf.data.transforms import (
    compose_image_meta,
    expand_mask,
    extract_bboxes,
    minimize_mask,
    mold_image,
    parse_image_meta,
    resize_image,
    resize_mask,
    unmold_image,
    unmold_mask,
)

from mrcnn_tf.data.generator import DataGenerator, load_image_gt
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
    "compose_image_meta",
    "expand_mask",
    "extract_bboxes",
    "minimize_mask",
    "mold_image",
    "parse_image_meta",
    "resize_image",
    "resize_mask",
    "unmold_image",
    "unmold_mask",
    "DataGenerator",
    "load_image_gt",
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
