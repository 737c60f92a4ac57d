"""Sizes and CPU latency of the LiteRT and ONNX exports beside TF (detect()), on balloon photos.

    python benchmarks/export_formats.py --out /tmp/formats [--repeats 20]

The shapes model (presets.shapes, 128 px, untrained weights: latency and size do not depend
on training). Prints one line per format: file size, median latency of one image, and its
agreement on the same photos: against detect() (float32 LiteRT, ONNX) or against the float32
LiteRT file (float16, dynamic_int8): the share of detections with the same class and box IoU
>= 0.98, and the largest box difference.
"""

import argparse
import glob
import os
import time

import numpy as np
import tensorflow as tf

from mrcnn_tf import MaskRCNN, presets
from mrcnn_tf.export import export_onnx, export_tflite

BALLOON = "/work/shared/data/balloon/val"


def photos(count, side):
    out = []
    for path in sorted(glob.glob(os.path.join(BALLOON, "*.jpg")))[:count]:
        image = tf.io.decode_jpeg(tf.io.read_file(path))
        out.append(tf.cast(tf.image.resize(image, [side, side], antialias=True), tf.uint8).numpy())
    return out


def median_ms(fn, images, repeats):
    fn(images[0])  # warm-up
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(images[i % len(images)])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def box_iou(a, b):
    inter = (np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
             * np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None))
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def agreement(outputs, reference):
    """(share of reference detections matched slot by slot: same class, box IoU >= 0.98; max box diff)."""
    same, total, diff = 0, 0, 0.0
    for out, ref in zip(outputs, reference):
        count = min(int(out["num_detections"][0]), len(ref["classes"]))
        boxes, classes = out["detection_boxes"][0, :count], out["detection_classes"][0, :count]
        ok = (classes == ref["classes"][:count]) & (box_iou(boxes, ref["boxes"][:count]) >= 0.98)
        same, total = same + int(ok.sum()), total + len(ref["classes"])
        if count:
            diff = max(diff, float(np.abs(boxes - ref["boxes"][:count]).max()))
    return same / max(total, 1), diff


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tflite", nargs="*", default=["none", "float16", "dynamic_int8"])
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    args = parser.parse_args()
    tf.keras.utils.set_random_seed(0)
    config = presets.shapes(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0)
    model = MaskRCNN("inference", config, model_dir=os.path.join(args.out, "logs"))
    side = int(config.IMAGE_MAX_DIM)
    images = photos(5, side)
    want = [model.detect([image])[0] for image in images]
    print(f"TF detect(): {median_ms(lambda im: model.detect([im]), images, args.repeats):.1f} ms/image")

    from ai_edge_litert.interpreter import Interpreter

    float32 = None
    for mode in args.tflite:
        quantize = None if mode == "none" else mode
        start = time.perf_counter()
        path = export_tflite(model, os.path.join(args.out, f"model_{mode}.tflite"), quantize=quantize)
        seconds = time.perf_counter() - start
        runner = Interpreter(model_path=path, num_threads=1).get_signature_runner()
        run = lambda im, runner=runner: runner(images=im[None])  # noqa: E731
        outputs = [run(im) for im in images]
        reference = float32 if quantize else [
            {"boxes": w["boxes"], "classes": w["class_ids"]} for w in want]
        same, diff = agreement(outputs, reference)
        if not quantize:
            float32 = [{"boxes": o["detection_boxes"][0, :int(o["num_detections"][0])],
                        "classes": o["detection_classes"][0, :int(o["num_detections"][0])]} for o in outputs]
        print(f"TFLite {mode} ({seconds:.0f} s to export): {os.path.getsize(path) / 1e6:.2f} MB, "
              f"{median_ms(run, images, args.repeats):.1f} ms/image (1 thread), vs "
              f"{'float32 LiteRT' if quantize else 'detect()'}: {same:.0%} same, max box diff {diff:.3f} px",
              flush=True)
    if args.no_onnx:
        return
    import onnxruntime as ort
    start = time.perf_counter()
    path = export_onnx(model, os.path.join(args.out, "model.onnx"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    run = lambda im: dict(zip(names, session.run(None, {"images": im[None]})))  # noqa: E731
    diff = max(np.abs(run(im)["detection_boxes"][0, :len(w["boxes"])] - w["boxes"]).max()
               for im, w in zip(images, want))
    print(f"ONNX ({time.perf_counter() - start:.0f} s to export): {os.path.getsize(path) / 1e6:.2f} MB, "
          f"{median_ms(run, images, args.repeats):.1f} ms/image (onnxruntime CPU), max box diff {diff:.4f} px")


if __name__ == "__main__":
    main()
