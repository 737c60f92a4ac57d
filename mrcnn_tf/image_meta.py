"""The image-meta vector: the model's per-image input, defined here once (docs/CONTRACTS.md).

``[image_id, original_image_shape(3), image_shape(3), window(4), scale, active_class_ids(K)]``

It packs the image info of ``ops/image.py`` (plus an id and the classes the
image's dataset uses) into one float row, so the Keras graphs keep their
classic inputs. Every reader takes fields by name (:func:`meta_field`,
:func:`parse_image_meta`); nothing indexes its columns by number.
"""

import keras
import numpy as np
import tensorflow as tf

# (field, length) in order; active_class_ids (NUM_CLASSES long) follows them.
META_FIELDS = (("image_id", 1), ("original_image_shape", 3), ("image_shape", 3),
               ("window", 4), ("scale", 1))
META_FIXED_LENGTH = sum(length for _, length in META_FIELDS)  # 12


def _column_ranges():
    ranges, start = {}, 0
    for name, length in META_FIELDS:
        ranges[name] = (start, start + length)
        start += length
    ranges["active_class_ids"] = (start, None)
    return ranges


# field -> (first column, end column or None for "to the end")
META_COLUMNS = _column_ranges()


def image_meta_size(num_classes):
    """Length of the meta vector of a model with ``num_classes`` classes."""
    return META_FIXED_LENGTH + int(num_classes)


def compose_image_meta(info, active_class_ids, image_ids=None, channels=3):
    """Pack a batch's image info into meta vectors.

    Args:
        info: image info of ``ops.image.mold_batch`` (``original_size``,
            ``molded_size``, ``window``, ``scale``), N rows.
        active_class_ids: [N, K] or [K] (broadcast), 1 for the classes the
            image's dataset has.
        image_ids: int [N] (default 0).
        channels: the C of the image shapes.
    Returns:
        float32 [N, 12 + K].
    """
    count = tf.shape(info["window"])[0]
    ones = tf.ones([count, 1])
    ids = ones * 0.0 if image_ids is None else tf.cast(tf.reshape(image_ids, [-1, 1]), tf.float32)
    active = tf.cast(active_class_ids, tf.float32)
    if active.shape.rank == 1:
        active = tf.tile(active[None], [count, 1])
    parts = {
        "image_id": ids,
        "original_image_shape": tf.concat([tf.cast(info["original_size"], tf.float32),
                                           channels * ones], 1),
        "image_shape": tf.concat([tf.cast(info["molded_size"], tf.float32), channels * ones], 1),
        "window": tf.cast(info["window"], tf.float32),
        "scale": tf.cast(info["scale"], tf.float32)[:, :1],
    }
    return tf.concat([parts[name] for name, _ in META_FIELDS] + [active], axis=1)


def meta_field(image_meta, field):
    """One field of meta vectors [..., M] as float32 [..., width] (tensors, in graph)."""
    if field not in META_COLUMNS:
        raise ValueError(f"field must be one of {sorted(META_COLUMNS)}, got {field!r}")
    start, end = META_COLUMNS[field]
    return tf.cast(image_meta[..., start:end], tf.float32)


def parse_image_meta(meta):
    """Unpack meta vectors made by :func:`compose_image_meta` into numpy arrays by field.

    Args:
        meta: [batch, M] or [M] with M = 12 + NUM_CLASSES.
    Returns:
        dict, the batch axis kept if the input had one: image_id int32 [B],
        original_image_shape int32 [B, 3], image_shape int32 [B, 3], window
        float32 [B, 4] (molded pixels), scale float32 [B], active_class_ids
        int32 [B, NUM_CLASSES].
    """
    meta = np.asarray(meta, np.float32)
    if meta.ndim not in (1, 2) or meta.shape[-1] < META_FIXED_LENGTH:
        raise ValueError(f"meta must be [M] or [batch, M] with M >= {META_FIXED_LENGTH}, "
                         f"got shape {meta.shape}")
    parsed = {}
    for name, (start, end) in META_COLUMNS.items():
        part = meta[..., start:end]
        parsed[name] = part[..., 0] if end is not None and end - start == 1 else part
    for name in ("image_id", "original_image_shape", "image_shape", "active_class_ids"):
        parsed[name] = np.round(parsed[name]).astype(np.int32)
    return parsed


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class MetaField(keras.layers.Layer):
    """One field of the image-meta vector: [B, META_SIZE] -> [B, width].

    ``window`` can be returned normalised by the molded image shape.
    """

    def __init__(self, field, normalized=False, **kwargs):
        super().__init__(**kwargs)
        if field not in META_COLUMNS:
            raise ValueError(f"field must be one of {sorted(META_COLUMNS)}, got {field!r}")
        self.field = field
        self.normalized = bool(normalized)

    def call(self, image_meta):
        start, end = META_COLUMNS[self.field]
        value = tf.cast(image_meta[:, start:end], tf.float32)
        if self.normalized:
            start = META_COLUMNS["image_shape"][0]
            hw = image_meta[:, start:start + 2]
            value = value / tf.cast(tf.concat([hw, hw], axis=1), tf.float32)
        return value

    def get_config(self):
        return {**super().get_config(), "field": self.field, "normalized": self.normalized}
