"""Feature Pyramid Network (Lin et al. 2017) with the classic Keras names."""

from keras import layers


def fpn_graph(c2, c3, c4, c5, channels=256):
    """Top-down pathway with lateral connections.

    Args:
        c2..c5: backbone maps of strides 4, 8, 16, 32 (any widths).
        channels: width of every pyramid level.
    Returns:
        [P2, P3, P4, P5, P6]: strides 4..64, ``channels`` wide. P6 (a
        stride-2 subsample of P5) feeds only the RPN, as in the paper.
    """
    p5 = layers.Conv2D(channels, 1, name="fpn_c5p5")(c5)
    p4 = layers.Add(name="fpn_p4add")([
        layers.UpSampling2D(2, name="fpn_p5upsampled")(p5),
        layers.Conv2D(channels, 1, name="fpn_c4p4")(c4)])
    p3 = layers.Add(name="fpn_p3add")([
        layers.UpSampling2D(2, name="fpn_p4upsampled")(p4),
        layers.Conv2D(channels, 1, name="fpn_c3p3")(c3)])
    p2 = layers.Add(name="fpn_p2add")([
        layers.UpSampling2D(2, name="fpn_p3upsampled")(p3),
        layers.Conv2D(channels, 1, name="fpn_c2p2")(c2)])
    # 3x3 smoothing removes the aliasing of nearest-neighbour upsampling.
    p2 = layers.Conv2D(channels, 3, padding="same", name="fpn_p2")(p2)
    p3 = layers.Conv2D(channels, 3, padding="same", name="fpn_p3")(p3)
    p4 = layers.Conv2D(channels, 3, padding="same", name="fpn_p4")(p4)
    p5 = layers.Conv2D(channels, 3, padding="same", name="fpn_p5")(p5)
    p6 = layers.MaxPooling2D(1, strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]
