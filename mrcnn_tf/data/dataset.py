"""Base class of every dataset: classes, images, and how to read them.

The interface is matterport's ``utils.Dataset`` so existing subclasses move
over by changing the import: a subclass calls ``add_class``/``add_image`` in
its own ``load_*`` method, overrides ``load_mask`` (and ``load_image`` if its
pixels are not a file), and the user calls ``prepare()`` before use.

Ids come in two kinds. *Source* ids are the dataset's own (a COCO category
id, a file name); *internal* ids are dense indices assigned by ``prepare()``:
class ``0`` is always the background "BG", images are ``0 .. num_images-1``.
``map_source_class_id("coco.18")`` goes from the first to the second.
"""

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mrcnn_tf.data.validation import to_rgb_uint8

BACKGROUND_CLASS_ID = 0
BACKGROUND_CLASS_NAME = "BG"



class ImageLoadError(ValueError):
    """An image file is missing, truncated, or not a readable image."""


class Dataset:
    """Registry of classes and images from one or more sources.

    Attributes:
        class_info: list of {"source", "id", "name"}; entry 0 is background.
        image_info: list of {"id", "source", "path", **kwargs}, in the order
            the images were added; a list index is the internal image id.

    Available after ``prepare()`` (a RuntimeError before):
        class_names, num_classes, image_ids, num_images, sources,
        source_class_ids, class_from_source_map, image_from_source_map.
    """

    def __init__(self, class_map=None):
        # class_map is accepted for matterport compatibility; it was never used.
        self._class_map = class_map
        self.image_info = []
        self.class_info = [{"source": "", "id": BACKGROUND_CLASS_ID,
                            "name": BACKGROUND_CLASS_NAME}]
        self._image_keys = set()
        self._prepared = None  # dict of the derived tables, set by prepare()

    # ------------------------------------------------------------ building
    def add_class(self, source, class_id, class_name):
        """Register class ``class_id`` of ``source``; re-adding the same is a no-op.

        Raises:
            ValueError: ``source`` contains "." (it separates source and id in
                "source.id" keys), or the class exists with another name.
        """
        if "." in str(source):
            raise ValueError(f"Source name cannot contain a dot: {source!r}")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                if info["name"] != class_name:
                    raise ValueError(
                        f"Class {source}.{class_id} already added as {info['name']!r}, "
                        f"cannot add it again as {class_name!r}")
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})
        self._prepared = None

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image; extra keyword arguments are kept in its info dict.

        Raises:
            ValueError: an image with the same ``(source, image_id)`` exists.
        """
        key = (source, image_id)
        if key in self._image_keys:
            raise ValueError(f"Duplicate image: {source}.{image_id} was already added")
        self._image_keys.add(key)
        self.image_info.append({"id": image_id, "source": source, "path": path, **kwargs})
        self._prepared = None

    def prepare(self, class_map=None):
        """Assign internal ids and build the lookup tables. Call again after
        adding more classes or images. ``class_map`` is unused (matterport)."""
        del class_map
        class_names = [_short_name(info["name"]) for info in self.class_info]
        class_from_source_map = {f"{info['source']}.{info['id']}": class_id
                                 for class_id, info in enumerate(self.class_info)}
        image_from_source_map = {f"{info['source']}.{info['id']}": image_id
                                 for image_id, info in enumerate(self.image_info)}
        sources = sorted({info["source"] for info in self.class_info}
                         | {info["source"] for info in self.image_info})
        # Background belongs to every source so each source's list starts at 0.
        source_class_ids = {
            source: [class_id for class_id, info in enumerate(self.class_info)
                     if class_id == BACKGROUND_CLASS_ID or info["source"] == source]
            for source in sources}
        self._prepared = {
            "class_names": class_names,
            "num_classes": len(self.class_info),
            "image_ids": np.arange(len(self.image_info)),
            "num_images": len(self.image_info),
            "sources": sources,
            "source_class_ids": source_class_ids,
            "class_from_source_map": class_from_source_map,
            "image_from_source_map": image_from_source_map,
        }

    def _table(self, name):
        if self._prepared is None:
            raise RuntimeError(
                f"Dataset.{name} is not available: call prepare() after adding "
                "classes and images (and again after adding more)")
        return self._prepared[name]

    class_names = property(lambda self: self._table("class_names"))
    num_classes = property(lambda self: self._table("num_classes"))
    image_ids = property(lambda self: self._table("image_ids"))
    num_images = property(lambda self: self._table("num_images"))
    sources = property(lambda self: self._table("sources"))
    source_class_ids = property(lambda self: self._table("source_class_ids"))
    class_from_source_map = property(lambda self: self._table("class_from_source_map"))
    image_from_source_map = property(lambda self: self._table("image_from_source_map"))

    # ------------------------------------------------------------- lookups
    def map_source_class_id(self, source_class_id):
        """Internal class id of ``"source.id"``, e.g. ``"coco.12"`` -> 5."""
        table = self._table("class_from_source_map")
        if source_class_id not in table:
            raise KeyError(f"Unknown class {source_class_id!r}; known: {sorted(table)}")
        return table[source_class_id]

    def get_source_class_id(self, class_id, source):
        """The source's own id of internal class ``class_id``.

        Raises:
            ValueError: the class does not belong to ``source``.
        """
        self._table("class_names")
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError(
                f"Class {class_id} ({info['name']!r}) is from source "
                f"{info['source']!r}, not {source!r}")
        return info["id"]

    def source_image_link(self, image_id):
        """Path or URL of the image in its source."""
        return self.image_info[image_id]["path"]

    def image_reference(self, image_id):
        """Where the image comes from, for messages: its path if it has one."""
        info = self.image_info[image_id]
        return info["path"] or f"{info['source']} image {info['id']!r}"

    # --------------------------------------------------------------- pixels
    def load_image(self, image_id):
        """Read the image file as uint8 [H, W, 3] RGB, EXIF orientation applied.

        Conversions: grey, palette and CMYK go through PIL's RGB conversion;
        alpha is dropped (the colour under it is kept, not composited);
        16-bit, 32-bit and float pixels as ``detect()`` converts arrays
        (``mrcnn_tf.data.validation.to_rgb_uint8``): 16-bit divided by 257
        (a fixed divisor keeps brightness comparable across images), wider
        integers as is within 0..255 and as 16-bit within 0..65535, floats
        times 255 within 0..1; other ranges stretched min..max.

        Raises:
            ImageLoadError (a ValueError): the file is missing or unreadable;
                the message names the path and the image id.
        """
        info = self.image_info[image_id]
        path = info["path"]
        if not path:
            raise ImageLoadError(
                f"Image {image_id} ({info['source']}.{info['id']}) has no path; "
                "a dataset without image files must override load_image")
        try:
            with Image.open(path) as image:
                image.load()  # decode now so a truncated file fails here
                image = ImageOps.exif_transpose(image)
                return _to_rgb_uint8(image, f"image {image_id}")
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            raise ImageLoadError(
                f"Cannot read image {image_id} ({info['source']}.{info['id']}) "
                f"from {path!r}: {err}") from err

    def load_mask(self, image_id):
        """Instance masks: (bool [H, W, N], int32 [N] internal class ids).

        The base class has no annotations, so N is 0; subclasses override
        this. H and W come from the info's "height"/"width" if present,
        else from reading the image.
        """
        info = self.image_info[image_id]
        if "height" in info and "width" in info:
            height, width = int(info["height"]), int(info["width"])
        else:
            height, width = self.load_image(image_id).shape[:2]
        return np.zeros([height, width, 0], bool), np.zeros([0], np.int32)


def _short_name(name):
    """First part of a comma-separated name ("person, human" -> "person")."""
    return str(name).split(",")[0]


def _to_rgb_uint8(image, name):
    """PIL image of any mode -> uint8 [H, W, 3]: 16-bit, 32-bit and float modes
    through :func:`to_rgb_uint8` (as ``detect()`` converts arrays), the others
    through PIL's RGB conversion."""
    if image.mode.startswith("I") or image.mode == "F":
        return to_rgb_uint8(np.asarray(image), name)
    if image.mode in ("P", "PA"):
        # Via RGBA: palette transparency would otherwise warn and be lost.
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
