"""Balloon: Mask R-CNN on a VIA-annotated dataset, with the "colour splash" effect.

    python samples/balloon/balloon.py train --dataset ../shared/data/balloon --weights imagenet
    python samples/balloon/balloon.py evaluate --dataset ../shared/data/balloon --weights last
    python samples/balloon/balloon.py splash --weights last --image photo.jpg [more.jpg ...]
    python samples/balloon/balloon.py splash --weights last --video clip.mp4
    python samples/balloon/balloon.py splash --weights last --frames frames/

The dataset directory holds ``train/`` and ``val/``, each a VIA project
(``via_region_data.json`` beside its images); the regions need no class
attribute (one class). The splash keeps the detected balloons in colour and
turns every other pixel grey (R == G == B); each picture or video frame is
written as a PNG to ``--output``.

Video: ``--video`` reads frames with imageio (installed with scikit-image).
GIF and other Pillow formats always work; MP4/AVI need an imageio plugin
(``pip install imageio-ffmpeg`` or ``av``). Without one, extract the frames
first (``ffmpeg -i clip.mp4 frames/%05d.png``) and pass ``--frames frames/``.

``--weights``: ``none`` (random), ``imagenet`` (ResNet backbone from the
Keras Applications file, which must already be on disk: the error says
where), ``last`` (newest checkpoint under ``--model-dir``) or an ``.h5``
path. ``--backbone small --tiny`` is the CPU smoke setting the tests use.
"""

import argparse
import itertools
import os
import sys

import numpy as np

from mrcnn_tf import Config, presets
from mrcnn_tf.cli import IMAGE_SUFFIXES, backbone_weights_for, load_model
from mrcnn_tf.config import BACKBONES


class BalloonConfig(Config):
    """Balloons on ResNet-50 at 1024 px, one image per step."""

    NAME = "balloon"
    NUM_CLASSES = 1 + 1  # background + balloon
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 1
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 5
    DETECTION_MIN_CONFIDENCE = 0.9


def make_config(backbone="resnet50", weights="none", tiny=False):
    """BalloonConfig for the command line; fails early and clearly on unusable weights."""
    # --tiny: 128 px images, narrow heads, few RoIs; a CPU runs an epoch of 2 steps in seconds.
    return BalloonConfig(BACKBONE=backbone, BACKBONE_WEIGHTS=backbone_weights_for(weights, backbone),
                         **(presets.tiny(128) if tiny else {}))


def load_split(dataset_dir, subset):
    """The prepared ViaDataset of ``dataset_dir/subset``."""
    from mrcnn_tf.data import ViaDataset

    if not dataset_dir:
        raise SystemExit("--dataset DIR is required (a directory with train/ and val/)")
    path = os.path.join(dataset_dir, subset)
    if not os.path.isdir(path):
        raise SystemExit(f"--dataset: no {subset}/ directory in {dataset_dir}")
    return ViaDataset.from_directory(path)


def to_rgb(frame):
    """uint8 [H, W, 3] from a grey, RGB or RGBA frame."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.stack([frame] * 3, axis=-1)
    frame = frame[..., :3]
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return frame


def read_video_frames(path):
    """Yield the frames of a video file as uint8 [H, W, 3], read with imageio."""
    try:
        import imageio.v3 as iio
    except ImportError:
        raise SystemExit("--video needs imageio (pip install imageio); or extract the frames "
                         "(ffmpeg -i clip.mp4 frames/%05d.png) and use --frames DIR") from None
    try:
        for frame in iio.imiter(path):
            yield to_rgb(frame)
    except (OSError, ValueError, RuntimeError, ImportError) as error:  # no plugin for this container/codec
        raise SystemExit(f"--video {path}: cannot read it ({error}); install imageio-ffmpeg or av, "
                         f"or extract the frames (ffmpeg -i {path} frames/%05d.png) and use "
                         f"--frames DIR") from None


def splash_sources(images=(), frames_dir=None, video=None):
    """Yield (output stem, uint8 [H, W, 3]) for every image, frame file and video frame."""
    from mrcnn_tf.data import Dataset

    files = list(images or [])
    if frames_dir:
        if not os.path.isdir(frames_dir):
            raise SystemExit(f"--frames: no such directory {frames_dir}")
        files += sorted(os.path.join(frames_dir, f) for f in os.listdir(frames_dir)
                        if f.lower().endswith(IMAGE_SUFFIXES))
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise SystemExit(f"no such image file: {missing[0]}")
    if not files and not video:
        raise SystemExit("splash: give --image FILE, --video FILE or --frames DIR")
    reader = Dataset()  # its load_image applies EXIF orientation and converts grey/RGBA
    for i, path in enumerate(files):
        reader.add_image("files", i, path)
    reader.prepare()
    for i, path in enumerate(files):
        yield os.path.splitext(os.path.basename(path))[0], reader.load_image(i)
    if video:
        stem = os.path.splitext(os.path.basename(video))[0]
        for index, frame in enumerate(read_video_frames(video)):
            yield f"{stem}_{index:05d}", frame


def splash_file(model, image, out_path):
    """Detect balloons in ``image`` and write its splash (grey outside the masks) as PNG.

    Returns the number of detected instances.
    """
    from PIL import Image

    from mrcnn_tf.visualize import color_splash

    result = model.detect([image])[0]
    Image.fromarray(color_splash(image, result["masks"])).save(out_path)
    return len(result["class_ids"])


def train(args):
    config = make_config(args.backbone, args.weights, args.tiny)
    config.display()
    train_set, val_set = load_split(args.dataset, "train"), load_split(args.dataset, "val")
    print(f"train: {len(train_set.image_ids)} images, val: {len(val_set.image_ids)} images, "
          f"classes {train_set.class_names}")
    model = load_model("training", config, args.weights, args.model_dir)
    augmentation = None
    if args.augment:
        from mrcnn_tf.data import default_augmentation

        augmentation = default_augmentation()
    common = dict(augmentation=augmentation, verbose=2, seed=args.seed,
                  log_images=0 if args.tiny else 2)
    if args.weights == "none":  # from scratch every layer has to learn
        model.train(train_set, val_set, config.LEARNING_RATE, args.epochs, "all", **common)
    else:  # pretrained: let the new heads settle first, then fine-tune everything
        heads_epochs = args.heads_epochs if args.heads_epochs is not None else max(1, args.epochs // 3)
        model.train(train_set, val_set, config.LEARNING_RATE, min(heads_epochs, args.epochs), "heads",
                    **common)
        if args.epochs > heads_epochs:
            model.train(train_set, val_set, config.LEARNING_RATE / 10, args.epochs, "all", **common)
    print(f"checkpoints in {model.log_dir}")


def evaluate(args):
    from mrcnn_tf.evaluate import coco_evaluate, compute_mAP, run_detections

    config = make_config(args.backbone, "none", args.tiny)
    val_set = load_split(args.dataset, "val")
    model = load_model("inference", config, args.weights, args.model_dir)
    ids, results = run_detections(model, val_set, limit=args.limit, verbose=True)
    metrics = coco_evaluate(model, val_set, image_ids=ids, results=results)
    voc = compute_mAP(model, val_set, image_ids=ids, results=results)
    print(f"balloon val ({len(ids)} images): mask mAP@0.5 {voc:.3f}  COCO bbox AP "
          f"{metrics['bbox']['AP']:.3f}  segm AP {metrics['segm']['AP']:.3f}")


def splash(args):
    config = make_config(args.backbone, "none", args.tiny)
    sources = splash_sources(args.image, args.frames, args.video)
    first = next(sources, None)  # check the inputs before building the model
    model = load_model("inference", config, args.weights, args.model_dir)
    os.makedirs(args.output, exist_ok=True)
    count = 0
    for stem, image in itertools.chain([first] if first else [], sources):  # frames one at a time
        out = os.path.join(args.output, f"{stem}_splash.png")
        found = splash_file(model, image, out)
        print(f"{stem}: {found} balloons -> {out}")
        count += 1
    print(f"{count} splash pictures in {args.output}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring for the dataset layout and video.")
    parser.add_argument("command", choices=["train", "evaluate", "splash"])
    parser.add_argument("--dataset", help="train/evaluate: directory with train/ and val/ VIA projects")
    parser.add_argument("--weights", help="'none', 'imagenet' (backbone only), 'last' or a checkpoint .h5 "
                                          "(default: none for train, last otherwise)")
    parser.add_argument("--model-dir", default="logs", help="directory of training runs (default: logs)")
    parser.add_argument("--backbone", default="resnet50", choices=BACKBONES)
    parser.add_argument("--epochs", type=int, default=30, help="train: the epoch to stop at")
    parser.add_argument("--heads-epochs", type=int,
                        help="train from pretrained weights: epochs of heads only (default: a third)")
    parser.add_argument("--augment", action="store_true", help="train: flips, scale and colour jitter")
    parser.add_argument("--seed", type=int, default=0, help="train: data order and augmentation seed")
    parser.add_argument("--limit", type=int, help="evaluate: at most this many val images")
    parser.add_argument("--image", nargs="+", help="splash: image files")
    parser.add_argument("--video", help="splash: a video file (imageio; GIF always, MP4 with a plugin)")
    parser.add_argument("--frames", help="splash: a directory of video frames (PNG/JPEG)")
    parser.add_argument("--output", default="splash", help="splash: output directory (default: splash)")
    parser.add_argument("--tiny", action="store_true", help="tiny CPU settings (128 px, 2 steps; smoke test)")
    args = parser.parse_args(argv)
    if args.weights is None:
        args.weights = "none" if args.command == "train" else "last"
    if args.command == "train" and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    return args


def main(argv=None):
    args = parse_args(argv)
    {"train": train, "evaluate": evaluate, "splash": splash}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
