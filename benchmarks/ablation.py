"""The Mask R-CNN paper's ablations (Table 2) on the shapes dataset, one training per row.

Each row trains the shapes model of the main job (``samples/shapes/train_shapes.py``:
``presets.shapes()``, the same seed, data and schedule: ``--epochs`` of ``--steps``,
the last sixth at a tenth of the rate) with one Config switch changed, then
reports COCO mask AP, AP50 and AP75 (pycocotools, ``evaluate.coco_evaluate``) on
held-out images, beside the paper's own figures (ResNet-50-C4 for (a)-(c),
ResNet-50-FPN for (d), ResNet-50-C5 at stride 32 for (e)):

    python benchmarks/ablation.py                                # the main job's setting
    python benchmarks/ablation.py --image-size 64 --epochs 6     # smaller shapes, fewer steps
    python benchmarks/ablation.py --smoke                        # a few steps per row (the test)
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (section, row, Config overrides, paper (AP, AP50, AP75); None where the paper gives none).
ROWS = (
    ("a", "RoIPool, max", {"ROI_POOLING": "pool"}, (26.9, 48.8, 26.4)),
    ("a", "RoIWarp, max", {"ROI_POOLING": "warp", "ROI_ALIGN_AGGREGATE": "max"}, (27.2, 49.2, 27.1)),
    ("a", "RoIWarp, avg", {"ROI_POOLING": "warp"}, (27.1, 48.9, 27.1)),
    ("a", "RoIAlign, max", {"ROI_ALIGN_AGGREGATE": "max"}, (30.2, 51.0, 31.8)),
    ("a", "RoIAlign, avg (default)", {}, (30.3, 51.2, 31.5)),
    ("b", "softmax masks", {"MASK_LOSS": "softmax"}, (24.8, 44.1, 25.1)),
    ("b", "sigmoid masks (default)", {}, (30.3, 51.2, 31.5)),
    ("c", "class-agnostic masks", {"MASK_CLASS_AGNOSTIC": True}, (29.7, None, None)),
    ("c", "class-specific masks (default)", {}, (30.3, 51.2, 31.5)),
    ("d", "MLP mask head (FPN)", {"MASK_HEAD": "mlp"}, (31.5, 53.7, 32.8)),
    ("d", "FCN mask head (default, FPN)", {}, (33.6, 55.2, 35.3)),
    # Table 2d pools every RoI from ResNet-50-C5 (stride 32) for COCO objects; the
    # shapes are 16-32 px, so P4's 16 px cells give them the same few cells each.
    ("e", "RoIPool, P4 only", {"ROI_POOLING": "pool", "ROI_FEATURE_LEVEL": 4}, (23.6, 46.5, 21.6)),
    ("e", "RoIAlign, P4 only", {"ROI_FEATURE_LEVEL": 4}, (30.9, 51.8, 32.1)),
)
SECTIONS = {"a": "(a) RoI feature extractor, bin aggregate (paper 2c)",
            "b": "(b) mask loss (paper 2b)", "c": "(c) class-specific vs agnostic masks (paper 2a text)",
            "d": "(d) mask head (paper 2e, ResNet-50-FPN)",
            "e": "(e) every RoI from one coarse map, stride 16 (paper 2d: ResNet-50-C5, stride 32)"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=128,
                        help="shapes image side; the shapes are 1/8 to 1/4 of it (main job: 128)")
    parser.add_argument("--train-images", type=int, default=1000)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sections", default="abcde", help="which table sections to run")
    parser.add_argument("--smoke", action="store_true",
                        help="the smallest setting: 64 px tiny heads, 2 steps, 2 held-out images")
    parser.add_argument("--json", help="also write the rows to this file")
    return parser.parse_args(argv)


def shapes_config(image_size, smoke, **overrides):
    """presets.shapes() at ``image_size`` (anchors scaled with it), or the tiny smoke model."""
    from mrcnn_tf import presets

    if smoke:
        return presets.shapes(**presets.tiny(image_size, IMAGES_PER_GPU=2, **overrides))
    base = presets.shapes()
    scale = image_size / base.IMAGE_MAX_DIM
    return presets.shapes(IMAGE_MIN_DIM=image_size, IMAGE_MAX_DIM=image_size,
                          RPN_ANCHOR_SCALES=tuple(s * scale for s in base.RPN_ANCHOR_SCALES),
                          **overrides)


def train_and_evaluate(config, train_set, val_set, epochs, seed, model_dir):
    """Train as the main job does (the last sixth at LR / 10); COCO mask metrics of the result."""
    import keras

    from mrcnn_tf import MaskRCNN
    from mrcnn_tf.evaluate import coco_evaluate

    keras.utils.set_random_seed(seed)
    trainer = MaskRCNN("training", config, model_dir)
    first = epochs - max(1, epochs // 6)
    # No validation pass: the table is the held-out COCO evaluation below.
    if first > 0:
        trainer.train(train_set, None, config.LEARNING_RATE, epochs=first, layers="all",
                      verbose=0, seed=seed)
    trainer.train(train_set, None, config.LEARNING_RATE / 10, epochs=epochs, layers="all",
                  verbose=0, seed=seed)
    inference = MaskRCNN("inference", config, model_dir)
    inference.load_weights(trainer.find_last())
    return coco_evaluate(inference, val_set, iou_type="segm", verbose=False)["segm"]


def run(args):
    """Train every selected row; returns the result rows (dicts)."""
    from mrcnn_tf.data import ShapesDataset

    image_size = 64 if args.smoke else args.image_size
    counts = (4, 2) if args.smoke else (args.train_images, args.val_images)
    epochs, steps = (1, 2) if args.smoke else (args.epochs, args.steps)
    train_set, val_set = ShapesDataset(), ShapesDataset()
    train_set.load_shapes(counts[0], image_size, image_size, seed=args.seed)
    val_set.load_shapes(counts[1], image_size, image_size, seed=args.seed + 10_000)
    train_set.prepare()
    val_set.prepare()
    results, cache = [], {}
    with tempfile.TemporaryDirectory() as model_dir:
        for section, row, overrides, paper in ROWS:
            if section not in args.sections:
                continue
            key = json.dumps(overrides, sort_keys=True)
            if key not in cache:  # the default row is trained once, shown in every section
                start = time.time()
                config = shapes_config(image_size, args.smoke, STEPS_PER_EPOCH=steps,
                                       NAME=f"ablation{len(cache)}", **overrides)
                metrics = train_and_evaluate(config, train_set, val_set, epochs, args.seed,
                                             os.path.join(model_dir, str(len(cache))))
                cache[key] = {"AP": 100 * metrics["AP"], "AP50": 100 * metrics["AP50"],
                              "AP75": 100 * metrics["AP75"], "seconds": time.time() - start}
                print(f"  trained {row}: {cache[key]}", flush=True)
            results.append({"section": section, "row": row, "overrides": overrides,
                            **cache[key], "paper": paper})
    return results


def _fmt(value):
    return "-" if value is None else f"{value:.1f}"


def print_table(results, args):
    size, epochs, steps = (64, 1, 2) if args.smoke else (args.image_size, args.epochs, args.steps)
    print(f"\nMask AP on shapes ({size} px{', smoke' if args.smoke else ''}, {epochs} x {steps} "
          f"steps, seed {args.seed}) | the paper's, COCO")
    header = ("row", "AP", "AP50", "AP75", "| paper AP", "AP50", "AP75")
    widths = (32, 5, 5, 5, 9, 5, 5)
    section = None
    for result in results:
        if result["section"] != section:
            section = result["section"]
            print(f"\n{SECTIONS[section]}")
            print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths))))
        cells = (result["row"], _fmt(result["AP"]), _fmt(result["AP50"]), _fmt(result["AP75"]),
                 "| " + _fmt(result["paper"][0]), _fmt(result["paper"][1]), _fmt(result["paper"][2]))
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))))


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    results = run(args)
    print_table(results, args)
    print(f"\ntotal {time.time() - start:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
