"""The SavedModel's signatures: decoding and checks around the one inference pipeline.

Pre- and post-processing are :class:`mrcnn_tf.inference.InferencePipeline`,
the same traced code ``MaskRCNN.detect`` runs; this module only adds what a
server needs in front of it: decoding JPEG/PNG bytes, size limits and
messages for bad requests.
"""

import tensorflow as tf

from mrcnn_tf.inference import InferencePipeline
from mrcnn_tf.ops.image import pad_to_batch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BAD_IMAGE_MESSAGE = "not a JPEG/PNG image: every element of `images` must be encoded JPEG or PNG bytes"
EMPTY_BATCH_MESSAGE = "images must contain at least one image"
EMPTY_IMAGE_MESSAGE = "every image must be at least 1x1 pixels"


def decode_image(encoded):
    """Encoded JPEG/PNG bytes (scalar tf.string) -> uint8 [H, W, 3], checked."""
    is_png = tf.equal(tf.strings.substr(encoded, 0, len(PNG_MAGIC)), PNG_MAGIC)
    ok = tf.debugging.Assert(tf.logical_or(tf.io.is_jpeg(encoded), is_png), [BAD_IMAGE_MESSAGE])
    with tf.control_dependencies([ok]):
        image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def check_image_sizes(image_sizes, max_image_size):
    """Asserts 1 <= H, W <= max_image_size for every row of ``image_sizes`` int32 [N, 2];
    returns them gated on the checks."""
    checks = [
        tf.debugging.assert_greater(tf.reduce_min(image_sizes), 0, message=EMPTY_IMAGE_MESSAGE),
        tf.debugging.assert_less_equal(
            tf.reduce_max(image_sizes), max_image_size,
            message=f"image is larger than max_image_size={max_image_size} pixels per side "
                    "(x below is the image's long side)"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(image_sizes)


def _nonempty(images):
    check = tf.debugging.assert_greater(tf.shape(images)[0], 0, message=EMPTY_BATCH_MESSAGE)
    with tf.control_dependencies([check]):
        return tf.identity(images)


def decode_batch(encoded, max_image_size):
    """Encoded images tf.string [N] -> (uint8 [N, Hmax, Wmax, 3] padded bottom/right, sizes int32 [N, 2])."""
    count = tf.shape(encoded)[0]
    images_ta = tf.TensorArray(tf.uint8, size=count, infer_shape=False,
                               element_shape=tf.TensorShape([None, None, 3]))
    sizes_ta = tf.TensorArray(tf.int32, size=count, element_shape=[2])
    for i in tf.range(count):
        image = decode_image(encoded[i])
        images_ta = images_ta.write(i, image)
        sizes_ta = sizes_ta.write(i, tf.shape(image)[:2])
    sizes = check_image_sizes(sizes_ta.stack(), max_image_size)
    max_hw = tf.reduce_max(sizes, axis=0)
    images = tf.map_fn(lambda i: pad_to_batch(images_ta.read(i), max_hw), tf.range(count),
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    return images, sizes


SERVING_FUNCTIONS = ("serve_encoded", "serve_tensor", "serve_padded")


class ServingModule(tf.Module):
    """The inference pipeline with the three serving signatures.

    ``serve_encoded(images: tf.string [N])``, ``serve_tensor(images: uint8
    [N, H, W, 3])`` and ``serve_padded(images: uint8 [N, Hmax, Wmax, 3],
    image_sizes: int32 [N, 2])`` return the dict of
    :func:`mrcnn_tf.inference.postprocess`. ``functions``: which of them to
    create (default all three).
    """

    def __init__(self, keras_model, config, max_image_size, include_box_masks, functions=SERVING_FUNCTIONS):
        super().__init__(name="mask_rcnn_serving")
        self.pipeline = InferencePipeline(keras_model, config, include_box_masks=include_box_masks)
        self._max_image_size = int(max_image_size)
        specs = {
            "serve_encoded": (self._serve_encoded, [tf.TensorSpec([None], tf.string, name="images")]),
            "serve_tensor": (self._serve_tensor, [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]),
            "serve_padded": (self._serve_padded, [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images"),
                                                  tf.TensorSpec([None, 2], tf.int32, name="image_sizes")]),
        }
        unknown = [name for name in functions if name not in specs]
        if unknown or not functions:
            raise ValueError(f"functions must be some of {SERVING_FUNCTIONS}, got {functions!r}")
        # Only the functions asked for: tf.saved_model.save traces every one it finds.
        for name in functions:
            method, input_signature = specs[name]
            setattr(self, name, tf.function(method, input_signature=input_signature))

    def _serve_encoded(self, images):
        images, sizes = decode_batch(_nonempty(images), self._max_image_size)
        return self.pipeline.run(images, sizes)

    def _serve_tensor(self, images):
        images = _nonempty(images)
        sizes = tf.tile(tf.shape(images)[1:3][None], [tf.shape(images)[0], 1])
        return self.pipeline.run(images, check_image_sizes(sizes, self._max_image_size))

    def _serve_padded(self, images, image_sizes):
        images = _nonempty(images)
        fits = tf.debugging.assert_less_equal(
            image_sizes, tf.shape(images)[1:3][None],
            message="image_sizes must fit in the padded images [N, Hmax, Wmax, 3]")
        with tf.control_dependencies([fits]):
            sizes = check_image_sizes(image_sizes, self._max_image_size)
        return self.pipeline.run(images, sizes)
