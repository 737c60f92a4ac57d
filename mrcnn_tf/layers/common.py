"""Argument checks and small helpers shared by the Mask R-CNN layers."""

import tensorflow as tf

# Target class id of a padding row (not a RoI): losses skip these rows.
PADDING_CLASS_ID = -1


def check_positive_int(value, name):
    """``value`` as an int >= 1, or a ValueError naming ``name``."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_fraction(value, name, low=0.0, high=1.0):
    """``value`` as a float in [low, high], or a ValueError naming ``name``."""
    value = float(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value


def check_std_dev(value, name):
    """Four positive floats (box delta scaling), or a ValueError naming ``name``."""
    value = tuple(float(v) for v in value)
    if len(value) != 4 or min(value) <= 0:
        raise ValueError(f"{name} must be 4 positive numbers, got {value!r}")
    return value


def map_over_batch(fn, elems, output_signature):
    """``tf.map_fn`` over the batch axis for per-image steps (NMS, sampling)."""
    return tf.map_fn(fn, elems, fn_output_signature=output_signature)


def nonzero_rows(boxes):
    """bool [...]: rows of ``boxes [..., 4]`` that are not all-zero padding."""
    return tf.reduce_any(tf.not_equal(boxes, 0.0), axis=-1)


def pad_rows(tensor, rows, value=0):
    """Pad (or cut) axis 0 of ``tensor`` to exactly ``rows`` rows."""
    tensor = tensor[:rows]
    padding = [[0, rows - tf.shape(tensor)[0]]] + [[0, 0]] * (tensor.shape.rank - 1)
    return tf.pad(tensor, padding, constant_values=value)
