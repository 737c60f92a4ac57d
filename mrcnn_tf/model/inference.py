"""detect(): numpy images in, per-image instances out (original pixels)."""

import numpy as np

from mrcnn_tf.data.transforms import compose_image_meta, mold_image, resize_image, unmold_mask
from mrcnn_tf.data.validation import validate_image
from mrcnn_tf.image_meta import META_COLUMNS

IMAGE_SHAPE_COLUMN = META_COLUMNS["image_shape"][0]


def mold_inputs(images, config):
    """Resize, pad and normalise images into one model batch.

    Args:
        images: list of uint8 [H_i, W_i, 3] RGB images (sizes may differ).
        config: the model Config.
    Returns:
        molded float32 [N, H, W, 3], image_metas float32 [N, META],
        windows int32 [N, 4] (pixels of the molded image). Images of
        different molded sizes are padded bottom/right to the largest.
    """
    resized, metas, windows = [], [], []
    for index, image in enumerate(images):
        image = validate_image(image, f"image {index}")
        molded, window, scale, _, _ = resize_image(
            image, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM,
            min_scale=config.IMAGE_MIN_SCALE,
            mode="pad64" if config.IMAGE_RESIZE_MODE == "crop" else config.IMAGE_RESIZE_MODE)
        resized.append(molded)
        metas.append(compose_image_meta(0, image.shape, molded.shape, window, scale,
                                        np.ones([config.NUM_CLASSES], np.int32)))
        windows.append(window)
    height = max(m.shape[0] for m in resized)
    width = max(m.shape[1] for m in resized)
    batch = np.broadcast_to(mold_image(np.zeros(config.IMAGE_CHANNEL_COUNT, np.uint8), config.MEAN_PIXEL),
                            [len(resized), height, width, config.IMAGE_CHANNEL_COUNT]).copy()
    for i, molded in enumerate(resized):
        batch[i, :molded.shape[0], :molded.shape[1]] = mold_image(molded, config.MEAN_PIXEL)
        metas[i][IMAGE_SHAPE_COLUMN:IMAGE_SHAPE_COLUMN + 2] = (height, width)
    return batch, np.stack(metas), np.array(windows, np.int32)


def unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window):
    """One image's raw detections -> boxes, classes, scores and full-size masks.

    Args:
        detections: [D, (y1, x1, y2, x2, class_id, score)] normalised to the
            molded image; rows with score 0 are padding.
        mrcnn_mask: [D, mh, mw, K] mask probabilities.
        original_image_shape: (H, W, C) of the input image.
        image_shape: (H, W, ...) of the molded image.
        window: (y1, x1, y2, x2) pixels of the molded image holding the image.
    Returns:
        dict: rois int32 [N, 4] original pixels, class_ids int32 [N],
        scores float32 [N], masks bool [H, W, N].
    """
    keep = detections[:, 5] > 0
    detections, mrcnn_mask = detections[keep], mrcnn_mask[keep]
    class_ids = detections[:, 4].astype(np.int32)
    scores = detections[:, 5].astype(np.float32)
    height, width = image_shape[:2]
    boxes = detections[:, :4] * np.array([height, width, height, width], np.float32)
    wy1, wx1, wy2, wx2 = np.asarray(window, np.float32)
    scale = np.array([(wy2 - wy1) / original_image_shape[0], (wx2 - wx1) / original_image_shape[1]] * 2,
                     np.float32)
    boxes_px = (boxes - np.array([wy1, wx1, wy1, wx1], np.float32)) / scale
    out_h, out_w = int(original_image_shape[0]), int(original_image_shape[1])
    masks = np.zeros([out_h, out_w, len(class_ids)], bool)
    for i, class_id in enumerate(class_ids):
        masks[:, :, i] = unmold_mask(mrcnn_mask[i, :, :, class_id], boxes_px[i], (out_h, out_w))
    rois = np.round(boxes_px).astype(np.int32)
    rois[:, 0::2] = np.clip(rois[:, 0::2], 0, out_h)
    rois[:, 1::2] = np.clip(rois[:, 1::2], 0, out_w)
    # Boxes that round to nothing carry no instance.
    valid = (rois[:, 2] > rois[:, 0]) & (rois[:, 3] > rois[:, 1])
    return {"rois": rois[valid], "class_ids": class_ids[valid], "scores": scores[valid],
            "masks": masks[:, :, valid]}
