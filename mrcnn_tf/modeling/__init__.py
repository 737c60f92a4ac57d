"""Mask R-CNN's network, by stage, in the order data flows through it.

- ``backbone/``: ResNet-50/101 (classic Keras names), a small CPU backbone, the FPN;
- ``rpn.py``: RPN head, anchors, ``ProposalLayer``, RPN losses;
- ``roi_sampling.py``: ``DetectionTargetLayer`` (training RoIs and head targets);
- ``roi_heads.py``: ``PyramidROIAlign``, the box and mask heads, their losses;
- ``detections.py``: ``DetectionLayer`` and the mask head on the detections only;
- ``mask_rcnn.py``: the wiring of the training and inference graphs over shared sub-models.
"""
