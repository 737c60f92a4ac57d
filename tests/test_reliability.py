"""Faults during training and serving: a NaN loss, an unusable model_dir, bad requests.

Each fault must end in a message naming what went wrong (and where), never a
hang, a crash of the server, or a corrupt checkpoint.
"""

import base64
import errno
import json
import os
import time

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf import DataGenerator, Dataset, MaskRCNN
from mrcnn_tf.data import ImageLoadError
from mrcnn_tf.export import export_saved_model
from mrcnn_tf.training import checkpoint
from mrcnn_tf.training.callbacks import NonFiniteLossError
from mrcnn_tf.training.checkpoint import ModelDirError
from mrcnn_tf.model import latest_checkpoint
from loopback import post, rest_server
from test_model import TinyConfig, shapes

REQUEST_TIMEOUT = 60  # seconds per request
STARTUP_TIMEOUT = 180  # seconds for the server to load the model


# -------------------------------------------------------------------- training

def _all_finite(path):
    """Every weight array in a by-name .h5 checkpoint is finite."""
    arrays = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return bool(arrays) and all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")


@pytest.mark.slow
def test_nan_loss_stops_training_naming_step_and_images_and_keeps_the_good_checkpoint(tmp_path):
    config = TinyConfig(IMAGES_PER_GPU=2, STEPS_PER_EPOCH=2)
    model = MaskRCNN("training", config, tmp_path)
    dataset = shapes(4, seed=0)
    history = model.train(dataset, None, 0.01, 1, "heads", verbose=0, seed=0, log_images=0)
    assert all(np.isfinite(v).all() for v in history.history.values())
    good = latest_checkpoint(str(tmp_path), config.NAME)
    assert good.endswith("_0001.h5") and _all_finite(good)

    kernel = model.find_layer("fpn_p2").weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    with pytest.raises(NonFiniteLossError) as error:
        model.train(dataset, None, 0.01, 2, "heads", verbose=0, seed=0, log_images=0)
    message = str(error.value)
    expected = DataGenerator(dataset, config, seed=0)
    expected.set_epoch(1)
    ids = [int(i) for i in expected.batch_image_ids(0)]
    assert "epoch 2, step 1" in message and f"ids {ids}" in message, message
    assert "shapes image" in message and "loss=nan" in message
    # Nothing was saved for the poisoned epoch: the good checkpoint is still the latest.
    assert latest_checkpoint(str(tmp_path), config.NAME) == good
    assert _all_finite(good)


def test_unreadable_image_reaches_the_user_unchanged_from_fit(tmp_path):
    config = TinyConfig(IMAGES_PER_GPU=2, STEPS_PER_EPOCH=2)
    dataset = shapes(4, seed=0)
    generator = DataGenerator(dataset, config, seed=0, batches_per_epoch=2)
    bad = int(generator.batch_image_ids(1)[0])  # in the second batch, not the first

    class OneFile(type(dataset)):
        def load_image(self, image_id):  # image `bad` comes from a (broken) file
            return Dataset.load_image(self, image_id) if image_id == bad else super().load_image(image_id)

    dataset.__class__ = OneFile
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    dataset.image_info[bad]["path"] = str(tmp_path / "broken.jpg")
    model = MaskRCNN("training", config, tmp_path / "logs")
    with pytest.raises(ImageLoadError, match=rf"image {bad} \(shapes\.{bad}\) from .*broken\.jpg") as error:
        model.train(dataset, None, 0.01, 1, "heads", verbose=0, seed=0, log_images=0)
    assert type(error.value) is ImageLoadError


def test_model_dir_under_a_file_fails_before_training(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    model = MaskRCNN("training", TinyConfig(), str(blocker / "logs"))
    started = time.monotonic()
    with pytest.raises(OSError, match="model_dir cannot hold checkpoints") as error:
        model.train(shapes(2, seed=0), None, 0.01, 1, "heads", verbose=0)
    assert error.value.errno == errno.ENOTDIR and "file.txt" in str(error.value)
    assert time.monotonic() - started < 60  # before any epoch ran


def test_full_disk_is_reported_by_the_early_check(tmp_path, monkeypatch):
    def disk_full(directory):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "_write_probe", disk_full)
    with pytest.raises(ModelDirError, match="the disk is full") as error:
        checkpoint.check_writable_model_dir(str(tmp_path / "logs"))
    assert error.value.errno == errno.ENOSPC and "logs" in str(error.value)


# --------------------------------------------------------------------- serving

def _b64(data):
    return base64.b64encode(data).decode()


@pytest.mark.slow
def test_rest_server_answers_bad_requests_and_keeps_serving(tmp_path):
    keras.utils.set_random_seed(1)
    config = TinyConfig(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0)
    path = export_saved_model(MaskRCNN("inference", config, tmp_path), str(tmp_path / "export"))
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    png = tf.io.encode_png(image).numpy()

    good = json.dumps({"instances": [{"b64": _b64(png)}]}).encode()
    requests = [  # (id, body, expected status, text expected in the error)
        ("good", good, 200, None),
        ("junk_image", json.dumps({"instances": [{"b64": _b64(b"junk")}]}).encode(), 400, "not a JPEG/PNG"),
        ("truncated_png", json.dumps({"instances": [{"b64": _b64(png[:40])}]}).encode(), 400, None),
        ("not_json", b"{not json", 400, "not JSON"),
        ("good_again", good, 200, None),
        ("unknown_signature", json.dumps({"signature_name": "nope", "instances": []}).encode(), 400,
         "unknown signature_name"),
        ("empty_batch", json.dumps({"instances": []}).encode(), 400, "at least one image"),
        ("pixel_out_of_range", json.dumps({"signature_name": "serving_tensor",
                                           "instances": [[[[300, 0, 0]]]]}).encode(), 400, "0..255"),
        ("ragged_tensor", json.dumps({"signature_name": "serving_tensor",
                                      "instances": [[[[1, 2, 3]], [[1, 2]]]]}).encode(), 400, "images must"),
        ("good_last", good, 200, None),
    ]
    with rest_server(os.path.dirname(path), "tiny", STARTUP_TIMEOUT) as server:
        answers = {}
        for name, body, status, text in requests:
            code, answer = post(server.base + ":predict", body, REQUEST_TIMEOUT)
            assert code == status, (name, code, answer)
            if status != 200:
                assert answer["error"] and (text is None or text in answer["error"]), (name, answer)
            answers[name] = answer
            assert server.process.poll() is None, f"server died after {name}"
        # Bad requests in between leave the model's answer to a good one unchanged.
        assert answers["good"] == answers["good_again"] == answers["good_last"]
        assert answers["good"]["predictions"][0]["image_sizes"] == [48, 64]
        code, answer = post(f"http://127.0.0.1:{server.port}/v1/models/other:predict", good,
                            REQUEST_TIMEOUT)
        assert code == 404 and "other" in answer["error"]
