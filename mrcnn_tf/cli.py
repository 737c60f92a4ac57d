"""The mrcnn-tf command line: train, evaluate, detect, export, detect-beam.

    mrcnn-tf train --dataset shapes --epochs 10
    mrcnn-tf train --dataset via --data balloon/train --val-data balloon/val --backbone resnet50
    mrcnn-tf train --dataset coco --annotations train.json --data train/ --val-annotations val.json \\
        --val-data val/ --preset coco_r50_fpn_1x --weights imagenet
    mrcnn-tf evaluate --dataset coco --annotations val.json --data images/ --weights last
    mrcnn-tf detect --weights logs/run/mask_rcnn_x_0010.h5 --images photos/ --output out/
    mrcnn-tf export --weights last --model-dir logs --export-dir serving/x
    mrcnn-tf export --weights last --format tflite --quantize float16 --export-dir edge/
    mrcnn-tf detect --pretrained maskrcnn_resnet50_fpn_v2 --weights coco_v2.safetensors \\
        --images photos/ --output out/
    mrcnn-tf export --pretrained maskrcnn_resnet50_fpn_v2 --weights coco_v2.safetensors \\
        --export-dir serving/coco
    mrcnn-tf detect-beam --model serving/x --input 'images/*.jpg' --output results/part

Exit codes: 0 success, 2 bad arguments (the message names the argument),
1 any other failure (one line; ``--debug`` shows the traceback).
"""

import argparse
import json
import os
import sys

from mrcnn_tf.config import BACKBONES
from mrcnn_tf.presets import COCO_PRESETS

# Files an image folder contributes (--images here; the samples' folders too); all Pillow reads.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff")
EXPORT_FORMATS = ("saved_model", "tflite", "onnx")


class UsageError(Exception):
    """A bad argument: reported with exit code 2."""


# ----------------------------------------------------------------- arguments
def _backbone_name(value):
    """--backbone: one of BACKBONES or "keras:<Name>" (an argparse error lists the choices)."""
    if value in BACKBONES:
        return value
    from mrcnn_tf.modeling.backbone.keras_applications import application_name

    try:
        application_name(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error}; or one of {BACKBONES}") from None
    return value


def _add_model_args(parser, weights_default):
    parser.add_argument("--backbone", type=_backbone_name,
                        metavar="{" + ",".join(BACKBONES) + ",keras:<Name>}",
                        help="backbone (default: the dataset's config, or config.json beside --weights)")
    parser.add_argument("--weights", default=weights_default,
                        help="'none', 'last' (newest checkpoint in --model-dir), 'imagenet', or a .h5 path")
    parser.add_argument("--model-dir", default="logs", help="directory of training runs (default: logs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any Config attribute, e.g. --set IMAGES_PER_GPU=1 (JSON values)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def _add_pretrained_arg(parser):
    parser.add_argument("--pretrained", metavar="TORCHVISION_MODEL",
                        help="torchvision's COCO Mask R-CNN (maskrcnn_resnet50_fpn or _v2) with its state "
                             "dict as --weights FILE (.pth/.safetensors/.npz); class names: its 91 COCO "
                             "categories; --set overrides its test-time settings (e.g. IMAGE_MIN_DIM)")


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
    """The argparse parser of ``mrcnn-tf`` with its subcommands."""
    parser = argparse.ArgumentParser(prog="mrcnn-tf", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train with model.fit, checkpoint every epoch")
    _add_dataset_args(train, required=True)
    _add_model_args(train, weights_default="none")
    train.add_argument("--layers", default="all",
                       help="what trains: heads, 3+, 4+, 5+, all, or a layer-name regex (default all)")
    train.add_argument("--epochs", type=int,
                       help="epoch to stop at (default 10, or the end of --preset's schedule)")
    train.add_argument("--learning-rate", type=float, help="default: config LEARNING_RATE")
    train.add_argument("--input", choices=("generator", "tf.data"), default="generator",
                       help="input pipeline: DataGenerator (default) or tf.data (parallel reading "
                            "and molding); the same batches for the same --seed")
    train.add_argument("--preset", choices=sorted(COCO_PRESETS),
                       help="a detectron2 recipe: warmup + step schedule, multi-scale + flip, 'l2' weight "
                            "decay, 512 RoIs, per-level proposals, COCO AP of --val-annotations every "
                            "STEPS_PER_EPOCH iterations; --set, --learning-rate and --epochs override it")
    train.add_argument("--strategy", choices=("default", "mirrored"), default="default",
                       help="'mirrored': tf.distribute.MirroredStrategy over all local GPUs, GPU_COUNT = "
                            "replicas, the global batch (IMAGES_PER_GPU * GPU_COUNT) kept")
    train.add_argument("--pretrained", metavar="TORCHVISION_MODEL",
                       help="fine-tune from a torchvision Mask R-CNN (maskrcnn_resnet50_fpn or _v2): its "
                            "architecture, the state dict given as --weights FILE (.pth/.safetensors/.npz)")

    evaluate = commands.add_parser("evaluate", help="COCO AP (pycocotools) and VOC mask mAP@0.5")
    _add_dataset_args(evaluate, required=True)
    _add_model_args(evaluate, weights_default="last")
    evaluate.add_argument("--limit", type=int, help="evaluate at most this many images")
    evaluate.add_argument("--output", help="write the metrics as JSON to this file")
    evaluate.add_argument("--per-class", action="store_true",
                          help="also print per-class COCO AP (bbox, segm), VOC AP@0.5 and the "
                               "confusion matrix at mask IoU 0.5 (scores >= 0.5)")

    detect = commands.add_parser("detect", help="overlay PNGs and COCO-results JSON for a folder")
    _add_model_args(detect, weights_default="last")
    _add_pretrained_arg(detect)
    detect.add_argument("--images", required=True, help="folder of JPEG/PNG images")
    detect.add_argument("--output", required=True, help="folder for overlays and detections.json")
    detect.add_argument("--num-classes", type=int, help="classes incl. background (if no config.json)")
    detect.add_argument("--tile", type=int, metavar="SIZE",
                        help="detect by overlapping SIZE x SIZE tiles (images larger than the model's input)")
    detect.add_argument("--overlap", type=float, default=0.2,
                        help="--tile: fraction of a tile shared with its neighbours (default 0.2)")
    detect.add_argument("--format", choices=["coco", "via", "labelme"], default="coco",
                        help="coco: detections.json; via: via/via_region_data.json; labelme: "
                             "labelme/<image>.json (with the images: open in the tool, correct, retrain)")

    export = commands.add_parser("export", help="SavedModel for TF Serving, LiteRT (TFLite) or ONNX")
    _add_model_args(export, weights_default="last")
    _add_pretrained_arg(export)
    export.add_argument("--export-dir", required=True,
                        help="saved_model: base directory (versions go inside); tflite/onnx: the "
                             "directory of model[_QUANTIZE].tflite / model.onnx")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="saved_model",
                        help="saved_model (default), tflite or onnx")
    export.add_argument("--version", type=int, help="saved_model: version number (default: next free)")
    export.add_argument("--quantize", choices=("float16", "dynamic_int8"),
                        help="tflite: weight quantisation (default float32)")
    export.add_argument("--image-size", type=int, nargs="+", metavar="PIXELS",
                        help="tflite: fixed input H [W] (default the model's square side)")
    export.add_argument("--opset", type=int, default=17, help="onnx: opset (default 17)")
    export.add_argument("--num-classes", type=int, help="classes incl. background (if no config.json)")

    beam = commands.add_parser(
        "detect-beam", help="batch inference of a SavedModel on Apache Beam (JSON lines out)",
        description="Any further --options are Beam pipeline options (--runner, --project, ...); "
                    "default: the DirectRunner, one process per core.")
    beam.add_argument("--model", required=True, help="exported SavedModel (version or base directory)")
    beam.add_argument("--input", required=True, help="file glob, e.g. 'images/*.jpg' or gs://bucket/x/*")
    beam.add_argument("--output", required=True,
                      help="output prefix: PREFIX-*.jsonl records, PREFIX-dead_letter-*.jsonl failures")
    beam.add_argument("--batch-size", type=int, default=8, help="images per model call (default 8)")
    beam.add_argument("--debug", action="store_true", help="show the full traceback on errors")
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
def _check_pretrained(args):
    """--pretrained NAME with --weights FILE (its torchvision state dict), or a UsageError naming them."""
    from mrcnn_tf.training.recipe import pretrained_names

    if args.backbone:
        raise UsageError(f"--backbone: --pretrained {args.pretrained} fixes the backbone")
    if args.pretrained not in pretrained_names():
        raise UsageError(f"--pretrained: unknown torchvision model {args.pretrained!r}; known: "
                         f"{list(pretrained_names()) or 'none (mrcnn_tf.pretrained is not installed)'}")
    from mrcnn_tf.pretrained.files import WEIGHT_FORMATS

    if (args.weights in (None, "none", "last", "imagenet")
            or not args.weights.lower().endswith(WEIGHT_FORMATS)):
        raise UsageError(f"--pretrained needs --weights FILE, its torchvision state dict "
                         f"({', '.join(WEIGHT_FORMATS)}), got {args.weights!r}")
    _existing(args.weights, "--weights", "file")


def _pretrained_model(args):
    """(inference MaskRCNN, Config) of torchvision's --pretrained model with its --weights, COCO names.

    torchvision_model's test-time defaults, then --set (e.g. IMAGE_MIN_DIM); the
    class count stays torchvision's 91 (fine-tuning is ``train --pretrained``).
    """
    _check_pretrained(args)
    from mrcnn_tf.pretrained import COCO_CATEGORY_NAMES, torchvision_config, torchvision_model

    overrides = parse_overrides(args.set)
    if getattr(args, "num_classes", None) is not None:
        overrides["NUM_CLASSES"] = args.num_classes
    try:
        config = torchvision_config(args.pretrained, **overrides)
    except ValueError as error:  # Config names the bad key or value
        raise UsageError(f"--set: {error}") from error
    if config.NUM_CLASSES != len(COCO_CATEGORY_NAMES):
        raise UsageError(f"--pretrained {args.pretrained} detects torchvision's {len(COCO_CATEGORY_NAMES)} "
                         f"COCO classes, not NUM_CLASSES={config.NUM_CLASSES} (to fine-tune on other "
                         f"classes: mrcnn-tf train --pretrained)")
    model = torchvision_model(args.pretrained, weights=args.weights, mode="inference",
                              model_dir=args.model_dir, **overrides)
    print(f"{args.pretrained}: torchvision weights loaded from {args.weights}")
    return model, model.config


def _recipe_config(args, num_classes):
    """(Config, end epoch or None) of --preset / --pretrained, then --set; None without either."""
    if not (args.preset or args.pretrained):
        return None, None
    from mrcnn_tf.training.recipe import recipe_setup

    if args.pretrained:
        _check_pretrained(args)
    base, epochs = recipe_setup(args.preset, args.pretrained, NUM_CLASSES=num_classes)
    return make_config(args, base=base), epochs


def train_setup(args):
    """(Config, end epoch, train dataset, val dataset or None) for ``mrcnn-tf train``'s arguments.

    The Config is the dataset's, or --preset's / --pretrained's (with the
    dataset's class count), then --backbone and --set. The end epoch is
    --epochs, else the preset's, else 10.
    """
    from mrcnn_tf.data import ShapesConfig

    if args.dataset == "shapes":  # the config decides the image size of the shapes
        config, epochs = _recipe_config(args, ShapesConfig.NUM_CLASSES)
        config = config or make_config(args)
        train, val = load_datasets(args, int(config.IMAGE_MAX_DIM or 128))
    else:
        train, val = load_datasets(args)
        config, epochs = _recipe_config(args, train.num_classes)
        config = config or make_config(args, train)
    epochs = args.epochs if args.epochs is not None else epochs or 10
    if epochs < 1:
        raise UsageError(f"--epochs: must be >= 1, got {epochs}")
    return config, epochs, train, val


def cmd_train(args):
    import contextlib

    from mrcnn_tf.training import recipe

    config, epochs, train, val = train_setup(args)
    strategy = None
    if args.strategy == "mirrored":  # the config's global batch, split over the local GPUs
        strategy, config = recipe.mirrored(config)
    common = dict(verbose=2, seed=args.seed, input_pipeline=args.input)
    with strategy.scope() if strategy else contextlib.nullcontext():
        if args.pretrained:
            model = build_model("training", config, args.model_dir, None)
            recipe.fine_tune_from(model, args.pretrained, args.weights)
        else:
            model = build_model("training", config, args.model_dir, resolve_weights(args, config.NAME))
        if args.preset:  # flips, COCO AP of the validation set each epoch (no validation loss)
            recipe.train_recipe(model, train, val, epochs, args.learning_rate, args.layers, **common)
        else:
            model.train(train, val, args.learning_rate or config.LEARNING_RATE, epochs, args.layers,
                        **common)
    print(f"checkpoints in {model.log_dir}")


def _inference_model(args, dataset=None):
    """Inference MaskRCNN from --weights, with the config of its training run when present
    (or torchvision's model with --pretrained)."""
    if getattr(args, "pretrained", None):
        return _pretrained_model(args)
    config = make_config(args, dataset)
    # Without a dataset there is no run name to look for: take the newest run of any name.
    weights = resolve_weights(args, config.NAME if getattr(args, "dataset", None) else None)
    base = _run_config_beside(weights) if weights else None
    if base is not None:
        config = make_config(args, base=base)
    return build_model("inference", config, args.model_dir, weights), config


def cmd_evaluate(args):
    from mrcnn_tf.evaluate import (coco_evaluate, compute_mAP, confusion_matrix,
                                   format_confusion_matrix, per_class_ap, protocol_detector,
                                   run_detections)

    size = int(make_config(args).IMAGE_MAX_DIM or 128) if args.dataset == "shapes" else 128
    train, val = load_datasets(args, size)
    # Shapes are scored on their held-out split; a via/coco --data is the set to score.
    dataset = val if args.dataset == "shapes" else train
    model, _config = _inference_model(args, dataset)
    # Once for all the scores, with the COCO protocol's thresholds (0.05, NMS 0.5, 100 per image).
    ids, results = run_detections(protocol_detector(model), dataset, limit=args.limit, verbose=True)
    metrics = coco_evaluate(model, dataset, image_ids=ids, results=results, per_class=args.per_class)
    metrics["voc_mask_mAP50"] = float(compute_mAP(model, dataset, image_ids=ids, results=results))
    print(f"VOC mask mAP@0.5: {metrics['voc_mask_mAP50']:.3f}")
    if args.per_class:
        voc = per_class_ap(model, dataset, image_ids=ids, results=results)
        print(f"{'class':<20}{'bbox AP':>9}{'segm AP':>9}{'VOC AP50':>10}")
        for name in dataset.class_names[1:]:
            row = [metrics[t]["per_class"].get(name, float("nan")) for t in ("bbox", "segm")]
            print(f"{name:<20}{row[0]:>9.3f}{row[1]:>9.3f}{voc.get(name, float('nan')):>10.3f}")
        matrix = confusion_matrix(model, dataset, image_ids=ids, results=results)
        print("confusion matrix at mask IoU 0.5, scores >= 0.5 (rows: ground truth, columns: "
              "predicted; BG row: false positives, BG column: missed):")
        print(format_confusion_matrix(matrix, dataset.class_names))
        metrics["voc_per_class_AP50"] = voc
        metrics["confusion_matrix"] = matrix.tolist()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)


def cmd_detect(args):
    from mrcnn_tf.data import Dataset
    from mrcnn_tf.predictions import write_predictions
    from mrcnn_tf.visualize import display_instances

    folder = _existing(args.images, "--images")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise UsageError(f"--images: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    if args.tile is not None and args.tile < 64:
        raise UsageError(f"--tile must be >= 64 pixels, got {args.tile}")
    if not 0.0 <= args.overlap < 1.0:
        raise UsageError(f"--overlap must be in [0, 1), got {args.overlap}")
    model, config = _inference_model(args)
    reader = Dataset()  # only for its robust load_image (EXIF, grey, RGBA, 16-bit)
    for i, name in enumerate(files):
        reader.add_image("cli", i, os.path.join(folder, name))
    reader.prepare()
    os.makedirs(args.output, exist_ok=True)
    class_names = (model.class_names if args.pretrained  # COCO_CATEGORY_NAMES
                   else ["BG"] + [f"class_{i}" for i in range(1, config.NUM_CLASSES)])
    results = []
    for i, name in enumerate(files):
        image = reader.load_image(i)
        result = (model.detect_tiled(image, tile_size=args.tile, overlap=args.overlap) if args.tile
                  else model.detect([image])[0])
        results.append(result)
        display_instances(image, result["rois"], result["masks"], result["class_ids"], class_names,
                          result["scores"], title=name,
                          save_path=os.path.join(args.output, os.path.splitext(name)[0] + ".png"))
    write_predictions(results, [os.path.join(folder, name) for name in files], class_names,
                      args.output, fmt=args.format)
    print(f"{sum(len(r['class_ids']) for r in results)} detections in {len(files)} images -> {args.output}")


def cmd_export(args):
    from mrcnn_tf.export import export_onnx, export_saved_model, export_tflite

    if args.format != "saved_model" and args.version is not None:
        raise UsageError("--version applies to --format saved_model only")
    if args.format != "tflite" and (args.quantize or args.image_size):
        raise UsageError("--quantize and --image-size apply to --format tflite only")
    if args.image_size and len(args.image_size) > 2:
        raise UsageError(f"--image-size: H or H W, got {args.image_size}")
    model, _config = _inference_model(args)
    if args.format == "saved_model":
        path = export_saved_model(model, args.export_dir, version=args.version,
                                  class_names=model.class_names if args.pretrained else None)
    elif args.format == "tflite":
        size = args.image_size and (args.image_size * 2)[:2]
        name = f"model_{args.quantize}.tflite" if args.quantize else "model.tflite"
        path = export_tflite(model, os.path.join(args.export_dir, name), quantize=args.quantize,
                             image_size=tuple(size) if size else None)
    else:
        path = export_onnx(model, os.path.join(args.export_dir, "model.onnx"), opset=args.opset)
    print(f"{args.format} written to {path}")


def cmd_detect_beam(args, pipeline_args=()):
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    from mrcnn_tf import beam  # apache-beam is an extra: its ImportError says what to install

    beam.run(args.model, args.input, args.output, batch_size=args.batch_size, pipeline_args=pipeline_args)
    print(f"records in {args.output}-*.jsonl, failures in {args.output}-dead_letter-*.jsonl")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "detect": cmd_detect, "export": cmd_export,
            "detect-beam": cmd_detect_beam}


def main(argv=None):
    """Entry point of ``mrcnn-tf``; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Only detect-beam passes unknown options on (to Beam's PipelineOptions).
    if extra and args.command != "detect-beam":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "detect-beam":
            cmd_detect_beam(args, extra)
        else:
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
