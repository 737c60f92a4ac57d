"""mrcnn_tf.pretrained's weight files and key layouts, without a model and without torch.

``.safetensors`` against the ``safetensors`` package (and a file written by
hand from the format's spec), ``.npz`` round trips, ``.pth`` through a
stand-in torch module (and its absence), the convert command, and the
normalisation of torchvision's old key names.
"""

import json
import struct
import sys
import types

import numpy as np
import pytest

from mrcnn_tf.pretrained import read_state_dict, write_state_dict
from mrcnn_tf.pretrained.__main__ import main as convert_main
from mrcnn_tf.pretrained.torchvision_layout import normalise_keys


def arrays():
    rng = np.random.default_rng(0)
    return {"backbone.body.conv1.weight": rng.normal(size=(4, 3, 7, 7)).astype(np.float32),
            "roi_heads.box_predictor.cls_score.bias": rng.normal(size=(91,)).astype(np.float32),
            "backbone.body.bn1.num_batches_tracked": np.array(7, np.int64),
            "x.half": rng.normal(size=(2, 3)).astype(np.float16),
            "x.double": rng.normal(size=(5,)),
            "x.bytes": np.arange(6, dtype=np.uint8).reshape(2, 3),
            "x.flags": np.array([True, False]),
            "x.empty": np.zeros((0, 4), np.float32)}


def assert_same(read, written):
    assert sorted(read) == sorted(written)
    for key, value in written.items():
        assert read[key].dtype == value.dtype, key
        np.testing.assert_array_equal(read[key], value, err_msg=key)


@pytest.mark.parametrize("extension", [".safetensors", ".npz"])
def test_round_trip(tmp_path, extension):
    path = tmp_path / f"weights{extension}"
    write_state_dict(path, arrays())
    assert_same(read_state_dict(path), arrays())


def test_safetensors_agrees_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    ours = tmp_path / "ours.safetensors"
    write_state_dict(ours, arrays())
    assert_same(st.load_file(str(ours)), arrays())
    theirs = tmp_path / "theirs.safetensors"
    st.save_file(arrays(), str(theirs), metadata={"format": "pt"})
    assert_same(read_state_dict(theirs), arrays())


def test_safetensors_written_by_hand_with_bf16_and_metadata(tmp_path):
    """The format's spec: u64 header length, JSON header, little-endian bytes."""
    values = np.array([[1.0, -2.5, 3.140625]], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()   # exact in bfloat16
    ints = np.array([1, -2], "<i4").tobytes()
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "BF16", "shape": [1, 3], "data_offsets": [0, len(bf16)]},
              "b": {"dtype": "I32", "shape": [2], "data_offsets": [len(bf16), len(bf16) + len(ints)]}}
    text = json.dumps(header).encode()
    path = tmp_path / "hand.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + bf16 + ints)
    state = read_state_dict(path)
    assert sorted(state) == ["a", "b"]
    np.testing.assert_array_equal(state["a"], values)
    assert state["a"].dtype == np.float32
    np.testing.assert_array_equal(state["b"], [1, -2])


def test_bad_files_raise_naming_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        read_state_dict(tmp_path / "nowhere.pth")
    other = tmp_path / "weights.h5"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"weights\.h5.*\.safetensors"):
        read_state_dict(other)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"abc")
    with pytest.raises(ValueError, match="short.safetensors: not a safetensors file"):
        read_state_dict(short)
    with pytest.raises(ValueError, match="must end in .safetensors or .npz"):
        write_state_dict(tmp_path / "out.pth", arrays())
    with pytest.raises(TypeError, match=r"weights\['a'\] is not a numeric array or tensor: object"):
        read_state_dict({"a": object()})


def test_pth_without_torch_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "maskrcnn.pth"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(ImportError) as error:
        read_state_dict(path)
    message = str(error.value)
    assert "pip install torch" in message
    assert f"python -m mrcnn_tf.pretrained convert {path}" in message and ".safetensors" in message


class FakeTensor:
    """What read_state_dict needs of a torch tensor: detach().cpu().numpy()."""

    def __init__(self, value):
        self.value = value

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.value


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict"])
def test_pth_is_read_with_weights_only_and_unwrapped(tmp_path, monkeypatch, wrapper):
    path = tmp_path / "checkpoint.pth"
    path.write_bytes(b"x")
    state = {k: FakeTensor(v) for k, v in arrays().items()}
    calls = []

    def load(file, map_location=None, weights_only=False):
        calls.append((str(file), map_location, weights_only))
        return {wrapper: state, "epoch": 3} if wrapper else state

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(load=load))
    assert_same(read_state_dict(path), arrays())
    assert calls == [(str(path), "cpu", True)]  # nothing but tensors is unpickled


def test_convert_command(tmp_path, capsys):
    source = tmp_path / "in.npz"
    write_state_dict(source, arrays())
    target = tmp_path / "out.safetensors"
    assert convert_main(["convert", str(source), str(target)]) == 0
    assert f"wrote {len(arrays())} tensors" in capsys.readouterr().out
    assert_same(read_state_dict(target), arrays())
    assert convert_main(["convert", str(tmp_path / "missing.pth"), str(target)]) == 1
    assert "missing.pth" in capsys.readouterr().err


def test_old_key_layout_is_renamed_and_buffers_without_weights_dropped():
    old = {"backbone.fpn.inner_blocks.0.weight": 1, "backbone.fpn.layer_blocks.3.bias": 2,
           "rpn.head.conv.weight": 3, "roi_heads.mask_head.mask_fcn1.weight": 4,
           "roi_heads.mask_head.mask_fcn4.bias": 5, "backbone.body.bn1.num_batches_tracked": 6,
           "backbone.body.bn1.running_var": 7}
    assert normalise_keys(old) == {
        "backbone.fpn.inner_blocks.0.0.weight": 1, "backbone.fpn.layer_blocks.3.0.bias": 2,
        "rpn.head.conv.0.0.weight": 3, "roi_heads.mask_head.0.0.weight": 4,
        "roi_heads.mask_head.3.0.bias": 5, "backbone.body.bn1.running_var": 7}
    with pytest.raises(ValueError, match=r"'rpn\.head\.conv\.0\.0\.weight' twice"):
        normalise_keys({"rpn.head.conv.weight": 1, "rpn.head.conv.0.0.weight": 2})
