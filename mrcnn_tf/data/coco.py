"""COCO-format instance annotations as a ``Dataset``.

Reads a COCO JSON file (``images``, ``annotations``, ``categories``) with
polygon, uncompressed-RLE (``counts`` a list) and compressed-RLE (``counts``
a string) segmentations. Everything is validated when the file is loaded, so
a bad file fails once with the JSON path of the problem
(``annotations[3].image_id``) instead of mid-training.

Ids: COCO category ids are sparse (1..90 with gaps); they are the *source*
ids (``map_source_class_id("coco.18")``) and ``prepare()`` numbers the loaded
categories 1..K in ascending COCO-id order. Crowd annotations (``iscrowd``)
are kept with their class id negated, as matterport does, so the targets code
can exclude them from training.
"""

import json
import math
import os
import re
import warnings

import numpy as np
from pycocotools import mask as mask_utils

from mrcnn_tf.data.dataset import Dataset

COCO_SOURCE = "coco"
# A polygon needs three (x, y) points: six numbers.
MIN_POLYGON_VALUES = 6
# Compressed-RLE characters encode 5 data bits each, offset from "0" (ASCII 48);
# bit 0x20 says "more characters follow", 0x10 is the sign bit of the last one.
_RLE_CHAR_OFFSET, _RLE_DATA_BITS, _RLE_MORE, _RLE_SIGN = 48, 0x1F, 0x20, 0x10


class AnnotationFormatError(ValueError):
    """An annotation file is malformed; the message names where."""


# ---------------------------------------------------------------- file reading
def read_json(path, what="annotation file"):
    """Parse a JSON file; errors name the file and the JSON error position.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AnnotationFormatError: the text is not valid JSON (line, column, char).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path!r}")
    with open(path, "rb") as handle:
        text = handle.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationFormatError(
            f"{what} {path!r} is not valid JSON: {err.msg} at line {err.lineno} "
            f"column {err.colno} (char {err.pos})") from err
    except UnicodeDecodeError as err:
        raise AnnotationFormatError(f"{what} {path!r} is not UTF-8 text: {err}") from err


# "C:", "c:" at the start of a name: a Windows drive (absolute "C:\\x" or
# drive-relative "C:x"), refused on every platform so a file behaves the same.
_DRIVE_PREFIX = re.compile(r"^[A-Za-z]:")


def join_image_name(directory, name, where, source=None):
    """Path of the image ``name`` (as written in an annotation file) under ``directory``.

    The check is on the name's text, not on where the file ends up: a name
    must be a relative path with no ``..`` component, so a JSON file cannot
    make the loader read elsewhere. Symlinks under ``directory`` (a split
    made of links to another folder) are the user's own choice and are
    followed. Both ``/`` and ``\\`` count as separators for the check, so
    Windows-written names cannot sneak a ``..`` or a drive past it.

    Args:
        directory: the image directory the name is relative to.
        name: the file name from the annotation file.
        where: JSON path of the name, for messages (``images[3].file_name``).
        source: optional description of the annotation file and entry
            (e.g. its path and the image id), put in messages.
    Returns:
        the absolute, normalised path (links not resolved).
    Raises:
        AnnotationFormatError: ``name`` is not a non-empty string, contains a
            NUL character, is absolute (``/x``, ``\\x``, ``\\\\server\\share``, ``C:\\x``,
            ``C:x``) or has a ``..`` component.
    """
    prefix = f"{source}: " if source else ""
    if not isinstance(name, str) or not name:
        raise AnnotationFormatError(f"{prefix}{where} must be a non-empty string, got {name!r}")
    if "\0" in name:
        raise AnnotationFormatError(
            f"{prefix}{where} {name!r} is not a valid file name: it contains a NUL character")
    reason = None
    if name[0] in "/\\" or os.path.isabs(name):
        reason = "it is an absolute path"
    elif _DRIVE_PREFIX.match(name):
        reason = "it starts with a drive letter"
    elif ".." in re.split(r"[/\\]", name):
        reason = "it has a '..' component"
    if reason is not None:
        raise AnnotationFormatError(
            f"{prefix}{where} {name!r} points outside the image directory {directory!r}: "
            f"{reason}; image names must be relative paths inside the directory")
    return os.path.normpath(os.path.join(os.path.abspath(directory), name))


def _require(obj, key, where):
    """``obj[key]``, or an error naming the JSON path ``where.key``."""
    if not isinstance(obj, dict):
        raise AnnotationFormatError(f"{where} must be a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise AnnotationFormatError(f"missing required key {_join(where, key)}")
    return obj[key]


def _join(where, key):
    """JSON path of ``key`` inside ``where`` ("" is the top level)."""
    return f"{where}.{key}" if where else key


def _require_list(obj, key, where, default=None):
    value = obj.get(key, default) if default is not None else _require(obj, key, where)
    if not isinstance(value, list):
        raise AnnotationFormatError(
            f"{_join(where, key)} must be a list, got {type(value).__name__}")
    return value


def _rle_string_counts(counts, where):
    """Run lengths of a compressed-RLE string (pycocotools' rleFrString, in
    Python so a malformed string is reported instead of read past its end)."""
    values, pos = [], 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(counts):
                raise AnnotationFormatError(f"{where}: compressed RLE string ends mid-number")
            char = ord(counts[pos]) - _RLE_CHAR_OFFSET
            if not 0 <= char <= _RLE_DATA_BITS | _RLE_MORE:
                raise AnnotationFormatError(
                    f"{where}: {counts[pos]!r} is not a compressed-RLE character")
            value |= (char & _RLE_DATA_BITS) << shift
            more = bool(char & _RLE_MORE)
            pos, shift = pos + 1, shift + 5
            if not more and char & _RLE_SIGN:
                value |= -1 << shift
        if len(values) > 2:  # counts after the third are deltas from two before
            value += values[-2]
        values.append(value)
    return values


# ------------------------------------------------------------- segmentations
def _polygon_area(values):
    """Shoelace area of one flat polygon ``[x1, y1, x2, y2, ...]``."""
    xs, ys = np.asarray(values[0::2], np.float64), np.asarray(values[1::2], np.float64)
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


def _check_segmentation(seg, height, width, where):
    """Validate one annotation's segmentation.

    Returns:
        (segmentation to keep or None if nothing is left, number of
        zero-area/degenerate polygons dropped).
    """
    if isinstance(seg, list):
        kept, dropped = [], 0
        for k, polygon in enumerate(seg):
            if not isinstance(polygon, list) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in polygon):
                raise AnnotationFormatError(f"{where}[{k}] must be a list of finite numbers")
            if (len(polygon) < MIN_POLYGON_VALUES or len(polygon) % 2
                    or _polygon_area(polygon) <= 0):
                dropped += 1
            else:
                kept.append([float(v) for v in polygon])
        return (kept or None), dropped
    counts = _require(seg, "counts", where)
    size = _require(seg, "size", where)
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and v >= 0 for v in size)):
        raise AnnotationFormatError(f"{where}.size must be [height, width], got {size!r}")
    if list(size) != [height, width]:
        raise AnnotationFormatError(
            f"{where}: mask size {size} differs from the image's height/width "
            f"{[height, width]}")
    if isinstance(counts, str):
        runs = _rle_string_counts(counts, where)
    elif isinstance(counts, list) and all(isinstance(v, int) and v >= 0 for v in counts):
        runs = counts
    else:
        raise AnnotationFormatError(
            f"{where}.counts must be a string (compressed RLE) or a list of "
            f"non-negative integers (uncompressed RLE)")
    if any(v < 0 for v in runs) or sum(runs) != height * width:
        raise AnnotationFormatError(
            f"{where}: RLE decodes to {sum(runs)} pixels, but the image's "
            f"height/width {[height, width]} has {height * width}")
    return seg, 0


def segmentation_to_rle(seg, height, width):
    """pycocotools RLE of a polygon list or an (un)compressed RLE dict."""
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if isinstance(seg["counts"], list):
        return mask_utils.frPyObjects(seg, height, width)
    return {"size": seg["size"], "counts": seg["counts"].encode("ascii")}


# ---------------------------------------------------------------- the dataset
class CocoDataset(Dataset):
    """Images and instance masks of a COCO-format annotation file.

    ``image_info`` entries carry ``height``, ``width``, ``file_name`` and
    ``annotations`` (validated COCO annotation dicts of the selected classes).
    """

    def load_coco(self, annotation_file, image_dir, class_ids=None, class_names=None,
                  skip_empty=False):
        """Add the classes and images of a COCO JSON file (call ``prepare()`` after).

        Args:
            annotation_file: path of the COCO JSON file.
            image_dir: directory that ``images[i].file_name`` is relative to;
                a name must be relative with no ``..`` component (symlinks
                in the directory are followed).
            class_ids: optional COCO category ids to load (a subset).
            class_names: optional category names to load; with ``class_ids``
                too, a category must match both.
            skip_empty: drop images with no annotation of the loaded classes
                (by default they stay, as negative examples).
        Returns:
            list of the loaded COCO category ids, ascending.
        Raises:
            FileNotFoundError, AnnotationFormatError (see the module docstring).
        """
        data = read_json(annotation_file, "COCO annotation file")
        if not isinstance(data, dict):
            raise AnnotationFormatError(
                f"{annotation_file!r}: top level must be a JSON object with "
                f"images/annotations/categories, got {type(data).__name__}")
        categories = self._read_categories(data)
        wanted = self._select_categories(categories, class_ids, class_names)
        images = self._read_images(data, image_dir, annotation_file)
        per_image, dropped = self._read_annotations(data, images, categories, set(wanted))
        if dropped:
            warnings.warn(f"{annotation_file}: dropped {dropped} zero-area or degenerate "
                          f"polygon(s)", stacklevel=2)
        for cat_id in wanted:
            self.add_class(COCO_SOURCE, cat_id, categories[cat_id])
        for image_id, image in images.items():
            annotations = per_image.get(image_id, [])
            if skip_empty and not annotations:
                continue
            self.add_image(COCO_SOURCE, image_id, image["path"], width=image["width"],
                           height=image["height"], file_name=image["file_name"],
                           annotations=annotations)
        return wanted

    @classmethod
    def from_json(cls, annotation_file, image_dir, class_ids=None, class_names=None,
                  skip_empty=False):
        """A prepared ``CocoDataset`` of one file (arguments as ``load_coco``)."""
        dataset = cls()
        dataset.load_coco(annotation_file, image_dir, class_ids, class_names, skip_empty)
        dataset.prepare()
        return dataset

    # ------------------------------------------------------------ validation
    @staticmethod
    def _read_categories(data):
        """{COCO category id: name}."""
        categories = {}
        for i, cat in enumerate(_require_list(data, "categories", "")):
            where = f"categories[{i}]"
            cat_id, name = _require(cat, "id", where), _require(cat, "name", where)
            if not isinstance(cat_id, int) or isinstance(cat_id, bool) or cat_id <= 0:
                raise AnnotationFormatError(f"{where}.id must be a positive integer, got {cat_id!r}")
            if cat_id in categories:
                raise AnnotationFormatError(f"{where}.id {cat_id} is used twice")
            categories[cat_id] = str(name)
        return categories

    @staticmethod
    def _select_categories(categories, class_ids, class_names):
        wanted = sorted(categories)
        if class_ids is not None:
            unknown = sorted(set(class_ids) - set(categories))
            if unknown:
                raise ValueError(f"class_ids {unknown} are not categories of the file; "
                                 f"known ids: {sorted(categories)}")
            wanted = [c for c in wanted if c in set(class_ids)]
        if class_names is not None:
            unknown = sorted(set(class_names) - set(categories.values()))
            if unknown:
                raise ValueError(f"class_names {unknown} are not categories of the file; "
                                 f"known names: {sorted(categories.values())}")
            wanted = [c for c in wanted if categories[c] in set(class_names)]
        return wanted

    @staticmethod
    def _read_images(data, image_dir, annotation_file=None):
        """{COCO image id: {path, file_name, height, width}}, in file order."""
        images = {}
        for i, image in enumerate(_require_list(data, "images", "")):
            where = f"images[{i}]"
            image_id = _require(image, "id", where)
            file_name = _require(image, "file_name", where)
            size = [_require(image, "height", where), _require(image, "width", where)]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
                raise AnnotationFormatError(
                    f"{where}: height/width must be positive integers, got {size}")
            if image_id in images:
                raise AnnotationFormatError(f"{where}.id {image_id!r} is used twice")
            source = f"{os.fspath(annotation_file)} (image id {image_id!r})" \
                if annotation_file is not None else f"image id {image_id!r}"
            path = join_image_name(image_dir, file_name, f"{where}.file_name", source)
            images[image_id] = {"path": path, "file_name": file_name,
                                "height": size[0], "width": size[1]}
        return images

    @staticmethod
    def _read_annotations(data, images, categories, wanted):
        """({image id: [annotation]} of the wanted classes, polygons dropped)."""
        per_image, dropped = {}, 0
        for i, ann in enumerate(_require_list(data, "annotations", "", default=[])):
            where = f"annotations[{i}]"
            image_id = _require(ann, "image_id", where)
            cat_id = _require(ann, "category_id", where)
            seg = _require(ann, "segmentation", where)
            if image_id not in images:
                raise AnnotationFormatError(f"{where}.image_id {image_id!r} is not in images[]")
            if cat_id not in categories:
                raise AnnotationFormatError(
                    f"{where}.category_id {cat_id!r} is not in categories[]")
            if cat_id not in wanted:
                continue
            image = images[image_id]
            seg, n_dropped = _check_segmentation(seg, image["height"], image["width"],
                                                 f"{where}.segmentation")
            dropped += n_dropped
            if seg is None:
                continue
            entry = {"id": ann.get("id", i + 1), "image_id": image_id, "category_id": cat_id,
                     "segmentation": seg, "iscrowd": int(bool(ann.get("iscrowd", 0)))}
            # The file's own box and area, when present, are what COCO evaluation scores against.
            if "bbox" in ann:
                box = ann["bbox"]
                if not (isinstance(box, list) and len(box) == 4 and all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                        for v in box) and box[2] >= 0 and box[3] >= 0):
                    raise AnnotationFormatError(f"{where}.bbox must be [x, y, w, h] (4 finite numbers, "
                                                f"w, h >= 0), got {box!r}")
                entry["bbox"] = [float(v) for v in box]
            if "area" in ann:
                area = ann["area"]
                if not (isinstance(area, (int, float)) and not isinstance(area, bool)
                        and math.isfinite(area) and area >= 0):
                    raise AnnotationFormatError(f"{where}.area must be a number >= 0, got {area!r}")
                entry["area"] = float(area)
            per_image.setdefault(image_id, []).append(entry)
        return per_image, dropped

    # ---------------------------------------------------------------- pixels
    def load_mask(self, image_id):
        """Instance masks of one image.

        Returns:
            masks bool [H, W, N], class_ids int32 [N] (internal ids; crowd
            instances negative). Annotations that rasterise to no pixel are
            skipped; an image without annotations gives N = 0.
        """
        info = self.image_info[image_id]
        if info["source"] != COCO_SOURCE:
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for ann in info["annotations"]:
            mask = mask_utils.decode(segmentation_to_rle(ann["segmentation"], height, width))
            if mask.shape != (height, width):  # validated on load; kept as a guard
                raise AnnotationFormatError(
                    f"annotation {ann['id']} of {info['path']!r}: mask decodes to "
                    f"{mask.shape}, image is {(height, width)}")
            if not mask.any():
                continue
            class_id = self.map_source_class_id(f"{COCO_SOURCE}.{ann['category_id']}")
            masks.append(mask.astype(bool))
            class_ids.append(-class_id if ann["iscrowd"] else class_id)
        if not masks:
            return np.zeros([height, width, 0], bool), np.zeros([0], np.int32)
        return np.stack(masks, axis=2), np.asarray(class_ids, np.int32)

    def image_reference(self, image_id):
        """The image's file path."""
        return self.image_info[image_id]["path"]

    # ---------------------------------------------------------------- export
    def to_coco_json(self, path=None, image_ids=None):
        """The dataset (or ``image_ids`` of it) as a COCO JSON dict.

        Category and image ids are the original COCO ones; segmentations are
        written as loaded, with ``area`` and ``bbox`` ([x, y, w, h]) computed
        from them. Written to ``path`` when given.
        """
        image_ids = self.image_ids if image_ids is None else image_ids
        images, annotations = [], []
        for image_id in image_ids:
            info = self.image_info[int(image_id)]
            if info["source"] != COCO_SOURCE:
                continue
            images.append({"id": info["id"], "file_name": info["file_name"],
                           "height": info["height"], "width": info["width"]})
            for ann in info["annotations"]:
                rle = segmentation_to_rle(ann["segmentation"], info["height"], info["width"])
                annotations.append({**ann, "area": float(mask_utils.area(rle)),
                                    "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
        categories = [{"id": c["id"], "name": c["name"]} for c in self.class_info
                      if c["source"] == COCO_SOURCE]
        result = {"images": images, "annotations": annotations, "categories": categories}
        if path is not None:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(result, handle)
        return result
