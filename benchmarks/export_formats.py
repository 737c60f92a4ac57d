"""Sizes and CPU latency of the LiteRT and ONNX exports beside TF (detect()), on balloon photos.

    python benchmarks/export_formats.py --out /tmp/formats [--repeats 20]

The shapes model (presets.shapes, 128 px, untrained weights: latency and size do not depend
on training). Prints one line per format: file size, median latency of one image, and the
largest box difference against detect() on the same photos.
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

    for mode in args.tflite:
        quantize = None if mode == "none" else mode
        start = time.perf_counter()
        path = export_tflite(model, os.path.join(args.out, f"model_{mode}.tflite"), quantize=quantize)
        print(f"TFLite {mode} ({time.perf_counter() - start:.0f} s to export): "
              f"{os.path.getsize(path) / 1e6:.2f} MB", flush=True)
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
