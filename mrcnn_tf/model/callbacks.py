"""Training callbacks: stop on a non-finite loss naming the data, images in TensorBoard."""

import math
import os

import keras
import numpy as np
import tensorflow as tf


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or Inf; the message names the step and the images."""


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first NaN/Inf loss, naming the epoch, step and images.

    Unlike ``TerminateOnNaN`` it says which data was in the failing batch
    (ids and file references, from the DataGenerator), and it raises before
    the epoch's checkpoint is written, so the latest checkpoint stays the
    last good one.
    """

    def __init__(self, generator):
        super().__init__()
        self.generator = generator
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = {name: value for name, value in (logs or {}).items()
               if name.endswith("loss") and not math.isfinite(float(value))}
        if not bad:
            return
        self.model.stop_training = True
        ids = self.generator.batch_image_ids(batch)
        references = [str(self.generator.dataset.image_reference(i)) for i in ids]
        losses = ", ".join(f"{name}={value}" for name, value in sorted(bad.items()))
        raise NonFiniteLossError(
            f"non-finite loss at epoch {self.epoch + 1}, step {batch + 1} ({losses}); "
            f"images in this batch: ids {[int(i) for i in ids]} ({', '.join(references)}). "
            f"Check these images and their annotations, or lower the learning rate; "
            f"the latest checkpoint is from before this epoch.")


def copy_weights_by_name(source, target):
    """Copy weights between Keras models (e.g. training -> inference graph) by layer name.

    Returns the number of layers copied.
    """
    source_layers = {layer.name: layer for layer in source.layers if layer.weights}
    copied = 0
    for layer in target.layers:
        if layer.weights and layer.name in source_layers:
            layer.set_weights(source_layers[layer.name].get_weights())
            copied += 1
    return copied


def draw_detections(image, result, colors=None):
    """uint8 [H, W, 3] with each instance's mask tinted and its box outlined."""
    from mrcnn_tf.visualize import apply_mask, random_colors

    canvas = image.copy()
    count = len(result["class_ids"])
    colors = colors or random_colors(max(count, 1))
    for i in range(count):
        color = colors[i % len(colors)]
        canvas = apply_mask(canvas, result["masks"][:, :, i], color)
        y1, x1, y2, x2 = (int(v) for v in result["rois"][i])
        # The outline runs on the box's first and last pixel rows/columns (y2, x2 exclusive).
        y1, x1 = max(y1, 0), max(x1, 0)
        y2, x2 = min(y2, image.shape[0]) - 1, min(x2, image.shape[1]) - 1
        if y2 < y1 or x2 < x1:
            continue
        rgb = (np.array(color) * 255).astype(np.uint8)
        canvas[y1, x1:x2 + 1] = canvas[y2, x1:x2 + 1] = rgb
        canvas[y1:y2 + 1, x1] = canvas[y1:y2 + 1, x2] = rgb
    return canvas


class ValidationImages(keras.callbacks.Callback):
    """Logs a few validation images with their predicted masks to TensorBoard each epoch.

    An inference-mode model is built once, on first use, and receives the
    training model's current weights by layer name before each drawing.
    """

    def __init__(self, dataset, config, log_dir, max_images=3):
        super().__init__()
        self.dataset = dataset
        self.config = config
        self.image_ids = list(dataset.image_ids[:max_images])
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation_images"))
        self._detector = None

    def on_epoch_end(self, epoch, logs=None):
        if self._detector is None:
            from mrcnn_tf.model.mask_rcnn import MaskRCNN
            self._detector = MaskRCNN("inference", self.config, model_dir=".")
        copy_weights_by_name(self.model, self._detector.keras_model)
        images = [self.dataset.load_image(i) for i in self.image_ids]
        drawn = [draw_detections(image, result)
                 for image, result in zip(images, self._detector.detect(images))]
        with self.writer.as_default():
            for image_id, picture in zip(self.image_ids, drawn):
                tf.summary.image(f"image_{image_id}", picture[None], step=epoch + 1)
        self.writer.flush()
