"""ResNet-50/101 (He et al. 2016) with the classic Keras layer names.

Layer names and weight shapes follow the original Keras ResNet50 and the
classic Keras Mask R-CNN (``conv1``, ``bn_conv1``, ``res2a_branch2a``,
``bn2a_branch2a``, ...), so ImageNet and existing Mask R-CNN weight files
map onto it by name. Stride sits in the first 1x1 convolution of a stage
and the stem pools as Keras Applications does (pad 1, 3x3/2 max pool), with
its BatchNorm epsilon 1.001e-5: the geometry the ImageNet weights were
trained with, so C5 equals ``keras.applications.ResNet50``'s output.
"""

from keras import layers

# Residual blocks per stage (conv2_x .. conv5_x).
BN_EPSILON = 1.001e-5
STAGE_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


def _bottleneck(x, filters, stage, block, strides=1, projection=False):
    """A bottleneck block: 1x1 -> 3x3 -> 1x1 (+ shortcut), post-activation."""
    f1, f2, f3 = filters
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    shortcut = x
    y = layers.Conv2D(f1, 1, strides=strides, name=conv + "2a")(x)
    y = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn + "2a")(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(f2, 3, padding="same", name=conv + "2b")(y)
    y = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn + "2b")(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(f3, 1, name=conv + "2c")(y)
    y = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn + "2c")(y)
    if projection:
        shortcut = layers.Conv2D(f3, 1, strides=strides, name=conv + "1")(x)
        shortcut = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn + "1")(shortcut)
    y = layers.Add(name=f"res{stage}{block}_add")([y, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def _block_letter(index):
    # The classic naming: a, b, c, ... (ResNet-101's stage 4 reaches 'w').
    return chr(ord("a") + index)


def resnet_graph(input_image, architecture="resnet50"):
    """ResNet body on a Keras tensor.

    Args:
        input_image: Keras tensor [B, H, W, 3], mean-subtracted RGB.
        architecture: "resnet50" or "resnet101".
    Returns:
        [C2, C3, C4, C5]: feature maps of strides 4, 8, 16, 32 with
        256, 512, 1024 and 2048 channels.
    """
    if architecture not in STAGE_BLOCKS:
        raise ValueError(f"architecture must be one of {sorted(STAGE_BLOCKS)}, got {architecture!r}")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(input_image)
    x = layers.Conv2D(64, 7, strides=2, name="conv1")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="bn_conv1")(x)
    x = layers.Activation("relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)  # after ReLU, so 0 never wins the max
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)

    outputs = []
    for stage, (blocks, width) in enumerate(zip(STAGE_BLOCKS[architecture], (64, 128, 256, 512)), 2):
        filters = (width, width, 4 * width)
        for index in range(blocks):
            first = index == 0
            strides = 2 if first and stage > 2 else 1
            x = _bottleneck(x, filters, stage, _block_letter(index), strides, projection=first)
        outputs.append(x)
    return outputs
