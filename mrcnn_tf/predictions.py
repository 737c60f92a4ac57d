"""Predictions out: COCO results, VIA 2.x and labelme projects that the annotation tools open.

    write_predictions(results, image_paths, class_names, "out/", fmt="via")

* ``coco``: ``out/detections.json``, ``{"images": [{id, file_name}],
  "annotations": to_coco_results(...)}`` (RLE masks, float [x, y, w, h]).
* ``via``: ``out/via/via_region_data.json``, a VIA 2.x annotation export
  (VIA: *Annotation > Import annotations (from json)*), one polygon region
  per detection with the class name in the region attribute ``class`` and
  the score in ``score``; ``ViaDataset.from_directory("out/via",
  class_attribute="class")`` trains on it.
* ``labelme``: ``out/labelme/<image stem>.json`` per image, polygons labelled
  with the class name; ``LabelmeDataset.from_directory("out/labelme")``
  reads them back.

The via and labelme folders get the images too (hard links where the file
system allows, else copies), as both tools and both loaders look for the
images beside the annotation file: a user corrects the predictions in the
tool and trains on the folder again. Polygons are
:func:`mrcnn_tf.visualize.mask_to_polygons`' outer contours; neither tool
has holes, so holes are filled (a detection's separate parts become one
region each).
"""

import json
import os
import shutil

import numpy as np
from pycocotools import mask as mask_utils

from mrcnn_tf.data.labelme import write_labelme
from mrcnn_tf.data.via import VIA_FILE_NAME, image_size
from mrcnn_tf.evaluate import to_coco_results
from mrcnn_tf.visualize import mask_to_polygons

FORMATS = ("coco", "via", "labelme")
VIA_CLASS_ATTRIBUTE = "class"


def _instance_mask(masks, k):
    """bool [H, W] of detection k: a column of a dense [H, W, N] or a decoded RLE."""
    if isinstance(masks, (list, tuple)):
        return mask_utils.decode(masks[k]).astype(bool)
    return np.asarray(masks[:, :, k], bool)


def instance_polygons(result, class_names, tolerance=1.0):
    """[(polygon [K, (x, y)], class name, score)] of one ``detect()`` result."""
    out = []
    for k, class_id in enumerate(result["class_ids"]):
        for exterior, _holes in mask_to_polygons(_instance_mask(result["masks"], k), tolerance):
            out.append((exterior, class_names[int(class_id)], float(result["scores"][k])))
    return out


def _place_image(source, folder):
    """The image at ``source`` also in ``folder`` (hard link, else a copy); its file name."""
    name = os.path.basename(source)
    target = os.path.join(folder, name)
    if not os.path.exists(target):
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    return name


def write_predictions(results, image_paths, class_names, output_dir, fmt="coco", tolerance=1.0):
    """Write ``detect()`` results in ``fmt`` under ``output_dir``; returns the path written.

    Args:
        results: one ``detect()``/``detect_tiled()`` dict per image (masks
            dense or RLE).
        image_paths: the image file of each result.
        class_names: name of each class id (index 0 the background).
        output_dir: created if missing.
        fmt: "coco", "via" or "labelme" (see the module docstring).
        tolerance: polygon simplification, pixels.
    Raises:
        ValueError: an unknown ``fmt``, or lengths that differ.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if len(results) != len(image_paths):
        raise ValueError(f"{len(results)} results for {len(image_paths)} image paths")
    os.makedirs(output_dir, exist_ok=True)
    names = [os.path.basename(p) for p in image_paths]
    if fmt == "coco":
        path = os.path.join(output_dir, "detections.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
                       "annotations": to_coco_results(results, list(range(len(names))))}, handle)
        return path
    folder = os.path.join(output_dir, fmt)
    os.makedirs(folder, exist_ok=True)
    if fmt == "labelme":
        for result, source in zip(results, image_paths):
            name = _place_image(source, folder)
            height, width = image_size(source)
            polygons = instance_polygons(result, class_names, tolerance)
            write_labelme(os.path.join(folder, os.path.splitext(name)[0] + ".json"),
                          [p for p, _, _ in polygons], [c for _, c, _ in polygons], name, height, width)
        return folder
    project = {}
    for result, source in zip(results, image_paths):
        name = _place_image(source, folder)
        regions = [{"shape_attributes": {"name": "polygon",
                                         "all_points_x": [round(float(x), 2) for x in polygon[:, 0]],
                                         "all_points_y": [round(float(y), 2) for y in polygon[:, 1]]},
                    "region_attributes": {VIA_CLASS_ATTRIBUTE: class_name, "score": f"{score:.3f}"}}
                   for polygon, class_name, score in instance_polygons(result, class_names, tolerance)]
        size = os.path.getsize(source)
        # VIA keys an image by file name + size.
        project[f"{name}{size}"] = {"filename": name, "size": size, "regions": regions,
                                    "file_attributes": {}}
    path = os.path.join(folder, VIA_FILE_NAME)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(project, handle)
    return path

