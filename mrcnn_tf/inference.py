"""The one inference path: uint8 pixels -> detections and pasted masks at the original size.

``MaskRCNN.detect``, evaluation and the SavedModel's signatures all run
:meth:`InferencePipeline.run` (pre-processing of ``ops/image.py``, the Keras
inference model, post-processing of this module and ``ops/masks.py``), so
what a user sees in a notebook is what TF Serving answers, to the bit.
"""

import numpy as np
import tensorflow as tf

from mrcnn_tf.data.validation import to_rgb_uint8
from mrcnn_tf.image_meta import compose_image_meta
from mrcnn_tf.ops.image import boxes_to_original, inference_resize_mode, mold_batch
from mrcnn_tf.ops.masks import paste_masks

# Output names of the pipeline (and of the SavedModel's signatures).
OUTPUT_NAMES = ("num_detections", "detection_boxes", "detection_classes", "detection_scores",
                "detection_masks", "image_sizes")


def postprocess(detections, mrcnn_mask, info, include_box_masks=False, include_masks=True,
                mask_paste_mode="box"):
    """Raw detections of a molded batch -> padded per-image results in original pixels.

    Args:
        detections: float32 [B, D, (y1, x1, y2, x2, class_id, score)]
            normalised to the molded image; score 0 rows are padding.
        mrcnn_mask: float32 [B, D, mh, mw, M] mask probabilities: M = K maps
            (one per class, the detection's class map is used) or M = 1 (a
            class-agnostic head, statically known: its one map is used).
        info: image info of the batch (``ops.image``).
        include_box_masks: also return the box-relative masks.
        include_masks: paste the full-size ``detection_masks`` (False: not
            computed nor returned; tiled inference pastes box regions itself).
        mask_paste_mode: the geometry of ``ops.masks.paste_masks``, "box" or
            "torchvision" (Config.MASK_PASTE_MODE).
    Returns:
        dict: ``num_detections`` int32 [B]; ``detection_boxes`` float32
        [B, D, (y1, x1, y2, x2)] original pixels, unrounded, clipped to the
        image; ``detection_classes`` int32 [B, D]; ``detection_scores``
        float32 [B, D]; ``detection_masks`` uint8 [B, D, Hmax, Wmax] (1 inside,
        pasted at each image's size, padded to the batch's largest);
        ``image_sizes`` int32 [B, 2]; with ``include_box_masks``,
        ``detection_box_masks`` float32 [B, D, mh, mw]. Valid rows come first
        (best first), the rest are zeros. A detection whose box rounds to no
        pixel is dropped.
    """
    sizes = info["original_size"]
    class_ids = tf.cast(detections[..., 4], tf.int32)
    scores = detections[..., 5]
    boxes_px = boxes_to_original(detections[..., :4], info)
    limits = tf.tile(tf.cast(sizes, tf.float32)[:, None], [1, 1, 2])
    clipped = tf.clip_by_value(boxes_px, 0.0, limits)
    rounded = tf.round(clipped)
    valid = (scores > 0) & (rounded[..., 2] > rounded[..., 0]) & (rounded[..., 3] > rounded[..., 1])
    num_detections = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    slots = tf.shape(scores)[1]
    index = tf.range(slots)[None]
    # Stable compaction: valid rows keep their (score) order at the front.
    order = tf.argsort(tf.where(valid, index, index + slots), axis=1, stable=True)
    keep = index < num_detections[:, None]

    def take(values):
        values = tf.gather(values, order, batch_dims=1)
        mask = tf.reshape(tf.cast(keep, values.dtype), [-1, slots] + [1] * (values.shape.rank - 2))
        return values * mask

    class_ids = take(class_ids)
    # The predicted class's mask: [B, D, M, mh, mw] gathered at the class ids (map 0 if agnostic).
    channels = class_ids if mrcnn_mask.shape[-1] != 1 else tf.zeros_like(class_ids)
    box_masks = tf.gather(tf.transpose(take(mrcnn_mask), [0, 1, 4, 2, 3]), channels, batch_dims=2)
    boxes_px = take(boxes_px)
    # Every slot is pasted straight into the uint8 output (an empty slot's zero box gives a
    # zero mask): the full-size masks are written once, with no cast or padding pass after.
    outputs = {
        "num_detections": num_detections,
        "detection_boxes": take(clipped),
        "detection_classes": class_ids,
        "detection_scores": take(scores),
        "image_sizes": sizes,
    }
    if include_box_masks:
        outputs["detection_box_masks"] = box_masks
    if not include_masks:
        return outputs
    batch = tf.shape(scores)[0]
    mask_h, mask_w = box_masks.shape[2], box_masks.shape[3]
    pasted = paste_masks(
        tf.reshape(box_masks, [-1, mask_h, mask_w]), tf.reshape(boxes_px, [-1, 4]),
        tf.reshape(tf.tile(sizes[:, None], [1, slots, 1]), [-1, 2]),
        out_hw=tf.reduce_max(sizes, axis=0), dtype=tf.uint8, mode=mask_paste_mode)
    pasted = tf.reshape(pasted, [batch, slots, tf.shape(pasted)[1], tf.shape(pasted)[2]])
    outputs["detection_masks"] = tf.ensure_shape(pasted, [None, scores.shape[1], None, None])
    return outputs


class InferencePipeline(tf.Module):
    """The Keras inference model between the one pre- and post-processing.

    Only this class reads ``Config`` on the inference path; the functions it
    calls take plain values.

    Args:
        keras_model: the inference-graph Keras model (``MaskRCNN.inference_model``).
        config: the model's Config.
        include_box_masks: also output the box-relative masks.
        include_masks: also output the pasted full-size masks.
    """

    def __init__(self, keras_model, config, include_box_masks=False, include_masks=True):
        super().__init__(name="mask_rcnn_inference")
        mode = inference_resize_mode(config.IMAGE_RESIZE_MODE)
        if mode == "square" and not config.IMAGE_MAX_DIM:
            raise ValueError(f"IMAGE_RESIZE_MODE 'square' needs IMAGE_MAX_DIM, got {config.IMAGE_MAX_DIM!r}")
        self.keras_model = keras_model
        self._mold_args = dict(
            mode=mode, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM,
            min_scale=config.IMAGE_MIN_SCALE, mean_pixel=tuple(config.MEAN_PIXEL),
            pixel_std=tuple(config.PIXEL_STD), channel_order=config.INPUT_CHANNEL_ORDER,
            pad_multiple=config.IMAGE_PAD_MULTIPLE, pad_value=config.IMAGE_PAD_VALUE,
            square_side=config.IMAGE_MAX_DIM if mode == "square" else None)
        self._num_classes = int(config.NUM_CLASSES)
        self._channels = int(config.IMAGE_CHANNEL_COUNT)
        self._include_box_masks = bool(include_box_masks)
        self._include_masks = bool(include_masks)
        self._mask_paste_mode = config.MASK_PASTE_MODE
        # One trace for the model's life: any batch size, any image size.
        self.run_padded = tf.function(self.run, input_signature=[
            tf.TensorSpec([None, None, None, self._channels], tf.uint8, name="images"),
            tf.TensorSpec([None, 2], tf.int32, name="image_sizes")])

    def run(self, images, image_sizes):
        """Detect in a batch of images padded bottom/right to one size.

        Args:
            images: uint8 [N, Hmax, Wmax, C] RGB; image i in its top-left
                ``image_sizes[i]``.
            image_sizes: int32 [N, (H, W)].
        Returns:
            the dict of :func:`postprocess`.
        """
        molded, info = mold_batch(images, image_sizes, **self._mold_args)
        meta = compose_image_meta(info, tf.ones([self._num_classes]), channels=self._channels)
        raw = self.keras_model({"input_image": molded, "input_image_meta": meta}, training=False)
        return postprocess(tf.cast(raw["detections"], tf.float32),
                           tf.cast(raw["mrcnn_mask"], tf.float32), info, self._include_box_masks,
                           self._include_masks, self._mask_paste_mode)

    def detect(self, images, batch_size):
        """``MaskRCNN.detect``: a list of images of any sizes -> one dict per image.

        Args:
            images: list of arrays that :func:`to_rgb_uint8` accepts.
            batch_size: images per call of the traced graph.
        Returns:
            one dict per image: ``boxes`` float32 [N, (y1, x1, y2, x2)]
            original pixels, unrounded; ``rois`` int32 [N, 4] the same
            rounded; ``class_ids`` int32 [N]; ``scores`` float32 [N];
            ``masks`` bool [H, W, N] (a view of the graph's [N, H, W] masks).
        """
        images = [to_rgb_uint8(image, f"image {i}") for i, image in enumerate(images)]
        results = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            sizes = np.array([image.shape[:2] for image in chunk], np.int32)
            padded = np.zeros([len(chunk), *sizes.max(axis=0), 3], np.uint8)
            for i, image in enumerate(chunk):
                padded[i, :sizes[i, 0], :sizes[i, 1]] = image
            outputs = {name: value.numpy() for name, value in
                       self.run_padded(tf.constant(padded), tf.constant(sizes)).items()}
            results.extend(unbatch_results(outputs))
        return results


def unbatch_results(outputs):
    """The pipeline's padded batch outputs (numpy) -> one ``detect()`` dict per image."""
    results = []
    for b, count in enumerate(outputs["num_detections"]):
        height, width = outputs["image_sizes"][b]
        boxes = outputs["detection_boxes"][b, :count].astype(np.float32)
        masks = outputs["detection_masks"][b, :count, :height, :width].view(bool)
        results.append({
            "boxes": boxes,
            "rois": np.round(boxes).astype(np.int32),
            "class_ids": outputs["detection_classes"][b, :count].astype(np.int32),
            "scores": outputs["detection_scores"][b, :count].astype(np.float32),
            "masks": np.moveaxis(masks, 0, -1),
        })
    return results
