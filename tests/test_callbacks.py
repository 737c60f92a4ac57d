"""Training safety nets: TensorBoard images, early checks, skipped files.

The NaN guard's end-to-end test is in test_reliability.py.
"""

import errno
import glob
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mrcnn_tf import DataGenerator, Dataset, MaskRCNN
from mrcnn_tf.data import ImageLoadError
from mrcnn_tf.training import callbacks, checkpoint
from mrcnn_tf.training.callbacks import NaNGuard, NonFiniteLossError, TensorBoardImages
from mrcnn_tf.training.checkpoint import ModelDirError, check_writable_model_dir
from mrcnn_tf.visualize import draw_detections
from test_model import TinyConfig, shapes


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


def test_callbacks_do_not_import_the_model_module():
    """callbacks.py imports no part of mask_rcnn (which imports it): no cycle, no deferred import."""
    import ast

    tree = ast.parse(open(callbacks.__file__, encoding="utf-8").read())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name in ("mrcnn_tf", "mrcnn_tf.model")
                or name.startswith("mrcnn_tf.model")], imported


def test_detect_rejects_nan_pixels(tmp_path):
    model = MaskRCNN("inference", TinyConfig(), tmp_path)
    image = np.zeros((32, 32, 3), np.float32)
    image[3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="image 0 has NaN or Inf"):
        model.detect([image])
    with pytest.raises(ValueError, match="image 0 is empty"):
        model.detect([np.zeros((0, 5, 3), np.uint8)])


def files_dataset(tmp_path, broken):
    """Five 64x64 PNGs of grey level 40 * id (plus one instance each); ids in ``broken`` are junk."""

    class Files(Dataset):
        def load_mask(self, image_id):
            masks = np.zeros((64, 64, 1), bool)
            masks[10:30, 10:30] = True
            return masks, np.ones(1, np.int32)

    dataset = Files()
    dataset.add_class("files", 1, "thing")
    for i in range(5):
        path = tmp_path / f"image{i}.png"
        if i in broken:
            path = tmp_path / f"broken{i}.jpg"
            path.write_bytes(b"\xff\xd8\xff\xe0 truncated")
        else:
            Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(path)
        dataset.add_image("files", i, str(path))
    dataset.prepare()
    return dataset


def grey_levels(batch):
    """The grey level 40 * id of each image of a batch (un-molding the mean)."""
    config = TinyConfig()
    return [int(round(float(image[0, 0, 0]) + config.MEAN_PIXEL[0])) // 40 for image in batch["input_image"]]


def test_undecodable_file_raises_as_is_naming_file_and_id(tmp_path):
    generator = DataGenerator(files_dataset(tmp_path, {1}), TinyConfig(IMAGES_PER_GPU=3, NUM_CLASSES=2),
                              shuffle=False)
    with pytest.raises(ImageLoadError, match=r"image 1 \(files\.1\) from .*broken1\.jpg") as error:
        generator[0]
    assert type(error.value) is ImageLoadError  # not re-wrapped
    assert generator.skipped_images == {}


def test_skipped_images_are_replaced_deterministically_and_reported_once_per_epoch(tmp_path):
    dataset = files_dataset(tmp_path, {1, 2})
    generator = DataGenerator(dataset, TinyConfig(IMAGES_PER_GPU=5, NUM_CLASSES=2), shuffle=False,
                              skip_bad_images=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning per image while the epoch runs
        batch = generator[0]
    # 1 and 2 are unreadable: both slots hold the next readable image in id order, 3.
    assert grey_levels(batch) == [0, 3, 3, 3, 4]
    assert sorted(generator.skipped_images) == [1, 2]
    assert "broken2.jpg" in generator.skipped_images[2]
    assert generator.batch_image_ids(0) == [0, 3, 3, 3, 4]
    with pytest.warns(UserWarning, match=r"epoch 1: 2 unreadable image\(s\) .* ids \[1, 2\]") as record:
        generator.on_epoch_end()
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generator.on_epoch_end()  # Keras may call it twice: still one warning per epoch
    generator.on_epoch_begin()
    generator.on_epoch_begin()  # second epoch: the known-bad files are replaced, not re-read
    assert generator.epoch == 1
    assert grey_levels(generator[0]) == [0, 3, 3, 3, 4]
    with pytest.warns(UserWarning, match=r"epoch 2: 2 unreadable image\(s\)"):
        assert generator.warn_skipped() == [1, 2]


def test_skipping_wraps_around_and_fails_clearly_when_nothing_is_readable(tmp_path):
    generator = DataGenerator(files_dataset(tmp_path, {4}), TinyConfig(IMAGES_PER_GPU=1, NUM_CLASSES=2),
                              shuffle=False, skip_bad_images=True, batches_per_epoch=5)
    assert grey_levels(generator[4]) == [0]  # the last image's replacement is the first
    all_broken = tmp_path / "all_broken"
    all_broken.mkdir()
    hopeless = DataGenerator(files_dataset(all_broken, set(range(5))),
                             TinyConfig(IMAGES_PER_GPU=1, NUM_CLASSES=2), skip_bad_images=True)
    with pytest.raises(ImageLoadError, match="none of the 5 images"):
        hopeless[0]


def test_nan_guard_names_epoch_step_and_images(tmp_path):
    dataset = files_dataset(tmp_path, set())
    generator = DataGenerator(dataset, TinyConfig(IMAGES_PER_GPU=2, NUM_CLASSES=2), seed=3)
    guard = NaNGuard(generator)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False  # as fit() sets it
    guard.set_model(model)
    guard.on_epoch_begin(0)
    guard.on_train_batch_end(0, {"loss": 1.0, "rpn_class_loss": 0.5})
    assert not guard.model.stop_training
    guard.on_epoch_begin(4)
    ids = [int(i) for i in generator.batch_image_ids(1)]
    with pytest.raises(NonFiniteLossError) as error:
        guard.on_train_batch_end(1, {"loss": 2.0, "mrcnn_mask_loss": float("inf")})
    message = str(error.value)
    assert "epoch 5, step 2" in message and "mrcnn_mask_loss=inf" in message
    assert f"ids {ids}" in message and f"image{ids[0]}.png" in message
    assert guard.model.stop_training


def test_tensorboard_images_every_other_epoch_with_the_given_detector(tmp_path):
    config = TinyConfig(IMAGES_PER_GPU=1)
    dataset = shapes(3, seed=0)
    calls = []

    class Detector:  # one box and mask per image, recording what it was asked
        def detect(self, images):
            calls.append(len(images))
            masks = np.zeros(images[0].shape[:2] + (1,), bool)
            masks[10:20, 10:20] = True
            return [{"rois": np.array([[10, 10, 20, 20]]), "masks": masks, "class_ids": np.array([1])}
                    for _ in images]

    callback = TensorBoardImages(dataset, config, str(tmp_path), every=2, max_images=1, detector=Detector())
    callback.on_epoch_end(0)
    assert not calls and not (tmp_path / "validation_images").exists()
    callback.on_epoch_end(1)
    callback.on_epoch_end(3)
    callback.on_train_end()
    assert calls == [1, 1]
    events = glob.glob(str(tmp_path / "validation_images" / "events.*"))
    steps = sorted(event.step for path in events for event in tf.compat.v1.train.summary_iterator(path)
                   if any(value.tag == "image_0" for value in event.summary.value))
    assert steps == [2, 4]
    with pytest.raises(ValueError, match="every and max_images must be >= 1"):
        TensorBoardImages(dataset, config, str(tmp_path), every=0, detector=Detector())
    with pytest.raises(TypeError, match="detector must have a detect"):
        TensorBoardImages(dataset, config, str(tmp_path), detector=object())


def test_writable_model_dir_is_created_and_left_clean(tmp_path):
    path = check_writable_model_dir(str(tmp_path / "a" / "b"))
    assert os.path.isdir(path) and os.listdir(path) == []


def test_model_dir_under_a_file_fails_early(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelDirError, match=r"a file, not a directory \(.*file\.txt/sub\)") as error:
        check_writable_model_dir(str(tmp_path / "file.txt" / "sub"))
    assert error.value.errno == errno.ENOTDIR


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "the disk is full"),
                                          (errno.EACCES, "permission denied"),
                                          (errno.EROFS, "the file system is read-only")],
                         ids=["disk_full", "permission_denied", "read_only"])
def test_failed_write_probe_is_explained(tmp_path, monkeypatch, code, reason):
    # Tests run as root, where chmod does not stop writes: simulate the OS's answer.
    def refuse(directory):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(checkpoint, "_write_probe", refuse)
    with pytest.raises(ModelDirError, match=f"model_dir cannot hold checkpoints: {reason}") as error:
        check_writable_model_dir(str(tmp_path))
    assert error.value.errno == code and str(tmp_path) in str(error.value)


def test_too_little_free_space_fails_early(tmp_path):
    with pytest.raises(ModelDirError, match="the disk is full; only .* bytes free"):
        check_writable_model_dir(str(tmp_path), min_free_bytes=2 ** 62)
    check_writable_model_dir(str(tmp_path), min_free_bytes=1)
