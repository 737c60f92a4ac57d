"""The COCO recipe's smoke run: samples/coco/coco.py --preset coco_r50_fpn_1x --smoke trains the
preset's code path (schedule, L2 decay, FREEZE_AT, multi-scale + flip, COCO AP callback) on a
tiny COCO JSON this test writes, and checkpoints with the schedule's iteration count."""

import json
import os

import pytest

from mrcnn_tf import Config, presets
from mrcnn_tf.cli import UsageError, build_parser, train_setup
from mrcnn_tf.training import recipe
from mrcnn_tf.training.recipe import pretrained_names
from mrcnn_tf.training.checkpoint import ResumeState
from test_samples import REPO, checkpoints, run, write_coco_shapes


def test_presets_are_detectron2s_recipe():
    config, epochs = presets.recipe_config("coco_r50_fpn_1x")
    assert (config.BATCH_SIZE, config.LEARNING_RATE, config.WARMUP_ITERS, config.LR_STEPS) == \
        (16, 0.02, 1000, (60_000, 80_000))
    assert epochs * config.STEPS_PER_EPOCH == 90_000
    assert (config.TRAIN_ROIS_PER_IMAGE, config.ROI_POSITIVE_RATIO, config.WEIGHT_DECAY_MODE,
            config.RPN_PROPOSAL_MODE) == (512, 0.25, "l2", "per_level")
    config3, epochs3 = presets.recipe_config("coco_r50_fpn_3x")
    assert config3.LR_STEPS == (210_000, 250_000) and epochs3 * config3.STEPS_PER_EPOCH == 270_000
    with pytest.raises(ValueError, match="unknown preset 'coco_r50_fpn_2x'"):
        presets.recipe_config("coco_r50_fpn_2x")


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory):
    """(annotation file, image directory): 3 shapes images of 64 px as COCO JSON, ids 10/20/30."""
    tmp_path = tmp_path_factory.mktemp("coco")
    _, annotations = write_coco_shapes(tmp_path, 3)
    return str(annotations), str(tmp_path / "images")


def _train_setup(*argv):
    return train_setup(build_parser().parse_args(["train", *argv]))


def test_cli_preset_resolves_the_recipe(tiny_coco, tmp_path):
    annotations, images = tiny_coco
    data = ["--dataset", "coco", "--annotations", annotations, "--data", images]
    config, epochs, train, val = _train_setup(*data, "--val-annotations", annotations, "--preset",
                                              "coco_r50_fpn_1x", "--set", "IMAGES_PER_GPU=1")
    assert (config.NAME, config.NUM_CLASSES, config.LEARNING_RATE, config.LR_STEPS, config.WARMUP_ITERS,
            config.WEIGHT_DECAY_MODE, config.TRAIN_ROIS_PER_IMAGE) == \
        ("coco_r50_fpn_1x", 4, 0.02, (60_000, 80_000), 1000, "l2", 512)
    assert config.IMAGES_PER_GPU == 1 and config.BATCH_SIZE == 8  # --set wins over the preset
    assert epochs == 18 and len(train.image_ids) == 3 and val is not None
    config, epochs, _, val = _train_setup(*data, "--preset", "coco_r50_fpn_3x", "--epochs", "2")
    assert config.LR_STEPS == (210_000, 250_000) and epochs == 2 and val is None
    config, epochs, _, _ = _train_setup(*data)  # no preset: today's config and 10 epochs
    assert (config.NAME, config.LR_SCHEDULE, epochs) == ("coco", Config.LR_SCHEDULE, 10)
    strategy, split = recipe.mirrored(presets.recipe_config("coco_r50_fpn_1x")[0])  # --strategy mirrored
    replicas = strategy.num_replicas_in_sync  # 1 on this CPU: GPU_COUNT 8 -> 1, the global batch kept
    assert (split.GPU_COUNT, split.IMAGES_PER_GPU, split.BATCH_SIZE) == (replicas, 16 // replicas, 16)
    with pytest.raises(SystemExit):  # argparse: exit 2 listing the presets
        build_parser().parse_args(["train", *data, "--preset", "coco_r50_fpn_2x"])

    # --pretrained: torchvision's architecture under the preset's training settings.
    weights = tmp_path / "tv.npz"
    weights.write_bytes(b"")  # only its name is checked here; fine_tune_from reads it
    if not pretrained_names():  # an installation without mrcnn_tf.pretrained says so
        with pytest.raises(UsageError, match="mrcnn_tf.pretrained is not installed"):
            _train_setup(*data, "--pretrained", "maskrcnn_resnet50_fpn", "--weights", str(weights))
        return
    config, epochs, _, _ = _train_setup(*data, "--preset", "coco_r50_fpn_1x", "--pretrained",
                                        "maskrcnn_resnet50_fpn_v2", "--weights", str(weights))
    assert (config.RESNET_STRIDE_ON, config.FPN_NORM, config.NUM_CLASSES, config.LR_STEPS, epochs) == \
        ("3x3", "batch", 4, (60_000, 80_000), 18)
    for argv, message in ((["--weights", "none"], "--pretrained needs --weights FILE"),
                          (["--weights", str(tmp_path / "no.pth")], "--weights: file not found"),
                          (["--weights", str(weights), "--backbone", "resnet101"], "fixes the backbone")):
        with pytest.raises(UsageError, match=message):
            _train_setup(*data, "--pretrained", "maskrcnn_resnet50_fpn", *argv)
    with pytest.raises(UsageError, match="unknown torchvision model 'resnet'.*maskrcnn_resnet50_fpn"):
        _train_setup(*data, "--pretrained", "resnet", "--weights", str(weights))


@pytest.mark.slow
def test_coco_preset_smoke_run(tiny_coco, tmp_path):
    annotations, images = tiny_coco
    logs = str(tmp_path / "logs")
    result = run(os.path.join(REPO, "samples", "coco", "coco.py"), "train", "--annotations",
                 annotations, "--images", images, "--val-annotations",
                 annotations, "--preset", "coco_r50_fpn_1x", "--smoke", "--model-dir", logs)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("val segm AP by epoch:")]
    assert line, result.stdout[-2000:]
    aps = json.loads(line[0].split(":", 1)[1].strip())
    assert len(aps) == 2 and all(-1.0 <= ap <= 1.0 for ap in aps)
    files = checkpoints(logs, "coco_r50_fpn_1x")
    assert [os.path.basename(p)[-7:] for p in files] == ["0001.h5", "0002.h5"]
    config = Config.from_json(os.path.join(os.path.dirname(files[-1]), "config.json"))
    assert (config.RPN_PROPOSAL_MODE, config.WEIGHT_DECAY_MODE, config.LR_SCHEDULE, len(config.IMAGE_MIN_DIM),
            config.WARMUP_ITERS, config.LR_STEPS, config.FREEZE_AT) == \
        ("per_level", "l2", "step", 2, 1, (1,), 2)  # the recipe's code path, at 64 px
    state = ResumeState.read(files[-1])
    assert state.training["start_epoch"] == 0 and state.optimizer_variables[0][1] == 2  # iterations
