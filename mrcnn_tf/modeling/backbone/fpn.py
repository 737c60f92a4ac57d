"""Feature Pyramid Network (Lin et al. 2017) with the classic Keras names."""

from keras import layers


def fpn_graph(c2, c3, c4, c5, channels=256, norm="none", bn_epsilon=1e-5):
    """Top-down pathway with lateral connections.

    torchvision's FPN is this graph (its inner blocks are ``fpn_cXpX``, its
    layer blocks ``fpn_pX``, nearest upsampling, P6 by a stride-2 max-pool of
    P5); its v2 adds a BatchNorm after each of them (``norm="batch"``).

    Args:
        c2..c5: backbone maps of strides 4, 8, 16, 32 (any widths).
        channels: width of every pyramid level.
        norm: "none", or "batch": BatchNorm (named ``<conv>_bn``) after every
            convolution.
        bn_epsilon: epsilon of those BatchNorms.
    Returns:
        [P2, P3, P4, P5, P6]: strides 4..64, ``channels`` wide. P6 (a
        stride-2 subsample of P5) feeds only the RPN, as in the paper.
    """
    if norm not in ("none", "batch"):
        raise ValueError(f"FPN norm must be 'none' or 'batch', got {norm!r}")

    def conv(x, size, name):
        x = layers.Conv2D(channels, size, padding="same", name=name)(x)
        return layers.BatchNormalization(epsilon=bn_epsilon, name=name + "_bn")(x) if norm == "batch" else x

    p5 = conv(c5, 1, "fpn_c5p5")
    p4 = layers.Add(name="fpn_p4add")([
        layers.UpSampling2D(2, name="fpn_p5upsampled")(p5), conv(c4, 1, "fpn_c4p4")])
    p3 = layers.Add(name="fpn_p3add")([
        layers.UpSampling2D(2, name="fpn_p4upsampled")(p4), conv(c3, 1, "fpn_c3p3")])
    p2 = layers.Add(name="fpn_p2add")([
        layers.UpSampling2D(2, name="fpn_p3upsampled")(p3), conv(c2, 1, "fpn_c2p2")])
    # 3x3 smoothing removes the aliasing of nearest-neighbour upsampling.
    p2 = conv(p2, 3, "fpn_p2")
    p3 = conv(p3, 3, "fpn_p3")
    p4 = conv(p4, 3, "fpn_p4")
    p5 = conv(p5, 3, "fpn_p5")
    p6 = layers.MaxPooling2D(1, strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]
