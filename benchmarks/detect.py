"""detect() end to end on a photo, part by part: the one-path TF pipeline, optionally against an old numpy path.

    python benchmarks/detect.py                                # R50-FPN, square 1024, a balloon photo, batch 1
    python benchmarks/detect.py --compare-old /tmp/mrcnn_old   # also an old checkout's numpy path, side by side
    python benchmarks/detect.py --quick                        # small backbone at 256 on a seeded image (seconds)

The model: ``MaskRCNN("inference")`` with random weights (``keras.utils.set_random_seed(0)``
before it is built), 81 classes and the default heads for the ResNets ("small": ShapesConfig's
CPU-sized heads), IMAGE_RESIZE_MODE "square" at ``--sizes``, DETECTION_MIN_CONFIDENCE 0 so
that every image has all its detections (100; 16 for "small") and their masks to paste. The
image: a real JPEG (``--image``, default a 1365x2048 (HxW) balloon photo; ``--quick``: a seeded
random 480x640 image), decoded by ``tf.io.decode_image``; a batch is that many copies of it.

New (this checkout), ``mrcnn_tf.inference``: each part is traced on its own in a
``tf.function`` with the very functions ``InferencePipeline.run`` calls (looked up in that
module) and the pipeline's own arguments:

* pre-processing: ``tf.constant`` of the uint8 batch, ``mold_batch`` and ``compose_image_meta``;
* graph: the Keras inference model (outputs cast to float32, as ``run`` does);
* post-processing: ``postprocess`` (boxes back to original pixels, compaction, mask pasting at
  the original size), outputs copied to numpy as ``detect()`` does; "mask pasting" is
  ``paste_masks`` alone on the same rows (boxes clipped to the image: the same pixel regions),
  its bool [N, H, W] tensor not copied out;
* conversion to dicts: ``unbatch_results`` (numpy views);
* ``detect()``: the real ``MaskRCNN.detect`` (its ``run_padded``, one traced graph).

Old (``--compare-old PATH``: a checkout run in a subprocess with ``PYTHONPATH=PATH``, for
example ``git worktree add /tmp/mrcnn_old a72b0b8``): the ``mold_inputs`` its ``MaskRCNN``'s module
imports (numpy), the graph by the model's ``_detect_graph`` (or ``keras_model`` in a ``tf.function``)
with outputs copied to numpy, ``unmold_detections`` per image (boxes, masks pasted by
``unmold_mask``, the dict: its conversion is part of its post-processing); "mask pasting" is
the time spent inside its ``unmold_mask`` calls. Same seed, same image, same settings.

Times: medians of ``--repeats`` calls after 2 warm-up calls, in seconds per batch; every
configuration and each side runs in its own fresh subprocess. "old / new" > 1: the new path is
faster. "detections" and "box Mpixels pasted" (the rounded boxes' area: the pixels pasted in
float) tell whether both sides had the same work; the full-size masks are detections x H x W
bytes either way.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_grid_arguments, median_seconds, mixed_precision, print_table, run_grid  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("MRCNN_SHARED_DIR", os.path.join(REPO, "..", "shared"))
PHOTO = os.path.join(SHARED, "data", "balloon", "val", "14898532020_ba6199dd22_k.jpg")
QUICK_IMAGE = (480, 640)
STAGES = (("pre", "pre-processing"), ("graph", "graph"), ("post", "post-processing"),
          ("paste", "mask pasting (in post)"), ("convert", "conversion to dicts"),
          ("detect", "detect() end to end"))


def load_image(image):
    """uint8 [H, W, 3]: the JPEG/PNG at ``image``, or a seeded random image for "random"."""
    import numpy as np
    import tensorflow as tf

    if image == "random":
        return np.random.default_rng(0).integers(0, 255, (*QUICK_IMAGE, 3), dtype=np.uint8)
    return tf.io.decode_image(tf.io.read_file(image), channels=3, expand_animations=False).numpy()


def build_model(backbone, size, batch, precision):
    """The seeded inference model and its config, with the classes of whichever mrcnn_tf is imported."""
    import keras

    from mrcnn_tf import Config, MaskRCNN
    from mrcnn_tf.data import ShapesConfig

    base = ShapesConfig if backbone == "small" else Config
    config = base(NAME="bench", NUM_CLASSES=base.NUM_CLASSES if backbone == "small" else 81,
                  BACKBONE=backbone, IMAGES_PER_GPU=batch, IMAGE_RESIZE_MODE="square",
                  IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size, DETECTION_MIN_CONFIDENCE=0.0,
                  MIXED_PRECISION=mixed_precision(precision))
    keras.utils.set_random_seed(0)
    return MaskRCNN("inference", config, model_dir="unused"), config


def box_pixels(results):
    """Pixels of the (rounded) boxes of all detections, in millions: the regions pasted in float."""
    return sum(float(((r["rois"][:, 2] - r["rois"][:, 0]) * (r["rois"][:, 3] - r["rois"][:, 1])).sum())
               for r in results) / 1e6


def measure_new(image_path, backbone, size, batch, repeats, precision):
    """This checkout's InferencePipeline, part by part and as detect() (run in a subprocess)."""
    import numpy as np
    import tensorflow as tf

    model, config = build_model(backbone, size, batch, precision)
    image = load_image(image_path)
    images = [image] * batch
    results = model.detect(images)  # builds and traces model._pipeline
    pipeline = model._pipeline
    # The module InferencePipeline is defined in: the very functions its run() calls, wherever it lives.
    pipeline_module = sys.modules[type(pipeline).__module__]
    padded = np.stack(images)
    sizes = np.array([image.shape[:2]] * batch, np.int32)

    @tf.function
    def pre(pixels, image_sizes):
        molded, info = pipeline_module.mold_batch(pixels, image_sizes, **pipeline._mold_args)
        meta = pipeline_module.compose_image_meta(info, tf.ones([pipeline._num_classes]),
                                                  channels=pipeline._channels)
        return molded, meta, info

    @tf.function
    def graph(molded, meta):
        raw = pipeline.keras_model({"input_image": molded, "input_image_meta": meta}, training=False)
        return tf.cast(raw["detections"], tf.float32), tf.cast(raw["mrcnn_mask"], tf.float32)

    post = tf.function(lambda detections, masks, info, box_masks=False:
                       pipeline_module.postprocess(detections, masks, info, include_box_masks=box_masks))
    paste = tf.function(pipeline_module.paste_masks)

    def run_pre():
        return pre(tf.constant(padded), tf.constant(sizes))

    molded, meta, info = run_pre()
    detections, masks = graph(molded, meta)

    def run_post():
        return {name: value.numpy() for name, value in post(detections, masks, info).items()}

    outputs = run_post()
    # The same rows postprocess pastes: the valid rows first, as many per image as the most.
    with_box_masks = post(detections, masks, info, box_masks=True)
    rows = int(outputs["num_detections"].max())
    paste_args = (tf.reshape(with_box_masks["detection_box_masks"][:, :rows], [-1, *masks.shape[2:4]]),
                  tf.reshape(with_box_masks["detection_boxes"][:, :rows], [-1, 4]),
                  tf.reshape(tf.tile(info["original_size"][:, None], [1, rows, 1]), [-1, 2]),
                  tf.reduce_max(info["original_size"], axis=0))
    converted = pipeline_module.unbatch_results(outputs)
    # The parts are the pipeline: same detections as detect().
    for part, whole in zip(converted, results):
        assert len(part["scores"]) == len(whole["scores"]), (len(part["scores"]), len(whole["scores"]))
        np.testing.assert_allclose(part["boxes"], whole["boxes"], atol=1e-2)

    seconds = {
        "pre": median_seconds(lambda: run_pre()[1].numpy(), repeats),
        "graph": median_seconds(lambda: [t.numpy() for t in graph(molded, meta)], repeats),
        "post": median_seconds(run_post, repeats),
        "paste": median_seconds(lambda: paste(*paste_args).shape, repeats),  # in-graph: bool tensor out
        "convert": median_seconds(lambda: pipeline_module.unbatch_results(outputs), repeats),
        "detect": median_seconds(lambda: model.detect(images), repeats),
    }
    return {**seconds, "image": list(image.shape[:2]), "detections": sum(len(r["scores"]) for r in results),
            "box_mpixels": box_pixels(results)}


def measure_old(image_path, backbone, size, batch, repeats, precision):
    """An old checkout's numpy path (mold_inputs, graph, unmold_detections), from PYTHONPATH."""
    import tensorflow as tf

    import mrcnn_tf

    old_root = os.environ.get("MRCNN_OLD_CHECKOUT", "")
    if not os.path.abspath(mrcnn_tf.__file__).startswith(old_root + os.sep):
        raise RuntimeError(f"imported {mrcnn_tf.__file__}, not the old checkout {old_root}")
    model, config = build_model(backbone, size, batch, precision)
    # The functions the old detect() calls, from its own module's namespace (wherever they lived).
    detect_module = sys.modules[type(model).__module__]
    mold_inputs, unmold_detections = detect_module.mold_inputs, detect_module.unmold_detections
    old_inference = sys.modules[unmold_detections.__module__]
    image = load_image(image_path)
    images = [image] * batch

    if hasattr(model, "_detect_graph"):
        def graph_fn(molded, metas):
            return model._detect_graph(molded, metas)
    else:
        forward = tf.function(lambda x: model.keras_model(x, training=False), reduce_retracing=True)

        def graph_fn(molded, metas):
            outputs = forward({"input_image": molded, "input_image_meta": metas})
            return outputs["detections"], outputs["mrcnn_mask"]

    # Time spent in the old unmold_mask (the per-detection numpy pasting) during unmold_detections.
    pasting = {"seconds": 0.0}
    unmold_mask = getattr(old_inference, "unmold_mask", None)
    if unmold_mask is not None:
        def timed_unmold_mask(*args, **kwargs):
            start = time.perf_counter()
            try:
                return unmold_mask(*args, **kwargs)
            finally:
                pasting["seconds"] += time.perf_counter() - start
        old_inference.unmold_mask = timed_unmold_mask

    molded, metas, windows = mold_inputs(images, config)

    def run_graph():
        outputs = graph_fn(tf.constant(molded), tf.constant(metas))
        return outputs[0].numpy(), outputs[1].numpy()

    detections, masks = run_graph()
    paste_times = []

    def run_post():
        pasting["seconds"] = 0.0
        out = [unmold_detections(detections[i], masks[i], image.shape, molded.shape[1:], windows[i])
               for i in range(batch)]
        paste_times.append(pasting["seconds"])
        return out

    seconds = {
        "pre": median_seconds(lambda: mold_inputs(images, config), repeats),
        "graph": median_seconds(run_graph, repeats),
        "post": median_seconds(run_post, repeats),
    }
    if unmold_mask is not None:
        seconds["paste"] = statistics.median(paste_times[-repeats:])  # the timed calls, not the warm-up
        old_inference.unmold_mask = unmold_mask
    seconds["detect"] = median_seconds(lambda: model.detect(images), repeats)
    results = model.detect(images)
    return {**seconds, "image": list(image.shape[:2]), "detections": sum(len(r["scores"]) for r in results),
            "box_mpixels": box_pixels(results)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_grid_arguments(parser, [1024], ["resnet50"], [1], "small backbone, 256x256, batch 1, a seeded 480x640 image")
    parser.add_argument("--image", help=f"the photo (default {os.path.relpath(PHOTO, REPO)}; "
                                         "'random': a seeded random image)")
    parser.add_argument("--compare-old", metavar="PATH",
                        help="also time an old checkout's numpy detect path (mold_inputs, graph, "
                             "unmold_detections) at PATH, in a subprocess with PYTHONPATH=PATH")
    parser.add_argument("--old", action="store_true", help=argparse.SUPPRESS)  # internal: the old side
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.backbones, args.batches, args.repeats = [256], ["small"], [1], 3
        args.image = args.image or "random"
    args.image = args.image or PHOTO
    if args.image != "random":
        args.image = os.path.abspath(args.image)
    if args.one:
        measure = measure_old if args.old else measure_new
        run_grid(__file__, args, lambda *config: measure(args.image, *config))
        return 0
    if args.image != "random" and not os.path.isfile(args.image):
        parser.error(f"no image at {args.image}")

    child_args = ["--image", args.image]
    sides = [("new", run_grid(__file__, args, None, child_args=child_args))]
    if args.compare_old:
        old = os.path.abspath(args.compare_old)
        if not os.path.isdir(os.path.join(old, "mrcnn_tf")):
            parser.error(f"--compare-old: no mrcnn_tf package in {old}")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [old, os.environ.get("PYTHONPATH")])),
               "MRCNN_OLD_CHECKOUT": old}
        sides.append(("old", run_grid(__file__, args, None, child_args=[*child_args, "--old"], env=env)))

    rows = []
    for index, (backbone, size, batch, precision, *_) in enumerate(sides[0][1]):
        measured = [results[index][4] for _, results in sides]
        failures = [results[index][5] for _, results in sides]
        config = [backbone, size, batch, precision]
        if not all(measured):
            rows.append(["failed", *config, *(f or "ok" for f in failures), *(["-"] if len(sides) > 1 else [])])
            continue

        def cell(result, key, fmt):
            return fmt(result[key]) if key in result else ("in post" if key == "convert" else "n/a")

        lines = [(label, key, lambda v: f"{v:.3g}") for key, label in STAGES] + [
            ("detections", "detections", str), ("box Mpixels pasted", "box_mpixels", lambda v: f"{v:.2f}")]
        for label, key, fmt in lines:
            row = [label, *config, *(cell(r, key, fmt) for r in measured)]
            if len(sides) > 1:
                new, old = measured[0].get(key), measured[1].get(key)
                timed = key in dict(STAGES)
                row.append(f"{old / new:.2f}x" if timed and new and old else "-")
            rows.append(row)

    image = next((r[4]["image"] for _, results in sides for r in results if r[4]), None)
    data = os.path.abspath(os.path.join(SHARED, "data"))
    where = ("seeded random" if args.image == "random" else os.path.relpath(args.image, data)
             if args.image.startswith(data + os.sep) else args.image)
    size = f"{image[0]}x{image[1]} (HxW)" if image else "?"
    header = ["stage", "backbone", "size", "batch", "precision", "new s"]
    if len(sides) > 1:
        header += ["old s", "old / new"]
    print_table(f"detect(), median seconds per batch after warm-up, image {where} {size} "
                f"({'new vs old ' + os.path.abspath(args.compare_old) if args.compare_old else 'new pipeline'}; "
                "random seeded weights, all detections kept)", header, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
