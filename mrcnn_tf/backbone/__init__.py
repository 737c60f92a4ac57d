"""Backbones (ResNet-50/101, small) and the FPN."""

from mrcnn_tf.backbone.fpn import fpn_graph
from mrcnn_tf.backbone.resnet import resnet_graph
from mrcnn_tf.backbone.small import small_backbone_graph


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


__all__ = ["build_backbone", "fpn_graph", "resnet_graph", "small_backbone_graph"]
