"""Per-image loops over a batch: ``tf.map_fn``, or a Python loop while an export traces a static batch.

The pipeline's per-image steps (molding, proposal selection, detection) run
under ``tf.map_fn`` / ``TensorArray`` loops, whose element shapes vary per
image. TFLite cannot lower such loops to builtins. Inside
:func:`unrolled_batch` (``export/tflite.py`` traces there, at batch 1), a
tensor whose batch dimension is statically known is looped over in Python
instead: the same function on each image, the results stacked, so the graph
has no loop at all. Everywhere else (training, ``detect()``, the SavedModel)
nothing changes.
"""

import contextlib

import tensorflow as tf

# Set inside unrolled_batch().
_UNROLLED = []


@contextlib.contextmanager
def unrolled_batch():
    """Trace per-image loops over a static batch as Python loops (:func:`map_images`)."""
    _UNROLLED.append(True)
    try:
        yield
    finally:
        _UNROLLED.pop()


def unrolled_batch_size(tensor):
    """The static batch size of ``tensor`` [B, ...] when inside :func:`unrolled_batch`, else None
    (also None when B is not known at trace time: the caller keeps its graph loop)."""
    if not _UNROLLED:
        return None
    return tf.TensorShape(tensor.shape)[0]


def map_images(fn, elems, fn_output_signature):
    """``tf.map_fn(fn, elems, fn_output_signature=...)``, unrolled inside :func:`unrolled_batch`.

    Args:
        fn: one image's elements (the structure of ``elems``, batch dimension
            removed) -> its outputs (the structure of ``fn_output_signature``).
        elems: a tensor or nest of tensors [B, ...].
        fn_output_signature: as for ``tf.map_fn``.
    Returns:
        ``fn``'s outputs stacked along a new batch dimension [B, ...].
    """
    batch = unrolled_batch_size(tf.nest.flatten(elems)[0])
    if batch is None:
        return tf.map_fn(fn, elems, fn_output_signature=fn_output_signature)
    outputs = [fn(tf.nest.map_structure(lambda t, i=i: t[i], elems)) for i in range(batch)]
    return tf.nest.map_structure(lambda *images: tf.stack(images), *outputs)
