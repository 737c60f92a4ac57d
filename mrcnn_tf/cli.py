"""The mrcnn-tf command line: train, evaluate, detect, export.

    mrcnn-tf train --dataset shapes --epochs 10
    mrcnn-tf train --dataset via --data balloon/train --val-data balloon/val --backbone resnet50
    mrcnn-tf evaluate --dataset coco --annotations val.json --data images/ --weights last
    mrcnn-tf detect --weights logs/run/mask_rcnn_x_0010.h5 --images photos/ --output out/
    mrcnn-tf export --weights last --model-dir logs --export-dir serving/x

Exit codes: 0 success, 2 bad arguments (the message names the argument),
1 any other failure (one line; ``--debug`` shows the traceback).
"""

import argparse
import json
import os
import sys

from mrcnn_tf.config import BACKBONES

# Files an image folder contributes (--images here; the samples' folders too); all Pillow reads.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff")


class UsageError(Exception):
    """A bad argument: reported with exit code 2."""


# ----------------------------------------------------------------- arguments
def _add_model_args(parser, weights_default):
    parser.add_argument("--backbone", choices=BACKBONES,
                        help="backbone (default: the dataset's config, or config.json beside --weights)")
    parser.add_argument("--weights", default=weights_default,
                        help="'none', 'last' (newest checkpoint in --model-dir), 'imagenet', or a .h5 path")
    parser.add_argument("--model-dir", default="logs", help="directory of training runs (default: logs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any Config attribute, e.g. --set IMAGES_PER_GPU=1 (JSON values)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def _add_dataset_args(parser, required):
    parser.add_argument("--dataset", choices=["shapes", "via", "coco"], required=required,
                        help="dataset format")
    parser.add_argument("--data", help="via: project directory; coco: image directory")
    parser.add_argument("--annotations", help="coco: annotation JSON file")
    parser.add_argument("--val-data", help="validation directory (via/coco)")
    parser.add_argument("--val-annotations", help="coco: validation annotation JSON")
    parser.add_argument("--class-attribute", help="via: region attribute holding the class name")
    parser.add_argument("--shapes-count", type=int, default=500, help="shapes: training images (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data order and shapes")


def build_parser():
    """The argparse parser of ``mrcnn-tf`` with its four subcommands."""
    parser = argparse.ArgumentParser(prog="mrcnn-tf", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train with model.fit, checkpoint every epoch")
    _add_dataset_args(train, required=True)
    _add_model_args(train, weights_default="none")
    train.add_argument("--layers", default="all",
                       help="what trains: heads, 3+, 4+, 5+, all, or a layer-name regex (default all)")
    train.add_argument("--epochs", type=int, default=10, help="epoch to stop at (default 10)")
    train.add_argument("--learning-rate", type=float, help="default: config LEARNING_RATE")

    evaluate = commands.add_parser("evaluate", help="COCO AP (pycocotools) and VOC mask mAP@0.5")
    _add_dataset_args(evaluate, required=True)
    _add_model_args(evaluate, weights_default="last")
    evaluate.add_argument("--limit", type=int, help="evaluate at most this many images")
    evaluate.add_argument("--output", help="write the metrics as JSON to this file")

    detect = commands.add_parser("detect", help="overlay PNGs and COCO-results JSON for a folder")
    _add_model_args(detect, weights_default="last")
    detect.add_argument("--images", required=True, help="folder of JPEG/PNG images")
    detect.add_argument("--output", required=True, help="folder for overlays and detections.json")
    detect.add_argument("--num-classes", type=int, help="classes incl. background (if no config.json)")

    export = commands.add_parser("export", help="SavedModel for TF Serving")
    _add_model_args(export, weights_default="last")
    export.add_argument("--export-dir", required=True, help="base directory (versions go inside)")
    export.add_argument("--version", type=int, help="version number (default: next free)")
    export.add_argument("--num-classes", type=int, help="classes incl. background (if no config.json)")
    return parser


def parse_overrides(pairs):
    """``["KEY=VALUE", ...]`` -> dict; values parsed as JSON, else kept as strings."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set: expected KEY=VALUE, got {pair!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


# ------------------------------------------------------------ config + data
def _existing(path, argument, kind="dir"):
    if path is None:
        raise UsageError(f"{argument} is required for this dataset")
    check = os.path.isdir if kind == "dir" else os.path.isfile
    if not check(path):
        raise UsageError(f"{argument}: {'directory' if kind == 'dir' else 'file'} not found: {path}")
    return path


def _optional_dataset(class_name, dataset):
    """A dataset class of mrcnn_tf.data, imported only when that format is used."""
    try:
        import mrcnn_tf.data as data
        return getattr(data, class_name)
    except (ImportError, AttributeError) as error:
        raise RuntimeError(f"--dataset {dataset}: {class_name} is not available in this "
                           f"installation ({error})") from error


def load_datasets(args, size=128):
    """(train_or_eval_dataset, val_dataset or None) for the dataset arguments.

    Shapes images are drawn at ``size`` pixels (the config's IMAGE_MAX_DIM).
    """
    if args.shapes_count < 1:
        raise UsageError(f"--shapes-count: must be >= 1, got {args.shapes_count}")
    if args.dataset == "shapes":
        from mrcnn_tf.data import ShapesDataset

        train, val = ShapesDataset(), ShapesDataset()
        train.load_shapes(args.shapes_count, size, size, seed=args.seed)
        val.load_shapes(max(2, args.shapes_count // 10), size, size, seed=args.seed + 10_000)
        train.prepare()
        val.prepare()
        return train, val
    if args.dataset == "via":
        ViaDataset = _optional_dataset("ViaDataset", "via")
        train = ViaDataset.from_directory(_existing(args.data, "--data"), args.class_attribute)
        val = (ViaDataset.from_directory(_existing(args.val_data, "--val-data"), args.class_attribute)
               if args.val_data else None)
        return train, val
    CocoDataset = _optional_dataset("CocoDataset", "coco")
    train = CocoDataset.from_json(_existing(args.annotations, "--annotations", "file"),
                                  _existing(args.data, "--data"))
    val = None
    if args.val_annotations:
        val = CocoDataset.from_json(_existing(args.val_annotations, "--val-annotations", "file"),
                                    _existing(args.val_data or args.data, "--val-data"))
    return train, val


def make_config(args, dataset=None, base=None):
    """The Config: the dataset's (or ``base``), then --backbone, then --set overrides."""
    from mrcnn_tf.config import Config
    from mrcnn_tf.data import ShapesConfig

    overrides = parse_overrides(args.set)
    if getattr(args, "backbone", None):
        overrides["BACKBONE"] = args.backbone
    if getattr(args, "weights", None) == "imagenet":
        overrides["BACKBONE_WEIGHTS"] = "imagenet"
    try:
        if base is not None:
            config = type(base).from_dict({**base.to_dict(), **overrides})
        elif getattr(args, "dataset", None) == "shapes":
            config = ShapesConfig(**overrides)
        else:
            values = {"NAME": getattr(args, "dataset", None) or "mrcnn", "BACKBONE": "resnet50",
                      "IMAGES_PER_GPU": 1}
            if dataset is not None:
                values["NUM_CLASSES"] = dataset.num_classes
            elif getattr(args, "num_classes", None):
                values["NUM_CLASSES"] = args.num_classes
            config = Config(**{**values, **overrides})
    except ValueError as error:  # Config names the bad key or value
        raise UsageError(f"--set: {error}") from error
    if config.BACKBONE_WEIGHTS == "imagenet":
        error = _imagenet_unavailable(config.BACKBONE)
        if error is not None:
            raise RuntimeError(f"--weights imagenet: not available offline: {error}. Pass the "
                               "weights file's path instead: --set BACKBONE_WEIGHTS=PATH") from error
    return config


def _imagenet_unavailable(backbone):
    """Why the ImageNet file of ``backbone`` is not in the Keras cache (nothing is
    downloaded at run time), as the error to report; None when it is there."""
    from mrcnn_tf.weights import imagenet_weights_path

    try:
        imagenet_weights_path(backbone)
    except (FileNotFoundError, ValueError) as error:
        return error
    return None


def _run_config_beside(weights_path):
    """The config.json a training run wrote next to its checkpoints, or None."""
    from mrcnn_tf.config import Config

    path = os.path.join(os.path.dirname(os.path.abspath(weights_path)), "config.json")
    return Config.from_json(path) if os.path.isfile(path) else None


def weights_file(weights, model_dir, config_name):
    """The ``.h5`` file a ``--weights`` choice names, or None when there is nothing to load.

    Args:
        weights: 'none' (or None), 'imagenet' (applied through
            ``Config.BACKBONE_WEIGHTS``, not as a checkpoint), 'last' (newest
            checkpoint of ``config_name`` under ``model_dir``; any name if
            None) or a path.
    Raises:
        FileNotFoundError naming ``--weights``.
    """
    if weights in (None, "none", "imagenet"):
        return None
    if weights == "last":
        from mrcnn_tf.model import latest_checkpoint

        try:
            return latest_checkpoint(model_dir, config_name)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"--weights last: {error} (train first, or give --model-dir)") from None
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"--weights: no such file {weights}")
    return weights


def resolve_weights(args, config_name):
    """weights_file for the parsed arguments; a missing path is a usage error (exit 2)."""
    if args.weights not in (None, "none", "imagenet", "last"):
        _existing(args.weights, "--weights", "file")
    return weights_file(args.weights, args.model_dir, config_name)


def build_model(mode, config, model_dir, checkpoint):
    """MaskRCNN in ``mode`` with ``checkpoint`` (an .h5 path or None) loaded by layer name.

    With another class count the class-specific layers do not fit, stay as
    built and are listed as mismatched in the printed load report.
    """
    from mrcnn_tf import MaskRCNN

    model = MaskRCNN(mode, config, model_dir)
    if checkpoint:
        model.load_weights(checkpoint)  # prints what it loaded, skipped and could not fit
    return model


def backbone_weights_for(weights, backbone):
    """``Config.BACKBONE_WEIGHTS`` for a ``--weights`` choice of a script: "imagenet" or None.

    Raises SystemExit naming ``--weights imagenet`` and where the file must go
    when it is not on disk.
    """
    if weights != "imagenet":
        return None
    error = _imagenet_unavailable(backbone)
    if error is not None:
        raise SystemExit(f"--weights imagenet: {error}")
    return "imagenet"


def load_model(mode, config, weights, model_dir):
    """MaskRCNN in ``mode`` with a ``--weights`` choice loaded, for scripts (the samples).

    Args: ``weights`` as :func:`weights_file`.
    Raises:
        SystemExit naming ``--weights`` when there is no such checkpoint or file.
    """
    try:
        checkpoint = weights_file(weights, model_dir, config.NAME)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    return build_model(mode, config, model_dir, checkpoint)


# ---------------------------------------------------------------- commands
def cmd_train(args):
    if args.dataset == "shapes":  # the config decides the image size of the shapes
        config = make_config(args)
        train, val = load_datasets(args, int(config.IMAGE_MAX_DIM or 128))
    else:
        train, val = load_datasets(args)
        config = make_config(args, train)
    if args.epochs < 1:
        raise UsageError(f"--epochs: must be >= 1, got {args.epochs}")
    model = build_model("training", config, args.model_dir, resolve_weights(args, config.NAME))
    model.train(train, val, args.learning_rate or config.LEARNING_RATE, args.epochs, args.layers,
                verbose=2, seed=args.seed)
    print(f"checkpoints in {model.log_dir}")


def _inference_model(args, dataset=None):
    """Inference MaskRCNN from --weights, with the config of its training run when present."""
    config = make_config(args, dataset)
    # Without a dataset there is no run name to look for: take the newest run of any name.
    weights = resolve_weights(args, config.NAME if getattr(args, "dataset", None) else None)
    base = _run_config_beside(weights) if weights else None
    if base is not None:
        config = make_config(args, base=base)
    return build_model("inference", config, args.model_dir, weights), config


def cmd_evaluate(args):
    from mrcnn_tf.evaluate import coco_evaluate, compute_mAP, run_detections

    size = int(make_config(args).IMAGE_MAX_DIM or 128) if args.dataset == "shapes" else 128
    train, val = load_datasets(args, size)
    # Shapes are scored on their held-out split; a via/coco --data is the set to score.
    dataset = val if args.dataset == "shapes" else train
    model, _config = _inference_model(args, dataset)
    ids, results = run_detections(model, dataset, limit=args.limit, verbose=True)  # once for both
    metrics = coco_evaluate(model, dataset, image_ids=ids, results=results)
    metrics["voc_mask_mAP50"] = float(compute_mAP(model, dataset, image_ids=ids, results=results))
    print(f"VOC mask mAP@0.5: {metrics['voc_mask_mAP50']:.3f}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)


def cmd_detect(args):
    from mrcnn_tf.data import Dataset
    from mrcnn_tf.evaluate import detections_to_coco
    from mrcnn_tf.visualize import display_instances

    folder = _existing(args.images, "--images")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise UsageError(f"--images: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    model, config = _inference_model(args)
    reader = Dataset()  # only for its robust load_image (EXIF, grey, RGBA, 16-bit)
    for i, name in enumerate(files):
        reader.add_image("cli", i, os.path.join(folder, name))
    reader.prepare()
    os.makedirs(args.output, exist_ok=True)
    class_names = ["BG"] + [f"class_{i}" for i in range(1, config.NUM_CLASSES)]
    results = []
    for i, name in enumerate(files):
        image = reader.load_image(i)
        result = model.detect([image])[0]
        results.append(result)
        display_instances(image, result["rois"], result["masks"], result["class_ids"], class_names,
                          result["scores"], title=name,
                          save_path=os.path.join(args.output, os.path.splitext(name)[0] + ".png"))
    coco = detections_to_coco(results, list(range(len(files))))
    with open(os.path.join(args.output, "detections.json"), "w", encoding="utf-8") as f:
        json.dump({"images": [{"id": i, "file_name": n} for i, n in enumerate(files)],
                   "annotations": coco}, f)
    print(f"{sum(len(r['class_ids']) for r in results)} detections in {len(files)} images -> {args.output}")


def cmd_export(args):
    from mrcnn_tf.export import export_saved_model

    model, _config = _inference_model(args)
    path = export_saved_model(model, args.export_dir, version=args.version)
    print(f"SavedModel written to {path}")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "detect": cmd_detect, "export": cmd_export}


def main(argv=None):
    """Entry point of ``mrcnn-tf``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except UsageError as error:
        parser.exit(2, f"mrcnn-tf {args.command}: error: {error}\n")
    except Exception as error:  # one readable line for users; --debug for the rest
        if args.debug:
            raise
        print(f"mrcnn-tf {args.command}: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
