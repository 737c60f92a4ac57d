"""The assembled model: graphs, training with fit, detect() and its coordinate frame."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf import Config, DataGenerator, MaskRCNN, presets
from mrcnn_tf.data import ShapesConfig, ShapesDataset
from mrcnn_tf.image_meta import compose_image_meta
from mrcnn_tf.inference import postprocess, unbatch_results
from mrcnn_tf.ops.image import mold_batch
from mrcnn_tf.config import LOSS_NAMES


# presets.tiny on the shapes classes, with 2 images per step, 4 steps per epoch and
# ShapesConfig's 0.5 confidence (the tests that want every detection set 0.0).
TinyConfig = type("TinyConfig", (ShapesConfig,), presets.tiny(
    64, NAME="tiny", IMAGES_PER_GPU=2, STEPS_PER_EPOCH=4, DETECTION_MIN_CONFIDENCE=0.5))


def model_inputs(images, config):
    """The inference model's inputs for same-size uint8 images, as the pipeline molds them."""
    molded, info = mold_batch(np.stack(images), [image.shape[:2] for image in images],
                              config.IMAGE_RESIZE_MODE, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM,
                              mean_pixel=config.MEAN_PIXEL)
    return {"input_image": molded,
            "input_image_meta": compose_image_meta(info, np.ones(config.NUM_CLASSES))}, info


def shapes(count, seed, size=64, **kwargs):
    dataset = ShapesDataset()
    dataset.load_shapes(count, size, size, seed=seed, **kwargs)
    dataset.prepare()
    return dataset


SUBMODELS = ("backbone_fpn", "rpn_model", "box_head", "mask_head")


def image_inputs(batch):
    """The inference model's inputs (molded images and their metas) of a training batch."""
    return {name: batch[name] for name in ("input_image", "input_image_meta")}


def test_inference_graph_outputs_and_parallel_heads(tmp_path):
    config = TinyConfig()
    model = MaskRCNN("inference", config, tmp_path)
    # Every weight is in the four sub-models; the graph's own layers are weightless.
    assert [layer.name for layer in model.keras_model.layers if layer.weights] == list(SUBMODELS)
    top = {layer.name for layer in model.keras_model.layers}
    assert {"ROI", "mrcnn_detection", "roi_align_classifier", "roi_align_mask"} <= top
    owners = {"box_head": ("mrcnn_class_conv1", "mrcnn_class_bn1", "mrcnn_class_logits",
                           "mrcnn_bbox_fc", "mrcnn_bbox"),
              "mask_head": ("mrcnn_mask_conv1", "mrcnn_mask_conv4", "mrcnn_mask_bn4",
                            "mrcnn_mask_deconv", "mrcnn_mask"),
              "backbone_fpn": ("small_stem_conv", "fpn_c5p5", "fpn_p2", "fpn_p6"),
              "rpn_model": ("rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred")}
    for owner, names in owners.items():
        submodel = model.find_layer(owner)
        for name in names:
            assert model.find_layer(name) is submodel.get_layer(name)
    outputs = model.keras_model.output
    assert tuple(outputs["detections"].shape[1:]) == (config.DETECTION_MAX_INSTANCES, 6)
    assert tuple(outputs["mrcnn_mask"].shape[1:]) == (config.DETECTION_MAX_INSTANCES, 28, 28,
                                                      config.NUM_CLASSES)


def test_inference_mask_head_runs_on_the_detections_only(tmp_path):
    """Masks of a thresholded run are the leading rows of an unthresholded one; padding is 0."""
    keras.utils.set_random_seed(2)
    config = TinyConfig(DETECTION_MIN_CONFIDENCE=0.0)
    model = MaskRCNN("inference", config, tmp_path).keras_model
    images = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in (0, 1)]
    inputs, _ = model_inputs(images, config)
    detection_layer = model.get_layer("mrcnn_detection")

    def run(min_confidence):
        detection_layer.min_confidence = min_confidence  # read at each eager call
        out = model(inputs, training=False)
        return out["detections"].numpy(), out["mrcnn_mask"].numpy()

    all_detections, all_masks = run(0.0)
    assert (all_detections[..., 5] > 0).all()          # every slot filled at threshold 0
    # A threshold that keeps 3 rows of image 0 and a different number of image 1:
    # each image's kept rows are the leading rows of its unthresholded detections.
    threshold = all_detections[0, 2, 5]
    detections, masks = run(threshold)
    counts = (detections[..., 5] > 0).sum(axis=1)
    assert counts[0] == 3 and counts[1] == (all_detections[1, :, 5] >= threshold).sum()
    for b, count in enumerate(counts):
        np.testing.assert_allclose(detections[b, :count], all_detections[b, :count], atol=1e-6)
        np.testing.assert_allclose(masks[b, :count], all_masks[b, :count], atol=1e-5)
        assert not masks[b, count:].any()
    _, masks = run(1.0)                                  # no detection at all
    assert masks.shape == all_masks.shape and not masks.any()


def test_training_graph_runs_box_and_mask_heads_on_the_same_rois(tmp_path):
    model = MaskRCNN("training", TinyConfig(), tmp_path).keras_model
    box_pool = model.get_layer("roi_align_classifier")
    mask_pool = model.get_layer("roi_align_mask")
    # Both heads pool from the sampled RoIs of the target layer (the mask head
    # from the leading, possibly-positive rows of the same tensor).
    assert box_pool.input[0] is model.get_layer("proposal_targets").output[0]
    assert mask_pool.input[0].shape[1] == round(16 * 0.33)


def test_training_models_inference_view_shares_its_variables(tmp_path):
    """A kernel set in the training model shows in the inference view's weights and outputs."""
    keras.utils.set_random_seed(3)
    config = TinyConfig(DETECTION_MIN_CONFIDENCE=0.0)
    trainer = MaskRCNN("training", config, tmp_path)
    view = trainer.inference_model
    assert view is trainer.inference_model and view is not trainer.keras_model  # built once
    assert set(view.output) == {"detections", "mrcnn_mask", "rpn_rois", "mrcnn_class", "mrcnn_bbox",
                                "rpn_class", "rpn_bbox", "anchors"}
    for name in SUBMODELS:  # the same objects, not copies
        assert view.get_layer(name) is trainer.keras_model.get_layer(name)
    inputs = image_inputs(DataGenerator(shapes(2, seed=8), config, seed=0)[0])
    before = view(inputs, training=False)["mrcnn_mask"].numpy()

    # After the view exists: a copy made when it was built would not see this.
    layer = trainer.keras_model.get_layer("mask_head").get_layer("mrcnn_mask")
    layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
    layer.bias.assign(np.full(layer.bias.shape, 2.0, np.float32))
    assert any(w is layer.kernel for w in view.weights)
    np.testing.assert_array_equal(view.get_layer("mask_head").get_layer("mrcnn_mask").kernel.numpy(), 0.0)
    out = view(inputs, training=False)
    valid = out["detections"].numpy()[..., 5] > 0
    assert valid.all()  # threshold 0: every slot holds a detection
    masks = out["mrcnn_mask"].numpy()
    assert not np.allclose(before, 1 / (1 + np.exp(-2.0)))
    np.testing.assert_allclose(masks, 1 / (1 + np.exp(-2.0)), rtol=1e-5)  # sigmoid(0 * x + 2)

    detector = MaskRCNN("inference", config, tmp_path)
    assert detector.inference_model is detector.keras_model


def test_find_layer_opens_the_sub_models_and_names_a_missing_layer(tmp_path):
    from mrcnn_tf.modeling.backbone import small_backbone_graph

    def backbone(image):  # a callable BACKBONE still builds, inside backbone_fpn
        return small_backbone_graph(image)

    model = MaskRCNN("training", TinyConfig(BACKBONE=backbone), tmp_path)
    assert model.find_layer("input_image") is model.keras_model.get_layer("input_image")
    assert model.find_layer("proposal_targets") is model.keras_model.get_layer("proposal_targets")
    assert model.find_layer("mask_head") is model.keras_model.get_layer("mask_head")
    assert model.find_layer("small_stem_conv") is model.find_layer("backbone_fpn").get_layer("small_stem_conv")
    assert model.find_layer("rpn_class_raw").name == "rpn_class_raw"
    with pytest.raises(ValueError, match="'mrcnn_detection'"):  # inference-graph only
        model.find_layer("mrcnn_detection")


def test_keras_file_round_trips_both_modes(tmp_path):
    """``.keras`` save + load_model: same outputs in training and inference mode."""
    keras.utils.set_random_seed(4)
    config = TinyConfig(DETECTION_MIN_CONFIDENCE=0.0)
    batch = DataGenerator(shapes(2, seed=6), config, seed=0)[0]
    cases = {"training": (batch, ("rpn_class_logits", "rois", "target_class_ids", "target_masks",
                                  "mrcnn_class_logits", "mrcnn_bbox", "mrcnn_mask_logits")),
             "inference": (image_inputs(batch),
                           ("detections", "mrcnn_mask", "rpn_rois", "mrcnn_class"))}
    for mode, (inputs, keys) in cases.items():
        model = MaskRCNN(mode, config, tmp_path).keras_model
        path = tmp_path / f"{mode}.keras"
        model.save(path)
        reloaded = keras.models.load_model(path)
        assert type(reloaded) is type(model)
        assert [l.name for l in reloaded.layers if l.weights] == list(SUBMODELS)
        outputs = []
        for keras_model in (model, reloaded):
            keras.utils.set_random_seed(5)  # the same RoI sample in both calls (eager TF ops)
            outputs.append(keras_model(inputs, training=False))
        before, after = outputs
        for key in keys:
            np.testing.assert_array_equal(np.asarray(after[key]), np.asarray(before[key]), err_msg=f"{mode} {key}")


@pytest.mark.slow
def test_resnet50_fpn_has_the_papers_size(tmp_path):
    class CocoLike(Config):
        NAME = "coco"
        BACKBONE = "resnet50"
        NUM_CLASSES = 81
        IMAGES_PER_GPU = 1
        IMAGE_MIN_DIM = 256
        IMAGE_MAX_DIM = 256

    model = MaskRCNN("inference", CocoLike(), tmp_path)
    count = model.keras_model.count_params()
    print(f"R50-FPN Mask R-CNN parameters: {count:,}")
    # The classic Keras R50-FPN Mask R-CNN (7x7 conv fc layers) has ~44.7M weights.
    assert 43e6 < count < 46.5e6
    for name in ("conv1", "bn_conv1", "res2a_branch2a", "bn2a_branch2a", "res4f_branch2c",
                 "res5c_branch2c"):
        assert model.find_layer(name) is model.find_layer("backbone_fpn").get_layer(name)


def test_generator_batches_have_fixed_shapes_and_valid_targets():
    config = TinyConfig()
    dataset = shapes(6, seed=3)
    generator = DataGenerator(dataset, config, shuffle=True, seed=0)
    assert len(generator) == math.ceil(6 / config.BATCH_SIZE)
    batch = generator[0]
    assert batch["input_image"].shape == (2, 64, 64, 3)
    assert batch["input_gt_class_ids"].shape == (2, config.MAX_GT_INSTANCES)
    assert batch["input_gt_masks"].shape == (2, 28, 28, config.MAX_GT_INSTANCES)
    assert set(batch) == {"input_image", "input_image_meta", "input_gt_class_ids", "input_gt_boxes",
                          "input_gt_masks"}  # nothing derived from anchors: the graph does that
    assert ((batch["input_gt_class_ids"] > 0).sum(axis=1) >= 1).all()
    # Same seed, same batch: reproducible data.
    again = DataGenerator(dataset, config, shuffle=True, seed=0)[0]
    for name in batch:
        np.testing.assert_array_equal(again[name], batch[name])


@pytest.mark.slow
def test_fit_lowers_every_loss_and_detect_is_well_formed(tmp_path):
    keras.utils.set_random_seed(0)
    config = TinyConfig(LEARNING_RATE=0.02)
    train = shapes(4, seed=1)
    trainer = MaskRCNN("training", config, tmp_path)
    generator = DataGenerator(train, config, shuffle=False, seed=0, batches_per_epoch=2)
    trainer.set_trainable("all")
    trainer.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    history = trainer.keras_model.fit(generator, epochs=25, verbose=0).history
    assert set(LOSS_NAMES) <= set(history)
    first, last = history["loss"][0], np.mean(history["loss"][-3:])
    assert np.isfinite(history["loss"]).all()
    assert last < 0.6 * first, (first, last)

    trainer.save_weights(str(tmp_path / "w.h5"))
    detector = MaskRCNN("inference", TinyConfig(DETECTION_MIN_CONFIDENCE=0.3), tmp_path)
    report = detector.load_weights(str(tmp_path / "w.h5"))
    assert not report.mismatched and not report.missing
    images = [train.load_image(0), np.zeros((40, 90, 3), np.uint8)]
    results = detector.detect(images)
    assert len(results) == 2
    for image, result in zip(images, results):
        n = len(result["class_ids"])
        assert result["rois"].dtype == np.int32 and result["rois"].shape == (n, 4)
        assert result["class_ids"].dtype == np.int32
        assert result["scores"].dtype == np.float32 and (result["scores"] >= 0.3).all()
        assert result["masks"].dtype == bool and result["masks"].shape == image.shape[:2] + (n,)
        assert ((result["class_ids"] >= 1) & (result["class_ids"] < config.NUM_CLASSES)).all()
    assert len(results[0]["class_ids"]) >= 1  # an overfit model finds its training objects


@pytest.mark.slow
def test_images_without_instances_train_without_nan(tmp_path):
    keras.utils.set_random_seed(1)

    class Empty(ShapesDataset):
        def load_mask(self, image_id):
            masks, class_ids = super().load_mask(image_id)
            return masks[:, :, :0], class_ids[:0]

    dataset = Empty()
    dataset.load_shapes(2, 64, 64, seed=0)
    dataset.prepare()
    config = TinyConfig()
    trainer = MaskRCNN("training", config, tmp_path)
    trainer.set_trainable("all")
    trainer.compile(0.01, 0.9)
    history = trainer.keras_model.fit(DataGenerator(dataset, config, seed=0), epochs=2, verbose=0).history
    for name in LOSS_NAMES:
        assert np.isfinite(history[name]).all(), name
    # No object: no positive anchor or RoI, so those losses are exactly zero.
    for name in ("rpn_bbox_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"):
        assert history[name][-1] == 0.0, name


def test_detect_maps_boxes_and_masks_to_original_pixels():
    """A known raw detection on a 100x200 image comes back in that image's pixels."""
    config = TinyConfig(IMAGES_PER_GPU=1)
    # square mode, 64x64: scale 64/200 = 0.32 -> 32x64, padded 16 rows on top.
    _, info = model_inputs([np.zeros((100, 200, 3), np.uint8)], config)
    np.testing.assert_allclose(info["window"].numpy(), [[16, 0, 48, 64]])
    box_px = np.array([25.3, 50.0, 75.0, 150.6])          # original pixels
    molded = box_px * 0.32 + np.array([16, 0, 16, 0])     # molded pixels
    detections = np.zeros([1, config.DETECTION_MAX_INSTANCES, 6], np.float32)
    detections[0, 0] = [*(molded / 64.0), 2, 0.9]
    masks = np.zeros([1, config.DETECTION_MAX_INSTANCES, 28, 28, config.NUM_CLASSES], np.float32)
    masks[0, 0, :, :14, 2] = 1.0                            # left half of the box, class 2 only
    masks[0, 0, :, :, 1] = 1.0                              # another class's mask: must be ignored
    outputs = postprocess(tf.constant(detections), tf.constant(masks), info)
    (result,) = unbatch_results({k: v.numpy() for k, v in outputs.items()})
    np.testing.assert_allclose(result["boxes"], [box_px], atol=1e-4)
    np.testing.assert_array_equal(result["rois"], [[25, 50, 75, 151]])
    assert result["class_ids"].tolist() == [2]
    np.testing.assert_allclose(result["scores"], [0.9])
    mask = result["masks"][:, :, 0]
    assert mask.shape == (100, 200) and mask.dtype == bool
    # Pixel centres in [25.3, 75) x [50, 100.3): rows 25..74, columns 50..99.
    assert mask[25:75, 50:100].all() and mask.sum() == 50 * 50


def test_detect_traces_once_per_shape_family_and_matches_the_eager_pipeline(tmp_path):
    """Images of four sizes and two batch sizes: one trace; the same numbers as an eager run."""
    config = TinyConfig(IMAGES_PER_GPU=1, IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=None,
                        IMAGE_MAX_DIM=None, DETECTION_MIN_CONFIDENCE=0.0)
    model = MaskRCNN("inference", config, tmp_path)
    rng = np.random.default_rng(0)
    for height, width in [(64, 64), (64, 128), (128, 64), (128, 128)]:
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        results = model.detect([image] * (1 + (height == 128)))
        assert results[-1]["masks"].shape[:2] == (height, width)
    assert model._pipeline.run_padded.experimental_get_tracing_count() == 1
    eager = model._pipeline.run(tf.constant(image[None]), tf.constant([[128, 128]]))
    (want,) = unbatch_results({k: v.numpy() for k, v in eager.items()})
    got = results[-1]
    assert len(got["scores"]) == len(want["scores"]) > 0
    np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-3)
    np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-5)


def test_bad_mode_and_wrong_mode_calls(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        MaskRCNN("serving", TinyConfig(), tmp_path)
    model = MaskRCNN("inference", TinyConfig(), tmp_path)
    with pytest.raises(ValueError, match="training"):
        model.train(shapes(2, 0), None, 0.01, 1, "heads")
    with pytest.raises(ValueError, match=r"image 0 must be grey .*got shape \(10, 10, 2\)"):
        model.detect([np.zeros((10, 10, 2), np.uint8)])


def test_bad_annotations_name_the_image(tmp_path):
    class BadClass(ShapesDataset):
        def load_mask(self, image_id):
            masks, class_ids = super().load_mask(image_id)
            return masks, np.full_like(class_ids, 9)

    dataset = BadClass()
    dataset.load_shapes(2, 64, 64, seed=0)
    dataset.prepare()
    with pytest.raises(ValueError, match=r"image 0 .*class id 9"):
        DataGenerator(dataset, TinyConfig(), seed=0)[0]

    class WrongSize(ShapesDataset):
        def load_mask(self, image_id):
            masks, class_ids = super().load_mask(image_id)
            return masks[:10], class_ids

    dataset = WrongSize()
    dataset.load_shapes(2, 64, 64, seed=0)
    dataset.prepare()
    with pytest.raises(ValueError, match=r"image 0 .*masks have shape"):
        DataGenerator(dataset, TinyConfig(), seed=0)[0]


def test_stage_regexes_freeze_the_backbone_and_bn(tmp_path):
    model = MaskRCNN("training", TinyConfig(), tmp_path)
    model.set_trainable("heads")
    layers = {name: model.find_layer(name) for name in (
        "small_stage3_conv1", "small_stage4_conv1", "mrcnn_mask_conv1", "fpn_p2", "mrcnn_mask_bn1")}
    assert not layers["small_stage3_conv1"].trainable
    assert layers["mrcnn_mask_conv1"].trainable and layers["fpn_p2"].trainable
    assert not layers["mrcnn_mask_bn1"].trainable  # TRAIN_BN = False keeps BN frozen
    model.set_trainable("4+")
    assert layers["small_stage4_conv1"].trainable and not layers["small_stage3_conv1"].trainable
    model.set_trainable("heads")  # what the optimizer gets: the variables inside the sub-models
    trained = {v.path.split("/")[0] for v in model.keras_model.trainable_variables}
    assert {"mrcnn_mask_conv1", "mrcnn_class_logits", "rpn_conv_shared", "fpn_p2"} <= trained
    assert not [name for name in trained if name.startswith(("small_", "mrcnn_mask_bn", "mrcnn_class_bn"))]
    with_bn = MaskRCNN("training", TinyConfig(TRAIN_BN=True), tmp_path)
    with_bn.set_trainable("heads")
    assert with_bn.find_layer("mrcnn_mask_bn1").trainable


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_finite_float32_losses(tmp_path, policy):
    keras.utils.set_random_seed(2)
    config = TinyConfig(MIXED_PRECISION=policy)
    trainer = MaskRCNN("training", config, tmp_path)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # global policy restored
    assert trainer.find_layer("fpn_p2").compute_dtype == policy.split("_")[1]
    trainer.set_trainable("all")
    trainer.compile(0.01, 0.9)
    history = trainer.keras_model.fit(DataGenerator(shapes(2, seed=4), config, seed=0),
                                      epochs=2, verbose=0).history
    for name in ("loss", *LOSS_NAMES):
        assert np.isfinite(history[name]).all(), name
    outputs = trainer.inference_model.predict(  # the inference view under the same policy
        {"input_image": np.zeros([1, 64, 64, 3], np.float32),
         "input_image_meta": DataGenerator(shapes(1, seed=5), TinyConfig(IMAGES_PER_GPU=1), seed=0)[0]["input_image_meta"]},
        verbose=0)
    assert outputs["detections"].dtype == np.float32 and np.isfinite(outputs["detections"]).all()
    assert outputs["mrcnn_mask"].dtype == np.float32
