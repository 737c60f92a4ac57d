"""Training under tf.distribute.MirroredStrategy on two logical CPU devices.

Keras sums the replicas' gradients, so MaskRCNNTrainer.compute_loss divides each
replica's loss by the number of replicas (as Keras's own compute_loss does).
The checks run in a fresh process: logical devices must be configured before
TensorFlow initialises its devices.

RoI and anchor sampling are made deterministic by taking every candidate
(8 proposals + the ground truth < TRAIN_ROIS_PER_IMAGE, positive ratio 1; more
RPN_TRAIN_ANCHORS_PER_IMAGE than anchors): the samplers then only shuffle the
order, and the losses are means over sets.
Gradient clipping is off so that a wrongly scaled gradient cannot be hidden by it.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from loopback import free_ports

TESTS = os.path.dirname(os.path.abspath(__file__))
# The scripts run in fresh processes and import the package and the model tests' tiny config.
PYTHONPATH = os.pathsep.join([os.path.dirname(TESTS), TESTS])

SCRIPT = r"""
import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import numpy as np

from mrcnn_tf import DataGenerator, MaskRCNN
from mrcnn_tf.training.callbacks import GeneratorEpoch
from test_model import TinyConfig as ModelTestConfig, shapes


class TinyConfig(ModelTestConfig):  # the model tests' tiny model, taking every RoI candidate
    POST_NMS_ROIS_TRAINING = 8
    TRAIN_ROIS_PER_IMAGE = 32      # > 8 proposals + MAX_GT_INSTANCES: every candidate is taken
    ROI_POSITIVE_RATIO = 1.0
    RPN_TRAIN_ANCHORS_PER_IMAGE = 2048  # > the 1023 anchors of a 64 px image: every label taken
    MAX_GT_INSTANCES = 8
    GRADIENT_CLIP_NORM = None
    LEARNING_RATE = 0.001  # updates well above the tolerance, roundoff well below
    STEPS_PER_EPOCH = 1


def build(config, weights=None):
    model = MaskRCNN("training", config, model_dir="unused")
    model.set_trainable("all")  # BatchNorm frozen: no per-replica batch statistics
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    if weights is not None:
        model.keras_model.set_weights(weights)
    return model


def fit_one_step(model, dataset):
    generator = DataGenerator(dataset, model.config, shuffle=False, seed=0, batches_per_epoch=1)
    # GeneratorEpoch (as train() uses): the strategy's build pass must not shift the
    # generator's per-epoch draws.
    history = model.keras_model.fit(generator, epochs=1, verbose=0, shuffle=False,
                                    callbacks=[GeneratorEpoch(generator)])
    return {k: float(v[-1]) for k, v in history.history.items()}, generator[0]


def largest_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def largest_update(before, after):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(before, after))


keras.utils.set_random_seed(0)
single_config = TinyConfig(IMAGES_PER_GPU=2, GPU_COUNT=1)
dist_config = TinyConfig(IMAGES_PER_GPU=1, GPU_COUNT=2)
single = build(single_config)
initial = single.keras_model.get_weights()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    dist = build(dist_config, initial)
out = {"replicas": strategy.num_replicas_in_sync,
       "global_batch": [single_config.BATCH_SIZE, dist_config.BATCH_SIZE]}

# A: one image twice (a one-image dataset wraps around), with its own RPN anchor
# sample each time: every loss averages over as many elements on each replica,
# so the replicas' mean is the global batch's mean.
same = shapes(1, seed=3)
single_logs, single_batch = fit_one_step(single, same)
dist_logs, dist_batch = fit_one_step(dist, same)
out["a_differing_inputs"] = [k for k in single_batch if not np.array_equal(single_batch[k], dist_batch[k])]
out["a_logs"] = [single_logs, dist_logs]
out["a_update"] = largest_update(initial, single.keras_model.get_weights())
out["a_weights_diff"] = largest_difference(single.keras_model.get_weights(), dist.keras_model.get_weights())

# B: two different images. Each replica's losses are one image's batch-1 losses;
# the update is that of their mean.
two = shapes(2, seed=4)
single = build(TinyConfig(IMAGES_PER_GPU=1, GPU_COUNT=1), initial)
with strategy.scope():
    dist = build(dist_config, initial)
dist_logs, batch = fit_one_step(dist, two)
model = single.keras_model
per_image, gradients = [], []
for i in range(2):
    x = {k: tf.constant(v[i:i + 1]) for k, v in batch.items()}
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        named = model.named_losses(x, y_pred)
        total = tf.add_n([model.loss_weights[k] * v for k, v in named.items()])
    gradients.append(tape.gradient(total, model.trainable_variables))
    per_image.append({"loss": float(total), **{k: float(v) for k, v in named.items()}})
model.optimizer.apply_gradients(zip([(a + b) / 2 for a, b in zip(*gradients)], model.trainable_variables))
out["b_per_image"] = per_image
out["b_dist_logs"] = dist_logs
out["b_update"] = largest_update(initial, model.get_weights())
out["b_weights_diff"] = largest_difference(model.get_weights(), dist.keras_model.get_weights())
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path_factory.mktemp("distribute"),
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": PYTHONPATH})
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [l for l in run.stdout.splitlines() if l.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


LOGGED = ("loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
          "mrcnn_mask_loss")


@pytest.mark.slow
def test_two_replicas_split_the_global_batch(result):
    assert result["replicas"] == 2
    assert result["global_batch"] == [2, 2]  # IMAGES_PER_GPU * GPU_COUNT on both sides
    assert result["a_differing_inputs"] == []


@pytest.mark.slow
def test_two_replicas_update_like_one_device_with_the_global_batch(result):
    single_logs, dist_logs = result["a_logs"]
    # Batch 2 on one device and batch 1 per replica run differently shaped kernels:
    # float32 roundoff of ~1e-5 relative in the losses, not more.
    for name in LOGGED:
        assert dist_logs[name] == pytest.approx(single_logs[name], rel=1e-4, abs=1e-5), name
    # The step moves weights by far more than the tolerance: an update off by the
    # replica count (an unscaled loss doubles it) would show.
    assert result["a_update"] > 1e-3
    assert result["a_weights_diff"] < 1e-5


@pytest.mark.slow
def test_each_replica_trains_on_its_own_image(result):
    per_image, dist_logs = result["b_per_image"], result["b_dist_logs"]
    assert per_image[0]["loss"] != pytest.approx(per_image[1]["loss"], abs=1e-3)  # a real test
    for name in LOGGED:
        mean = (per_image[0][name] + per_image[1][name]) / 2
        assert dist_logs[name] == pytest.approx(mean, abs=1e-5), name
    assert result["b_update"] > 1e-3
    assert result["b_weights_diff"] < 1e-5


WORKER = r"""
import json
import sys

import keras
import numpy as np
import tensorflow as tf

from mrcnn_tf import MaskRCNN
from test_model import TinyConfig, shapes

strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
config = TinyConfig(NAME="multiworker", POST_NMS_ROIS_TRAINING=32, STEPS_PER_EPOCH=2,
                    GPU_COUNT=strategy.num_replicas_in_sync, IMAGES_PER_GPU=1)
dataset = shapes(8, seed=1)
keras.utils.set_random_seed(0)
with strategy.scope():
    model = MaskRCNN("training", config, model_dir=sys.argv[1])
    initial = [w.copy() for w in model.keras_model.get_weights()]
    history = model.train(dataset, None, learning_rate=0.01, epochs=1, layers="all", seed=0,
                          verbose=0, log_images=0)
weights = model.keras_model.get_weights()
print("RESULT " + json.dumps({
    "replicas": strategy.num_replicas_in_sync, "batch": config.BATCH_SIZE,
    "logs": {k: float(v[-1]) for k, v in history.history.items()},
    "update": max(float(np.abs(a - b).max()) for a, b in zip(weights, initial)),
    "checksum": [float(np.abs(w).sum()) for w in weights[-4:]]}))
"""


@pytest.mark.slow
def test_two_workers_train_in_lockstep(tmp_path):
    """MultiWorkerMirroredStrategy with two local workers (TF_CONFIG): train() runs, both
    workers see a global batch of 2 and end with the same weights and logs."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": PYTHONPATH,
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / f"logs{index}")],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        cwd=tmp_path, env=env))
    results = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=600)
            assert worker.returncode == 0, err[-3000:]
            (line,) = [l for l in out.splitlines() if l.startswith("RESULT ")]
            results.append(json.loads(line[len("RESULT "):]))
    finally:
        for worker in workers:
            worker.kill()
    first, second = results
    assert first["replicas"] == second["replicas"] == 2 and first["batch"] == 2
    assert first["update"] > 1e-3                                  # it trained
    assert first["checksum"] == pytest.approx(second["checksum"], rel=1e-6)
    for name in LOGGED:
        assert np.isfinite(first["logs"][name]), name
        assert first["logs"][name] == pytest.approx(second["logs"][name], rel=1e-6), name
