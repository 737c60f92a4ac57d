"""Reading and writing state dicts: ``.pth`` (with torch), ``.safetensors`` and ``.npz`` (without).

A state dict here is ``{name: numpy array}``. ``.safetensors`` is read and
written by this module itself (an 8-byte header length, a JSON header of
dtype/shape/offsets, then the raw little-endian bytes), so the serving
machine needs neither torch nor the ``safetensors`` package. Nothing is
unpickled: ``.pth`` goes through ``torch.load(weights_only=True)`` and
``.npz`` through ``np.load(allow_pickle=False)``.
"""

import json
import os
import struct
from collections.abc import Mapping

import numpy as np

WEIGHT_FORMATS = (".pth", ".pt", ".safetensors", ".npz")
_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
                       "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NUMPY_TO_SAFETENSORS = {np.dtype(v).str.lstrip("<|"): k for k, v in _SAFETENSORS_DTYPES.items()}


def to_numpy(value, key):
    """A numpy array from a numpy array or a torch tensor (no torch import needed)."""
    given = type(value).__name__
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except Exception as error:  # noqa: BLE001 - any failure means it is not an array
            raise TypeError(f"weights[{key!r}] is not an array or tensor: {type(value).__name__}") from error
    if value.dtype.kind not in "biuf":  # np.asarray wraps anything in an object array
        raise TypeError(f"weights[{key!r}] is not a numeric array or tensor: {given} (dtype {value.dtype})")
    return value


def read_state_dict(weights):
    """``{name: numpy array}`` from a mapping or a ``.pth``/``.pt``, ``.safetensors`` or ``.npz`` file.

    Raises:
        FileNotFoundError naming the file; ValueError for another extension;
        ImportError saying what to do when a ``.pth`` is read without torch.
    """
    if isinstance(weights, Mapping):
        return {str(k): to_numpy(v, k) for k, v in weights.items()}
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    extension = os.path.splitext(path)[1].lower()
    if extension in (".pth", ".pt"):
        return _read_pth(path)
    if extension == ".safetensors":
        return read_safetensors(path)
    if extension == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    raise ValueError(f"{path}: weights must be a mapping or a file ending in {WEIGHT_FORMATS}, "
                     f"got {extension or 'no extension'!r}")


def _read_pth(path):
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"reading {path} needs PyTorch (pip install torch), or convert it once on a machine "
            f"that has it: python -m mrcnn_tf.pretrained convert {path} "
            f"{os.path.splitext(path)[0]}.safetensors (or .npz), and load that file") from error
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict"):  # training checkpoints wrap the state dict
        if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return {str(k): to_numpy(v, k) for k, v in state.items()}


def read_safetensors(path):
    """``{name: numpy array}`` of a ``.safetensors`` file (BF16 is widened to float32)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise ValueError(f"{path}: not a safetensors file (header length {header_len})")
    header = json.loads(data[8:8 + header_len])
    body = memoryview(data)[8 + header_len:]
    arrays = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        begin, end = spec["data_offsets"]
        raw = body[begin:end]
        if spec["dtype"] == "BF16":  # bfloat16 is the top half of a float32
            array = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif spec["dtype"] in _SAFETENSORS_DTYPES:
            array = np.frombuffer(raw, np.dtype(_SAFETENSORS_DTYPES[spec["dtype"]]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {spec['dtype']!r}")
        arrays[name] = array.reshape(spec["shape"]).astype(array.dtype.newbyteorder("="))
    return arrays


def write_safetensors(path, arrays):
    """Write ``{name: array}`` as ``.safetensors`` (keys sorted, header padded to 8 bytes)."""
    header, chunks, offset = {}, [], 0
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        code = _NUMPY_TO_SAFETENSORS.get(array.dtype.str.lstrip("<|="))
        if code is None:
            raise ValueError(f"cannot store {name!r} of dtype {array.dtype} in safetensors")
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def write_state_dict(path, arrays):
    """Write ``{name: array}`` to ``.safetensors`` or ``.npz`` (by the extension)."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension == ".safetensors":
        write_safetensors(path, arrays)
    elif extension == ".npz":
        np.savez(path, **arrays)
    else:
        raise ValueError(f"{path}: the output must end in .safetensors or .npz, got {extension!r}")
