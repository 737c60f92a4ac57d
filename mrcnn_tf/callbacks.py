"""Keras callbacks for training Mask R-CNN: COCO AP of the validation set in the epoch logs,
and the training safety nets of :mod:`mrcnn_tf.training.callbacks` (re-exported).

    model.train(train, val, 0.02, 12, "all", custom_callbacks=[
        CocoEvaluation(val, every_n_epochs=1),
        keras.callbacks.ModelCheckpoint("best.weights.h5", monitor="val_segm_AP", mode="max",
                                        save_best_only=True, save_weights_only=True)])

Order matters: a callback that reads ``val_segm_AP`` must come after the
``CocoEvaluation`` that writes it (Keras calls them in list order with one
``logs`` dict).
"""

import keras

from mrcnn_tf.evaluate import coco_evaluate, protocol_detector
from mrcnn_tf.training.callbacks import (GeneratorEpoch, NaNGuard, NonFiniteLossError,  # noqa: F401
                                         TensorBoardImages, ValidationImages)

__all__ = ["COCO_LOG_METRICS", "CocoEvaluation", "GeneratorEpoch", "NaNGuard", "NonFiniteLossError",
           "TensorBoardImages", "ValidationImages", "is_chief"]

# What CocoEvaluation writes into the epoch logs: log name -> (iou_type, COCO metric).
COCO_LOG_METRICS = {"val_bbox_AP": ("bbox", "AP"), "val_bbox_AP50": ("bbox", "AP50"),
                    "val_segm_AP": ("segm", "AP"), "val_segm_AP50": ("segm", "AP50")}


def is_chief(strategy):
    """Whether this process is the one worker that evaluates under ``strategy``.

    Single-process strategies (default, Mirrored, OneDevice) and worker 0 (or the
    ``chief`` task) of a multi-worker cluster: True; other workers: False.
    """
    extended = getattr(strategy, "extended", None)
    multi_worker = getattr(extended, "_in_multi_worker_mode", lambda: False)()
    resolver = getattr(strategy, "cluster_resolver", None)
    if not multi_worker or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and not has_chief)


class CocoEvaluation(keras.callbacks.Callback):
    """Scores the validation set with :func:`mrcnn_tf.evaluate.coco_evaluate` every n epochs.

    Writes ``val_bbox_AP``, ``val_bbox_AP50``, ``val_segm_AP`` and
    ``val_segm_AP50`` (COCO AP@[.5:.95] and AP@.5, floats) into the epoch
    logs, so ``ModelCheckpoint(monitor="val_segm_AP", mode="max")``,
    ``EarlyStopping`` and TensorBoard see them. Detection uses the COCO
    protocol's thresholds (0.05, NMS 0.5, 100 per image), whatever the
    model's display setting. Under a tf.distribute strategy it evaluates
    once, on one worker (:func:`is_chief`); the other workers log nothing.

    Args:
        dataset: a prepared Dataset (the validation images and their GT).
        every_n_epochs: evaluate at epochs n, 2n, ... (1-based).
        max_images: score only the first this many images (None: all).
        detector: the MaskRCNN being trained (anything with ``detect()``);
            ``MaskRCNN.train`` sets it when left None.
    """

    def __init__(self, dataset, every_n_epochs=1, max_images=None, detector=None):
        super().__init__()
        if not isinstance(every_n_epochs, int) or isinstance(every_n_epochs, bool) or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be an int >= 1, got {every_n_epochs!r}")
        if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
            raise ValueError(f"max_images must be None or an int >= 1, got {max_images!r}")
        if len(dataset.image_ids) == 0:
            raise ValueError("CocoEvaluation: the dataset has no images (did you call prepare()?)")
        self.dataset = dataset
        self.every_n_epochs = every_n_epochs
        self.max_images = max_images
        self.detector = detector
        self.history = {}  # epoch (1-based) -> coco_evaluate's metrics

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        if self.detector is None:
            raise ValueError("CocoEvaluation needs detector= (the MaskRCNN) outside MaskRCNN.train")
        strategy = getattr(self.model, "distribute_strategy", None) if self.model is not None else None
        if strategy is not None and not is_chief(strategy):
            return
        metrics = coco_evaluate(protocol_detector(self.detector), self.dataset,
                                limit=self.max_images, verbose=False)
        self.history[epoch + 1] = metrics
        if logs is not None:
            for name, (iou_type, metric) in COCO_LOG_METRICS.items():
                logs[name] = metrics[iou_type][metric]
