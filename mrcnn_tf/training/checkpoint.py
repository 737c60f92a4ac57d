"""Checkpoints of a training run: where they are written, which is the latest, how a run resumes.

A run writes ``model_dir/<name><timestamp>/mask_rcnn_<name>_<epoch:04d>.h5``
after every epoch: the weights by layer name (classic layout), the
optimizer's variables (iteration count, momentum slots, learning rate) and
a small record of the training call (epoch, the stage's layers, its last
epoch, its learning rate), all in one file written atomically
(:func:`mrcnn_tf.weights.save_weights_by_name`), so weights and optimizer
state cannot be out of step and a killed write never leaves a file under a
checkpoint name.

Resuming exactly means: the epoch counter continues from the file name, the
data order continues from that epoch (``DataGenerator.set_epoch``), and the
optimizer continues where it was, but only when the resumed ``train()`` call
continues the same stage: an uninterrupted run starts every ``train()`` call
with a fresh optimizer, so a checkpoint that ends a stage, or one of another
stage, resumes with a fresh optimizer too.
"""

import errno
import os
import shutil
import tempfile
import re
import warnings
from dataclasses import dataclass

import h5py
import keras

from mrcnn_tf.weights import (read_optimizer_state, read_trainable_names, read_training_info,
                              restore_optimizer_state, save_weights_by_name)


CHECKPOINT_PATTERN = re.compile(r"mask_rcnn_.*_(\d{4})\.h5$")


def checkpoint_epoch(path):
    """The epoch a checkpoint file name ends with, or None if it is not a checkpoint name."""
    match = CHECKPOINT_PATTERN.search(os.path.basename(path))
    return int(match.group(1)) if match else None


def unreadable_reason(path):
    """Why ``path`` is not a complete by-name weights file, or None if it is one."""
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                return "no 'layer_names' attribute"
            for raw_name in root.attrs["layer_names"]:  # every layer group is present
                name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
                if name not in root:
                    return f"layer group {name!r} missing"
    except (OSError, ValueError, KeyError) as error:  # truncated, not HDF5, damaged
        return f"{type(error).__name__}: {error}"
    return None


def latest_checkpoint(model_dir, name=None):
    """Newest readable checkpoint of the newest run ``model_dir/<name><timestamp>/``.

    Temporary files of an interrupted write never match the checkpoint name;
    a checkpoint that cannot be read as a weights file (truncated or damaged
    after it was written) is skipped with a warning naming it, and the one
    before it is returned.

    Args:
        model_dir: directory holding training runs.
        name: the config NAME the runs start with; None accepts any run.
    Raises:
        FileNotFoundError naming ``model_dir`` when there is no checkpoint.
    """
    prefix = (name or "").lower()
    runs = sorted(d for d in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
                  if d.startswith(prefix) and os.path.isdir(os.path.join(model_dir, d)))
    # Timestamps sort runs of one name; across names, the newest directory wins.
    runs.sort(key=lambda d: os.path.getmtime(os.path.join(model_dir, d)))
    for run in reversed(runs):
        run_dir = os.path.join(model_dir, run)
        checkpoints = sorted(f for f in os.listdir(run_dir) if CHECKPOINT_PATTERN.search(f))
        for checkpoint in reversed(checkpoints):
            path = os.path.join(run_dir, checkpoint)
            reason = unreadable_reason(path)
            if reason is None:
                return path
            warnings.warn(f"skipping unreadable checkpoint {path} ({reason})", stacklevel=2)
    raise FileNotFoundError(f"no checkpoint{' of ' + repr(prefix) if prefix else ''} found under "
                            f"{os.path.abspath(model_dir)}")


class WeightsCheckpoint(keras.callbacks.Callback):
    """Saves weights by layer name and the optimizer state after every epoch, atomically.

    Args:
        path_template: checkpoint path with an ``{epoch}`` field (1-based).
        training: what ``train()`` was asked to do (``layers``, ``end_epoch``,
            ``learning_rate``), recorded with each checkpoint so a resumed run
            knows whether it continues the same stage.
    """

    def __init__(self, path_template, training=None):
        super().__init__()
        self.path_template = path_template
        self.training = dict(training or {})

    def on_epoch_end(self, epoch, logs=None):
        save_weights_by_name(self.model, self.path_template.format(epoch=epoch + 1),
                             optimizer=self.model.optimizer,
                             training={**self.training, "epoch": epoch + 1})


@dataclass
class ResumeState:
    """What a checkpoint holds for resuming: optimizer variables and the training record."""

    epoch: int
    optimizer_variables: list  # [(path, array)] or None
    training: dict  # {} for checkpoints written without a record
    trainable_names: list = None  # ['<layer>/<variable>'] the optimizer trained, if recorded

    @classmethod
    def read(cls, path):
        return cls(checkpoint_epoch(path) or 0, read_optimizer_state(path),
                   read_training_info(path) or {}, read_trainable_names(path))


def learning_rate_record(learning_rate):
    """A number for the record, or None for a schedule (its state is the iteration count)."""
    return float(learning_rate) if isinstance(learning_rate, (int, float)) else None


def resume_optimizer(optimizer, trainable_variables, state, layers, learning_rate):
    """Restore a checkpoint's optimizer state if the training call continues its stage.

    Args:
        optimizer: the freshly compiled optimizer (built here if needed).
        trainable_variables: the model's trainable variables, in order.
        state: ResumeState of the checkpoint.
        layers: the ``layers`` argument of the resumed ``train()``.
        learning_rate: its ``learning_rate`` argument. If it differs from the
            recorded one, the new value is kept and only momentum and the
            iteration count are restored; if equal, the saved learning rate
            (changed by callbacks, if any) is restored as well.
    Returns:
        (restored: bool, message: str) — the message says what was done and why.
    """
    if state.optimizer_variables is None:
        return False, "optimizer state not restored: the checkpoint has none"
    record = state.training
    end_epoch = record.get("end_epoch")
    if end_epoch is not None and state.epoch >= end_epoch:
        return False, (f"optimizer state not restored: epoch {state.epoch} ended its stage, and "
                       f"every stage starts with a fresh optimizer")
    if "layers" in record and record["layers"] != layers:
        return False, (f"optimizer state not restored: the checkpoint trained layers "
                       f"{record['layers']!r}, not {layers!r}")
    new_rate = learning_rate_record(learning_rate)
    keep_rate = "learning_rate" in record and new_rate != record["learning_rate"]
    if not restore_optimizer_state(optimizer, trainable_variables, state.optimizer_variables,
                                   keep_learning_rate=keep_rate,
                                   trainable_names=state.trainable_names):
        return False, ("optimizer state not restored: the checkpoint's optimizer variables "
                       "belong to other trainable weights")
    message = f"optimizer state restored (iteration {int(optimizer.iterations.numpy())})"
    if keep_rate:
        message += f"; learning rate {new_rate} replaces the checkpoint's {record['learning_rate']}"
    return True, message


# ------------------------------------------------------- model_dir probe
# What a failed write probe means to a user, by errno.
_WRITE_FAILURES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a component of the path is a file, not a directory",
    errno.EEXIST: "the path exists and is not a directory",
}


PROBE_BYTES = 4096


class ModelDirError(OSError):
    """model_dir cannot hold checkpoints; ``errno`` is the failed write's."""


def _write_probe(directory):
    """Write, sync and delete a small file in ``directory`` (OSError if impossible)."""
    fd, probe = tempfile.mkstemp(prefix=".write_test_", dir=directory)
    try:
        os.write(fd, b"\0" * PROBE_BYTES)
        os.fsync(fd)  # a full disk may only refuse the data here
    finally:
        os.close(fd)
        os.remove(probe)


def check_writable_model_dir(path, min_free_bytes=0):
    """Create ``path`` if needed and prove a checkpoint could be written there, before training.

    Args:
        path: the model_dir or run directory.
        min_free_bytes: also require this much free space (e.g. a few times
            the weights' size: a checkpoint holds weights and optimizer state).
    Returns:
        the absolute path.
    Raises:
        ModelDirError (an OSError, errno kept) whose message names the path
        and the reason: disk full, permission denied, read-only file system,
        a path component that is a file, ...
    """
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        _write_probe(path)
        free = shutil.disk_usage(path).free
        if free < min_free_bytes:
            raise OSError(errno.ENOSPC, f"only {free} bytes free, {min_free_bytes} needed")
    except OSError as error:
        reason = _WRITE_FAILURES.get(error.errno, error.strerror or str(error))
        standard = os.strerror(error.errno) if error.errno else None
        detail = f"; {error.strerror}" if error.strerror not in (None, reason, standard) else ""
        raise ModelDirError(error.errno, f"model_dir cannot hold checkpoints: {reason}{detail} "
                                         f"({path}). Choose another model_dir or free space "
                                         f"before training.") from error
    return path
