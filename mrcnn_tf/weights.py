"""Weights by layer name, in the classic Keras HDF5 layout.

The classic layout (Keras 2 ``save_weights`` to ``.h5``, and so every
existing ``mask_rcnn_*.h5``, matterport's ``mask_rcnn_coco.h5`` included):

- the root attribute ``layer_names`` (numpy ``S`` byte strings) lists every
  layer of the flat model in order, weightless ones too (``input_image``,
  ``res4a_out``, ``roi_align_mask``: their ``weight_names`` is empty); the
  attributes ``backend`` and ``keras_version`` (e.g. ``b"2.1.3"``) sit
  beside it. ``model.save`` files hold all this under the group
  ``model_weights``; both are read.
- each layer has a group of its name with the attribute ``weight_names``,
  the TF variable names ``"<scope>/<variable>:0"`` in the layer's weight
  order, and one dataset per name (the ``/`` nests it:
  ``mrcnn_mask_conv1/mrcnn_mask_conv1/kernel:0``). Weights are read in
  ``weight_names`` order, never in the group's (alphabetical) key order.
- the heads were ``TimeDistributed`` wrappers: their weights carry the
  wrapper's name (``mrcnn_class_conv1``, ``mrcnn_class_bn1``,
  ``mrcnn_class_conv2``, ``mrcnn_class_bn2``, ``mrcnn_class_logits``,
  ``mrcnn_bbox_fc``, ``mrcnn_mask_conv1``..``4``, ``mrcnn_mask_bn1``..``4``,
  ``mrcnn_mask_deconv``, ``mrcnn_mask``), or in some files an anonymous
  inner layer's (``time_distributed_3/kernel:0``); the bare variable name
  decides. ``mrcnn_class_conv1`` is a 4-D ``[pool, pool, C, fc]`` kernel.
- Conv2D / Dense: ``kernel``, ``bias``; BatchNormalization, in this order:
  ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``.
- the RPN is the nested model ``rpn_model``: one group whose
  ``weight_names`` are its sublayers' (``rpn_conv_shared/kernel:0``,
  ``rpn_class_raw/...``, ``rpn_bbox_pred/...``); matterport's is 512 wide
  (``RPN_CONV_CHANNELS = 512``).

The sub-models the classic layout predates (:data:`FLATTENED_MODELS`:
``backbone_fpn``, ``box_head``, ``mask_head``) are opened up, their layers
being top-level groups (``conv1``, ``fpn_c5p5``, ``mrcnn_mask``) as in the
classic files; ``tests/test_weights.py`` writes such a file with h5py.

Loading by name lets a training-mode checkpoint load into the inference
graph (different layer sets), and lets old files load into this model.
Only h5py reads the file: no pickle, no code from the file is run.
"""

import json
import os
import re
import tempfile
from dataclasses import dataclass, field

import h5py
import numpy as np


@dataclass
class LoadReport:
    """What :func:`load_weights_by_name` did, layer by layer."""

    loaded: list = field(default_factory=list)
    skipped: list = field(default_factory=list)       # in the file, not in the model, or excluded
    mismatched: list = field(default_factory=list)    # (layer, weight, file shape, model shape)
    missing: list = field(default_factory=list)       # model layers with weights the file lacks

    def __str__(self):
        summary = (f"loaded {len(self.loaded)} layers, skipped {len(self.skipped)}, "
                   f"shape-mismatched {len(self.mismatched)}, not in file {len(self.missing)}")
        rpn = [entry for entry in self.mismatched if "rpn_conv_shared" in f"{entry[0]}/{entry[1]}"]
        if rpn and rpn[0][2] is not None:
            summary += (f" (the file's RPN is {rpn[0][2][-1]} wide: build the model with "
                        f"RPN_CONV_CHANNELS = {rpn[0][2][-1]} to load it)")
        return summary


# Sub-models (mrcnn_tf.modeling.mask_rcnn.build_submodels) whose layers the classic layout
# lists one by one: the classic model had them inline. Any other nested model
# (rpn_model, a Keras Applications backbone inside backbone_fpn) is one group.
FLATTENED_MODELS = ("backbone_fpn", "box_head", "mask_head")


def _classic_layers(keras_model):
    """Layers as the classic layout lists them: :data:`FLATTENED_MODELS` opened up, recursively."""
    for layer in keras_model.layers:
        if layer.name in FLATTENED_MODELS and hasattr(layer, "layers"):
            yield from _classic_layers(layer)
        else:
            yield layer


def _weighted_layers(keras_model):
    return [layer for layer in _classic_layers(keras_model) if layer.weights]


def _weight_key(variable):
    """'<sublayer>/<variable>' (no ':0'), the part of a classic name that identifies it."""
    path = variable.path
    parts = path.split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else path


def _file_key(weight_name):
    name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
    name = name.split(":")[0]
    parts = name.split("/")
    return "/".join(parts[-2:])


OPTIMIZER_GROUP = "optimizer_state"


def save_weights_by_name(keras_model, filepath, optimizer=None, training=None):
    """Write the model's weights in the classic layout, atomically.

    The file is written next to ``filepath`` and renamed over it, so a
    crash mid-write never leaves a truncated checkpoint under that name.
    With ``optimizer``, its variables (iteration count, learning rate,
    momentum slots) go into the group ``optimizer_state`` of the same file,
    so weights and optimizer state can never be out of step; classic readers
    ignore it. ``training`` (a JSON-able dict: epoch, stage) is stored as the
    JSON attribute ``training`` of that group.
    """
    directory = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(suffix=".h5.tmp", dir=directory)
    os.close(handle)
    try:
        with h5py.File(tmp_path, "w") as f:
            layers = _weighted_layers(keras_model)
            f.attrs["layer_names"] = np.array([layer.name.encode() for layer in layers])
            f.attrs["backend"] = b"tensorflow"
            for layer in layers:
                group = f.create_group(layer.name)
                names = [f"{_weight_key(w)}:0".encode() for w in layer.weights]
                group.attrs["weight_names"] = np.array(names)
                for name, variable in zip(names, layer.weights):
                    group.create_dataset(name.decode(), data=np.asarray(variable.numpy()))
            if optimizer is not None and optimizer.built:
                state = f.create_group(OPTIMIZER_GROUP)
                state.attrs["paths"] = np.array([v.path.encode() for v in optimizer.variables])
                # Which weights the slots belong to, by layer name (variable paths may carry
                # an auto-numbered model or optimizer name that differs between processes).
                state.attrs["trainable"] = json.dumps(
                    [_weight_key(v) for v in keras_model.trainable_variables])
                for index, variable in enumerate(optimizer.variables):
                    state.create_dataset(str(index), data=np.asarray(variable.numpy()))
                if training is not None:
                    state.attrs["training"] = json.dumps(training, sort_keys=True)
        with open(tmp_path, "rb") as written:  # on disk before it takes the name
            os.fsync(written.fileno())
        os.replace(tmp_path, filepath)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def read_optimizer_state(filepath):
    """The optimizer variables saved with a checkpoint: list of (path, array), or None."""
    with h5py.File(filepath, "r") as f:
        if OPTIMIZER_GROUP not in f:
            return None
        state = f[OPTIMIZER_GROUP]
        paths = [p.decode() if isinstance(p, bytes) else str(p) for p in state.attrs["paths"]]
        return [(path, state[str(i)][()]) for i, path in enumerate(paths)]


def _json_attr(filepath, name):
    with h5py.File(filepath, "r") as f:
        if OPTIMIZER_GROUP not in f or name not in f[OPTIMIZER_GROUP].attrs:
            return None
        text = f[OPTIMIZER_GROUP].attrs[name]
        return json.loads(text.decode() if isinstance(text, bytes) else str(text))


def read_training_info(filepath):
    """The training record saved with a checkpoint's optimizer state (dict), or None."""
    return _json_attr(filepath, "training")


def read_trainable_names(filepath):
    """'<layer>/<variable>' of the weights the saved optimizer trained, in order, or None."""
    return _json_attr(filepath, "trainable")


def restore_optimizer_state(optimizer, trainable_variables, saved, keep_learning_rate=False,
                            trainable_names=None):
    """Build ``optimizer`` for ``trainable_variables`` and assign a saved state.

    Args:
        optimizer: a Keras 3 optimizer (built here if not yet).
        trainable_variables: the variables it will train, in the model's order.
        saved: [(path, array)] from :func:`read_optimizer_state`.
        keep_learning_rate: leave the optimizer's current learning rate
            instead of the saved one.
        trainable_names: from :func:`read_trainable_names`; when given, the
            saved slots are used only for exactly these weights in this order.
    Returns:
        True when restored; False (state left fresh) when the saved state
        belongs to a different set of trainable variables (names, count or
        shapes differ), e.g. another training stage, where momentum of other
        weights has no meaning.
    """
    if not optimizer.built:
        optimizer.build(trainable_variables)
    variables = optimizer.variables
    if saved is None or len(saved) != len(variables) or any(
            tuple(v.shape) != tuple(value.shape) for v, (_, value) in zip(variables, saved)):
        return False
    if trainable_names is not None and list(trainable_names) != [
            _weight_key(v) for v in trainable_variables]:
        return False
    for variable, (path, value) in zip(variables, saved):
        # "sgd/learning_rate" (the optimizer's own name may differ between processes)
        if keep_learning_rate and path.split("/")[-1] == "learning_rate":
            continue
        variable.assign(value)
    return True


def load_weights_by_name(keras_model, filepath, exclude=None):
    """Assign weights from a classic-layout HDF5 file to layers of the same name.

    Args:
        keras_model: the Keras model to fill.
        filepath: ``.h5`` file in the classic layout.
        exclude: layer names (or regular expressions matched in full) to
            leave untouched, e.g. the class-specific heads when the number
            of classes differs.
    Returns:
        LoadReport. Layers whose weight shapes differ are left untouched and
        listed in ``mismatched``.
    Raises:
        FileNotFoundError, or ValueError naming the file if it is not in the
        classic layout.
    """
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"weights file not found: {filepath}")
    excluded = [re.compile(pattern) for pattern in (exclude or [])]
    report = LoadReport()
    model_layers = {layer.name: layer for layer in _weighted_layers(keras_model)}
    with h5py.File(filepath, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f  # full-model .h5 files
        if "layer_names" not in root.attrs:
            raise ValueError(f"{filepath}: not a classic Keras HDF5 weights file "
                             f"(no 'layer_names' attribute)")
        found = set()
        for raw_name in root.attrs["layer_names"]:
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            group = root[name]
            weight_names = list(group.attrs.get("weight_names", []))
            if not weight_names:
                continue
            layer = model_layers.get(name)
            if layer is None or any(p.fullmatch(name) for p in excluded):
                report.skipped.append(name)
                continue
            found.add(name)
            stored = {_file_key(w): group[w.decode() if isinstance(w, bytes) else w][()]
                      for w in weight_names}
            _assign_layer(layer, stored, filepath, report)
    report.missing = [name for name in model_layers
                      if name not in found and not any(p.fullmatch(name) for p in excluded)]
    return report


def _assign_layer(layer, stored, filepath, report):
    """Assign a layer's weights from ``stored`` {key: array, in file order}, all or nothing.

    Each variable is found by ``<sublayer>/<variable>``, else by its bare name
    (``kernel``, ``gamma``: TimeDistributed wrappers and Keras-2 inner layers
    name the sublayer differently). If names do not identify every variable
    but the counts agree, the file's order is used, as Keras 2's own
    ``load_weights(by_name=True)`` does (old files name weights ``conv1_W``).
    """
    def by_name(variable):
        key = _weight_key(variable)
        if key in stored:
            return stored[key]
        matches = [v for k, v in stored.items() if k.split("/")[-1] == key.split("/")[-1]]
        return matches[0] if len(matches) == 1 else None

    values = [by_name(variable) for variable in layer.weights]
    if any(value is None for value in values) and len(stored) == len(layer.weights):
        values = list(stored.values())
    updates = []
    for variable, value in zip(layer.weights, values):
        key = _weight_key(variable)
        if value is None:
            report.mismatched.append((layer.name, key, None, tuple(variable.shape)))
            return
        if tuple(value.shape) != tuple(variable.shape):
            report.mismatched.append((layer.name, key, tuple(value.shape), tuple(variable.shape)))
            return
        updates.append((variable, value))
    for variable, value in updates:
        variable.assign(value)
    report.loaded.append(layer.name)


# ------------------------------------------------------------------ ImageNet
# The files Keras Applications downloads; with no network they must be put here by hand.
IMAGENET_FILES = {
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet101": "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
_APPLICATION_LAYER = re.compile(r"conv(\d)_block(\d+)_(\d)_(conv|bn)")
_BRANCH = {"0": "1", "1": "2a", "2": "2b", "3": "2c"}


def classic_resnet_name(application_name):
    """Keras Applications ResNet layer name -> classic name, or None if unmapped.

    ``conv1_conv`` -> ``conv1``, ``conv1_bn`` -> ``bn_conv1``,
    ``conv3_block2_1_conv`` -> ``res3b_branch2a``, ``conv4_block1_0_bn`` -> ``bn4a_branch1``.
    """
    if application_name == "conv1_conv":
        return "conv1"
    if application_name == "conv1_bn":
        return "bn_conv1"
    match = _APPLICATION_LAYER.fullmatch(application_name)
    if not match:
        return None
    stage, block, branch, kind = match.groups()
    letter = chr(ord("a") + int(block) - 1)
    prefix = "res" if kind == "conv" else "bn"
    return f"{prefix}{stage}{letter}_branch{_BRANCH[branch]}"


def imagenet_weights_path(architecture, cache_dir=None):
    """Where the ImageNet file for ``architecture`` must be; an error says so if absent."""
    if architecture not in IMAGENET_FILES:
        raise ValueError(f"ImageNet weights exist for {sorted(IMAGENET_FILES)}, not {architecture!r}")
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".keras", "models")
    path = os.path.join(cache_dir, IMAGENET_FILES[architecture])
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"ImageNet weights for {architecture} not found: put the Keras Applications file "
            f"{IMAGENET_FILES[architecture]} at {path} (or set BACKBONE_WEIGHTS to its path); "
            f"nothing is downloaded at run time")
    return path


def _application_weights(path, architecture):
    """{application layer name: {variable short name: array}} from either file format."""
    if path.endswith(".weights.h5"):  # Keras 3 format: read by structure through the model
        import keras

        builder = {"resnet50": keras.applications.ResNet50,
                   "resnet101": keras.applications.ResNet101}[architecture]
        reference = builder(weights=None, include_top=False)
        reference.load_weights(path)
        return {layer.name: {w.path.split("/")[-1]: w.numpy() for w in layer.weights}
                for layer in reference.layers if layer.weights}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ValueError(f"{path}: neither a Keras 3 .weights.h5 nor a classic HDF5 weights file")
        stored = {}
        for raw_name in root.attrs["layer_names"]:
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            group = root[name]
            names = [w.decode() if isinstance(w, bytes) else w for w in group.attrs.get("weight_names", [])]
            if names:
                stored[name] = {_file_key(w).split("/")[-1]: group[w][()] for w in names}
        return stored


# Backbone layers an ImageNet file must fill: stem, and every bottleneck convolution and BN.
_CLASSIC_BACKBONE_LAYER = re.compile(r"conv1|bn_conv1|(res|bn)[2-5][a-z]_branch(1|2[abc])")


def load_imagenet_backbone(keras_model, weights, architecture="resnet50", mean_pixel=None,
                           pixel_std=(1.0, 1.0, 1.0), channel_order="RGB"):
    """Map Keras Applications ResNet weights onto the classic-named backbone.

    The files' weights expect ``keras.applications.resnet.preprocess_input``
    of RGB pixels: caffe style, BGR minus the BGR ImageNet mean
    (103.939, 116.779, 123.68), no scaling. Given the model's own input
    normalisation (``mean_pixel`` etc., as :func:`mrcnn_tf.ops.image.normalize`
    applies it), ``conv1`` is adapted on load (:func:`_fold_input_map`): its
    kernel's input channels are reordered and scaled, the mean difference
    goes into its bias, so that ``conv1`` of the normalised image equals
    Keras Applications' ``conv1_conv`` of ``preprocess_input(image)``.
    That is exact, except in the outputs whose 7x7 window reaches into
    conv1's 3-pixel zero padding: there the padding acts as pixels of colour
    ``mean_pixel`` rather than the caffe mean (no difference when
    ``mean_pixel`` is the caffe mean; 0.04 of 255 with the default one).

    Args:
        keras_model: a model containing the ResNet layers (``conv1``, ``res2a_branch2a``, ...).
        weights: "imagenet" (the file Keras Applications caches, see
            :func:`imagenet_weights_path`), or a path to that file (classic HDF5) or to a
            Keras 3 ``.weights.h5`` of ``keras.applications.ResNet50/101``. Files that
            already use the classic names (the older ``deep-learning-models`` release
            of the same file name, which matterport downloads, also caffe BGR) load as they are.
        architecture: "resnet50" or "resnet101".
        mean_pixel, pixel_std, channel_order: the normalisation of the images
            the model receives (Config's MEAN_PIXEL, PIXEL_STD,
            INPUT_CHANNEL_ORDER: ``(pixels[order] - mean) / std``). With
            ``mean_pixel`` None the weights are copied unchanged (the model is
            fed ``preprocess_input``'s caffe-style input itself).
    Returns:
        LoadReport (``loaded``: our layer names; ``skipped``: the file's layers not used).
    Raises:
        FileNotFoundError; ValueError naming the first backbone layer whose weights do
        not fit, or that the file does not provide.
    """
    path = imagenet_weights_path(architecture) if weights == "imagenet" else weights
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    model_layers = {layer.name: layer for layer in _weighted_layers(keras_model)}
    report = LoadReport()
    for application_name, values in _application_weights(path, architecture).items():
        classic = classic_resnet_name(application_name) or application_name
        layer = model_layers.get(classic)
        if layer is None or not _CLASSIC_BACKBONE_LAYER.fullmatch(classic):
            report.skipped.append(application_name)
            continue
        _assign_layer(layer, {f"{classic}/{k}": v for k, v in values.items()}, path, report)
    if report.mismatched:
        raise ValueError(f"{path}: weights of {report.mismatched[0][0]} do not fit the backbone "
                         f"(file {report.mismatched[0][2]}, model {report.mismatched[0][3]})")
    report.missing = sorted(name for name in model_layers
                            if _CLASSIC_BACKBONE_LAYER.fullmatch(name) and name not in report.loaded)
    if report.missing:
        raise ValueError(f"{path}: no weights for backbone layer {report.missing[0]} "
                         f"({len(report.missing)} backbone layers missing; is it a "
                         f"{architecture} ImageNet file?)")
    if mean_pixel is not None:
        _fold_input_map(model_layers["conv1"], architecture, mean_pixel, pixel_std, channel_order)
    return report


_APPLICATIONS = {"resnet50": "ResNet50", "resnet101": "ResNet101"}


def _fold_input_map(conv1, architecture, mean_pixel, pixel_std, channel_order):
    """Make ``conv1`` (kernel [kh, kw, 3, C], bias [C]) take the config-normalised image.

    With ``preprocess_input(rgb) = molded @ M + b`` (:func:`input_map`: the
    normalisation undone, then Keras's caffe map, both per pixel), the
    convolution of the preprocessed image is that of the molded image with
    kernel ``M @ K`` (over input channels) and bias ``bias + sum(K . b)``.
    """
    from mrcnn_tf.modeling.backbone.keras_applications import input_map

    matrix, offset = input_map(_APPLICATIONS[architecture], tuple(mean_pixel), tuple(pixel_std),
                               channel_order)
    kernel = conv1.kernel.numpy().astype(np.float64)
    bias = conv1.bias.numpy().astype(np.float64)
    conv1.kernel.assign(np.einsum("cj,hwjo->hwco", matrix, kernel).astype(np.float32))
    conv1.bias.assign((bias + np.einsum("hwjo,j->o", kernel, offset)).astype(np.float32))
