"""A run killed after epoch 2 and resumed ends where an uninterrupted run ends."""

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

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
    config = TinyConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=3, POST_NMS_ROIS_TRAINING=16,
                        TRAIN_ROIS_PER_IMAGE=24, ROI_POSITIVE_RATIO=1.0, LEARNING_RATE=0.02)
    model = MaskRCNN("training", config, model_dir)
    if resume != "fresh":
        model.load_weights(model.find_last())
        if resume == "weights-only":
            model._saved_optimizer_state = None

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == kill_after:
                os._exit(3)  # as abrupt as a killed process: no cleanup, no flush

    model.train(shapes(3, seed=1), None, config.LEARNING_RATE, epochs, "all", verbose=0, seed=0,
                custom_callbacks=[Kill()])
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
    assert "optimizer state restored" in resumed.stdout
    _, files = checkpoints(tmp_path / "resumed")
    assert [f[-7:] for f in files] == ["0001.h5", "0002.h5", "0003.h5", "0004.h5"]  # no lost epoch

    _, straight_files = checkpoints(tmp_path / "straight")
    final_straight = weights(os.path.join(checkpoints(tmp_path / "straight")[0], straight_files[-1]))
    final_resumed = weights(os.path.join(checkpoints(tmp_path / "resumed")[0], files[-1]))
    # Same iteration count, same momentum, same weights.
    assert final_resumed["optimizer_state/0"] == final_straight["optimizer_state/0"] == 12
    difference = max_difference(final_resumed, final_straight)

    weights_only = run(control_dir, epochs=4, resume="weights-only")
    assert weights_only.returncode == 0, weights_only.stderr[-2000:]
    control = weights(os.path.join(checkpoints(control_dir)[0], checkpoints(control_dir)[1][-1]))
    control_difference = max_difference({k: v for k, v in control.items() if "optimizer" not in k},
                                        {k: v for k, v in final_straight.items() if "optimizer" not in k})
    assert difference < 1e-4, difference
    assert control_difference > 10 * max(difference, 1e-6), (difference, control_difference)


def test_find_last_ignores_partial_writes(tmp_path):
    from mrcnn_tf.model.mask_rcnn import latest_checkpoint

    run_dir = tmp_path / "tiny20260101T000000"
    run_dir.mkdir()
    (run_dir / "mask_rcnn_tiny_0001.h5").write_bytes(b"x")
    (run_dir / "tmpab12.h5.tmp").write_bytes(b"partial")  # what a killed save leaves at most
    assert latest_checkpoint(str(tmp_path), "tiny").endswith("mask_rcnn_tiny_0001.h5")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        latest_checkpoint(str(tmp_path), "other")
