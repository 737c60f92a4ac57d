"""From a Dataset's image to the training model's inputs, in three stages shared by both input paths.

1. :func:`read_sample` (Python, numpy): load the image and its masks, check
   them, augment, and draw this image's random numbers (crop offset, which
   instances to keep beyond MAX_GT_INSTANCES) from its own ``rng``.
2. :func:`mold_sample` (TF ops, one traced function per configuration):
   resize and pad (or crop) the image and masks as the inference path does
   (``ops.image.resize_image``), drop instances emptied by it, take the
   tight boxes, make mini masks, pad the ground truth to MAX_GT_INSTANCES.
3. :func:`batch_inputs` (TF ops): pad the batch to one molded size,
   normalise, and pack the image meta.

``DataGenerator`` runs the three eagerly, image by image; ``to_tf_dataset``
runs stage 1 in ``tf.numpy_function`` and stages 2-3 as graph maps in
``tf.data``. Same functions, same random draws: the same batches.
"""

import functools

import numpy as np
import tensorflow as tf

from mrcnn_tf.image_meta import compose_image_meta
from mrcnn_tf.ops.image import SIZE_MULTIPLE, batch_molded_size, choose_min_dim, crop_offset, \
    normalize, resize_image, resize_masks, scale_jitter_resize, scaled_size
from mrcnn_tf.ops.masks import crop_masks, mask_boxes

# Data preparation stays on the host, whatever devices train.
DATA_DEVICE = "/CPU:0"


def extract_bboxes(masks):
    """``ops.masks.mask_boxes`` on numpy: bool [H, W, N] -> int32 [N, (y1, x1, y2, x2)]."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [H, W, N], got shape {masks.shape}")
    with tf.device(DATA_DEVICE):
        return mask_boxes(masks).numpy()


def side_multiple(config):
    """What the molded batch's sides must divide by: 64 (P6's stride) for the classic
    modes, IMAGE_PAD_MULTIPLE for "shortest_edge" (the batch is padded up to it)."""
    if config.IMAGE_RESIZE_MODE == "shortest_edge":
        return int(config.IMAGE_PAD_MULTIPLE)
    return SIZE_MULTIPLE


def sample_rng(seed, epoch, batch_index, slot):
    """The numpy Generator of one image of one batch: reproducible in any worker or thread
    order when ``seed`` is set, fresh entropy otherwise."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed), int(epoch), int(batch_index), int(slot)])


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


def read_sample(dataset, config, image_id, augmentation=None, rng=None):
    """Stage 1: one image and its instances, augmented, with this image's random draws.

    Args:
        dataset: a prepared Dataset.
        config: the model Config.
        image_id: internal image id.
        augmentation: optional callable ``(image, masks, rng) -> (image, masks)``
            on the original-size uint8 image and bool masks.
        rng: numpy Generator (augmentation, crop offset, instance subset).
    Returns:
        dict of numpy arrays: ``image`` uint8 [H, W, C]; ``masks`` bool
        [H, W, N]; ``class_ids`` int32 [N]; ``crop_draw`` float32 [2] in
        [0, 1) (the "crop" mode's offset); ``priority`` float32 [N] (beyond
        MAX_GT_INSTANCES, the instances of highest priority are kept);
        ``image_id`` int32; ``active_class_ids`` int32 [NUM_CLASSES].
    """
    rng = rng if rng is not None else np.random.default_rng()
    image = dataset.load_image(image_id)
    masks, class_ids = dataset.load_mask(image_id)
    masks, class_ids = np.asarray(masks, bool), np.asarray(class_ids, np.int32)
    _check_instances(dataset, image_id, image, masks, class_ids)
    if augmentation is not None:
        image, masks = augmentation(image, masks, rng)
    # Config-sized: a dataset may use fewer classes than the model (the rest stay inactive).
    active_class_ids = np.zeros([config.NUM_CLASSES], np.int32)
    active_class_ids[dataset.source_class_ids[dataset.image_info[image_id]["source"]]] = 1
    return {"image": np.asarray(image, np.uint8), "masks": np.asarray(masks, bool),
            "class_ids": class_ids, "crop_draw": rng.random(2).astype(np.float32),
            "priority": rng.random(len(class_ids)).astype(np.float32),
            # Drawn last, so the draws above stay as they were: multi-scale / scale jitter.
            "scale_draw": rng.random(3).astype(np.float32),
            "image_id": np.int32(image_id), "active_class_ids": active_class_ids}


def sample_spec(config):
    """tf.TensorSpecs of :func:`read_sample`'s dict (for ``tf.numpy_function`` outputs)."""
    channels = int(config.IMAGE_CHANNEL_COUNT)
    return {"image": tf.TensorSpec([None, None, channels], tf.uint8),
            "masks": tf.TensorSpec([None, None, None], tf.bool),
            "class_ids": tf.TensorSpec([None], tf.int32),
            "crop_draw": tf.TensorSpec([2], tf.float32),
            "priority": tf.TensorSpec([None], tf.float32),
            "scale_draw": tf.TensorSpec([3], tf.float32),
            "image_id": tf.TensorSpec([], tf.int32),
            "active_class_ids": tf.TensorSpec([int(config.NUM_CLASSES)], tf.int32)}


def _mold_settings(config):
    """The configuration values stage 2 depends on (the cache key of its traced function)."""
    mini = tuple(int(v) for v in config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else None
    return (config.IMAGE_RESIZE_MODE, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM,
            config.IMAGE_MIN_SCALE, int(config.IMAGE_CHANNEL_COUNT), int(config.MAX_GT_INSTANCES),
            mini, config.IMAGE_SCALE_JITTER)


def mold_sample(sample, config):
    """Stage 2 (TF ops, graph or eager): a :func:`read_sample` dict molded for training.

    Returns:
        dict: ``image`` float32 [h, w, C] molded pixel values (0..255,
        unrounded, not normalised, padding 0); the image info
        ``original_size`` int32 [2] (after augmentation), ``molded_size``
        int32 [2], ``window`` int32 [4] molded pixels, ``scale`` float32
        [(sy, sx)]; ``image_id``, ``active_class_ids`` as read;
        ``gt_class_ids`` int32 [MAX_GT_INSTANCES] (0: padding),
        ``gt_boxes`` float32 [MAX_GT_INSTANCES, (y1, x1, y2, x2)] molded
        pixels, y2/x2 exclusive, and ``gt_masks`` bool [h, w, MAX_GT] or
        [mh, mw, MAX_GT] (mini masks, ``crop_masks`` of each box);
        ``num_instances`` int32. Instances emptied by the resize or crop are
        dropped; of the rest, the MAX_GT_INSTANCES of highest ``priority``
        are kept, in their original order.
    """
    mold = _traced_mold(*_mold_settings(config))
    molded = mold({name: sample[name] for name in _MOLD_INPUTS})
    return {**molded, "image_id": sample["image_id"], "active_class_ids": sample["active_class_ids"]}


_MOLD_INPUTS = ("image", "masks", "class_ids", "crop_draw", "priority", "scale_draw")


@functools.lru_cache(maxsize=None)
def _traced_mold(mode, min_dim, max_dim, min_scale, channels, max_gt, mini_shape, scale_jitter=None):
    """:func:`mold_sample`'s TF function for one configuration, traced once for every image size."""
    signature = [{"image": tf.TensorSpec([None, None, channels], tf.uint8),
                  "masks": tf.TensorSpec([None, None, None], tf.bool),
                  "class_ids": tf.TensorSpec([None], tf.int32),
                  "crop_draw": tf.TensorSpec([2], tf.float32),
                  "priority": tf.TensorSpec([None], tf.float32),
                  "scale_draw": tf.TensorSpec([3], tf.float32)}]

    @tf.function(input_signature=signature)
    def mold(sample):
        image = sample["image"]
        crop_yx = None
        if mode == "crop":
            _, height, width = scaled_size(tf.shape(image)[0], tf.shape(image)[1], mode, min_dim,
                                           max_dim, min_scale)
            crop_yx = crop_offset(tf.stack([height, width]), int(min_dim), sample["crop_draw"])
        if scale_jitter is not None:  # large-scale jitter: the resize itself is random
            resized = scale_jitter_resize(image, int(max_dim), scale_jitter, sample["scale_draw"])
        else:  # a tuple IMAGE_MIN_DIM: multi-scale, one short side drawn per image
            resized = resize_image(image, mode, choose_min_dim(min_dim, sample["scale_draw"][0]),
                                   max_dim, min_scale, crop_yx)
        masks = resize_masks(sample["masks"], resized)

        keep = tf.reduce_any(masks, axis=[0, 1])
        masks = tf.boolean_mask(masks, keep, axis=2)
        class_ids = tf.boolean_mask(sample["class_ids"], keep)
        priority = tf.boolean_mask(sample["priority"], keep)
        # Beyond MAX_GT_INSTANCES keep a random subset rather than fail.
        count = tf.minimum(tf.shape(class_ids)[0], max_gt)
        chosen = tf.sort(tf.math.top_k(priority, count).indices)
        masks = tf.gather(masks, chosen, axis=2)
        class_ids = tf.gather(class_ids, chosen)
        boxes = tf.cast(mask_boxes(masks), tf.float32)
        if mini_shape is not None:
            masks = crop_masks(masks, boxes, mini_shape)
        pad = max_gt - count
        return {"image": resized["image"],
                "original_size": tf.shape(image)[:2],
                "molded_size": tf.shape(resized["image"])[:2],
                "window": resized["window"], "scale": resized["scale"],
                "gt_class_ids": tf.pad(class_ids, [[0, pad]]),
                "gt_boxes": tf.pad(boxes, [[0, pad], [0, 0]]),
                "gt_masks": tf.pad(masks, [[0, 0], [0, 0], [0, pad]]),
                "num_instances": count}

    return mold


def batch_inputs(molded, config):
    """Stage 3 (TF ops): stacked :func:`mold_sample` dicts -> the training model's inputs.

    Args:
        molded: dict of batched stage-2 values; ``image`` float32 [B, h, w, C]
            (each image at its top-left, zero-padded to the largest), and
            full-size ``gt_masks`` padded the same way.
    Returns:
        dict: ``input_image`` float32 [B, H, W, C] (``ops.image.normalize``d;
        black padding bottom/right to the batch's molded size),
        ``input_image_meta`` float32 [B, META], ``input_gt_class_ids`` int32
        [B, MAX_GT], ``input_gt_boxes`` float32 [B, MAX_GT, 4] molded pixels,
        ``input_gt_masks`` bool [B, mh, mw, MAX_GT].
    """
    batch_hw = batch_molded_size(molded["molded_size"], config.IMAGE_RESIZE_MODE,
                                 config.IMAGE_PAD_MULTIPLE)
    multiple = side_multiple(config)
    if tf.executing_eagerly() and int(tf.reduce_max(batch_hw % multiple)):
        raise ValueError(
            f"molded images are {int(batch_hw[0])}x{int(batch_hw[1])}; the FPN needs sides "
            f"divisible by {multiple} (IMAGE_RESIZE_MODE {config.IMAGE_RESIZE_MODE!r}: use "
            f"'square', 'pad64', 'crop' with IMAGE_*_DIM multiples of {SIZE_MULTIPLE}, or "
            f"'shortest_edge')")
    check = tf.debugging.assert_equal(
        batch_hw % multiple, 0,
        message=f"molded images must have sides divisible by {multiple}, the FPN's need "
                f"(IMAGE_RESIZE_MODE {config.IMAGE_RESIZE_MODE!r}: use 'square', 'pad64', 'crop' "
                f"with IMAGE_*_DIM multiples of {SIZE_MULTIPLE}, or 'shortest_edge')")
    with tf.control_dependencies([check]):
        pad_hw = batch_hw - tf.shape(molded["image"])[1:3]
    images = tf.pad(molded["image"], [[0, 0], [0, pad_hw[0]], [0, pad_hw[1]], [0, 0]])
    masks = molded["gt_masks"]
    if not config.USE_MINI_MASK:  # full-size masks are padded like their image
        masks = tf.pad(masks, [[0, 0], [0, pad_hw[0]], [0, pad_hw[1]], [0, 0]])
    count = tf.shape(images)[0]
    info = {"original_size": molded["original_size"], "window": molded["window"],
            "scale": molded["scale"], "molded_size": tf.tile(batch_hw[None], [count, 1])}
    meta = compose_image_meta(info, molded["active_class_ids"], image_ids=molded["image_id"],
                              channels=config.IMAGE_CHANNEL_COUNT)
    return {"input_image": normalize(images, config.MEAN_PIXEL, config.PIXEL_STD,
                                     config.INPUT_CHANNEL_ORDER),
            "input_image_meta": meta,
            "input_gt_class_ids": molded["gt_class_ids"],
            "input_gt_boxes": molded["gt_boxes"],
            "input_gt_masks": masks}


def stack_molded(samples, config):
    """Stage-2 dicts (eager) -> one batched dict, images and full-size masks zero-padded
    bottom/right to the largest (what ``tf.data``'s ``padded_batch`` does)."""
    height = max(int(s["image"].shape[0]) for s in samples)
    width = max(int(s["image"].shape[1]) for s in samples)

    def pad(value):
        return tf.pad(value, [[0, height - value.shape[0]], [0, width - value.shape[1]], [0, 0]])

    stacked = {name: tf.stack([s[name] for s in samples]) for name in samples[0]
               if name not in ("image", "gt_masks")}
    stacked["image"] = tf.stack([pad(s["image"]) for s in samples])
    stacked["gt_masks"] = tf.stack([s["gt_masks"] if config.USE_MINI_MASK else pad(s["gt_masks"])
                                    for s in samples])
    return stacked
