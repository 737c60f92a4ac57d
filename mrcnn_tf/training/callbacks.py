"""Training safety nets: stop on a non-finite loss naming the data, validation images in
TensorBoard, and the generator's epoch under a strategy."""

import math
import os

import keras
import tensorflow as tf

from mrcnn_tf.visualize import draw_detections


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


class TensorBoardImages(keras.callbacks.Callback):
    """Logs validation images with their predicted masks and boxes to TensorBoard.

    Every ``every`` epochs the first ``max_images`` images of ``dataset`` are
    detected by ``detector`` and written with ``tf.summary.image`` to
    ``log_dir/validation_images`` (tag ``image_<id>``, step = epoch number).
    ``train()`` passes the MaskRCNN it trains: its ``detect()`` runs on its
    ``inference_model``, which shares the variables being trained (nothing
    is copied).

    Args:
        dataset: a prepared Dataset (validation images).
        config: the model Config.
        log_dir: the run's TensorBoard directory.
        every: log at epochs every, 2 * every, ... (1-based).
        max_images: how many images to draw.
        detector: object whose ``detect(images)`` returns one result dict
            per image (``rois``, ``class_ids``, ``masks``, as
            ``MaskRCNN.detect``) from the weights being trained.
    """

    def __init__(self, dataset, config, log_dir, every=1, max_images=3, *, detector):
        super().__init__()
        if int(every) < 1 or int(max_images) < 1:
            raise ValueError(f"every and max_images must be >= 1, got {every} and {max_images}")
        if not callable(getattr(detector, "detect", None)):
            raise TypeError(f"detector must have a detect(images) method, got {type(detector).__name__}")
        self.dataset = dataset
        self.config = config
        self.log_dir = os.path.join(log_dir, "validation_images")
        self.every = int(every)
        self.image_ids = [int(i) for i in dataset.image_ids[:int(max_images)]]
        self.detector = detector
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        images = [self.dataset.load_image(i) for i in self.image_ids]
        drawn = [draw_detections(image, result)
                 for image, result in zip(images, self.detector.detect(images))]
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


# The name MaskRCNN.train used first; ValidationImages(dataset, config, log_dir, max_images=n,
# detector=...).
ValidationImages = TensorBoardImages
