"""CocoEvaluation writes COCO AP into the epoch logs: ModelCheckpoint(monitor="val_segm_AP")
keeps the best epoch by it; under a strategy one worker evaluates."""

import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.callbacks import CocoEvaluation, is_chief
from mrcnn_tf.data import extract_bboxes
from test_model import shapes


class ScriptedDetector:
    """Perfect, empty or half-right detections, by the epoch the test sets (no model: the
    callback's logic and the checkpoint's choice are what is tested)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.quality = "perfect"
        self.calls = 0
        self._next = 0

    def detect(self, images):
        self.calls += 1
        image_id = self.dataset.image_ids[self._next % len(self.dataset.image_ids)]
        self._next += 1
        masks, class_ids = self.dataset.load_mask(image_id)
        keep = slice(None) if self.quality == "perfect" else slice(0, 0 if self.quality == "none" else 1)
        masks, class_ids = masks[:, :, keep], class_ids[keep]
        boxes = extract_bboxes(masks).astype(np.float32)
        return [{"boxes": boxes, "rois": boxes.astype(np.int32), "class_ids": class_ids,
                 "scores": np.ones(len(class_ids), np.float32), "masks": masks}]


class Schedule(keras.callbacks.Callback):
    def __init__(self, detector, qualities):
        super().__init__()
        self.detector, self.qualities = detector, qualities

    def on_epoch_begin(self, epoch, logs=None):
        self.detector.quality = self.qualities[epoch]
        self.detector._next = 0


@pytest.fixture(scope="module")
def dataset():
    return shapes(3, seed=5, min_instances=2, max_instances=3)


def fit(callbacks, epochs, strategy=None):
    with (strategy or tf.distribute.get_strategy()).scope():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    x = np.ones([4, 2], np.float32)
    return model.fit(x, x[:, :1], epochs=epochs, verbose=0, callbacks=callbacks)


def test_model_checkpoint_keeps_the_best_val_segm_ap(dataset, tmp_path):
    detector = ScriptedDetector(dataset)
    evaluation = CocoEvaluation(dataset, every_n_epochs=1, detector=detector)
    path = str(tmp_path / "best_{epoch}.weights.h5")
    checkpoint = keras.callbacks.ModelCheckpoint(path, monitor="val_segm_AP", mode="max",
                                                 save_best_only=True, save_weights_only=True)
    history = fit([Schedule(detector, ["none", "perfect", "half"]), evaluation, checkpoint], 3)
    aps = history.history["val_segm_AP"]
    assert aps[0] == 0.0 and aps[1] == pytest.approx(1.0) and 0.0 < aps[2] < 1.0
    assert history.history["val_bbox_AP50"][1] == pytest.approx(1.0)
    # Epoch 1 beats -inf, epoch 2 beats it, epoch 3 is worse: no file for it.
    assert sorted(os.listdir(tmp_path)) == ["best_1.weights.h5", "best_2.weights.h5"]


def test_every_n_epochs_max_images_and_one_worker(dataset):
    detector = ScriptedDetector(dataset)
    evaluation = CocoEvaluation(dataset, every_n_epochs=2, max_images=2, detector=detector)
    history = fit([evaluation], 4, strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert sorted(evaluation.history) == [2, 4] and detector.calls == 4  # 2 images, twice
    assert "val_segm_AP" not in history.history or len(history.history["val_segm_AP"]) == 2
    cluster = {"worker": ["a:1", "b:2"]}
    strategy = lambda task_type, task_id, spec: types.SimpleNamespace(  # noqa: E731
        extended=types.SimpleNamespace(_in_multi_worker_mode=lambda: True),
        cluster_resolver=types.SimpleNamespace(
            task_type=task_type, task_id=task_id,
            cluster_spec=lambda: types.SimpleNamespace(as_dict=lambda: spec)))
    assert is_chief(strategy("worker", 0, cluster)) and not is_chief(strategy("worker", 1, cluster))
    with_chief = {**cluster, "chief": ["c:3"]}
    assert is_chief(strategy("chief", 0, with_chief)) and not is_chief(strategy("worker", 0, with_chief))
    with pytest.raises(ValueError, match="every_n_epochs"):
        CocoEvaluation(dataset, every_n_epochs=0)
