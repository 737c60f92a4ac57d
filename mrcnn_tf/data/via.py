"""VGG Image Annotator (VIA) region files as a ``Dataset``.

``ViaDataset.from_directory(path)`` reads ``path/via_region_data.json``, the
file matterport's balloon sample uses. Accepted layouts:

* VIA 1.x export: ``{key: {"filename", "regions": {"0": region, ...}}}``;
* VIA 2.x export: the same with ``"regions": [region, ...]``;
* VIA 2.x project file: the above under the top-level key ``_via_img_metadata``.

A region is ``{"shape_attributes": {"name": shape, ...}, "region_attributes": {...}}``
with shape ``polygon``/``polyline`` (``all_points_x``, ``all_points_y``; a
polyline is closed into a polygon), ``rect`` (``x, y, width, height``),
``circle`` (``cx, cy, r``), ``ellipse`` (``cx, cy, rx, ry`` and VIA 2's
``theta``, radians, clockwise on screen) or ``point`` (no area: dropped).

Coordinates are continuous with pixel ``i`` covering ``[i, i + 1)``
(docs/CONTRACTS.md): a pixel belongs to a region when its centre does, so a
``rect`` of width 30 covers exactly 30 columns. Shapes are clipped to the image.

Classes: with ``class_attribute`` the classes are the distinct values of
``region_attributes[class_attribute]``, sorted, numbered 1..K. Without it
there is one class: if every region has exactly one attribute and all share
one value (e.g. ``{"type": "balloon"}`` everywhere) that value names it,
otherwise it is called ``"object"`` (the balloon files have empty attributes).
"""

import math
import os
import warnings

import numpy as np
import skimage.draw
from PIL import Image, UnidentifiedImageError

from mrcnn_tf.data.coco import AnnotationFormatError, join_image_name, read_json
from mrcnn_tf.data.dataset import Dataset, ImageLoadError

VIA_SOURCE = "via"
VIA_FILE_NAME = "via_region_data.json"
VIA2_PROJECT_KEY = "_via_img_metadata"
DEFAULT_CLASS_NAME = "object"
SHAPE_KEYS = {"polygon": ("all_points_x", "all_points_y"),
              "polyline": ("all_points_x", "all_points_y"),
              "rect": ("x", "y", "width", "height"),
              "circle": ("cx", "cy", "r"),
              "ellipse": ("cx", "cy", "rx", "ry"),
              "point": ("cx", "cy")}
# EXIF orientations 5..8 are transposed: load_image (exif_transpose) swaps H and W.
EXIF_ORIENTATION_TAG = 274
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
# skimage.draw tests integer (row, col); pixel centres sit at i + 0.5.
PIXEL_CENTRE = 0.5


def image_size(path):
    """(height, width) as ``Dataset.load_image`` will return it, from the file
    header only (PIL opens lazily; EXIF orientation is in the header)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise ImageLoadError(f"Cannot read the header of image {path!r}: {err}") from err
    return (width, height) if orientation in TRANSPOSED_ORIENTATIONS else (height, width)


def _number(shape, key, where):
    value = shape.get(key)
    if value is None:
        raise AnnotationFormatError(f"missing required key {where}.{key}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AnnotationFormatError(f"{where}.{key} must be a finite number, got {value!r}")
    return float(value)


def _parse_shape(shape, where):
    """Validated shape dict, or None when it has no area."""
    if not isinstance(shape, dict):
        raise AnnotationFormatError(f"{where} must be a JSON object")
    name = shape.get("name")
    if name not in SHAPE_KEYS:
        raise AnnotationFormatError(
            f"{where}.name: unknown shape {name!r}; known: {sorted(SHAPE_KEYS)}")
    if name in ("polygon", "polyline"):
        points = []
        for key in SHAPE_KEYS[name]:
            values = shape.get(key)
            if values is None:
                raise AnnotationFormatError(f"missing required key {where}.{key}")
            if not isinstance(values, list) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in values):
                raise AnnotationFormatError(f"{where}.{key} must be a list of finite numbers")
            points.append(np.asarray(values, np.float64))
        xs, ys = points
        if xs.shape != ys.shape:
            raise AnnotationFormatError(
                f"{where}: all_points_x has {xs.size} values, all_points_y {ys.size}")
        area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
        return {"name": "polygon", "xs": xs, "ys": ys} if xs.size >= 3 and area > 0 else None
    values = {key: _number(shape, key, where) for key in SHAPE_KEYS[name]}
    if name == "point":
        return None
    if name == "rect":
        values["name"] = "rect"
        return values if values["width"] > 0 and values["height"] > 0 else None
    if name == "circle":
        values.update(rx=values["r"], ry=values["r"])
    values.update(name="ellipse", theta=float(shape.get("theta", 0.0) or 0.0))
    return values if values["rx"] > 0 and values["ry"] > 0 else None


def rasterize_shape(shape, height, width):
    """bool [height, width] mask of a parsed shape, clipped to the image."""
    mask = np.zeros([height, width], bool)
    if shape["name"] == "rect":
        # Columns whose centre x + 0.5 lies in [x, x + width): ceil(x - 0.5) onwards.
        y1, x1 = math.ceil(shape["y"] - PIXEL_CENTRE), math.ceil(shape["x"] - PIXEL_CENTRE)
        y2 = math.ceil(shape["y"] + shape["height"] - PIXEL_CENTRE)
        x2 = math.ceil(shape["x"] + shape["width"] - PIXEL_CENTRE)
        mask[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
        return mask
    if shape["name"] == "polygon":
        rows, cols = skimage.draw.polygon(shape["ys"] - PIXEL_CENTRE, shape["xs"] - PIXEL_CENTRE,
                                          shape=(height, width))
    else:
        # VIA's theta turns the x axis towards +y (clockwise on screen);
        # skimage's rotation is the other way round in (row, col).
        rows, cols = skimage.draw.ellipse(shape["cy"] - PIXEL_CENTRE, shape["cx"] - PIXEL_CENTRE,
                                          shape["ry"], shape["rx"], shape=(height, width),
                                          rotation=-shape["theta"])
    mask[rows, cols] = True
    return mask


def rasterize_regions(regions, height, width):
    """Masks of parsed, classed shapes (VIA regions, labelme shapes): regions entirely outside
    the image are skipped. Returns bool [height, width, N], class_ids int32 [N]."""
    masks, class_ids = [], []
    for shape in regions:
        mask = rasterize_shape(shape, height, width)
        if mask.any():
            masks.append(mask)
            class_ids.append(shape["class_id"])
    if not masks:
        return np.zeros([height, width, 0], bool), np.zeros([0], np.int32)
    return np.stack(masks, axis=2), np.asarray(class_ids, np.int32)


def _class_value(attributes, class_attribute, where):
    """The class name a region's attributes give (VIA 2 checkbox: one true key)."""
    if not isinstance(attributes, dict) or class_attribute not in attributes:
        raise AnnotationFormatError(f"missing required key {where}.{class_attribute}")
    value = attributes[class_attribute]
    if isinstance(value, dict):  # checkbox attributes: {"cat": true, "dog": false}
        value = [k for k, v in value.items() if v]
        value = value[0] if len(value) == 1 else None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise AnnotationFormatError(
            f"{where}.{class_attribute} must hold one class name, got {attributes[class_attribute]!r}")
    return str(value)


class ViaDataset(Dataset):
    """Images and region masks of a VIA annotation file.

    ``image_info`` entries carry ``height``, ``width`` and ``regions``
    (parsed shapes, each with its internal ``class_id``).
    """

    @classmethod
    def from_directory(cls, path, class_attribute=None):
        """A prepared dataset of ``path/via_region_data.json`` (or of ``path``
        itself when it is a JSON file; images are next to it).

        Raises:
            FileNotFoundError: no JSON file, or a listed image file is missing.
            AnnotationFormatError: malformed JSON, a missing key (named by its
                JSON path), an unknown shape, a file name that is absolute or
                has a ``..`` component (symlinks next to the JSON are followed).
        """
        path = os.fspath(path)
        json_path = path if os.path.isfile(path) else os.path.join(path, VIA_FILE_NAME)
        directory = os.path.dirname(json_path)
        data = read_json(json_path, "VIA annotation file")
        if isinstance(data, dict) and VIA2_PROJECT_KEY in data:
            data = data[VIA2_PROJECT_KEY]
        if not isinstance(data, dict):
            raise AnnotationFormatError(
                f"{json_path!r}: expected a JSON object of images, got {type(data).__name__}")

        entries, dropped = [], 0
        for key, entry in data.items():
            where = f"[{key!r}]"
            if not isinstance(entry, dict) or "filename" not in entry:
                raise AnnotationFormatError(f"missing required key {where}.filename")
            regions = entry.get("regions")
            if regions is None:
                raise AnnotationFormatError(f"missing required key {where}.regions")
            if isinstance(regions, dict):  # VIA 1.x: {"0": region, "1": region}
                regions = [regions[k] for k in sorted(regions, key=_region_order)]
            elif not isinstance(regions, list):
                raise AnnotationFormatError(f"{where}.regions must be a list or an object")
            parsed = []
            for i, region in enumerate(regions):
                rwhere = f"{where}.regions[{i}]"
                if not isinstance(region, dict) or "shape_attributes" not in region:
                    raise AnnotationFormatError(f"missing required key {rwhere}.shape_attributes")
                shape = _parse_shape(region["shape_attributes"], f"{rwhere}.shape_attributes")
                if shape is None:
                    dropped += 1
                    continue
                attributes = region.get("region_attributes") or {}
                if class_attribute is not None:
                    shape["class_name"] = _class_value(
                        attributes, class_attribute, f"{rwhere}.region_attributes")
                else:
                    shape["attributes"] = attributes
                parsed.append(shape)
            image_path = join_image_name(directory, entry["filename"], f"{where}.filename",
                                         json_path)
            if not os.path.isfile(image_path):
                raise FileNotFoundError(
                    f"{where}: image file {entry['filename']!r} does not exist in {directory!r}")
            entries.append((entry["filename"], image_path, parsed))
        if dropped:
            warnings.warn(f"{json_path}: dropped {dropped} zero-area region(s)", stacklevel=2)

        dataset = cls()
        names = _class_names(entries, class_attribute)
        for class_id, name in enumerate(names, start=1):
            dataset.add_class(VIA_SOURCE, class_id, name)
        for file_name, image_path, shapes in entries:
            for shape in shapes:
                shape["class_id"] = names.index(shape.pop("class_name", names[0])) + 1
                shape.pop("attributes", None)
            height, width = image_size(image_path)
            dataset.add_image(VIA_SOURCE, file_name, image_path, height=height,
                              width=width, regions=shapes)
        dataset.prepare()
        return dataset

    def load_mask(self, image_id):
        """Region masks of one image.

        Returns:
            masks bool [H, W, N], class_ids int32 [N]. Regions entirely
            outside the image are skipped; no regions gives N = 0.
        """
        info = self.image_info[image_id]
        if info["source"] != VIA_SOURCE:
            return super().load_mask(image_id)
        return rasterize_regions(info["regions"], info["height"], info["width"])

    def image_reference(self, image_id):
        """The image's file path."""
        return self.image_info[image_id]["path"]


def _region_order(key):
    """VIA 1.x region keys "0".."10" in numeric order (string order puts "10" before "2")."""
    return (0, int(key), "") if str(key).isdigit() else (1, 0, str(key))


def _class_names(entries, class_attribute):
    """Sorted class names (see the module docstring for the no-attribute rule)."""
    shapes = [shape for _, _, parsed in entries for shape in parsed]
    if class_attribute is not None:
        return sorted({shape["class_name"] for shape in shapes}) or [DEFAULT_CLASS_NAME]
    values = set()
    for shape in shapes:
        attributes = shape["attributes"]
        value = next(iter(attributes.values())) if isinstance(attributes, dict) \
            and len(attributes) == 1 else None
        if not isinstance(value, str) or not value:
            return [DEFAULT_CLASS_NAME]
        values.add(value)
    return [values.pop()] if len(values) == 1 else [DEFAULT_CLASS_NAME]
