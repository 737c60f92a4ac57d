"""Training safety nets: NaN guard naming the data, TensorBoard images, early checks, bad files."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mrcnn_tf import DataGenerator, Dataset, MaskRCNN
from mrcnn_tf.data import ImageLoadError
from mrcnn_tf.model.callbacks import NonFiniteLossError, copy_weights_by_name, draw_detections
from test_model import TinyConfig, shapes


@pytest.mark.slow
def test_nan_loss_stops_training_naming_step_and_images(tmp_path):
    config = TinyConfig(IMAGES_PER_GPU=2, STEPS_PER_EPOCH=3)
    model = MaskRCNN("training", config, tmp_path)
    kernel = model.keras_model.get_layer("fpn_p2").weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    dataset = shapes(4, seed=0)
    with pytest.raises(NonFiniteLossError) as error:
        model.train(dataset, None, 0.01, 2, "all", verbose=0, seed=0)
    message = str(error.value)
    assert "epoch 1, step 1" in message and "ids [" in message and "shapes" in message
    ids = DataGenerator(dataset, config, seed=0).batch_image_ids(0)
    assert f"ids {[int(i) for i in ids]}" in message
    assert not glob.glob(os.path.join(model.log_dir, "*.h5"))  # no checkpoint of NaN weights


@pytest.mark.slow
def test_validation_images_reach_tensorboard(tmp_path):
    config = TinyConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=1, VALIDATION_STEPS=1,
                        DETECTION_MIN_CONFIDENCE=0.0)
    model = MaskRCNN("training", config, tmp_path)
    model.train(shapes(2, seed=0), shapes(2, seed=1), 0.01, 1, "all", verbose=0, seed=0, log_images=2)
    events = glob.glob(os.path.join(model.log_dir, "validation_images", "events.*"))
    assert events
    tags = {value.tag for event in tf.compat.v1.train.summary_iterator(events[0])
            for value in event.summary.value}
    assert tags == {"image_0", "image_1"}


def test_draw_detections_tints_masks_and_outlines_boxes():
    image = np.full((20, 30, 3), 100, np.uint8)
    mask = np.zeros((20, 30, 1), bool)
    mask[5:10, 5:15] = True
    result = {"rois": np.array([[4, 4, 12, 18]]), "masks": mask, "class_ids": np.array([1])}
    drawn = draw_detections(image, result, colors=[(1.0, 0.0, 0.0)])
    assert (drawn[4, 4:18] == [255, 0, 0]).all() and (drawn[11, 4:18] == [255, 0, 0]).all()
    assert (drawn[4:12, 17] == [255, 0, 0]).all()
    assert drawn[7, 10, 0] > 100 and drawn[7, 10, 1] < 100  # tinted toward red inside the mask
    assert (drawn[15:, :] == 100).all() and (drawn[:, 20:] == 100).all()
    assert (image == 100).all()  # input untouched


def test_copy_weights_by_name_between_modes(tmp_path):
    trainer = MaskRCNN("training", TinyConfig(), tmp_path)
    detector = MaskRCNN("inference", TinyConfig(), tmp_path)
    kernel = trainer.keras_model.get_layer("mrcnn_mask_conv1").weights[0]
    kernel.assign(np.full(kernel.shape, 0.25, np.float32))
    copied = copy_weights_by_name(trainer.keras_model, detector.keras_model)
    shared = {l.name for l in trainer.keras_model.layers if l.weights} & \
        {l.name for l in detector.keras_model.layers if l.weights}
    assert copied == len(shared) > 20
    assert (detector.keras_model.get_layer("mrcnn_mask_conv1").weights[0].numpy() == 0.25).all()


def test_unwritable_model_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    model = MaskRCNN("training", TinyConfig(), str(blocker / "logs"))
    with pytest.raises(OSError, match="model_dir cannot hold checkpoints"):
        model.train(shapes(2, seed=0), None, 0.01, 1, "heads", verbose=0)


def test_undecodable_file_names_it_or_is_skipped_when_asked(tmp_path):
    dataset = Dataset()
    dataset.add_class("files", 1, "thing")
    for i in range(3):
        path = tmp_path / f"image{i}.png"
        if i == 1:
            path = tmp_path / "broken.jpg"
            path.write_bytes(b"\xff\xd8\xff\xe0 truncated")
        else:
            Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(path)
        dataset.add_image("files", i, str(path))
    dataset.prepare()
    config = TinyConfig(IMAGES_PER_GPU=3, NUM_CLASSES=2)
    with pytest.raises(ImageLoadError, match=r"broken\.jpg"):
        DataGenerator(dataset, config, shuffle=False)[0]
    generator = DataGenerator(dataset, config, shuffle=False, skip_bad_images=True)
    with pytest.warns(UserWarning, match="skipping image 1"):
        batch = generator[0]
    assert list(generator.skipped_images) == [1] and "broken.jpg" in generator.skipped_images[1]
    assert batch["input_image"].shape[0] == 3 and np.isfinite(batch["input_image"]).all()
    # Image 1's slot holds the next readable image (2), not a hole.
    np.testing.assert_array_equal(batch["input_image"][1], batch["input_image"][2])


def test_detect_rejects_nan_pixels(tmp_path):
    model = MaskRCNN("inference", TinyConfig(), tmp_path)
    image = np.zeros((32, 32, 3), np.float32)
    image[3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="image 0 has NaN or Inf"):
        model.detect([image])
    with pytest.raises(ValueError, match="image 0 is empty"):
        model.detect([np.zeros((0, 5, 3), np.uint8)])
