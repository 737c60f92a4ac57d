"""Seeded, non-trivial torchvision Mask R-CNN state dicts, built with numpy only.

The fixture script (tests/fixtures/torchvision/make_fixtures.py, run with
torch) and the parity test (without torch) call :func:`seeded_state_dict`
with the same seed and (key, shape) list, so both load identical weights.
Every tensor draws from its own generator, seeded by (seed, crc32(key)).

What makes them non-trivial (torchvision's own initialisation gives every
class a score of ~1/91, so nothing would pass a 0.05 threshold):
BatchNorm statistics and affine terms random (each block's last BN scaled
down, so 16 residual blocks neither explode nor vanish), convolution and
linear weights He-scaled, class logits scaled (std ~2-4 over 91 classes) so that scores separate without saturating,
mask logits scaled so that masks have edges inside their boxes.
"""

import zlib

import numpy as np

# Gains applied to the He-scaled weights of some layers (by key suffix).
_GAINS = {
    "roi_heads.box_predictor.cls_score.weight": 1.2,
    "roi_heads.box_predictor.bbox_pred.weight": 0.05,
    "rpn.head.bbox_pred.weight": 0.05,
    "rpn.head.cls_logits.weight": 0.7,
    "roi_heads.mask_predictor.mask_fcn_logits.weight": 12.0,
}


def _rng(seed, key):
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def seeded_state_dict(keys_shapes, seed):
    """``{key: numpy array}`` for a torchvision state dict's (key, shape) list.

    Args:
        keys_shapes: [(key, shape tuple)], e.g. from ``model.state_dict()``.
        seed: int.
    Returns:
        float32 arrays (int64 zeros for ``num_batches_tracked``).
    """
    keys = {key for key, _ in keys_shapes}
    state = {}
    for key, shape in keys_shapes:
        shape = tuple(int(s) for s in shape)
        rng = _rng(seed, key)
        module, _, leaf = key.rpartition(".")
        is_bn = f"{module}.running_var" in keys
        if leaf == "num_batches_tracked":
            state[key] = np.zeros(shape, np.int64)
            continue
        if is_bn:
            last_in_block = module.endswith(("bn3", "downsample.1"))
            if leaf == "weight":
                low, high = (0.2, 0.5) if last_in_block else (0.6, 1.4)
                value = rng.uniform(low, high, shape)
            elif leaf == "bias":
                value = rng.normal(0.0, 0.1, shape)
            elif leaf == "running_mean":
                value = rng.normal(0.0, 0.2, shape)
            else:  # running_var
                value = rng.uniform(0.5, 2.0, shape)
        elif len(shape) >= 2:
            # Conv [O, I, kh, kw], ConvTranspose [I, O, kh, kw], Linear [O, I]: He on the input side.
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape) * _GAINS.get(key, 1.0)
        else:  # a conv or linear bias
            value = rng.normal(0.0, 0.05, shape)
        state[key] = value.astype(np.float32)
    return state
