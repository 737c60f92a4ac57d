"""Backbones (ResNet-50/101, small) and the FPN."""

import keras

from mrcnn_tf.modeling.backbone.fpn import fpn_graph
from mrcnn_tf.modeling.backbone.keras_applications import (check_feature_model, is_keras_backbone,
                                                           keras_application_graph)
from mrcnn_tf.modeling.backbone.resnet import resnet_graph
from mrcnn_tf.modeling.backbone.small import small_backbone_graph


def build_backbone(input_image, backbone, keras_options=None, **resnet_options):
    """C2..C5 for ``backbone``: "resnet50", "resnet101", "small" or a callable.

    A callable takes the input Keras tensor and returns [C2, C3, C4, C5]
    with strides 4, 8, 16 and 32. ``resnet_options`` (``stride_on``,
    ``bn_epsilon``) go to :func:`resnet_graph`. ``"keras:<Name>"`` is a Keras
    Applications model (:mod:`.keras_applications`; ``keras_options``: the
    config's ``mean_pixel``, ``pixel_std``, ``channel_order`` and ``weights``).
    """
    if isinstance(backbone, keras.Model):  # a user's feature model: check its strides first
        check_feature_model(backbone)
    if callable(backbone):
        features = backbone(input_image)
    elif is_keras_backbone(backbone):
        features = keras_application_graph(input_image, backbone, **(keras_options or {}))
    elif backbone in ("resnet50", "resnet101"):
        features = resnet_graph(input_image, backbone, **resnet_options)
    elif backbone == "small":
        features = small_backbone_graph(input_image)
    else:
        raise ValueError(f"BACKBONE must be 'resnet50', 'resnet101', 'small' or a callable, got {backbone!r}")
    if len(features) != 4:
        raise ValueError(f"a backbone must return [C2, C3, C4, C5], got {len(features)} maps")
    return features


def build_backbone_fpn(image_shape, backbone, channels=256, resnet_options=None, fpn_norm="none",
                       fpn_bn_epsilon=1e-5, keras_options=None):
    """Backbone and FPN as one Keras model named ``backbone_fpn``.

    Its layers keep the classic names (``conv1``, ``res2a_branch2a``,
    ``fpn_c5p5``, ...), which weight files use.

    Args:
        image_shape: (H, W, C) of its input; H and W may be None (any size:
            the graphs that call it give the static sizes they know).
        backbone: as :func:`build_backbone`.
        channels: width of every pyramid level.
        resnet_options: dict of :func:`resnet_graph` options (``stride_on``,
            ``bn_epsilon``) for a ResNet backbone.
        fpn_norm, fpn_bn_epsilon: the FPN's ``norm`` and ``bn_epsilon``.
        keras_options: dict for a ``"keras:<Name>"`` backbone, see
            :func:`build_backbone`.
    Returns:
        keras.Model: image [B, H, W, C], mean-subtracted -> [P2, P3, P4, P5, P6],
        [B, H / s, W / s, channels] for strides s = 4, 8, 16, 32, 64.
    """
    image = keras.Input(tuple(image_shape), name="input_backbone_image")
    c2, c3, c4, c5 = build_backbone(image, backbone, keras_options, **(resnet_options or {}))
    return keras.Model(image, fpn_graph(c2, c3, c4, c5, channels, fpn_norm, fpn_bn_epsilon),
                       name="backbone_fpn")


__all__ = ["build_backbone", "build_backbone_fpn", "fpn_graph", "resnet_graph", "small_backbone_graph"]
