"""Backbones (ResNet-50/101, small) and the FPN."""

import keras

from mrcnn_tf.modeling.backbone.fpn import fpn_graph
from mrcnn_tf.modeling.backbone.resnet import resnet_graph
from mrcnn_tf.modeling.backbone.small import small_backbone_graph


def build_backbone(input_image, backbone):
    """C2..C5 for ``backbone``: "resnet50", "resnet101", "small" or a callable.

    A callable takes the input Keras tensor and returns [C2, C3, C4, C5]
    with strides 4, 8, 16 and 32.
    """
    if callable(backbone):
        features = backbone(input_image)
    elif backbone in ("resnet50", "resnet101"):
        features = resnet_graph(input_image, backbone)
    elif backbone == "small":
        features = small_backbone_graph(input_image)
    else:
        raise ValueError(f"BACKBONE must be 'resnet50', 'resnet101', 'small' or a callable, got {backbone!r}")
    if len(features) != 4:
        raise ValueError(f"a backbone must return [C2, C3, C4, C5], got {len(features)} maps")
    return features


def build_backbone_fpn(image_shape, backbone, channels=256):
    """Backbone and FPN as one Keras model named ``backbone_fpn``.

    Its layers keep the classic names (``conv1``, ``res2a_branch2a``,
    ``fpn_c5p5``, ...), which weight files use.

    Args:
        image_shape: (H, W, C) of its input; H and W may be None (any size:
            the graphs that call it give the static sizes they know).
        backbone: as :func:`build_backbone`.
        channels: width of every pyramid level.
    Returns:
        keras.Model: image [B, H, W, C], mean-subtracted -> [P2, P3, P4, P5, P6],
        [B, H / s, W / s, channels] for strides s = 4, 8, 16, 32, 64.
    """
    image = keras.Input(tuple(image_shape), name="input_backbone_image")
    c2, c3, c4, c5 = build_backbone(image, backbone)
    return keras.Model(image, fpn_graph(c2, c3, c4, c5, channels), name="backbone_fpn")


__all__ = ["build_backbone", "build_backbone_fpn", "fpn_graph", "resnet_graph", "small_backbone_graph"]
