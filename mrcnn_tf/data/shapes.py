"""Synthetic shapes: squares, circles and triangles on a plain background.

A tiny dataset for smoke tests and the tutorial: no download, any size,
reproducible from a seed. Only a drawing spec is stored per image; pixels
and masks are drawn on demand, so a million-image dataset costs little.
"""

import numpy as np
from skimage.draw import disk, polygon

from mrcnn_tf.config import Config
from mrcnn_tf.data.dataset import Dataset

SOURCE = "shapes"
SHAPE_CLASSES = ((1, "square"), (2, "circle"), (3, "triangle"))
# A shape's colour differs from the background by at least this much in some
# channel, so every shape pixel is visibly distinct from the background.
MIN_COLOUR_CONTRAST = 48


class ShapesDataset(Dataset):
    """Images of 1-4 (by default) random solid shapes on a random colour.

    Each shape has a class (square, circle, triangle), a colour, a centre
    ``(cy, cx)`` and a size ``s``, about the half side / radius, between
    ``min(height, width) / 8`` and ``/ 4``. Shapes are drawn in order, so
    later ones occlude earlier ones; ``load_mask`` gives every pixel to the
    top shape that covers it and drops shapes left with no visible pixel.

    Example:
        dataset = ShapesDataset()
        dataset.load_shapes(500, 128, 128, seed=1)
        dataset.prepare()
    """

    def load_shapes(self, count, height, width, seed=0, min_instances=1, max_instances=4):
        """Add ``count`` images of ``height x width`` pixels.

        Image ``i`` is drawn from ``np.random.default_rng([seed, i])``, so the
        same seed gives the same images whatever ``count`` is, and datasets
        with different seeds do not share images.
        """
        if int(count) < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        if min(int(height), int(width)) < 8:
            raise ValueError(f"height and width must be >= 8, got {height!r} x {width!r}")
        if not 1 <= int(min_instances) <= int(max_instances):
            raise ValueError("need 1 <= min_instances <= max_instances, got "
                             f"{min_instances!r} and {max_instances!r}")
        for class_id, name in SHAPE_CLASSES:
            self.add_class(SOURCE, class_id, name)
        first = sum(info["source"] == SOURCE for info in self.image_info)
        for index in range(first, first + int(count)):
            rng = np.random.default_rng([int(seed), index])
            background, shapes = _random_image_spec(
                rng, int(height), int(width), int(min_instances), int(max_instances))
            self.add_image(SOURCE, image_id=index, path=None, height=int(height),
                           width=int(width), bg_color=background, shapes=shapes, seed=int(seed))

    def load_image(self, image_id):
        """Draw the image from its spec: uint8 [H, W, 3]."""
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().load_image(image_id)
        image = np.empty([info["height"], info["width"], 3], np.uint8)
        image[:] = info["bg_color"]
        for shape, colour, (cy, cx, size) in info["shapes"]:
            image[_shape_pixels(shape, cy, cx, size, image.shape[:2])] = colour
        return image

    def load_mask(self, image_id):
        """Visible part of each shape: (bool [H, W, N], int32 [N] class ids).

        Needs ``prepare()`` (class ids are the internal ones).
        """
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().load_mask(image_id)
        hw = (info["height"], info["width"])
        masks, class_ids = [], []
        covered = np.zeros(hw, bool)  # pixels taken by shapes drawn later
        for shape, _, (cy, cx, size) in reversed(info["shapes"]):
            drawn = np.zeros(hw, bool)
            drawn[_shape_pixels(shape, cy, cx, size, hw)] = True
            visible = drawn & ~covered
            covered |= drawn
            if visible.any():
                masks.append(visible)
                class_ids.append(self.map_source_class_id(f"{SOURCE}.{_class_id(shape)}"))
        if not masks:
            return np.zeros(hw + (0,), bool), np.zeros([0], np.int32)
        # Back to drawing order (bottom shape first), as in the spec.
        return np.stack(masks[::-1], axis=-1), np.array(class_ids[::-1], np.int32)

    def image_reference(self, image_id):
        """A description of the image's spec."""
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().image_reference(image_id)
        names = ", ".join(shape for shape, _, _ in info["shapes"])
        return f"shapes image {info['id']} (seed {info['seed']}): {names}"


def _class_id(shape_name):
    return next(class_id for class_id, name in SHAPE_CLASSES if name == shape_name)


def _random_colour(rng):
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _random_image_spec(rng, height, width, min_instances, max_instances):
    """Background colour and a list of (shape, colour, (cy, cx, size))."""
    background = _random_colour(rng)
    count = int(rng.integers(min_instances, max_instances + 1))
    short_side = min(height, width)
    min_size, max_size = max(2, short_side // 8), max(2, short_side // 4)
    shapes = []
    for _ in range(count):
        shape = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))][1]
        colour = _random_colour(rng)
        while max(abs(a - b) for a, b in zip(colour, background)) < MIN_COLOUR_CONTRAST:
            colour = _random_colour(rng)
        size = int(rng.integers(min_size, max_size + 1))
        # Keep the centre at least `size` from the border: shapes stay mostly inside.
        cy = int(rng.integers(size, height - size + 1))
        cx = int(rng.integers(size, width - size + 1))
        shapes.append((shape, colour, (cy, cx, size)))
    return background, shapes


def _shape_pixels(shape, cy, cx, size, image_hw):
    """Index of the pixels a shape covers inside the image: (rows, cols) arrays
    or slices, usable as ``image[index] = colour``."""
    if shape == "square":
        return (slice(max(0, cy - size), cy + size), slice(max(0, cx - size), cx + size))
    if shape == "circle":
        return disk((cy, cx), size, shape=image_hw)
    if shape == "triangle":
        # Equilateral, pointing up, with its base 2 * size / sin(60) wide.
        half_base = size / np.sin(np.radians(60))
        return polygon([cy - size, cy + size, cy + size],
                       [cx, cx - half_base, cx + half_base], shape=image_hw)
    raise ValueError(f"Unknown shape {shape!r}; expected one of "
                     f"{[name for _, name in SHAPE_CLASSES]}")


class ShapesConfig(Config):
    """A CPU-sized configuration for the shapes dataset (128x128 images).

    The small backbone and narrow heads train from scratch in minutes on two
    CPU cores; the anchors are scaled down to the shapes' sizes.
    """

    NAME = "shapes"
    NUM_CLASSES = 1 + len(SHAPE_CLASSES)
    BACKBONE = "small"
    IMAGES_PER_GPU = 4
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    MEAN_PIXEL = (128.0, 128.0, 128.0)
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    TOP_DOWN_PYRAMID_SIZE = 64
    RPN_CONV_CHANNELS = 128
    FPN_CLASSIF_FC_LAYERS_SIZE = 128
    MASK_HEAD_CHANNELS = 64
    PRE_NMS_LIMIT = 1000
    POST_NMS_ROIS_TRAINING = 200
    POST_NMS_ROIS_INFERENCE = 100
    TRAIN_ROIS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)
    DETECTION_MAX_INSTANCES = 16
    DETECTION_MIN_CONFIDENCE = 0.5
    LEARNING_RATE = 0.02
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 5
