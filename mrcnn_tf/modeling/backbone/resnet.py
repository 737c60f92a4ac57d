"""ResNet-50/101 (He et al. 2016) with the classic Keras layer names.

Layer names and weight shapes follow the original Keras ResNet50 and the
classic Keras Mask R-CNN (``conv1``, ``bn_conv1``, ``res2a_branch2a``,
``bn2a_branch2a``, ...), so ImageNet and existing Mask R-CNN weight files
map onto it by name. Stride sits in the first 1x1 convolution of a stage
and the stem pools as Keras Applications does (pad 1, 3x3/2 max pool), with
its BatchNorm epsilon 1.001e-5: the geometry the ImageNet weights were
trained with, so C5 equals ``keras.applications.ResNet50``'s output.

torchvision's ResNet ("v1.5") puts the stride on the 3x3 convolution
instead (``stride_on="3x3"``), padded symmetrically by one pixel as PyTorch
pads (TF's "same" would pad a stride-2 convolution bottom/right only), and
its weights want their own BatchNorm epsilon (``bn_epsilon``: 0.0 for
torchvision's v1 COCO weights, 1e-5 for v2's).
"""

from keras import layers

# Residual blocks per stage (conv2_x .. conv5_x).
BN_EPSILON = 1.001e-5
STRIDE_PLACES = ("1x1", "3x3")
STAGE_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


def _bottleneck(x, filters, stage, block, strides=1, projection=False, stride_on="1x1",
                bn_epsilon=BN_EPSILON):
    """A bottleneck block: 1x1 -> 3x3 -> 1x1 (+ shortcut), post-activation."""
    f1, f2, f3 = filters
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    shortcut = x
    stride_1x1, stride_3x3 = (strides, 1) if stride_on == "1x1" else (1, strides)
    y = layers.Conv2D(f1, 1, strides=stride_1x1, name=conv + "2a")(x)
    y = layers.BatchNormalization(epsilon=bn_epsilon, name=bn + "2a")(y)
    y = layers.Activation("relu")(y)
    if stride_3x3 > 1:  # PyTorch's symmetric padding (TF's "same" pads bottom/right only)
        y = layers.ZeroPadding2D(1, name=conv + "2b_pad")(y)
        y = layers.Conv2D(f2, 3, strides=stride_3x3, name=conv + "2b")(y)
    else:
        y = layers.Conv2D(f2, 3, padding="same", name=conv + "2b")(y)
    y = layers.BatchNormalization(epsilon=bn_epsilon, name=bn + "2b")(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(f3, 1, name=conv + "2c")(y)
    y = layers.BatchNormalization(epsilon=bn_epsilon, name=bn + "2c")(y)
    if projection:
        shortcut = layers.Conv2D(f3, 1, strides=strides, name=conv + "1")(x)
        shortcut = layers.BatchNormalization(epsilon=bn_epsilon, name=bn + "1")(shortcut)
    y = layers.Add(name=f"res{stage}{block}_add")([y, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def _block_letter(index):
    # The classic naming: a, b, c, ... (ResNet-101's stage 4 reaches 'w').
    return chr(ord("a") + index)


def resnet_graph(input_image, architecture="resnet50", stride_on="1x1", bn_epsilon=BN_EPSILON):
    """ResNet body on a Keras tensor.

    Args:
        input_image: Keras tensor [B, H, W, 3], mean-subtracted RGB.
        architecture: "resnet50" or "resnet101".
        stride_on: "1x1" (Keras Applications / MSRA) or "3x3" (torchvision):
            the bottleneck convolution that carries a stage's stride 2.
        bn_epsilon: epsilon of every BatchNorm (the weights' own).
    Returns:
        [C2, C3, C4, C5]: feature maps of strides 4, 8, 16, 32 with
        256, 512, 1024 and 2048 channels.
    """
    if architecture not in STAGE_BLOCKS:
        raise ValueError(f"architecture must be one of {sorted(STAGE_BLOCKS)}, got {architecture!r}")
    if stride_on not in STRIDE_PLACES:
        raise ValueError(f"stride_on must be one of {STRIDE_PLACES}, got {stride_on!r}")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(input_image)
    x = layers.Conv2D(64, 7, strides=2, name="conv1")(x)
    x = layers.BatchNormalization(epsilon=bn_epsilon, name="bn_conv1")(x)
    x = layers.Activation("relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)  # after ReLU, so 0 never wins the max
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)

    outputs = []
    for stage, (blocks, width) in enumerate(zip(STAGE_BLOCKS[architecture], (64, 128, 256, 512)), 2):
        filters = (width, width, 4 * width)
        for index in range(blocks):
            first = index == 0
            strides = 2 if first and stage > 2 else 1
            x = _bottleneck(x, filters, stage, _block_letter(index), strides, projection=first,
                            stride_on=stride_on, bn_epsilon=bn_epsilon)
        outputs.append(x)
    return outputs
