"""Backbones from Keras Applications: ``BACKBONE = "keras:MobileNetV3Large"`` (any model by name).

C2..C5 are found by stride: for each of 4, 8, 16 and 32, the last layer
(in the model's topological order) whose output is exactly 1/stride of the
input's side, measured on a 256 x 256 probe (shapes only, no computation).
Every ``keras.applications`` constructor with ``include_top=False`` works.

Pixels: the molded image the backbone receives is ``(RGB pixel - MEAN_PIXEL)
/ PIXEL_STD`` in INPUT_CHANNEL_ORDER (the config's normalisation, shared by
every backbone). Each application expects its own ``preprocess_input`` of
raw RGB pixels instead: "tf" models (ResNet50V2, MobileNetV2) x / 127.5 - 1,
"caffe" ones (ResNet50) BGR minus the ImageNet mean, "torch" ones
(DenseNet) (x / 255 - mean) / std, and the newer models (MobileNetV3,
EfficientNetV2, ConvNeXt) raw 0..255 pixels, their rescaling being a layer
inside. Each of these is affine per channel (with an optional channel
flip), so :class:`PixelAffine` inverts the config's normalisation and applies
the model's own convention in one frozen 3x3 map: whatever MEAN_PIXEL,
PIXEL_STD and INPUT_CHANNEL_ORDER say, the application sees exactly
``preprocess_input(RGB pixels)``, as its ImageNet weights were trained.
The map is read off the module's ``preprocess_input`` itself (on probe
pixels, checked to be affine), so it cannot drift from Keras's.
"""

import functools
import importlib

import keras
import numpy as np

KERAS_PREFIX = "keras:"
STRIDES = (4, 8, 16, 32)
_PROBE_SIDE = 256


def is_keras_backbone(backbone):
    """True for a ``"keras:<Name>"`` BACKBONE string."""
    return isinstance(backbone, str) and backbone.startswith(KERAS_PREFIX)


def application_names():
    """Sorted names of the ``keras.applications`` model constructors."""
    return sorted(name for name in dir(keras.applications)
                  if name[:1].isupper() and callable(getattr(keras.applications, name)))


def application_name(backbone):
    """``"keras:<Name>"`` -> ``<Name>``, or a ValueError listing the supported names."""
    name = backbone[len(KERAS_PREFIX):] if is_keras_backbone(backbone) else None
    if name not in application_names():
        raise ValueError(f"BACKBONE {backbone!r}: no keras.applications model of that name; "
                         f"supported: {', '.join(KERAS_PREFIX + n for n in application_names())}")
    return name


def _constructor(name):
    return getattr(keras.applications, name)


def feature_layers(app, name):
    """The C2..C5 layers of the application model ``app`` (see the module docstring).

    Found on ``app`` itself, by position: auto-named layers (``re_lu_5``)
    are numbered by a process-wide counter, so names differ between builds.
    """
    candidates = [layer for layer in app.layers if len(layer.output.shape) == 4]
    probe = keras.Model(app.input, [layer.output for layer in candidates])
    specs = probe.compute_output_spec(keras.KerasTensor((1, _PROBE_SIDE, _PROBE_SIDE, 3)))
    found = {}
    for layer, spec in zip(candidates, specs):
        side = _PROBE_SIDE // spec.shape[1] if spec.shape[1] else None
        if spec.shape[1] == spec.shape[2] and side in STRIDES and side * spec.shape[1] == _PROBE_SIDE:
            found[side] = layer
    missing = [s for s in STRIDES if s not in found]
    if missing:
        raise ValueError(f"BACKBONE 'keras:{name}': no layer at stride {missing} "
                         f"(a {_PROBE_SIDE} px probe); C2..C5 need strides {STRIDES}")
    return [found[s] for s in STRIDES]


@functools.lru_cache(maxsize=None)
def preprocess_map(name):
    """(matrix [3, 3], offset [3]) with ``preprocess_input(rgb) = rgb @ matrix + offset``.

    Read off the application module's ``preprocess_input`` at the black pixel
    and the three pure primaries, then checked on random pixels.
    Raises:
        ValueError if that ``preprocess_input`` is not affine per pixel.
    """
    preprocess = importlib.import_module(_constructor(name).__module__).preprocess_input
    basis = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.float32)
    out = np.asarray(preprocess(basis[None, None].copy()), np.float64).reshape(4, 3)
    offset = out[0]
    matrix = (out[1:] - offset) / 255.0
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 1, 16, 3)).astype(np.float32)
    expected = np.asarray(preprocess(pixels.copy()), np.float64).reshape(16, 3)
    if not np.allclose(pixels.reshape(16, 3) @ matrix + offset, expected, atol=1e-3):
        raise ValueError(f"BACKBONE 'keras:{name}': its preprocess_input is not a per-channel "
                         "affine map, which the molded-image normalisation cannot express")
    return matrix.astype(np.float32), offset.astype(np.float32)


def input_map(name, mean_pixel, pixel_std, channel_order):
    """(matrix, offset) from the config-normalised image to the application's input.

    ``molded = (pixels[order] - mean) / std`` is undone (``order`` = the
    channel order, RGB or BGR), then :func:`preprocess_map` applied.
    """
    matrix, offset = preprocess_map(name)
    std = np.asarray(pixel_std, np.float32)
    mean = np.asarray(mean_pixel, np.float32)
    # Molded channel c holds RGB channel order[c]: rows of the RGB map, permuted.
    order = [0, 1, 2] if channel_order == "RGB" else [2, 1, 0]
    permuted = matrix[order]
    return std[:, None] * permuted, mean @ permuted + offset


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class PixelAffine(keras.layers.Layer):
    """``x @ matrix + offset`` on the channel axis: a frozen, weightless 1x1 map.

    Input/output: float [B, H, W, 3].
    """

    def __init__(self, matrix, offset, **kwargs):
        super().__init__(**kwargs)
        self.matrix = np.asarray(matrix, np.float32).reshape(3, 3)
        self.offset = np.asarray(offset, np.float32).reshape(3)

    def call(self, images):
        matrix = keras.ops.convert_to_tensor(self.matrix, images.dtype)
        offset = keras.ops.convert_to_tensor(self.offset, images.dtype)
        return keras.ops.tensordot(images, matrix, axes=[[3], [0]]) + offset

    def get_config(self):
        return {**super().get_config(), "matrix": self.matrix.tolist(), "offset": self.offset.tolist()}


def keras_application_graph(input_image, backbone, mean_pixel, pixel_std, channel_order="RGB",
                            weights=None):
    """[C2, C3, C4, C5] of a Keras Applications model on the molded image.

    Args:
        input_image: Keras tensor [B, H, W, 3], normalised by the config.
        backbone: ``"keras:<Name>"``.
        mean_pixel, pixel_std, channel_order: the config's normalisation
            (MEAN_PIXEL, PIXEL_STD, INPUT_CHANNEL_ORDER), undone here.
        weights: None (random), "imagenet" (Keras downloads its file) or the
            path of the application's ``..._notop.h5`` (offline).
    Returns:
        four Keras tensors at strides 4, 8, 16, 32. The application is one
        nested model named ``keras_<name>`` (its own layer names inside).
    """
    name = application_name(backbone)
    if input_image.shape[-1] != 3:
        raise ValueError(f"BACKBONE {backbone!r} needs 3-channel images, got {input_image.shape[-1]}")
    app = _constructor(name)(include_top=False, weights=weights, input_shape=(None, None, 3))
    features = keras.Model(app.input, [layer.output for layer in feature_layers(app, name)],
                           name=f"keras_{name.lower()}")
    matrix, offset = input_map(name, mean_pixel, pixel_std, channel_order)
    pixels = PixelAffine(matrix, offset, name="keras_preprocess_input")(input_image)
    return list(features(pixels))


def check_feature_model(model):
    """A user's ``keras.Model`` backbone: four outputs at strides 4, 8, 16, 32, or a ValueError."""
    outputs = model.compute_output_spec(keras.KerasTensor((1, _PROBE_SIDE, _PROBE_SIDE, 3)))
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    sides = [tuple(o.shape[1:3]) for o in outputs]
    expected = [(_PROBE_SIDE // s,) * 2 for s in STRIDES]
    if sides != expected:
        raise ValueError(f"a keras.Model BACKBONE must return 4 maps at strides {STRIDES}: on a "
                         f"{_PROBE_SIDE} px input they should be {expected}, got {sides}")
