"""From a Dataset to training batches: load_image_gt and the DataGenerator."""

import math
import warnings

import keras
import numpy as np

from mrcnn_tf.data.dataset import ImageLoadError
from mrcnn_tf.data.targets import build_rpn_targets
from mrcnn_tf.data.transforms import (compose_image_meta, extract_bboxes, minimize_mask,
                                      mold_image, resize_image, resize_mask)
from mrcnn_tf.ops.anchors import pyramid_anchors_for_image

# The FPN halves the image five times (P2..P6) and upsamples back: sides must divide by 64.
IMAGE_SIDE_MULTIPLE = 64


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
        image uint8 [H, W, 3] (molded size), image_meta float32 [META],
        class_ids int32 [N], boxes int32 [N, (y1, x1, y2, x2)] pixels,
        masks bool [H, W, N] or [mh, mw, N] (mini masks). Instances whose
        mask is empty after resizing/augmenting are dropped.
    """
    rng = rng if rng is not None else np.random.default_rng()
    image = dataset.load_image(image_id)
    masks, class_ids = dataset.load_mask(image_id)
    masks, class_ids = np.asarray(masks, bool), np.asarray(class_ids, np.int32)
    _check_instances(dataset, image_id, image, masks, class_ids)
    original_shape = image.shape
    if augmentation is not None:
        image, masks = augmentation(image, masks, rng)
    image, window, scale, padding, crop = resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM,
        min_scale=config.IMAGE_MIN_SCALE, mode=config.IMAGE_RESIZE_MODE, rng=rng)
    masks = resize_mask(masks, scale, padding, crop)

    keep = masks.any(axis=(0, 1))
    masks, class_ids = masks[:, :, keep], class_ids[keep]
    boxes = extract_bboxes(masks)
    if config.USE_MINI_MASK:
        masks = minimize_mask(boxes, masks, config.MINI_MASK_SHAPE)

    # Config-sized: a dataset may use fewer classes than the model (the rest stay inactive).
    active_class_ids = np.zeros([config.NUM_CLASSES], np.int32)
    source = dataset.image_info[image_id]["source"]
    active_class_ids[dataset.source_class_ids[source]] = 1
    meta = compose_image_meta(image_id, original_shape, image.shape, window, scale, active_class_ids)
    return image, meta, class_ids, boxes, masks


class DataGenerator(keras.utils.PyDataset):
    """Batches of model inputs for the training graph, for ``model.fit``.

    Each item is a dict keyed like the training model's inputs:
    ``input_image`` float32 [B, H, W, 3] (mean subtracted),
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
            of ``keras.utils.PyDataset``.
    """

    def __init__(self, dataset, config, shuffle=True, augmentation=None, seed=None,
                 batches_per_epoch=None, skip_bad_images=False, **kwargs):
        super().__init__(**kwargs)
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
        """load_image_gt, or with skip_bad_images a readable image in place of a broken file."""
        while True:
            candidate = self._substitute(image_id)
            if candidate != image_id:
                self._skipped_this_epoch.add(int(image_id))
            try:
                return load_image_gt(self.dataset, self.config, candidate, self.augmentation, rng)
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
        height = max(s[0].shape[0] for s in samples)
        width = max(s[0].shape[1] for s in samples)
        if height % IMAGE_SIDE_MULTIPLE or width % IMAGE_SIDE_MULTIPLE:
            raise ValueError(f"molded images are {height}x{width}; the FPN needs sides divisible "
                             f"by {IMAGE_SIDE_MULTIPLE} (use IMAGE_RESIZE_MODE 'square', 'pad64' "
                             f"or 'crop' with IMAGE_*_DIM multiples of 64)")
        anchors = pyramid_anchors_for_image((height, width), config.RPN_ANCHOR_SCALES,
                                            config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES,
                                            config.RPN_ANCHOR_STRIDE, normalized=False)
        max_gt = config.MAX_GT_INSTANCES
        mask_hw = config.MINI_MASK_SHAPE if config.USE_MINI_MASK else (height, width)
        batch = {
            # Padding is a black pixel, molded: the same value resize_image pads with.
            "input_image": np.broadcast_to(mold_image(np.zeros(config.IMAGE_CHANNEL_COUNT, np.uint8), config.MEAN_PIXEL),
                                           [len(samples), height, width, config.IMAGE_CHANNEL_COUNT]).copy(),
            "input_image_meta": np.zeros([len(samples), config.IMAGE_META_SIZE], np.float32),
            "input_rpn_match": np.zeros([len(samples), len(anchors), 1], np.int32),
            "input_rpn_bbox": np.zeros([len(samples), config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4], np.float32),
            "input_gt_class_ids": np.zeros([len(samples), max_gt], np.int32),
            "input_gt_boxes": np.zeros([len(samples), max_gt, 4], np.float32),
            "input_gt_masks": np.zeros([len(samples), mask_hw[0], mask_hw[1], max_gt], bool),
        }
        for b, (image, meta, class_ids, boxes, masks) in enumerate(samples):
            if len(class_ids) > max_gt:  # keep a random subset rather than fail
                keep = np.sort(rng.choice(len(class_ids), max_gt, replace=False))
                class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[..., keep]
            n = len(class_ids)
            # Images smaller than the batch's largest are padded bottom/right.
            batch["input_image"][b, :image.shape[0], :image.shape[1]] = mold_image(image, config.MEAN_PIXEL)
            meta = meta.copy()
            meta[4:6] = (height, width)
            batch["input_image_meta"][b] = meta
            rpn_match, rpn_bbox = build_rpn_targets(
                anchors, class_ids, boxes, config.RPN_TRAIN_ANCHORS_PER_IMAGE,
                config.RPN_BBOX_STD_DEV, rng)
            batch["input_rpn_match"][b, :, 0] = rpn_match
            batch["input_rpn_bbox"][b] = rpn_bbox
            batch["input_gt_class_ids"][b, :n] = class_ids
            batch["input_gt_boxes"][b, :n] = boxes
            batch["input_gt_masks"][b, :masks.shape[0], :masks.shape[1], :n] = masks
        return batch
