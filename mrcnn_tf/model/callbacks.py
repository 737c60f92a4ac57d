"""Training safety nets: stop on a non-finite loss naming the data, validation images in
TensorBoard, and an early check that checkpoints can be written."""

import errno
import math
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

# What a failed write probe means to a user, by errno.
_WRITE_FAILURES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a component of the path is a file, not a directory",
    errno.EEXIST: "the path exists and is not a directory",
}
PROBE_BYTES = 4096


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or Inf; the message names the step and the images."""


class GeneratorEpoch(keras.callbacks.Callback):
    """Gives a DataGenerator the epoch number ``fit`` is at, at each epoch begin.

    The generator's order and random draws are per epoch, so a resumed run
    draws the data of the epochs it continues with. Counting its own epoch
    begins is off by one under a tf.distribute strategy (Keras reads a first
    batch to build the model), so ``train()`` sets the epoch from here.
    """

    def __init__(self, generator):
        super().__init__()
        self.generator = generator

    def on_epoch_begin(self, epoch, logs=None):
        self.generator.set_epoch(epoch)


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

    Every layer of ``target`` that has weights and whose name is a layer of
    ``source`` with weights receives that layer's values (nested models such
    as ``rpn_model`` are copied whole). Other layers are left as they are.

    Returns:
        the number of layers copied.
    Raises:
        ValueError naming the layer when same-named layers differ in shapes
        (e.g. another NUM_CLASSES).
    """
    source_layers = {layer.name: layer for layer in source.layers if layer.weights}
    copied = 0
    for layer in target.layers:
        if layer.weights and layer.name in source_layers:
            values = source_layers[layer.name].get_weights()
            try:
                layer.set_weights(values)
            except ValueError as error:
                raise ValueError(f"cannot copy weights of layer {layer.name!r}: {error}") from error
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


class TensorBoardImages(keras.callbacks.Callback):
    """Logs validation images with their predicted masks and boxes to TensorBoard.

    Every ``every`` epochs the first ``max_images`` images of ``dataset`` are
    detected by an inference-mode model holding the training model's current
    weights and written with ``tf.summary.image`` to
    ``log_dir/validation_images`` (tag ``image_<id>``, step = epoch number).
    The inference model is built once, on first use, by
    ``inference_builder(config)`` (default ``MaskRCNN("inference", config)``);
    before each drawing it receives the weights by layer name.

    Args:
        dataset: a prepared Dataset (validation images).
        config: the model Config.
        log_dir: the run's TensorBoard directory.
        every: log at epochs every, 2 * every, ... (1-based).
        max_images: how many images to draw.
        inference_builder: callable ``config -> object`` with ``keras_model``
            and ``detect(images)``, like ``MaskRCNN``.
    """

    def __init__(self, dataset, config, log_dir, every=1, max_images=3, inference_builder=None):
        super().__init__()
        if int(every) < 1 or int(max_images) < 1:
            raise ValueError(f"every and max_images must be >= 1, got {every} and {max_images}")
        self.dataset = dataset
        self.config = config
        self.log_dir = os.path.join(log_dir, "validation_images")
        self.every = int(every)
        self.image_ids = [int(i) for i in dataset.image_ids[:int(max_images)]]
        self.inference_builder = inference_builder
        self._detector = None
        self._writer = None

    def _build_detector(self):
        if self.inference_builder is not None:
            return self.inference_builder(self.config)
        from mrcnn_tf.model.mask_rcnn import MaskRCNN  # a cycle at import time otherwise
        return MaskRCNN("inference", self.config, model_dir=os.path.dirname(self.log_dir))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        if self._detector is None:
            self._detector = self._build_detector()
        copy_weights_by_name(self.model, self._detector.keras_model)
        images = [self.dataset.load_image(i) for i in self.image_ids]
        drawn = [draw_detections(image, result)
                 for image, result in zip(images, self._detector.detect(images))]
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for image_id, picture in zip(self.image_ids, drawn):
                tf.summary.image(f"image_{image_id}", picture[None], step=epoch + 1)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# The name MaskRCNN.train used first; ValidationImages(dataset, config, log_dir, max_images=n).
ValidationImages = TensorBoardImages


class ModelDirError(OSError):
    """model_dir cannot hold checkpoints; ``errno`` is the failed write's."""


def _write_probe(directory):
    """Write, sync and delete a small file in ``directory`` (OSError if impossible)."""
    fd, probe = tempfile.mkstemp(prefix=".write_test_", dir=directory)
    try:
        os.write(fd, b"\0" * PROBE_BYTES)
        os.fsync(fd)  # a full disk may only refuse the data here
    finally:
        os.close(fd)
        os.remove(probe)


def check_writable_model_dir(path, min_free_bytes=0):
    """Create ``path`` if needed and prove a checkpoint could be written there, before training.

    Args:
        path: the model_dir or run directory.
        min_free_bytes: also require this much free space (e.g. a few times
            the weights' size: a checkpoint holds weights and optimizer state).
    Returns:
        the absolute path.
    Raises:
        ModelDirError (an OSError, errno kept) whose message names the path
        and the reason: disk full, permission denied, read-only file system,
        a path component that is a file, ...
    """
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        _write_probe(path)
        free = shutil.disk_usage(path).free
        if free < min_free_bytes:
            raise OSError(errno.ENOSPC, f"only {free} bytes free, {min_free_bytes} needed")
    except OSError as error:
        reason = _WRITE_FAILURES.get(error.errno, error.strerror or str(error))
        standard = os.strerror(error.errno) if error.errno else None
        detail = f"; {error.strerror}" if error.strerror not in (None, reason, standard) else ""
        raise ModelDirError(error.errno, f"model_dir cannot hold checkpoints: {reason}{detail} "
                                         f"({path}). Choose another model_dir or free space "
                                         f"before training.") from error
    return path
