"""The tf.data input path: the DataGenerator's batches, fit from it, and a real-photo run through the CLI."""

import math
import os
import re

import numpy as np
import pytest

from mrcnn_tf import MaskRCNN
from mrcnn_tf.cli import main
from mrcnn_tf.config import LOSS_NAMES
from mrcnn_tf.data import DataGenerator, ShapesConfig, ShapesDataset, ViaDataset, to_tf_dataset
from mrcnn_tf.data.augment import default_augmentation
from mrcnn_tf import presets

from shared_data import BALLOON, needs_balloon


def tiny_config(**overrides):
    return ShapesConfig(**presets.tiny(64, BACKBONE="small", NUM_CLASSES=4, IMAGES_PER_GPU=2,
                                       **overrides))


def shapes(count, seed):
    dataset = ShapesDataset()
    dataset.load_shapes(count, 64, 64, seed=seed)
    dataset.prepare()
    return dataset


def assert_same_batches(dataset, config, epochs=2, **kwargs):
    generator = DataGenerator(dataset, config, **kwargs)
    data = to_tf_dataset(dataset, config, **kwargs)
    assert int(data.cardinality()) == len(generator)
    for epoch in range(epochs):
        generator.set_epoch(epoch)
        batches = list(data.as_numpy_iterator())  # each pass is the next epoch
        assert len(batches) == len(generator)
        for index, batch in enumerate(batches):
            expected = generator[index]
            assert sorted(batch) == sorted(expected)
            for name, value in expected.items():
                assert batch[name].dtype == value.dtype, name
                np.testing.assert_array_equal(batch[name], value, err_msg=f"epoch {epoch} {name}")
    return batches


@pytest.mark.parametrize("overrides", [{}, {"IMAGE_RESIZE_MODE": "crop", "IMAGE_MAX_DIM": 128,
                                            "IMAGE_MIN_SCALE": 2.0},
                                       {"USE_MINI_MASK": False, "MAX_GT_INSTANCES": 2}],
                         ids=["square", "crop", "full-masks-capped-gt"])
def test_tf_dataset_gives_the_generators_batches_for_the_same_seed(overrides):
    config = tiny_config(**overrides)
    batches = assert_same_batches(shapes(5, seed=2), config, shuffle=True, seed=7,
                                  augmentation=default_augmentation())
    assert batches[0]["input_image"].shape == (2, 64, 64, 3)
    # Different seeds, different data: the equality above is not of constant batches.
    other = next(to_tf_dataset(shapes(5, seed=2), config, seed=8,
                               augmentation=default_augmentation()).as_numpy_iterator())
    assert not np.array_equal(other["input_image"], batches[0]["input_image"]) or \
        not np.array_equal(other["input_gt_boxes"], batches[0]["input_gt_boxes"])


@needs_balloon
def test_tf_dataset_on_real_photos_of_different_sizes():
    dataset = ViaDataset.from_directory(os.path.join(BALLOON, "val"))
    dataset.image_info = dataset.image_info[:4]  # four photos, 1-2 k pixels, their own sizes
    dataset.prepare()
    config = ShapesConfig(**presets.tiny(64, BACKBONE="small", NUM_CLASSES=2, IMAGES_PER_GPU=2,
                                         IMAGE_RESIZE_MODE="shortest_edge", IMAGE_MIN_DIM=96,
                                         IMAGE_MAX_DIM=160, MAX_GT_INSTANCES=12))
    batches = assert_same_batches(dataset, config, epochs=1, shuffle=False, seed=0,
                                  augmentation=default_augmentation())
    for batch in batches:
        height, width = batch["input_image"].shape[1:3]
        assert height % 32 == 0 and width % 32 == 0 and max(height, width) <= 160
        assert (batch["input_gt_class_ids"] > 0).sum() >= 2  # balloons survive the molding


def test_fit_runs_from_tf_data_and_from_the_generator(tmp_path):
    dataset = shapes(4, seed=5)
    config = tiny_config(STEPS_PER_EPOCH=1)
    for pipeline, epochs in (("tf.data", 2), ("generator", 1)):  # tf.data: re-iterated per epoch
        model = MaskRCNN("training", config, str(tmp_path / pipeline))
        history = model.train(dataset, None, 0.01, epochs, "all", seed=0, verbose=0, log_images=0,
                              input_pipeline=pipeline).history
        assert set(LOSS_NAMES) <= set(history) and len(history["loss"]) == epochs
        assert all(np.isfinite(v).all() for v in history.values())
    with pytest.raises(ValueError, match="input_pipeline"):
        MaskRCNN("training", config, str(tmp_path / "x")).train(dataset, None, 0.01, 1, "all",
                                                                input_pipeline="numpy")


@needs_balloon
@pytest.mark.slow
def test_cli_trains_the_small_model_on_real_photos(tmp_path, capsys):
    """The real-photo path, end to end: VIA polygons, JPEGs of 1-2 k pixels, tf.data input."""
    settings = {"IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128, "IMAGES_PER_GPU": 2, "STEPS_PER_EPOCH": 2,
                "TRAIN_ROIS_PER_IMAGE": 32, "POST_NMS_ROIS_TRAINING": 200}
    args = ["train", "--dataset", "via", "--data", os.path.join(BALLOON, "train"),
            "--backbone", "small", "--weights", "none",
            "--epochs", "1", "--seed", "0", "--input", "tf.data", "--model-dir", str(tmp_path)]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    values = {name: float(v) for name, v in re.findall(r"\b(\w*loss): ([-\d.e+naif]+)", out)}
    assert set(LOSS_NAMES) <= set(values), out[-2000:]
    assert all(math.isfinite(v) for v in values.values()), values
    runs = os.listdir(tmp_path)
    assert any(f.endswith(".h5") for f in os.listdir(tmp_path / runs[0]))
