"""A small residual backbone for CPU tests and demos.

Four stages of basic residual blocks (16, 32, 64, 128 channels) with
GroupNormalization, so it trains from scratch with batches of one or two
images. About 0.2 GFLOPs on a 128x128 image (``model_flops`` in
``mrcnn_tf.model.summary`` counts it), against ~4.1 GFLOPs for ResNet-50's
body at 224x224.
"""

from keras import layers

SMALL_WIDTHS = (16, 32, 64, 128)


def _norm(name):
    return layers.GroupNormalization(groups=8, epsilon=1e-5, name=name)


def _basic_block(x, filters, name, strides):
    """3x3 -> 3x3 residual block with a projection shortcut when the shape changes."""
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name + "_conv1")(x)
    y = _norm(name + "_gn1")(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name + "_conv2")(y)
    y = _norm(name + "_gn2")(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=name + "_proj")(x)
        shortcut = _norm(name + "_proj_gn")(shortcut)
    y = layers.Add(name=name + "_add")([y, shortcut])
    return layers.Activation("relu", name=name + "_out")(y)


def small_backbone_graph(input_image):
    """Small backbone on a Keras tensor.

    Args:
        input_image: Keras tensor [B, H, W, 3], mean-subtracted RGB.
    Returns:
        [C2, C3, C4, C5] of strides 4, 8, 16, 32 and 16, 32, 64, 128 channels.
    """
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="small_stem_conv")(input_image)
    x = _norm("small_stem_gn")(x)
    x = layers.Activation("relu")(x)
    outputs = []
    for stage, filters in enumerate(SMALL_WIDTHS, 2):
        x = _basic_block(x, filters, f"small_stage{stage}", strides=2)
        outputs.append(x)
    return outputs
