"""The Mask R-CNN model: graphs per mode, training stages, detect()."""

from mrcnn_tf.model.graph import MaskRCNNTrainer, build_keras_model
from mrcnn_tf.model.mask_rcnn import TRAINING_STAGES, MaskRCNN

__all__ = ["MaskRCNN", "MaskRCNNTrainer", "TRAINING_STAGES", "build_keras_model"]
