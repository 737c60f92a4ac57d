"""Send image files to a TF Serving REST endpoint and print the detections.

Works against TF Serving (``tensorflow_model_server --rest_api_port=8501
--model_name=shapes --model_base_path=/abs/exports/shapes``) or
``rest_server.py``; only the standard library is used::

    python samples/serving/client.py --model_name shapes a.jpg b.png \
        --class_names exports/shapes/1/assets/class_names.txt
"""

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request


def predict(url, model_name, paths, timeout=60.0):
    """POST the files as ``{"instances": [{"b64": ...}]}``; returns the predictions list."""
    instances = []
    for path in paths:
        with open(path, "rb") as f:
            instances.append({"b64": base64.b64encode(f.read()).decode("ascii")})
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v1/models/{model_name}:predict",
        data=json.dumps({"instances": instances}).encode("utf-8"),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["predictions"]
    except urllib.error.HTTPError as err:  # TF Serving puts the reason in {"error": ...}
        detail = err.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise RuntimeError(f"HTTP {err.code}: {detail}") from None


def describe(path, prediction, class_names=None, min_score=0.0):
    """Printable lines for one image's prediction dict."""
    height, width = prediction["image_sizes"]
    count = prediction["num_detections"]
    lines = [f"{path}: {width}x{height}, {count} detections"]
    for i in range(count):
        score = prediction["detection_scores"][i]
        if score < min_score:
            continue
        class_id = prediction["detection_classes"][i]
        name = class_names[class_id] if class_names and class_id < len(class_names) else str(class_id)
        y1, x1, y2, x2 = prediction["detection_boxes"][i]
        # Masks are padded to the batch's largest image: count inside this image only.
        area = sum(sum(row[:width]) for row in prediction["detection_masks"][i][:height])
        lines.append(f"  {name:>12s}  score {score:.3f}  box (y1, x1, y2, x2) = "
                     f"({y1:.1f}, {x1:.1f}, {y2:.1f}, {x2:.1f})  mask {area} px")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", help="JPEG/PNG files")
    parser.add_argument("--url", default="http://127.0.0.1:8501")
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--class_names", help="class_names.txt from the export's assets/")
    parser.add_argument("--min_score", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    class_names = None
    if args.class_names:
        with open(args.class_names, encoding="utf-8") as f:
            class_names = [line.rstrip("\n") for line in f]
    try:
        predictions = predict(args.url, args.model_name, args.images, args.timeout)
    except (RuntimeError, urllib.error.URLError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path, prediction in zip(args.images, predictions):
        print("\n".join(describe(path, prediction, class_names, args.min_score)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
