"""From a Dataset to training batches: load_image_gt and the DataGenerator.

The geometry is the TF ops of ``ops/image.py`` and ``ops/masks.py``, the
inference path's own, run on the CPU one image at a time (traced once per
configuration, for any image size): resize and pad (or crop) with ``resize_image`` /
``resize_masks``, mini masks with ``crop_masks``, batch padding with
``batch_molded_size`` / ``pad_to_batch``, then ``normalize``. Random draws
(crop offsets, augmentation, RPN sampling) come from the generator's numpy
``rng`` only, so seeded runs are reproducible in any worker order.
"""

import functools
import math
import multiprocessing
import warnings

import keras
import numpy as np
import tensorflow as tf

from mrcnn_tf.data.dataset import ImageLoadError
from mrcnn_tf.data.targets import build_rpn_targets, extract_bboxes
from mrcnn_tf.image_meta import compose_image_meta
from mrcnn_tf.ops.anchors import pyramid_anchors_for_image
from mrcnn_tf.ops.image import (SIZE_MULTIPLE, batch_molded_size, normalize, pad_to_batch,
                                random_crop_offset, resize_image, resize_masks, scaled_size)
from mrcnn_tf.ops.masks import crop_masks

# Data preparation stays on the host, whatever devices train.
DATA_DEVICE = "/CPU:0"


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


def side_multiple(config):
    """What the molded batch's sides must divide by: 64 (P6's stride) for the classic
    modes, IMAGE_PAD_MULTIPLE for "shortest_edge" (the batch is padded up to it)."""
    if config.IMAGE_RESIZE_MODE == "shortest_edge":
        return int(config.IMAGE_PAD_MULTIPLE)
    return SIZE_MULTIPLE


def _check_instances(dataset, image_id, image, masks, class_ids):
    """Reject annotations that would silently train on wrong targets."""
    reference = dataset.image_reference(image_id)
    if masks.ndim != 3 or masks.shape[:2] != image.shape[:2]:
        raise ValueError(f"image {image_id} ({reference}): masks have shape {masks.shape}, "
                         f"expected [{image.shape[0]}, {image.shape[1]}, N] like the image")
    if class_ids.shape != (masks.shape[2],):
        raise ValueError(f"image {image_id} ({reference}): {masks.shape[2]} masks but "
                         f"class_ids has shape {class_ids.shape}")
    bad = class_ids[(class_ids >= dataset.num_classes) | (class_ids == 0)]
    if bad.size:
        raise ValueError(f"image {image_id} ({reference}): class id {int(bad[0])} is not a "
                         f"foreground class of this dataset (1..{dataset.num_classes - 1}; "
                         f"negative ids mark crowd regions)")


@functools.lru_cache(maxsize=None)
def _traced_resize(mode, min_dim, max_dim, min_scale, channels):
    """resize_image + resize_masks of one configuration, traced once for every image size.

    Returns:
        tf.function (image float32 [H, W, C], masks bool [H, W, N], crop_yx
        int32 [2], read in "crop" mode only) -> (image float32 [h, w, C],
        window int32 [4], scale float32 [2], masks bool [h, w, N]).
    """
    @tf.function(input_signature=[tf.TensorSpec([None, None, channels], tf.float32),
                                  tf.TensorSpec([None, None, None], tf.bool),
                                  tf.TensorSpec([2], tf.int32)])
    def resize(image, masks, crop_yx):
        with tf.device(DATA_DEVICE):
            resized = resize_image(image, mode, min_dim, max_dim, min_scale,
                                   crop_yx if mode == "crop" else None)
            return (resized["image"], resized["window"], resized["scale"],
                    resize_masks(masks, resized))

    return resize


@functools.lru_cache(maxsize=None)
def _traced_crop_masks(output_size):
    """crop_masks to ``output_size``, traced once: (masks bool [H, W, N], boxes [N, 4]) -> bool."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.bool),
                                  tf.TensorSpec([None, 4], tf.float32)])
    def crop(masks, boxes):
        with tf.device(DATA_DEVICE):
            return crop_masks(masks, boxes, output_size)

    return crop


def _resize(image, masks, config, rng):
    """Mold one image and its masks the way the model sees them ("crop": at an offset from
    ``rng``). Returns numpy (image, window, scale, masks) as :func:`_traced_resize`."""
    mode = config.IMAGE_RESIZE_MODE
    min_dim, max_dim, min_scale = config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE
    crop_yx = (0, 0)
    if mode == "crop":
        with tf.device(DATA_DEVICE):
            _, height, width = scaled_size(image.shape[0], image.shape[1], mode, min_dim, max_dim,
                                           min_scale)
        crop_yx = random_crop_offset((int(height), int(width)), int(min_dim), rng)
    resize = _traced_resize(mode, min_dim, max_dim, min_scale, int(config.IMAGE_CHANNEL_COUNT))
    outputs = resize(np.asarray(image, np.float32), masks, np.array(crop_yx, np.int32))
    return tuple(value.numpy() for value in outputs)


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
        Instances whose mask is empty after augmenting/resizing are dropped.
    """
    rng = rng if rng is not None else np.random.default_rng()
    image = dataset.load_image(image_id)
    masks, class_ids = dataset.load_mask(image_id)
    masks, class_ids = np.asarray(masks, bool), np.asarray(class_ids, np.int32)
    _check_instances(dataset, image_id, image, masks, class_ids)
    if augmentation is not None:
        image, masks = augmentation(image, masks, rng)
    molded, window, scale, masks = _resize(image, masks, config, rng)
    keep = masks.any(axis=(0, 1))
    masks, class_ids = masks[:, :, keep], class_ids[keep]
    boxes = extract_bboxes(masks)
    if config.USE_MINI_MASK:
        crop = _traced_crop_masks(tuple(int(v) for v in config.MINI_MASK_SHAPE))
        masks = crop(masks, boxes.astype(np.float32)).numpy()
    info = {"original_size": np.array(image.shape[:2], np.int32),
            "molded_size": np.array(molded.shape[:2], np.int32), "window": window, "scale": scale}
    # Config-sized: a dataset may use fewer classes than the model (the rest stay inactive).
    active_class_ids = np.zeros([config.NUM_CLASSES], np.int32)
    source = dataset.image_info[image_id]["source"]
    active_class_ids[dataset.source_class_ids[source]] = 1
    return {"image": molded, "info": info, "image_id": int(image_id),
            "active_class_ids": active_class_ids, "class_ids": class_ids, "boxes": boxes,
            "masks": masks}


def _compose_meta(samples, molded_hw, config):
    """The batch's meta vectors: each sample's info, with the batch's molded size."""
    info = {name: np.stack([s["info"][name] for s in samples])
            for name in ("original_size", "window", "scale")}
    info["molded_size"] = np.tile(np.asarray(molded_hw, np.int32)[None], [len(samples), 1])
    meta = compose_image_meta(info, np.stack([s["active_class_ids"] for s in samples]),
                              image_ids=np.array([s["image_id"] for s in samples], np.int32),
                              channels=config.IMAGE_CHANNEL_COUNT)
    return meta.numpy()


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
        meta = _compose_meta([sample], sample["info"]["molded_size"], config)[0]
    return sample["image"], meta, sample["class_ids"], sample["boxes"], sample["masks"]


class DataGenerator(keras.utils.PyDataset):
    """Batches of model inputs for the training graph, for ``model.fit``.

    Each item is a dict keyed like the training model's inputs:
    ``input_image`` float32 [B, H, W, 3] (``ops.image.normalize``d with
    MEAN_PIXEL, PIXEL_STD, INPUT_CHANNEL_ORDER; images smaller than the
    batch's largest are padded bottom/right with black before normalising),
    ``input_image_meta`` [B, META], ``input_rpn_match`` int32 [B, A, 1],
    ``input_rpn_bbox`` [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4],
    ``input_gt_class_ids`` int32 [B, MAX_GT_INSTANCES],
    ``input_gt_boxes`` [B, MAX_GT_INSTANCES, 4] (molded-image pixels) and
    ``input_gt_masks`` bool [B, mh, mw, MAX_GT_INSTANCES]. Ground truth is
    padded to MAX_GT_INSTANCES so every step has the same shapes (no retracing).

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
        """load_sample, or with skip_bad_images a readable image in place of a broken file."""
        while True:
            candidate = self._substitute(image_id)
            if candidate != image_id:
                self._skipped_this_epoch.add(int(image_id))
            try:
                return load_sample(self.dataset, self.config, candidate, self.augmentation, rng)
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
        ids = self._scheduled_ids(index)
        if self.skipped_images and len(self.skipped_images) < len(self.image_ids):
            ids = [self._substitute(i) for i in ids]
        return ids

    def _scheduled_ids(self, index):
        """Batch ``index``'s ids in this epoch's order, before any replacement."""
        start = index * self.batch_size
        return [self._order[(start + i) % len(self._order)] for i in range(self.batch_size)]

    def __getitem__(self, index):
        # One generator per (seed, epoch, batch): reproducible in any worker order.
        rng = np.random.default_rng([self.seed or 0, self.epoch, index]) if self.seed is not None \
            else np.random.default_rng()
        return self.build_batch(self._scheduled_ids(index), rng)

    def build_batch(self, image_ids, rng):
        """The input dict for ``image_ids`` (see the class docstring)."""
        config = self.config
        samples = [self._load(i, rng) for i in image_ids]
        with tf.device(DATA_DEVICE):
            molded_hw = batch_molded_size(np.stack([s["info"]["molded_size"] for s in samples]),
                                          config.IMAGE_RESIZE_MODE, config.IMAGE_PAD_MULTIPLE)
            height, width = (int(v) for v in molded_hw)
            multiple = side_multiple(config)
            if height % multiple or width % multiple:
                raise ValueError(
                    f"molded images are {height}x{width}; the FPN needs sides divisible by "
                    f"{multiple} (IMAGE_RESIZE_MODE {config.IMAGE_RESIZE_MODE!r}: use 'square', "
                    f"'pad64', 'crop' with IMAGE_*_DIM multiples of {SIZE_MULTIPLE}, or "
                    f"'shortest_edge')")
            images = tf.stack([pad_to_batch(s["image"], molded_hw) for s in samples])
            images = normalize(images, config.MEAN_PIXEL, config.PIXEL_STD,
                               config.INPUT_CHANNEL_ORDER).numpy()
            metas = _compose_meta(samples, (height, width), config)
        anchors = pyramid_anchors_for_image((height, width), config.RPN_ANCHOR_SCALES,
                                            config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES,
                                            config.RPN_ANCHOR_STRIDE, normalized=False)
        max_gt = config.MAX_GT_INSTANCES
        mask_hw = config.MINI_MASK_SHAPE if config.USE_MINI_MASK else (height, width)
        batch = {
            "input_image": images,
            "input_image_meta": metas,
            "input_rpn_match": np.zeros([len(samples), len(anchors), 1], np.int32),
            "input_rpn_bbox": np.zeros([len(samples), config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4], np.float32),
            "input_gt_class_ids": np.zeros([len(samples), max_gt], np.int32),
            "input_gt_boxes": np.zeros([len(samples), max_gt, 4], np.float32),
            "input_gt_masks": np.zeros([len(samples), mask_hw[0], mask_hw[1], max_gt], bool),
        }
        for b, sample in enumerate(samples):
            class_ids, boxes, masks = sample["class_ids"], sample["boxes"], sample["masks"]
            if len(class_ids) > max_gt:  # keep a random subset rather than fail
                keep = np.sort(rng.choice(len(class_ids), max_gt, replace=False))
                class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[..., keep]
            n = len(class_ids)
            rpn_match, rpn_bbox = build_rpn_targets(
                anchors, class_ids, boxes, config.RPN_TRAIN_ANCHORS_PER_IMAGE,
                config.RPN_BBOX_STD_DEV, rng)
            batch["input_rpn_match"][b, :, 0] = rpn_match
            batch["input_rpn_bbox"][b] = rpn_bbox
            batch["input_gt_class_ids"][b, :n] = class_ids
            batch["input_gt_boxes"][b, :n] = boxes
            # Full-size masks are padded bottom/right like their image.
            batch["input_gt_masks"][b, :masks.shape[0], :masks.shape[1], :n] = masks
        return batch
