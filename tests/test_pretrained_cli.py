"""mrcnn-tf detect/export --pretrained: torchvision's COCO model to TF Serving in one command.

The state dict is seeded (tests/reference/torchvision_weights.py) on the
(key, shape) list torchvision's own maskrcnn_resnet50_fpn has (stored in the
parity fixture), so nothing is downloaded and torch is not needed.
"""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.cli import main
from mrcnn_tf.pretrained import COCO_CATEGORY_NAMES, write_state_dict
from tests.reference.torchvision_weights import seeded_state_dict

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "torchvision", "maskrcnn_resnet50_fpn.npz")
NAME = "maskrcnn_resnet50_fpn"
# A small input: the R50-FPN graph's cost is its tracing, not its pixels.
SMALL = ["--set", "IMAGE_MIN_DIM=64", "--set", "IMAGE_MAX_DIM=96"]


@pytest.fixture(scope="module")
def state_file(tmp_path_factory):
    """A seeded maskrcnn_resnet50_fpn state dict as .npz (what ``convert`` writes)."""
    data = np.load(FIXTURE)
    keys_shapes = [(key, tuple(int(v) for v in shape.split(",") if v))
                   for key, shape in zip(data["keys"], data["shapes"])]
    path = str(tmp_path_factory.mktemp("weights") / f"{NAME}_seeded.npz")
    write_state_dict(path, seeded_state_dict(keys_shapes, int(data["seed"])))
    return path


@pytest.mark.parametrize("arguments,message", [
    (["--pretrained", "maskrcnn_resnet101_fpn", "--weights", "{state}"],
     "--pretrained: unknown torchvision model"),
    (["--pretrained", NAME], "--pretrained needs --weights FILE"),  # the default 'last'
    (["--pretrained", NAME, "--weights", "missing.npz"], "--weights: file not found: missing.npz"),
    (["--pretrained", NAME, "--weights", "{state}", "--backbone", "resnet101"], "fixes the backbone"),
    (["--pretrained", NAME, "--weights", "{state}", "--set", "NUM_CLASSES=5"],
     "91 COCO classes, not NUM_CLASSES=5"),
    (["--pretrained", NAME, "--weights", "{state}", "--set", "IMAGE_MIN_DIMS=64"], "--set: .*IMAGE_MIN_DIM"),
])
def test_bad_pretrained_arguments_are_usage_errors(state_file, tmp_path, capsys, arguments, message):
    arguments = [a.replace("{state}", state_file) for a in arguments]
    with pytest.raises(SystemExit) as exit_:
        main(["export", *arguments, "--export-dir", str(tmp_path / "export")])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert re.search(message, error), error
    assert not (tmp_path / "export").exists()


@pytest.mark.slow
def test_export_pretrained_is_a_savedmodel_with_the_coco_class_names(state_file, tmp_path, capsys):
    path = state_file
    export_dir = tmp_path / "serving" / "coco"
    assert main(["export", "--pretrained", NAME, "--weights", path, *SMALL,
                 "--export-dir", str(export_dir)]) == 0
    assert f"{NAME}: torchvision weights loaded from {path}" in capsys.readouterr().out
    version = export_dir / "1"
    assert (version / "saved_model.pb").is_file()
    names = (version / "assets" / "class_names.txt").read_text(encoding="utf-8").splitlines()
    assert names == list(COCO_CATEGORY_NAMES) and len(names) == 91 and names[12] == "N/A"

    # The exported variables are torchvision's: its conv1 [out, in, kh, kw] as our [kh, kw, in, out].
    reader = tf.train.load_checkpoint(str(version / "variables" / "variables"))
    stems = [key for key, shape in reader.get_variable_to_shape_map().items() if shape == [7, 7, 3, 64]]
    assert len(stems) == 1, stems
    np.testing.assert_array_equal(reader.get_tensor(stems[0]),
                                  np.load(path)["backbone.body.conv1.weight"].transpose(2, 3, 1, 0))
