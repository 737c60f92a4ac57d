"""MaskRCNN: the matterport-style entry point around the Keras models."""

import copy
import datetime
import os
import re

import keras
import numpy as np

from mrcnn_tf.callbacks import CocoEvaluation
from mrcnn_tf.data.generator import DataGenerator
from mrcnn_tf.data.tfdata import to_tf_dataset
from mrcnn_tf.inference import InferencePipeline
from mrcnn_tf.modeling.backbone.keras_applications import is_keras_backbone
from mrcnn_tf.modeling.mask_rcnn import MODES, build_keras_model, build_submodels
from mrcnn_tf.tiling import detect_tiled
from mrcnn_tf.training.callbacks import GeneratorEpoch, NaNGuard, ValidationImages
from mrcnn_tf.training.optimizer import build_optimizer
from mrcnn_tf.training.schedules import build_schedule
# Checkpoint names stay importable from here (samples, cli and notebooks use them).
from mrcnn_tf.training.checkpoint import (CHECKPOINT_PATTERN, ResumeState, WeightsCheckpoint,  # noqa: F401
                                          check_writable_model_dir, checkpoint_epoch,
                                          latest_checkpoint, learning_rate_record, resume_optimizer)
from mrcnn_tf.weights import load_imagenet_backbone, load_weights_by_name, save_weights_by_name

# Which layers each training stage trains (the classic stage names). Both the
# ResNet names (res4a_branch2a, bn4a_...) and the small backbone's
# (small_stage4_...) are covered.
_HEADS = r"(mrcnn_.*)|(rpn_.*)|(fpn_.*)"
INPUT_PIPELINES = ("generator", "tf.data")  # train()'s input_pipeline
TRAINING_STAGES = {
    "heads": _HEADS,
    "3+": r"(res[3-5].*)|(bn[3-5].*)|(small_stage[3-5].*)|" + _HEADS,
    "4+": r"(res[4-5].*)|(bn[4-5].*)|(small_stage[4-5].*)|" + _HEADS,
    "5+": r"(res5.*)|(bn5.*)|(small_stage5.*)|" + _HEADS,
    "all": r".*",
}
# FREEZE_AT = k freezes the first k of these backbone parts (detectron2's stem, res2..res5),
# whatever the stage trains; ResNet (conv1, res2a_..., bn2a_...) and small-backbone names.
FROZEN_PARTS = (r"(conv1)|(bn_conv1)|(small_stem_.*)",
                r"(res2.*)|(bn2.*)|(small_stage2.*)", r"(res3.*)|(bn3.*)|(small_stage3.*)",
                r"(res4.*)|(bn4.*)|(small_stage4.*)", r"(res5.*)|(bn5.*)|(small_stage5.*)")
class MaskRCNN:
    """Mask R-CNN in one mode, with the classic workflow.

    ``MaskRCNN(mode="training", config=cfg, model_dir="logs")`` builds the
    Keras model (``.keras_model``); ``train()`` runs ``keras.Model.fit`` by
    stages; an inference-mode instance loads the checkpoint and ``detect()``s.
    Other attributes (``summary``, ``count_params``, ...) are the Keras
    model's.

    The weights live in four sub-models built once per instance
    (``backbone_fpn``, ``rpn_model``, ``box_head``, ``mask_head``; see
    :mod:`mrcnn_tf.modeling.mask_rcnn`); ``keras_model`` and ``inference_model``
    are graphs over these same objects, so they share every variable.
    """

    def __init__(self, mode, config, model_dir="logs"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        config.validate()
        self.mode = mode
        self.config = config
        self.model_dir = os.path.abspath(model_dir)
        self.epoch = 0
        self.log_dir = None
        self._saved_optimizer_state = None  # ResumeState of a loaded checkpoint, until train() uses it
        self._submodels = _build_with_policy(config, build_submodels, config)
        self.keras_model = _build_with_policy(config, build_keras_model, mode, config, self._submodels)
        self._inference_model = self.keras_model if mode == "inference" else None
        self._pipeline = None  # detect()'s InferencePipeline, traced on first use
        self._tile_pipeline = None  # detect_tiled()'s: box-relative masks, no pasting
        # A "keras:<Name>" backbone loaded its weights when built (Keras Applications' own file).
        if config.BACKBONE_WEIGHTS and not is_keras_backbone(config.BACKBONE):
            # The files expect caffe-style BGR input: conv1 is adapted to this config's normalisation.
            report = load_imagenet_backbone(self.keras_model, config.BACKBONE_WEIGHTS, config.BACKBONE,
                                            mean_pixel=config.MEAN_PIXEL, pixel_std=config.PIXEL_STD,
                                            channel_order=config.INPUT_CHANNEL_ORDER)
            print(f"backbone weights {config.BACKBONE_WEIGHTS}: {report}")

    def __getattr__(self, name):
        # Only reached for names MaskRCNN lacks: forward to the Keras model.
        if name == "keras_model":
            raise AttributeError(name)
        return getattr(self.keras_model, name)

    @property
    def inference_model(self):
        """The inference-graph Keras model over this instance's sub-models.

        ``keras_model`` itself in inference mode. In training mode an
        inference graph built on first use over the same sub-model objects:
        it shares their variables (training updates show in its outputs at
        once, nothing is copied). Inputs ``input_image``, ``input_image_meta``;
        outputs as in :func:`mrcnn_tf.modeling.mask_rcnn.build_inference_graph`.
        """
        if self._inference_model is None:
            self._inference_model = _build_with_policy(self.config, build_keras_model, "inference",
                                                       self.config, self._submodels)
        return self._inference_model

    def find_layer(self, name):
        """The layer named ``name`` in ``keras_model``, nested sub-models searched too.

        Top-level layers first, then each sub-model's (``fpn_p2`` is in
        ``backbone_fpn``, ``mrcnn_mask`` in ``mask_head``); sub-models
        themselves (``rpn_model``) are found too.
        Raises:
            ValueError naming ``name`` if no layer has it.
        """
        pending = [self.keras_model]
        while pending:
            children = []
            for model in pending:
                for layer in model.layers:
                    if layer.name == name:
                        return layer
                    if isinstance(layer, keras.Model):
                        children.append(layer)
            pending = children
        raise ValueError(f"no layer named {name!r} in the {self.mode} model or its sub-models")

    # ----------------------------------------------------------------- weights
    def find_last(self):
        """Path of the newest checkpoint in the newest run directory of ``model_dir``.

        Unreadable (truncated, damaged) checkpoints are skipped with a warning.
        Raises FileNotFoundError naming ``model_dir`` when there is none.
        """
        return latest_checkpoint(self.model_dir, self.config.NAME)

    def load_weights(self, filepath, by_name=True, exclude=None):
        """Load weights saved by this package or a classic Keras ``.h5`` file.

        Prints a one-line summary (loaded / skipped / shape-mismatched / not
        in file). A checkpoint of this package (``mask_rcnn_<name>_<epoch>.h5``)
        also sets the epoch counter and run directory, so ``train()``
        continues the run, with its optimizer state when it continues the
        same stage (see :mod:`mrcnn_tf.training.checkpoint`).

        Args:
            filepath: an ``.h5`` in the classic by-name layout (what our
                checkpoints and matterport's ``mask_rcnn_coco.h5`` use), or a
                Keras 3 ``.weights.h5`` (then by structure: same mode only).
            by_name: match layers by name (needed across modes).
            exclude: layer names/regexes not to load (new class count), e.g.
                ``["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]``.
        Returns:
            LoadReport (by name) or None.
        """
        if filepath.endswith(".weights.h5") and not by_name:
            self.keras_model.load_weights(filepath)
            return None
        report = load_weights_by_name(self.keras_model, filepath, exclude=exclude)
        epoch = checkpoint_epoch(filepath)
        if epoch is not None:  # continue epoch numbering, the run directory and the optimizer
            self.epoch = epoch
            self.log_dir = os.path.dirname(os.path.abspath(filepath))
            self._saved_optimizer_state = ResumeState.read(filepath) if not exclude else None
        print(f"{os.path.basename(filepath)}: {report}")
        return report

    def save_weights(self, filepath):
        """Save weights by layer name (classic HDF5 layout), atomically."""
        save_weights_by_name(self.keras_model, filepath)

    # ---------------------------------------------------------------- training
    def set_log_dir(self):
        """Create the run directory ``model_dir/<name><timestamp>/`` (once per run)."""
        if self.log_dir is None:
            stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
            self.log_dir = os.path.join(self.model_dir, f"{self.config.NAME.lower()}{stamp}")
        # Fail now, not after an epoch of training, if checkpoints cannot be written.
        check_writable_model_dir(self.log_dir)
        return self.log_dir

    def set_trainable(self, layer_regex):
        """Train layers whose names match ``layer_regex`` in full; freeze the rest.

        BatchNorm layers stay frozen (inference mode) unless ``TRAIN_BN``; the
        first ``FREEZE_AT`` backbone parts (stem, res2, ...) stay frozen.
        """
        pattern = re.compile(TRAINING_STAGES.get(layer_regex, layer_regex))
        frozen = re.compile("|".join(FROZEN_PARTS[:self.config.FREEZE_AT]) or r"(?!)")
        for layer in _all_layers(self.keras_model):
            if not layer.weights:
                continue
            trainable = bool(pattern.fullmatch(layer.name)) and not frozen.fullmatch(layer.name)
            if isinstance(layer, keras.layers.BatchNormalization) and not self.config.TRAIN_BN:
                trainable = False
            layer.trainable = trainable

    def compile(self, learning_rate, momentum, total_iterations=None):
        """Compile with SGD + momentum, weight decay (kernels only, WEIGHT_DECAY_MODE), clipping.

        Args:
            learning_rate: float (the config's LR_SCHEDULE, WARMUP_ITERS, LR_STEPS
                make it a schedule: :func:`mrcnn_tf.training.schedules.build_schedule`)
                or a ``keras.optimizers.schedules.LearningRateSchedule``, used as is.
            momentum: SGD momentum.
            total_iterations: iterations of the training call ("cosine" needs it).
        """
        config = self.config
        if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            learning_rate = build_schedule(config, learning_rate, total_iterations)
        optimizer = build_optimizer(learning_rate, momentum, config.WEIGHT_DECAY,
                                    config.WEIGHT_DECAY_MODE, config.GRADIENT_CLIP_NORM)
        # XLA cannot compile CropAndResize or NMS, so the train step as a whole
        # stays un-jitted ("auto" would try and fail).
        self.keras_model.compile(optimizer=optimizer, jit_compile=False)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, verbose=1, seed=None, log_images=2,
              skip_bad_images=False, resume=False, input_pipeline="generator", **fit_kwargs):
        """Train the chosen layers with ``keras.Model.fit`` up to epoch ``epochs``.

        Args:
            train_dataset, val_dataset: prepared Datasets (val may be None).
            learning_rate: SGD learning rate (the peak of the config's schedule:
                LR_SCHEDULE, WARMUP_ITERS, LR_STEPS over this call's
                iterations), or a ``LearningRateSchedule`` of the optimizer's
                iteration count. Checkpoints keep the count, so a resumed
                call continues on the same rate.
            epochs: the epoch number to stop at (counted across calls, so
                stages chain: heads to 20, then "all" to 40).
            layers: "heads", "3+", "4+", "5+", "all" or a regex of layer names.
            augmentation: callable ``(image, masks, rng) -> (image, masks)``.
            custom_callbacks: extra Keras callbacks.
            seed: reproducible data order and augmentation.
            log_images: validation images drawn with their predictions into
                TensorBoard each epoch (0: none).
            skip_bad_images: replace undecodable image files instead of stopping.
            resume: continue from :meth:`find_last` if no checkpoint was
                loaded yet and one exists (else start fresh); same as
                ``load_weights(find_last())`` before the call.
            input_pipeline: "generator" (``DataGenerator``, a Keras
                PyDataset, in the training loop's thread) or "tf.data"
                (``to_tf_dataset``: images read and molded in parallel
                ``tf.data`` threads, prefetched). Same batches for the same seed.
        Returns:
            the Keras ``History``.
        """
        if self.mode != "training":
            raise ValueError("train() needs a model built with mode='training'")
        config = self.config
        if resume and self.log_dir is None:
            try:
                self.load_weights(self.find_last())
            except FileNotFoundError:
                print(f"resume: no checkpoint of {config.NAME!r} under {self.model_dir}, starting fresh")
        if input_pipeline not in INPUT_PIPELINES:
            raise ValueError(f"input_pipeline must be one of {INPUT_PIPELINES}, got {input_pipeline!r}")
        make_input = DataGenerator if input_pipeline == "generator" else to_tf_dataset
        train_input = make_input(train_dataset, config, shuffle=True, augmentation=augmentation,
                                 seed=seed, batches_per_epoch=config.STEPS_PER_EPOCH,
                                 skip_bad_images=skip_bad_images)
        # The DataGenerator that orders the batches (a tf.data input's schedule).
        train_generator = getattr(train_input, "schedule", train_input)
        val_generator = None
        if val_dataset is not None:
            val_generator = make_input(val_dataset, config, shuffle=True, seed=seed,
                                       batches_per_epoch=config.VALIDATION_STEPS)
        log_dir = self.set_log_dir()
        config.to_json(os.path.join(log_dir, "config.json"))
        checkpoint = os.path.join(log_dir, f"mask_rcnn_{config.NAME.lower()}_{{epoch:04d}}.h5")
        start_epoch = _stage_start_epoch(self._saved_optimizer_state, self.epoch, layers, epochs)
        record = {"layers": layers, "end_epoch": int(epochs), "start_epoch": start_epoch,
                  "learning_rate": learning_rate_record(learning_rate)}
        callbacks = [GeneratorEpoch(train_generator), NaNGuard(train_generator),
                     WeightsCheckpoint(checkpoint, training=record),
                     keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False)]
        if val_dataset is not None and log_images:
            callbacks.append(ValidationImages(val_dataset, config, log_dir, max_images=log_images,
                                              detector=self))
        for callback in custom_callbacks or []:
            if isinstance(callback, CocoEvaluation) and callback.detector is None:
                callback.detector = self  # scores the weights being trained
        callbacks.extend(custom_callbacks or [])

        self.set_trainable(layers)
        # Schedules count the iterations of this call (the optimizer's, which checkpoints keep).
        self.compile(learning_rate, config.LEARNING_MOMENTUM,
                     total_iterations=max(1, (int(epochs) - start_epoch) * config.STEPS_PER_EPOCH))
        if self._saved_optimizer_state is not None and epochs > self.epoch:
            # Resume exactly: momentum, iteration count and learning rate as they were at the
            # checkpoint, if this call continues its stage. A call with nothing to train (an
            # earlier stage of a rerun script) leaves the state for the call that trains.
            state, self._saved_optimizer_state = self._saved_optimizer_state, None
            _, message = resume_optimizer(self.keras_model.optimizer,
                                          self.keras_model.trainable_variables, state,
                                          layers=layers, learning_rate=learning_rate)
            print(message)
        history = self.keras_model.fit(
            train_input, initial_epoch=self.epoch, epochs=epochs,
            validation_data=val_generator, callbacks=callbacks, verbose=verbose,
            # The generator shuffles itself, seeded per epoch; Keras's own batch shuffle
            # draws from Python's global RNG and would make resumed runs diverge.
            shuffle=False, **fit_kwargs)
        self.epoch = max(self.epoch, epochs)
        return history

    # --------------------------------------------------------------- inference
    def detector(self, **config_overrides):
        """A :class:`Detector` on this model's variables with other Config values.

        An inference graph over the same sub-models (no weights copied;
        training updates show at once), built with a copy of ``config``
        changed by ``config_overrides``, e.g. COCO evaluation's
        ``DETECTION_MIN_CONFIDENCE=0.05, DETECTION_NMS_THRESHOLD=0.5``.
        One per distinct set of overrides, kept for reuse.
        Raises:
            ValueError naming an unknown or invalid attribute.
        """
        key = tuple(sorted(config_overrides.items()))
        cache = self.__dict__.setdefault("_detectors", {})
        if key not in cache:
            config = copy.copy(self.config)
            for name, value in config_overrides.items():
                setattr(config, name, value)
            config.validate()
            cache[key] = Detector(config, _build_with_policy(config, build_keras_model, "inference",
                                                             config, self._submodels))
        return cache[key]

    def detect(self, images, verbose=0):
        """Detect instances in a list of images (any sizes), with the current weights.

        Runs the inference pipeline (``mrcnn_tf.inference``): the same
        traced graph the SavedModel serves, on ``inference_model`` (in
        training mode too: it shares this model's variables).

        Args:
            images: list of grey [H, W] / [H, W, 1], RGB [H, W, 3] or RGBA
                arrays, uint8, uint16 or float, converted as
                ``Dataset.load_image`` converts pixels.
            verbose: 1 prints the batch shapes.
        Returns:
            one dict per image: ``boxes`` float32 [N, (y1, x1, y2, x2)] and
            ``rois`` int32 [N, 4] (rounded) in the image's pixels,
            ``class_ids`` int32 [N], ``scores`` float32 [N], ``masks`` bool
            [H, W, N] at the image's size.
        Raises:
            ValueError / TypeError naming the image (``"image 2"``) for
            unusable pixels: NaN, wrong rank, 2 or 5 channels, empty.
        """
        if len(images) == 0:
            return []
        if self._pipeline is None:
            self._pipeline = InferencePipeline(self.inference_model, self.config)
        if verbose:
            print(f"Processing {len(images)} images: "
                  f"{[tuple(np.shape(image)) for image in images]}")
        return self._pipeline.detect(images, self.config.BATCH_SIZE)

    def detect_tiled(self, image, tile_size=1024, overlap=0.2, batch_size=None, mask_format="bool"):
        """Detect in one image of any size by overlapping tiles (:mod:`mrcnn_tf.tiling`).

        Objects cut by a tile border come out whole: their detections in
        neighbouring tiles are merged (boxes and masks united), then NMS on
        the boxes over the whole image removes duplicates. A detection
        touching an inner tile edge that a better one (any class) covers
        over >= 60% of its box area is a cut view of it and is dropped
        (``tiling.CUT_COVER_THRESHOLD``).

        Args:
            image: as one of :meth:`detect`'s images, any size.
            tile_size: tile side in pixels; overlap: fraction of a tile
                shared with each neighbour, in [0, 1).
            batch_size: tiles per call of the traced graph (default BATCH_SIZE).
            mask_format: "bool" (``masks`` bool [H, W, N]) or "rle" (a list
                of N COCO RLEs: no full-size dense mask is ever built).
        Returns:
            the :meth:`detect` dict at the full size, plus ``image_size``.
        """
        if self._tile_pipeline is None:
            self._tile_pipeline = InferencePipeline(self.inference_model, self.config,
                                                    include_box_masks=True, include_masks=False)
        return detect_tiled(self._tile_pipeline, self.config, image, tile_size, overlap, batch_size,
                            mask_format)


class Detector:
    """``detect()`` of a MaskRCNN's weights under other detection settings (see ``MaskRCNN.detector``).

    Attributes: ``config`` (the copy with the overrides), ``inference_model``.
    """

    def __init__(self, config, inference_model):
        self.config = config
        self.inference_model = inference_model
        self._pipeline = InferencePipeline(inference_model, config)

    def detect(self, images, verbose=0):
        """As ``MaskRCNN.detect``."""
        del verbose
        return self._pipeline.detect(images, self.config.BATCH_SIZE) if len(images) else []


def _stage_start_epoch(state, epoch, layers, end_epoch):
    """The epoch the training call began at: the checkpoint's record when a resumed call
    continues its stage (same layers and end, not ended), else ``epoch`` (a fresh call)."""
    record = state.training if state is not None else {}
    if (record.get("layers") == layers and record.get("end_epoch") == int(end_epoch)
            and state.epoch < int(end_epoch) and "start_epoch" in record):
        return int(record["start_epoch"])
    return int(epoch)


def _build_with_policy(config, build, *args):
    """``build(*args)`` under the configured mixed-precision policy, then restore the global one.

    Layers read the policy when constructed (the sub-models' and the graphs'
    alike); the custom layers compute boxes in float32 and the heads' outputs
    are float32, so losses stay float32.
    """
    previous = keras.mixed_precision.dtype_policy()
    if config.MIXED_PRECISION:
        keras.mixed_precision.set_dtype_policy(config.MIXED_PRECISION)
    try:
        return build(*args)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def _all_layers(model):
    """Layers of ``model``, nested models (backbone_fpn, rpn_model, heads) opened up."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer
