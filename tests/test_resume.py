"""A run killed after epoch 2 and resumed ends where an uninterrupted run ends; find_last()
returns only complete checkpoints; the optimizer state resumes only within its stage."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pytest

from mrcnn_tf import MaskRCNN
from mrcnn_tf.training.checkpoint import ResumeState, latest_checkpoint, resume_optimizer
from mrcnn_tf.weights import load_weights_by_name, save_weights_by_name
from test_model import TinyConfig, shapes

TESTS = os.path.dirname(os.path.abspath(__file__))

# Taking every candidate RoI (all positives fit, negatives fill the rest) makes the
# sampled set independent of random draws, so two runs can be compared exactly.
SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    import keras, tensorflow as tf
    from mrcnn_tf import MaskRCNN
    from test_model import TinyConfig, shapes

    model_dir, epochs, kill_after, resume = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    keras.utils.set_random_seed(0)
    # A schedule over the 12 iterations: warmup to 4, x0.1 at 8 (after the resume at 6), with
    # PyTorch's L2 decay: the resumed run must land on the same rates at the same iterations.
    config = TinyConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=3, POST_NMS_ROIS_TRAINING=16,
                        TRAIN_ROIS_PER_IMAGE=24, ROI_POSITIVE_RATIO=1.0, LEARNING_RATE=0.02,
                        RPN_TRAIN_ANCHORS_PER_IMAGE=2048,  # > the 1023 anchors: every label taken
                        WARMUP_ITERS=4, LR_STEPS=(8,), WEIGHT_DECAY_MODE="l2")
    model = MaskRCNN("training", config, model_dir)
    if resume == "weights-only":  # the control: weights and epoch, no optimizer state
        model.load_weights(model.find_last())
        model._saved_optimizer_state = None

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == kill_after:
                os._exit(3)  # as abrupt as a killed process: no cleanup, no flush

    model.train(shapes(3, seed=1), None, config.LEARNING_RATE, epochs, "all", verbose=0, seed=0,
                custom_callbacks=[Kill()], resume=resume == "checkpoint")
""").format(tests=TESTS)


def run(model_dir, epochs, kill_after=0, resume="fresh"):
    return subprocess.run([sys.executable, "-c", SCRIPT, str(model_dir), str(epochs), str(kill_after), resume],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_DETERMINISTIC_OPS": "1"})


def checkpoints(model_dir):
    (run_dir,) = [os.path.join(model_dir, d) for d in os.listdir(model_dir)]
    return run_dir, sorted(f for f in os.listdir(run_dir) if f.endswith(".h5"))


def weights(path):
    values = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, item: values.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return values


def max_difference(a, b):
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k] - b[k]))) if a[k].size else 0.0 for k in a)


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    straight = run(tmp_path / "straight", epochs=4)
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed = run(tmp_path / "resumed", epochs=4, kill_after=2)
    assert killed.returncode == 3, killed.stderr[-2000:]
    run_dir, files = checkpoints(tmp_path / "resumed")
    assert [f[-7:] for f in files] == ["0001.h5", "0002.h5"]
    assert not [f for f in os.listdir(run_dir) if f.endswith(".tmp")]

    # A copy of the run, to resume once more without the optimizer state (the control).
    control_dir = tmp_path / "control"
    subprocess.run(["cp", "-r", str(tmp_path / "resumed"), str(control_dir)], check=True)

    resumed = run(tmp_path / "resumed", epochs=4, resume="checkpoint")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "optimizer state restored (iteration 6)" in resumed.stdout  # 2 epochs x 3 steps
    _, files = checkpoints(tmp_path / "resumed")
    assert [f[-7:] for f in files] == ["0001.h5", "0002.h5", "0003.h5", "0004.h5"]  # no lost epoch

    _, straight_files = checkpoints(tmp_path / "straight")
    final_straight = weights(os.path.join(checkpoints(tmp_path / "straight")[0], straight_files[-1]))
    final_resumed = weights(os.path.join(checkpoints(tmp_path / "resumed")[0], files[-1]))
    # Same iteration count, same momentum, same weights.
    assert final_resumed["optimizer_state/0"] == final_straight["optimizer_state/0"] == 12
    record = ResumeState.read(os.path.join(checkpoints(tmp_path / "resumed")[0], files[-1])).training
    assert record["start_epoch"] == 0 and record["end_epoch"] == 4  # the schedule's origin kept
    difference = max_difference(final_resumed, final_straight)

    weights_only = run(control_dir, epochs=4, resume="weights-only")
    assert weights_only.returncode == 0, weights_only.stderr[-2000:]
    control = weights(os.path.join(checkpoints(control_dir)[0], checkpoints(control_dir)[1][-1]))
    control_difference = max_difference({k: v for k, v in control.items() if "optimizer" not in k},
                                        {k: v for k, v in final_straight.items() if "optimizer" not in k})
    print(f"max |resumed - uninterrupted| = {difference:.3g}, "
          f"max |weights-only resume - uninterrupted| = {control_difference:.3g}")
    assert difference < 1e-5, difference
    assert control_difference > 10 * max(difference, 1e-6), (difference, control_difference)


def tiny_keras_model(seed=0, first="dense_a"):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name=first),
                             keras.layers.Dense(2, name="dense_b")])


def test_find_last_skips_partial_and_damaged_checkpoints(tmp_path):
    run_dir = tmp_path / "tiny20260101T000000"
    first = str(run_dir / "mask_rcnn_tiny_0001.h5")
    save_weights_by_name(tiny_keras_model(), first)
    complete = open(first, "rb").read()
    (run_dir / "tmpab12.h5.tmp").write_bytes(complete[:100])  # what a killed save leaves at most
    # Damaged after writing (a copy cut short, a full disk outside our control):
    (run_dir / "mask_rcnn_tiny_0002.h5").write_bytes(complete[:len(complete) // 2])
    (run_dir / "mask_rcnn_tiny_0003.h5").write_bytes(b"x")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint") as caught:
        assert latest_checkpoint(str(tmp_path), "tiny") == first
    skipped = [str(w.message) for w in caught]
    assert len(skipped) == 2 and "mask_rcnn_tiny_0003.h5" in skipped[0] and "0002.h5" in skipped[1]
    assert "truncated file" in skipped[1]

    (run_dir / "mask_rcnn_tiny_0002.h5").write_bytes(complete)
    os.remove(run_dir / "mask_rcnn_tiny_0003.h5")
    assert latest_checkpoint(str(tmp_path), "tiny").endswith("mask_rcnn_tiny_0002.h5")
    with pytest.raises(FileNotFoundError, match="no checkpoint of 'other'"):
        latest_checkpoint(str(tmp_path), "other")


def _train_steps(model, steps, seed=1):
    data = np.random.default_rng(seed).normal(0, 1, [steps * 2, 3]).astype(np.float32)
    model.fit(data, data[:, :2] * 3.0, batch_size=2, epochs=1, shuffle=False, verbose=0)


def _compiled(model, learning_rate=0.1):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9), loss="mse")
    return model


def test_optimizer_state_resumes_within_a_stage_only(tmp_path):
    original = _compiled(tiny_keras_model())
    _train_steps(original, 2)
    path = str(tmp_path / "mask_rcnn_tiny_0002.h5")
    record = {"layers": "all", "end_epoch": 4, "learning_rate": 0.1, "epoch": 2}
    save_weights_by_name(original, path, optimizer=original.optimizer, training=record)
    state = ResumeState.read(path)
    assert state.epoch == 2 and state.training == record and len(state.optimizer_variables) == 6

    def reloaded(learning_rate=0.1):
        model = _compiled(tiny_keras_model(seed=9), learning_rate)
        assert load_weights_by_name(model, path).loaded == ["dense_a", "dense_b"]
        return model

    # Same stage: iterations, momentum and learning rate continue; the next step equals the original's.
    resumed = reloaded()
    restored, message = resume_optimizer(resumed.optimizer, resumed.trainable_variables, state, "all", 0.1)
    assert restored and message == "optimizer state restored (iteration 2)"
    control = reloaded()  # same weights, fresh optimizer
    for model in (original, resumed, control):
        _train_steps(model, 1, seed=2)
    for a, b in zip(resumed.weights, original.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(control.weights[0].numpy(), original.weights[0].numpy(), atol=1e-4)

    # A new learning rate passed to train() wins; momentum and iterations still continue.
    lowered = reloaded(learning_rate=0.05)
    restored, message = resume_optimizer(lowered.optimizer, lowered.trainable_variables, state, "all", 0.05)
    assert restored and "learning rate 0.05 replaces the checkpoint's 0.1" in message
    assert float(lowered.optimizer.learning_rate.numpy()) == pytest.approx(0.05)
    assert int(lowered.optimizer.iterations.numpy()) == 2
    np.testing.assert_array_equal(lowered.optimizer.variables[2].numpy(), state.optimizer_variables[2][1])

    # Not restored: a checkpoint that ended its stage (an uninterrupted run compiles afresh
    # for the next train() call), one of other layers, or other trainable weights.
    refused = [
        (dataclasses.replace(state, training={**record, "end_epoch": 2}), "all", "ended its stage"),
        (state, "heads", "trained layers 'all', not 'heads'"),
    ]
    for variant, layers, reason in refused:
        model = reloaded()
        restored, message = resume_optimizer(model.optimizer, model.trainable_variables, variant, layers, 0.1)
        assert not restored and reason in message, message
        assert int(model.optimizer.iterations.numpy()) == 0
    frozen = tiny_keras_model(seed=9)
    frozen.get_layer("dense_a").trainable = False
    _compiled(frozen)
    restored, message = resume_optimizer(frozen.optimizer, frozen.trainable_variables, state, "all", 0.1)
    assert not restored and "other trainable weights" in message
    assert not any(v.numpy().any() for v in frozen.optimizer.variables[2:])  # momentum still zero
    renamed = _compiled(tiny_keras_model(seed=9, first="dense_x"))  # same shapes, other weights
    restored, message = resume_optimizer(renamed.optimizer, renamed.trainable_variables, state, "all", 0.1)
    assert not restored and "other trainable weights" in message


def test_a_train_call_with_nothing_to_train_leaves_the_state_for_the_next(tmp_path):
    # A rerun stage script: train(..., 2, "heads") then train(..., 6, "all"), resumed at epoch 3.
    config = TinyConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=1)
    writer = MaskRCNN("training", config, tmp_path)
    writer.set_trainable("all")
    writer.compile(0.01, 0.9)
    writer.keras_model.optimizer.build(writer.keras_model.trainable_variables)
    run_dir = tmp_path / "tiny20260101T000000"
    save_weights_by_name(writer.keras_model, str(run_dir / "mask_rcnn_tiny_0003.h5"),
                         optimizer=writer.keras_model.optimizer,
                         training={"layers": "all", "end_epoch": 6, "learning_rate": 0.01, "epoch": 3})

    model = MaskRCNN("training", config, tmp_path)
    model.load_weights(model.find_last())
    assert model.epoch == 3 and model.log_dir == str(run_dir)
    pending = model._saved_optimizer_state
    assert pending is not None and pending.training["end_epoch"] == 6
    model.train(shapes(2, seed=1), None, 0.01, 2, "heads", verbose=0, log_images=0)
    assert model._saved_optimizer_state is pending and model.epoch == 3
    assert sorted(f for f in os.listdir(run_dir) if f.endswith(".h5")) == ["mask_rcnn_tiny_0003.h5"]


def test_a_schedule_and_l2_decay_resume_on_the_same_rate(tmp_path):
    # Warmup to 3, x0.1 at 4: a run stopped after 2 steps and resumed from its checkpoint
    # must take steps 3 and 4 as the uninterrupted run does (rate from the restored count).
    from mrcnn_tf.training.optimizer import build_optimizer
    from mrcnn_tf.training.schedules import WarmupMultiStep

    def compiled(seed):
        model = tiny_keras_model(seed=seed)
        schedule = WarmupMultiStep(0.1, steps=(3,), gamma=0.1, warmup_iters=2, warmup_factor=0.1)
        model.compile(optimizer=build_optimizer(schedule, 0.9, 0.01, "l2"), loss="mse")
        return model

    straight, killed = compiled(0), compiled(0)
    for step in range(4):
        _train_steps(straight, 1, seed=step)
    for step in range(2):
        _train_steps(killed, 1, seed=step)
    path = str(tmp_path / "mask_rcnn_tiny_0002.h5")
    save_weights_by_name(killed, path, optimizer=killed.optimizer,
                         training={"layers": "all", "end_epoch": 4, "learning_rate": 0.1, "epoch": 2})
    resumed = compiled(9)
    load_weights_by_name(resumed, path)
    restored, message = resume_optimizer(resumed.optimizer, resumed.trainable_variables,
                                         ResumeState.read(path), "all", 0.1)
    assert restored, message
    assert float(resumed.optimizer.learning_rate) == pytest.approx(0.1)  # iteration 2: warmed up
    fresh = compiled(9)  # the control: same weights, the schedule restarted at iteration 0
    load_weights_by_name(fresh, path)
    for step in (2, 3):
        _train_steps(resumed, 1, seed=step)
        _train_steps(fresh, 1, seed=step)
    assert float(resumed.optimizer.learning_rate) == pytest.approx(0.01)  # past the step at 3
    for a, b in zip(resumed.weights, straight.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(fresh.weights[0].numpy(), straight.weights[0].numpy(), atol=1e-4)
