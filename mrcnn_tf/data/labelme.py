"""labelme annotation files as a ``Dataset``: one JSON per image, in a folder.

``LabelmeDataset.from_directory(path)`` reads every ``*.json`` in ``path``
that is a labelme file (``shapes``, ``imagePath``). A shape is
``{"label", "points": [[x, y], ...], "shape_type"}`` with shape_type
``polygon`` (the default), ``rectangle`` (two corners) or ``circle``
(centre, a point on the circle); ``line``, ``linestrip`` and ``point`` have
no area and are dropped. Classes are the distinct labels, sorted, numbered
1..K (or ``class_names`` fixes their order).

Coordinates: labelme draws with PIL, whose pixel ``i`` is centred on ``i``;
ours (VIA's, docs/CONTRACTS.md) centre pixel ``i`` on ``i + 0.5``. Points
are shifted by half a pixel on reading (and by :func:`write_labelme`
the other way), so a polygon covers the same pixels in labelme and here.
"""

import json
import os
import warnings

import numpy as np

from mrcnn_tf.data.coco import AnnotationFormatError, join_image_name, read_json
from mrcnn_tf.data.dataset import Dataset
from mrcnn_tf.data.via import rasterize_regions

LABELME_SOURCE = "labelme"
LABELME_VERSION = "5.5.0"
# labelme (PIL) pixel centres sit at integers, ours at i + 0.5.
LABELME_OFFSET = 0.5
AREA_SHAPES = ("polygon", "rectangle", "circle")
LINE_SHAPES = ("line", "linestrip", "point", "points")


def _points(shape, where):
    points = shape.get("points")
    try:
        points = np.asarray(points, np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise AnnotationFormatError(f"{where}.points must be a list of [x, y] pairs, got {points!r}") from None
    if not np.isfinite(points).all():
        raise AnnotationFormatError(f"{where}.points must be finite numbers")
    return points + LABELME_OFFSET


def _parse_shape(shape, where):
    """A labelme shape -> a shape dict of ``via.rasterize_shape``, or None without area."""
    if not isinstance(shape, dict):
        raise AnnotationFormatError(f"{where} must be a JSON object")
    if not isinstance(shape.get("label"), str) or not shape["label"]:
        raise AnnotationFormatError(f"missing required key {where}.label")
    kind = shape.get("shape_type") or "polygon"
    if kind in LINE_SHAPES:
        return None
    if kind not in AREA_SHAPES:
        raise AnnotationFormatError(f"{where}.shape_type {kind!r} is not one of {AREA_SHAPES + LINE_SHAPES}")
    points = _points(shape, where)
    if kind == "polygon":
        if len(points) < 3:
            return None
        parsed = {"name": "polygon", "xs": points[:, 0], "ys": points[:, 1]}
    elif kind == "rectangle":
        if len(points) != 2:
            raise AnnotationFormatError(f"{where}: a rectangle has 2 points, got {len(points)}")
        (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
        parsed = {"name": "rect", "x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1}
        if x2 <= x1 or y2 <= y1:
            return None
    else:
        if len(points) != 2:
            raise AnnotationFormatError(f"{where}: a circle has 2 points, got {len(points)}")
        radius = float(np.hypot(*(points[1] - points[0])))
        parsed = {"name": "ellipse", "cx": points[0, 0], "cy": points[0, 1], "rx": radius,
                  "ry": radius, "theta": 0.0}
        if radius <= 0:
            return None
    parsed["class_name"] = shape["label"]
    return parsed


class LabelmeDataset(Dataset):
    """Images and shape masks of a folder of labelme JSON files.

    ``image_info`` entries carry ``height``, ``width`` and ``regions``
    (parsed shapes with their ``class_id``), as ``ViaDataset``'s.
    """

    @classmethod
    def from_directory(cls, path, class_names=None):
        """A prepared dataset of the labelme files in ``path``.

        Args:
            path: folder of ``*.json`` (files that are not labelme are skipped).
            class_names: optional label order (ids 1..K); labels not in it
                raise. Default: the labels found, sorted.
        Raises:
            FileNotFoundError: no folder, no labelme file, or a missing image.
            AnnotationFormatError: a missing or malformed key (named by file
                and JSON path), or an unsafe ``imagePath``.
        """
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"labelme folder not found: {path!r}")
        entries, dropped = [], 0
        for name in sorted(os.listdir(path)):
            if not name.lower().endswith(".json"):
                continue
            json_path = os.path.join(path, name)
            data = read_json(json_path, "labelme file")
            if not isinstance(data, dict) or "shapes" not in data or "imagePath" not in data:
                continue
            where = f"{name}"
            shapes = data["shapes"]
            if not isinstance(shapes, list):
                raise AnnotationFormatError(f"{where}: shapes must be a list")
            parsed = []
            for i, shape in enumerate(shapes):
                region = _parse_shape(shape, f"{where}: shapes[{i}]")
                if region is None:
                    dropped += 1
                else:
                    parsed.append(region)
            for key in ("imageHeight", "imageWidth"):
                if not isinstance(data.get(key), int) or data[key] < 1:
                    raise AnnotationFormatError(f"{where}: {key} must be a positive int, got {data.get(key)!r}")
            image_path = join_image_name(path, data["imagePath"], f"{where}: imagePath", json_path)
            if not os.path.isfile(image_path):
                raise FileNotFoundError(f"{where}: image file {data['imagePath']!r} does not exist in {path!r}")
            entries.append((data["imagePath"], image_path, data["imageHeight"], data["imageWidth"], parsed))
        if not entries:
            raise FileNotFoundError(f"no labelme JSON file (with shapes and imagePath) in {path!r}")
        if dropped:
            warnings.warn(f"{path}: dropped {dropped} shape(s) without area", stacklevel=2)
        found = sorted({s["class_name"] for *_, shapes in entries for s in shapes})
        names = list(class_names) if class_names is not None else found
        unknown = sorted(set(found) - set(names))
        if unknown:
            raise AnnotationFormatError(f"labels {unknown} are not in class_names {names}")
        dataset = cls()
        for class_id, label in enumerate(names, start=1):
            dataset.add_class(LABELME_SOURCE, class_id, label)
        for file_name, image_path, height, width, shapes in entries:
            for shape in shapes:
                shape["class_id"] = names.index(shape.pop("class_name")) + 1
            dataset.add_image(LABELME_SOURCE, file_name, image_path, height=height, width=width,
                              regions=shapes)
        dataset.prepare()
        return dataset

    def load_mask(self, image_id):
        """Shape masks of one image: bool [H, W, N], class_ids int32 [N]."""
        info = self.image_info[image_id]
        if info["source"] != LABELME_SOURCE:
            return super().load_mask(image_id)
        return rasterize_regions(info["regions"], info["height"], info["width"])

    def image_reference(self, image_id):
        """The image's file path."""
        return self.image_info[image_id]["path"]


def labelme_document(polygons, labels, image_name, height, width):
    """A labelme JSON document (dict) of polygons in our pixel frame.

    Args:
        polygons: one ``[K, (x, y)]`` array per shape (continuous pixels,
            ``mask_to_polygons``' exteriors).
        labels: the class name of each.
        image_name: ``imagePath``, relative to the JSON file.
        height, width: the image size.
    """
    shapes = [{"label": str(label),
               "points": [[float(x) - LABELME_OFFSET, float(y) - LABELME_OFFSET] for x, y in polygon],
               "group_id": None, "description": "", "shape_type": "polygon", "flags": {}}
              for polygon, label in zip(polygons, labels)]
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_name,
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}


def write_labelme(path, polygons, labels, image_name, height, width):
    """Write :func:`labelme_document` to ``path`` (labelme opens it beside the image)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(labelme_document(polygons, labels, image_name, height, width), handle, indent=1)
