"""torchvision Mask R-CNN state-dict names -> our layer names, and the weight conversions.

Each :class:`Entry` ties one torchvision module (``backbone.body.layer1.0.conv1``)
to one of our layers (``res2a_branch2a``) and says how its tensors convert:

- ``conv``: ``[O, I, kh, kw]`` -> Keras ``[kh, kw, I, O]``; a torchvision
  conv without bias (it feeds a BatchNorm) gives our bias zeros.
- ``bn``: weight, bias, running_mean, running_var -> gamma, beta,
  moving_mean, moving_variance (``num_batches_tracked`` holds no weight).
- ``fc_chw``: the first FC after RoIAlign, ``[F, C * h * w]`` over a
  channels-first flatten -> our ``[h, w, C, F]`` kernel (the permute on import).
- ``fc``: ``[F, I]`` -> ``[1, 1, I, F]`` (a 1x1 FullyConnectedConv2D).
- ``dense``: ``[F, I]`` -> ``[I, F]``.
- ``*_deltas``: box deltas, torchvision's ``(dx, dy, dw, dh)`` per anchor or
  class -> our ``(dy, dx, dh, dw)`` (output rows permuted in groups of 4).
- ``deconv``: ConvTranspose2d ``[I, O, kh, kw]`` -> Keras ``[kh, kw, O, I]``.
"""

import re
from typing import NamedTuple

import numpy as np

# torchvision's names -> ours for the anchors' / classes' box deltas (dy, dx, dh, dw).
_DELTA_ORDER = np.array([1, 0, 3, 2])
# Older torchvision releases (the v1 COCO file) named some modules differently.
_OLD_NAMES = (
    (re.compile(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$"), r"\1.0.\2"),
    (re.compile(r"^rpn\.head\.conv\.(weight|bias)$"), r"rpn.head.conv.0.0.\1"),
)
_OLD_MASK_FCN = re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$")
# Buffers that hold no weights.
_SKIPPED_SUFFIXES = (".num_batches_tracked",)
# The layers whose size is the number of classes: fresh when NUM_CLASSES is not 91.
CLASS_SPECIFIC = ("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred",
                  "roi_heads.mask_predictor.mask_fcn_logits")
RESNET50_BLOCKS = (3, 4, 6, 3)


class Entry(NamedTuple):
    """One torchvision module and the layer of ours it fills."""

    torch_name: str
    layer_name: str
    kind: str          # conv, bn, fc_chw, fc, dense, dense_deltas, conv_deltas, deconv
    has_bias: bool = True


def normalise_keys(state):
    """Current torchvision names for either layout, buffers without weights dropped."""
    out = {}
    for key, value in state.items():
        if key.endswith(_SKIPPED_SUFFIXES):
            continue
        for pattern, replacement in _OLD_NAMES:
            key = pattern.sub(replacement, key)
        match = _OLD_MASK_FCN.match(key)
        if match:
            key = f"roi_heads.mask_head.{int(match.group(1)) - 1}.0.{match.group(2)}"
        if key in out:
            raise ValueError(f"weights hold {key!r} twice (under its old and its new name)")
        out[key] = value
    return out


def _letter(index):
    return chr(ord("a") + index)


def layout(variant):
    """The entries of ``variant``: "v1" (maskrcnn_resnet50_fpn) or "v2" (..._fpn_v2)."""
    v2 = variant == "v2"
    entries = [Entry("backbone.body.conv1", "conv1", "conv", False),
               Entry("backbone.body.bn1", "bn_conv1", "bn")]
    for stage, blocks in enumerate(RESNET50_BLOCKS, 1):
        for block in range(blocks):
            prefix = f"backbone.body.layer{stage}.{block}"
            ours = f"{stage + 1}{_letter(block)}_branch"
            for k, branch in enumerate("abc", 1):
                entries += [Entry(f"{prefix}.conv{k}", f"res{ours}2{branch}", "conv", False),
                            Entry(f"{prefix}.bn{k}", f"bn{ours}2{branch}", "bn")]
            if block == 0:
                entries += [Entry(f"{prefix}.downsample.0", f"res{ours}1", "conv", False),
                            Entry(f"{prefix}.downsample.1", f"bn{ours}1", "bn")]
    for i in range(4):
        level = i + 2
        for torch_block, ours in ((f"inner_blocks.{i}", f"fpn_c{level}p{level}"),
                                  (f"layer_blocks.{i}", f"fpn_p{level}")):
            entries.append(Entry(f"backbone.fpn.{torch_block}.0", ours, "conv", not v2))
            if v2:
                entries.append(Entry(f"backbone.fpn.{torch_block}.1", ours + "_bn", "bn"))
    entries.append(Entry("rpn.head.conv.0.0", "rpn_conv_shared", "conv"))
    if v2:
        entries.append(Entry("rpn.head.conv.1.0", "rpn_conv_shared2", "conv"))
    entries += [Entry("rpn.head.cls_logits", "rpn_class_raw", "conv"),
                Entry("rpn.head.bbox_pred", "rpn_bbox_pred", "conv_deltas")]
    if v2:
        for i in range(4):
            entries += [Entry(f"roi_heads.box_head.{i}.0", f"mrcnn_box_conv{i + 1}", "conv", False),
                        Entry(f"roi_heads.box_head.{i}.1", f"mrcnn_box_bn{i + 1}", "bn")]
        entries.append(Entry("roi_heads.box_head.5", "mrcnn_class_conv1", "fc_chw"))
    else:
        entries += [Entry("roi_heads.box_head.fc6", "mrcnn_class_conv1", "fc_chw"),
                    Entry("roi_heads.box_head.fc7", "mrcnn_class_conv2", "fc")]
    entries += [Entry("roi_heads.box_predictor.cls_score", "mrcnn_class_logits", "dense"),
                Entry("roi_heads.box_predictor.bbox_pred", "mrcnn_bbox_fc", "dense_deltas")]
    for i in range(4):
        entries.append(Entry(f"roi_heads.mask_head.{i}.0", f"mrcnn_mask_conv{i + 1}", "conv", not v2))
        if v2:
            entries.append(Entry(f"roi_heads.mask_head.{i}.1", f"mrcnn_mask_bn{i + 1}", "bn"))
    entries += [Entry("roi_heads.mask_predictor.conv5_mask", "mrcnn_mask_deconv", "deconv"),
                Entry("roi_heads.mask_predictor.mask_fcn_logits", "mrcnn_mask", "conv")]
    return entries


def torch_keys(entry):
    """The state-dict keys ``entry`` reads."""
    if entry.kind == "bn":
        return [f"{entry.torch_name}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
    return [f"{entry.torch_name}.weight"] + ([f"{entry.torch_name}.bias"] if entry.has_bias else [])


def _permute_deltas(array):
    """Rows in groups of 4 from (dx, dy, dw, dh) to (dy, dx, dh, dw)."""
    groups = array.reshape(-1, 4, *array.shape[1:])
    return groups[:, _DELTA_ORDER].reshape(array.shape)


def convert(entry, tensors, pool_size=7):
    """``{keras variable name: array}`` for ``entry`` from its torch tensors (in :func:`torch_keys` order).

    Raises ValueError naming the torch key when a tensor has the wrong rank.
    """
    keys = torch_keys(entry)
    if entry.kind == "bn":
        return dict(zip(("gamma", "beta", "moving_mean", "moving_variance"), tensors))
    weight = tensors[0]
    expected_rank = {"conv": 4, "conv_deltas": 4, "deconv": 4}.get(entry.kind, 2)
    if weight.ndim != expected_rank:
        raise ValueError(f"{keys[0]} has shape {weight.shape}, expected a rank-{expected_rank} tensor")
    bias = tensors[1] if entry.has_bias else np.zeros(weight.shape[1 if entry.kind == "deconv" else 0],
                                                      weight.dtype)
    if entry.kind in ("conv_deltas", "dense_deltas"):
        weight, bias = _permute_deltas(weight), _permute_deltas(bias)
    if entry.kind in ("conv", "conv_deltas", "deconv"):
        kernel = weight.transpose(2, 3, 1, 0)
    elif entry.kind == "fc_chw":
        out = weight.shape[0]
        channels = weight.shape[1] // (pool_size * pool_size)
        if channels * pool_size * pool_size != weight.shape[1]:
            raise ValueError(f"{keys[0]} has shape {weight.shape}: its inputs are not C x {pool_size} x "
                             f"{pool_size}")
        kernel = weight.reshape(out, channels, pool_size, pool_size).transpose(2, 3, 1, 0)
    elif entry.kind == "fc":
        kernel = weight.T[None, None]
    else:  # dense, dense_deltas
        kernel = weight.T
    return {"kernel": kernel, "bias": bias}
