"""From a Dataset to training batches: load_sample, load_image_gt and the DataGenerator.

The stages are ``data/samples.py``'s (read, mold with the inference path's
own TF geometry, batch), run eagerly on the CPU one image at a time;
``to_tf_dataset`` runs the same stages in ``tf.data``. Random draws (crop
offsets, augmentation, instance subsets) come from one numpy Generator per
image (``sample_rng``), so seeded runs are reproducible in any worker order.
RPN targets are computed in the training graph, not here.
"""

import math
import multiprocessing
import warnings

import keras
import numpy as np
import tensorflow as tf

from mrcnn_tf.data.augment import check_effective
from mrcnn_tf.data.dataset import ImageLoadError
from mrcnn_tf.data.samples import (DATA_DEVICE, batch_inputs, mold_sample, read_sample,
                                   sample_rng, stack_molded)
from mrcnn_tf.image_meta import compose_image_meta


def _check_start_method(use_multiprocessing):
    """Worker processes must not be forked: TensorFlow is not fork-safe (a forked child
    hangs in the first op that needs the thread pool its parent already used)."""
    method = multiprocessing.get_start_method(allow_none=True) or \
        multiprocessing.get_all_start_methods()[0]  # the first is the platform's default
    if use_multiprocessing and method == "fork":
        raise ValueError(
            "use_multiprocessing=True with the 'fork' start method: the generator runs "
            "TensorFlow ops, which hang in forked worker processes. Use threads "
            "(workers=N, use_multiprocessing=False; the TF ops release the GIL), or call "
            "multiprocessing.set_start_method('forkserver') (or 'spawn') once at program "
            "start, under `if __name__ == \"__main__\":`")


def load_sample(dataset, config, image_id, augmentation=None, rng=None):
    """One image and its ground truth, molded the way the model sees them (before batching).

    Args: as :func:`load_image_gt`.
    Returns:
        dict: ``image`` float32 [h, w, C] molded pixel values (0..255,
        unrounded, not normalised, padding 0); ``info`` the image's image
        info (``ops/image.py``) as numpy: ``original_size`` int32 [(H, W)] of
        the image that was resized (after augmentation), ``molded_size``
        int32 [(h, w)], ``window`` int32 [(y1, x1, y2, x2)] molded pixels,
        ``scale`` float32 [(sy, sx)]; ``image_id`` int; ``active_class_ids``
        int32 [NUM_CLASSES]; ``class_ids`` int32 [N]; ``boxes`` int32
        [N, (y1, x1, y2, x2)] molded pixels, y2/x2 exclusive; ``masks`` bool
        [h, w, N], or [mh, mw, N] mini masks (``crop_masks`` of each box).
        Instances whose mask is empty after augmenting/resizing are dropped,
        and at most MAX_GT_INSTANCES kept (a random subset).
    """
    with tf.device(DATA_DEVICE):
        molded = mold_sample(read_sample(dataset, config, image_id, augmentation, rng), config)
    n = int(molded["num_instances"])
    return {"image": molded["image"].numpy(),
            "info": {name: molded[name].numpy()
                     for name in ("original_size", "molded_size", "window", "scale")},
            "image_id": int(molded["image_id"]), "active_class_ids": molded["active_class_ids"],
            "class_ids": molded["gt_class_ids"].numpy()[:n],
            "boxes": molded["gt_boxes"].numpy()[:n].astype(np.int32),
            "masks": molded["gt_masks"].numpy()[..., :n]}


def load_image_gt(dataset, config, image_id, augmentation=None, rng=None):
    """Load one image and its ground truth, resized the way the model sees it.

    Args:
        dataset: a prepared ``Dataset``.
        config: the model ``Config``.
        image_id: internal image id.
        augmentation: optional callable ``(image, masks, rng) -> (image, masks)``
            on the original-size uint8 image and bool masks; boxes are
            recomputed from the transformed masks afterwards.
        rng: numpy Generator (random crop, augmentation).
    Returns:
        image float32 [h, w, C] molded pixel values (0..255, unrounded, not
        normalised), image_meta float32 [META] (the image alone: its own
        molded size), class_ids int32 [N], boxes int32 [N, (y1, x1, y2, x2)]
        molded pixels, masks bool [h, w, N] or [mh, mw, N] (mini masks).
        Instances whose mask is empty after resizing/augmenting are dropped.
    """
    sample = load_sample(dataset, config, image_id, augmentation, rng)
    with tf.device(DATA_DEVICE):
        info = {name: value[None] for name, value in sample["info"].items()}
        meta = compose_image_meta(info, sample["active_class_ids"][None],
                                  image_ids=np.array([sample["image_id"]], np.int32),
                                  channels=config.IMAGE_CHANNEL_COUNT).numpy()[0]
    return sample["image"], meta, sample["class_ids"], sample["boxes"], sample["masks"]


class DataGenerator(keras.utils.PyDataset):
    """Batches of model inputs for the training graph, for ``model.fit``.

    Each item is a dict keyed like the training model's inputs:
    ``input_image`` float32 [B, H, W, 3] (``ops.image.normalize``d with
    MEAN_PIXEL, PIXEL_STD, INPUT_CHANNEL_ORDER; images smaller than the
    batch's largest are padded bottom/right with black before normalising),
    ``input_image_meta`` [B, META], ``input_gt_class_ids`` int32 [B, MAX_GT_INSTANCES],
    ``input_gt_boxes`` [B, MAX_GT_INSTANCES, 4] (molded-image pixels) and
    ``input_gt_masks`` bool [B, mh, mw, MAX_GT_INSTANCES]. Ground truth is
    padded to MAX_GT_INSTANCES so every step has the same shapes (no retracing).
    It loads, augments and batches only: the RPN targets are computed in the
    training graph. ``to_tf_dataset`` gives the same batches from ``tf.data``.

    Args:
        dataset: a prepared Dataset.
        config: the model Config (BATCH_SIZE images per item).
        shuffle: reshuffle the image order every epoch.
        augmentation: callable ``(image, masks, rng) -> (image, masks)``.
        seed: makes the order, crops and augmentation reproducible.
        batches_per_epoch: len() of the generator; default one pass over
            the images. Larger values wrap around the (shuffled) images.
        skip_bad_images: an image file that cannot be decoded is replaced by
            the next readable image in id order (deterministic, wrapping
            around), recorded in ``skipped_images`` (id -> error) and never
            read again; one warning per epoch gives the count and the ids
            (``warn_skipped``, called from ``on_epoch_end``). By default the
            ImageLoadError naming the file and the image id is raised as is.
            Only undecodable files are skipped: bad annotations still raise.
            With ``use_multiprocessing`` each worker keeps its own record.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size``
            of ``keras.utils.PyDataset``. Worker processes need the
            'forkserver' or 'spawn' start method (TensorFlow ops hang in
            forked processes): ``use_multiprocessing`` with 'fork' raises.
    """

    def __init__(self, dataset, config, shuffle=True, augmentation=None, seed=None,
                 batches_per_epoch=None, skip_bad_images=False, **kwargs):
        super().__init__(**kwargs)
        _check_start_method(self.use_multiprocessing)
        self.skip_bad_images = skip_bad_images
        self.skipped_images = {}  # image id -> why it could not be read
        self._skipped_this_epoch = set()  # ids replaced since the last warning
        if len(dataset.image_ids) == 0:
            raise ValueError("the dataset has no images (did you call prepare()?)")
        if dataset.num_classes > config.NUM_CLASSES:
            raise ValueError(f"the dataset has {dataset.num_classes} classes (with background) but "
                             f"config NUM_CLASSES is {config.NUM_CLASSES}")
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        if augmentation is not None:  # no silent no-op: a rescale the resize would undo
            check_effective(augmentation, config.IMAGE_RESIZE_MODE)
        self.augmentation = augmentation
        self.seed = seed
        self.batch_size = config.BATCH_SIZE
        self.image_ids = np.array(dataset.image_ids)
        if getattr(config, "FILTER_EMPTY_IMAGES", False):
            self.image_ids = np.array([i for i in self.image_ids if dataset.load_mask(i)[1].size])
        self.batches_per_epoch = batches_per_epoch or math.ceil(len(self.image_ids) / self.batch_size)
        self.set_epoch(0)

    def __len__(self):
        return self.batches_per_epoch

    def _epoch_order(self):
        if not self.shuffle:
            return self.image_ids
        return np.random.default_rng([self.seed or 0, self.epoch]).permutation(self.image_ids)

    def on_epoch_begin(self):
        # Counted at epoch begin: Keras also calls on_epoch_end when it resets its
        # iterator before the first epoch, so counting ends would be off by one.
        if self._started:
            self.set_epoch(self.epoch + 1)
        self._started = True

    def set_epoch(self, epoch):
        """Use ``epoch``'s image order and random draws (e.g. when resuming a run)."""
        self.epoch = int(epoch)
        self._started = False
        self._order = self._epoch_order()

    def _substitute(self, image_id):
        """The image read in place of ``image_id``: itself, or with skip_bad_images the
        next image (in id order, wrapping) not known to be unreadable."""
        count = len(self.image_ids)
        start = int(np.searchsorted(self.image_ids, image_id))
        for offset in range(count):
            candidate = self.image_ids[(start + offset) % count]
            if candidate not in self.skipped_images:
                return candidate
        raise ImageLoadError(
            f"skip_bad_images: none of the {count} images of the dataset could be read; "
            f"image {image_id}: {self.skipped_images.get(image_id, '')}")

    def _load(self, image_id, rng):
        """read_sample, or with skip_bad_images a readable image in place of a broken file."""
        while True:
            candidate = self._substitute(image_id)
            if candidate != image_id:
                self._skipped_this_epoch.add(int(image_id))
            try:
                return read_sample(self.dataset, self.config, candidate, self.augmentation, rng)
            except ImageLoadError as error:
                if not self.skip_bad_images:
                    raise  # as raised: it names the file and the image id
                self.skipped_images[int(candidate)] = str(error)
                self._skipped_this_epoch.add(int(candidate))

    def on_epoch_end(self):
        """Keras calls this after each epoch: warn once about the images skipped in it."""
        self.warn_skipped()

    def warn_skipped(self):
        """Warn (once) with the count and ids of the unreadable images replaced since the
        last warning; ``fit`` calls this at every epoch end. Returns the ids warned about."""
        ids = sorted(self._skipped_this_epoch)
        self._skipped_this_epoch = set()
        if ids:
            first = self.skipped_images.get(ids[0], "")
            warnings.warn(
                f"DataGenerator epoch {self.epoch + 1}: {len(ids)} unreadable image(s) replaced "
                f"by other images of the dataset (skip_bad_images=True): ids {ids}; "
                f"{len(self.skipped_images)} known unreadable in all, errors in "
                f".skipped_images (first: {first})", stacklevel=2)
        return ids

    def batch_image_ids(self, index):
        """The image ids of batch ``index`` of the current epoch (after replacing images
        already known to be unreadable, with skip_bad_images)."""
        ids = self.scheduled_ids(index)
        if self.skipped_images and len(self.skipped_images) < len(self.image_ids):
            ids = [self._substitute(i) for i in ids]
        return ids

    def scheduled_ids(self, index):
        """Batch ``index``'s ``batch_size`` ids in this epoch's order, before any replacement
        of unreadable images (``to_tf_dataset`` reads these and replaces in its read)."""
        start = index * self.batch_size
        return [self._order[(start + i) % len(self._order)] for i in range(self.batch_size)]

    def __getitem__(self, index):
        return self.build_batch(self.scheduled_ids(index), index)

    def read(self, image_id, batch_index, slot, epoch=None):
        """Stage 1 (``samples.read_sample``) of slot ``slot`` of batch ``batch_index`` of
        ``epoch`` (default: the current one), with that slot's own random draws; with
        skip_bad_images, a readable image in place of a broken file."""
        epoch = self.epoch if epoch is None else epoch
        return self._load(image_id, sample_rng(self.seed, epoch, batch_index, slot))

    def build_batch(self, image_ids, batch_index=0):
        """The input dict for ``image_ids`` as batch ``batch_index`` (see the class docstring)."""
        with tf.device(DATA_DEVICE):
            molded = [mold_sample(self.read(image_id, batch_index, slot), self.config)
                      for slot, image_id in enumerate(image_ids)]
            batch = batch_inputs(stack_molded(molded, self.config), self.config)
            return {name: value.numpy() for name, value in batch.items()}
