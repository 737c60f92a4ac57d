"""Fine-tuning a torchvision COCO model to other classes: the class-specific layers start
fresh, everything else is the state dict's, and train() runs with finite losses."""

import numpy as np
import pytest

from mrcnn_tf.config import LOSS_NAMES
from mrcnn_tf.data import ShapesDataset
from mrcnn_tf.pretrained import torchvision_model
from mrcnn_tf.pretrained.torchvision_layout import CLASS_SPECIFIC, convert, layout, torch_keys
from test_pretrained_parity import fixture_state_dict

NAME = "maskrcnn_resnet50_fpn"


class OneClassShapes(ShapesDataset):
    """The shapes dataset with one foreground class, "shape"."""

    def add_class(self, source, class_id, class_name):
        if class_id == 1:
            super().add_class(source, 1, "shape")

    def map_source_class_id(self, source_class_id):
        return super().map_source_class_id("shapes.1")


def one_class_shapes(count, seed):
    dataset = OneClassShapes()
    dataset.load_shapes(count, 128, 128, seed=seed)
    dataset.prepare()
    assert dataset.num_classes == 2
    return dataset


@pytest.mark.slow
def test_fine_tuning_keeps_all_but_the_class_layers_and_trains(tmp_path):
    _, state = fixture_state_dict(NAME)
    model = torchvision_model(
        NAME, weights=state, mode="training", model_dir=str(tmp_path), NUM_CLASSES=1 + 1,
        # Small images and few RoIs: shapes at 128 px, not COCO at 800.
        IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128, IMAGES_PER_GPU=1, STEPS_PER_EPOCH=3, PRE_NMS_LIMIT=200,
        POST_NMS_ROIS_TRAINING=64, TRAIN_ROIS_PER_IMAGE=32, MAX_GT_INSTANCES=4)
    assert model.class_names == ["BG", "class_1"]
    fresh = {}
    for entry in layout("v1"):
        layer = model.find_layer(entry.layer_name)
        if entry.torch_name in CLASS_SPECIFIC:
            fresh[entry.torch_name] = layer
            continue
        expected = convert(entry, [state[key] for key in torch_keys(entry)])
        for variable in layer.weights:
            np.testing.assert_array_equal(variable.numpy(), expected[variable.path.split("/")[-1]],
                                          err_msg=f"{entry.layer_name} not loaded from {entry.torch_name}")
    assert sorted(fresh) == sorted(CLASS_SPECIFIC)
    # Sized for 2 classes, and not a slice of the COCO weights (the first classes' rows).
    kernels = {name: layer.weights[0].numpy() for name, layer in fresh.items()}
    assert kernels["roi_heads.box_predictor.cls_score"].shape == (1024, 2)
    assert kernels["roi_heads.box_predictor.bbox_pred"].shape == (1024, 2 * 4)
    assert kernels["roi_heads.mask_predictor.mask_fcn_logits"].shape == (1, 1, 256, 2)
    coco = state["roi_heads.box_predictor.cls_score.weight"][:2].T
    assert not np.allclose(kernels["roi_heads.box_predictor.cls_score"], coco)
    coco = state["roi_heads.mask_predictor.mask_fcn_logits.weight"][:2, :, 0, 0].T
    assert not np.allclose(kernels["roi_heads.mask_predictor.mask_fcn_logits"][0, 0], coco)
    backbone = model.find_layer("res4a_branch2b").weights[0].numpy()

    history = model.train(one_class_shapes(6, 0), None, learning_rate=0.002, epochs=1, layers="heads",
                          verbose=0, seed=0, log_images=0).history
    for name in ("loss", *LOSS_NAMES):
        assert len(history[name]) == 1 and np.isfinite(history[name]).all(), (name, history[name])
    assert history["mrcnn_mask_loss"][0] > 0
    # "heads" trained the new layers and left the backbone as loaded.
    assert not np.allclose(fresh["roi_heads.box_predictor.cls_score"].weights[0].numpy(),
                           kernels["roi_heads.box_predictor.cls_score"])
    np.testing.assert_array_equal(model.find_layer("res4a_branch2b").weights[0].numpy(), backbone)
