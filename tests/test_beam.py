"""mrcnn_tf.beam on the DirectRunner: 20 files (3 corrupt) -> records equal to detect(), a dead letter.

Needs apache-beam (the ``beam`` extra), installed in the project venv: it moves protobuf
7 -> 6.33, which TensorFlow 2.21 accepts (see the README, "Batch inference").
"""

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

beam = pytest.importorskip("apache_beam", reason="apache-beam is an extra: pip install -e '.[beam]'")

from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from mrcnn_tf import Config, MaskRCNN, presets  # noqa: E402
from mrcnn_tf.beam import (SavedModelHandler, _failed_records, detect_files,  # noqa: E402
                           resolve_model_dir, write_jsonl)
from mrcnn_tf.export import export_saved_model  # noqa: E402

BALLOON = "/work/shared/data/balloon"
TinyConfig = type("TinyConfig", (Config,), presets.tiny(
    64, NAME="beam", NUM_CLASSES=2, BACKBONE="small", IMAGES_PER_GPU=1, DETECTION_MAX_INSTANCES=6))
CORRUPT = {"random.jpg": b"\x00\x01 not an image " * 40, "empty.png": b"", "notes.txt.jpg": b"hello"}


def _photos(folder, count):
    """``count`` balloon photos shrunk to <= 96 px, written as JPEG and PNG."""
    paths = sorted(glob.glob(os.path.join(BALLOON, "*", "*.jpg")))[:count]
    assert len(paths) == count, f"need {count} balloon photos in {BALLOON}"
    names = []
    for i, path in enumerate(paths):
        image = tf.io.decode_jpeg(tf.io.read_file(path))
        scale = 96 / max(image.shape[:2])
        small = tf.cast(tf.image.resize(image, [round(image.shape[0] * scale), round(image.shape[1] * scale)],
                                        antialias=True), tf.uint8)
        name = f"photo_{i:02d}." + ("png" if i % 3 == 0 else "jpg")
        data = tf.io.encode_png(small) if name.endswith("png") else tf.io.encode_jpeg(small, quality=90)
        tf.io.write_file(os.path.join(folder, name), data)
        names.append(name)
    return names


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(model, image folder, photo names, records by file name, dead-letter records), one pipeline run."""
    keras.utils.set_random_seed(5)
    base = tmp_path_factory.mktemp("beam")
    model = MaskRCNN("inference", TinyConfig(), model_dir=str(base / "logs"))
    export_saved_model(model, str(base / "serving"))
    folder = base / "images"
    folder.mkdir()
    # One file is a JPEG cut in half: its magic passes, its decode fails.
    names = _photos(str(folder), 20 - len(CORRUPT) - 1)
    whole = (folder / names[1]).read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[:len(whole) // 2])
    for name, data in CORRUPT.items():
        (folder / name).write_bytes(data)
    out = str(base / "out" / "part")
    options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"])
    with beam.Pipeline(options=options) as pipeline:
        records, dead = detect_files(pipeline, str(base / "serving"), str(folder / "*"), batch_size=4)
        write_jsonl(records, out, "Records")
        write_jsonl(dead, out + "-dead_letter", "DeadLetter")
    records = [json.loads(line) for path in glob.glob(out + "-0*.jsonl") for line in open(path)]
    dead = [json.loads(line) for path in glob.glob(out + "-dead_letter-*.jsonl") for line in open(path)]
    return model, folder, names, {os.path.basename(r["file_name"]): r for r in records}, dead


def test_every_good_file_gives_a_record_equal_to_detect(run):
    model, folder, names, records, _dead = run
    assert sorted(records) == sorted(names)
    total = 0
    for name in names:
        # The graph's own decoder: the pixels detect() sees are the ones the served graph sees.
        image = tf.io.decode_image(tf.io.read_file(str(folder / name)), channels=3).numpy()
        want = model.detect([image])[0]
        record = records[name]
        assert (record["height"], record["width"]) == image.shape[:2]
        got = record["detections"]
        assert len(got) == len(want["scores"]) > 0
        total += len(got)
        for k, det in enumerate(got):
            assert det["category_id"] == want["class_ids"][k]
            assert det["score"] == pytest.approx(float(want["scores"][k]), abs=1e-5)
            y1, x1, y2, x2 = want["boxes"][k]
            np.testing.assert_allclose(det["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=1e-3)
            mask = mask_utils.decode(det["segmentation"]).astype(bool)
            ref = want["masks"][:, :, k]
            union = (mask | ref).sum()
            assert union == 0 or (mask & ref).sum() / union >= 0.99, f"{name} detection {k}"
    assert total >= len(names)


def test_corrupt_files_go_to_the_dead_letter_with_name_and_error(run):
    _model, _folder, _names, records, dead = run
    by_name = {os.path.basename(r["file_name"]): r["error"] for r in dead}
    assert sorted(by_name) == sorted([*CORRUPT, "truncated.jpg"])
    assert not set(by_name) & set(records)
    assert "not a JPEG/PNG" in by_name["random.jpg"] and "not a JPEG/PNG" in by_name["empty.png"]
    assert "cannot decode" in by_name["truncated.jpg"]


def test_handler_finds_the_newest_version_and_names_a_bad_directory(run, tmp_path):
    model, folder, _names, _records, _dead = run
    base = os.path.dirname(resolve_model_dir(str(folder.parent / "serving")))
    assert resolve_model_dir(base).endswith(os.sep + "1")
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        SavedModelHandler(str(tmp_path))
    with pytest.raises(ValueError, match="min_batch_size"):
        SavedModelHandler(base, min_batch_size=3, max_batch_size=2)


def test_a_failed_batch_dead_letters_each_of_its_files():
    failure = ([("a.jpg", b"1"), ("b.png", b"2")],
               ValueError("image is larger than max_image_size\n[[node]]"))
    assert _failed_records(failure) == [
        {"file_name": "a.jpg", "error": "ValueError: image is larger than max_image_size"},
        {"file_name": "b.png", "error": "ValueError: image is larger than max_image_size"}]
