"""The paper's ablation switches (issue #20): Config checks, mask losses and heads against
numpy, the class-agnostic path of postprocess, and the non-default settings through
.keras, config JSON and the SavedModel. The RoI extractors: tests/test_ops_roi_pool.py.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf import Config, MaskRCNN, presets
from mrcnn_tf.export import export_saved_model
from mrcnn_tf.inference import postprocess
from mrcnn_tf.modeling.roi_heads import build_mask_head, mrcnn_mask_loss
from mrcnn_tf.ops.image import mold_batch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TinyConfig = type("TinyConfig", (Config,), presets.tiny(
    64, NAME="ablation", NUM_CLASSES=4, BACKBONE="small", IMAGES_PER_GPU=1, MEAN_PIXEL=(128, 128, 128)))
# Every non-default switch, over two models (softmax needs a map per class).
SETTINGS = {
    "pool_softmax": {"ROI_POOLING": "pool", "MASK_LOSS": "softmax"},
    "warp_max_agnostic_mlp": {"ROI_POOLING": "warp", "ROI_ALIGN_AGGREGATE": "max",
                              "ROI_ALIGN_SAMPLING_RATIO": 3, "MASK_CLASS_AGNOSTIC": True,
                              "MASK_HEAD": "mlp", "ROI_FEATURE_LEVEL": 3},
}


# ------------------------------------------------------------- Config
def test_defaults_are_the_papers_final_choices():
    config = TinyConfig()
    assert (config.ROI_POOLING, config.ROI_ALIGN_AGGREGATE, config.ROI_ALIGN_SAMPLING_RATIO,
            config.MASK_LOSS, config.MASK_CLASS_AGNOSTIC, config.MASK_HEAD,
            config.ROI_FEATURE_LEVEL) == ("align", "avg", 2, "sigmoid", False, "fcn", None)


@pytest.mark.parametrize("name, value", [
    ("ROI_POOLING", "roialign"), ("ROI_ALIGN_AGGREGATE", "mean"), ("ROI_ALIGN_SAMPLING_RATIO", 0),
    ("MASK_LOSS", "bce"), ("MASK_CLASS_AGNOSTIC", 1), ("MASK_HEAD", "conv"),
    ("ROI_FEATURE_LEVEL", 6), ("ROI_FEATURE_LEVEL", 1), ("ROI_FEATURE_LEVEL", 4.0),
    ("ROI_FEATURE_LEVEL", True)])
def test_bad_values_name_the_attribute(name, value):
    with pytest.raises(ValueError, match=name):
        TinyConfig(**{name: value})


def test_softmax_needs_class_specific_masks():
    with pytest.raises(ValueError, match="MASK_CLASS_AGNOSTIC"):
        TinyConfig(MASK_LOSS="softmax", MASK_CLASS_AGNOSTIC=True)


def test_switches_round_trip_through_json(tmp_path):
    for overrides in SETTINGS.values():
        TinyConfig(**overrides).to_json(tmp_path / "c.json")
        loaded = TinyConfig.from_json(tmp_path / "c.json")
        assert {k: getattr(loaded, k) for k in overrides} == overrides


# ------------------------------------------------------------- losses, numpy reference
def _mask_case(seed=0, maps=4):
    rng = np.random.default_rng(seed)
    target_masks = (rng.uniform(size=(2, 3, 5, 5)) > 0.5).astype(np.float32)
    target_class_ids = np.array([[2, 0, 3], [1, -1, 0]], np.int32)  # 3 positives, padding -1
    logits = rng.normal(size=(2, 3, 5, 5, maps)).astype(np.float32)
    return target_masks, target_class_ids, logits


def _sigmoid_bce(x, z):
    return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))


def test_sigmoid_loss_uses_the_gt_class_map():
    masks, classes, logits = _mask_case()
    want = np.mean([_sigmoid_bce(logits[b, n, ..., classes[b, n]], masks[b, n])
                    for b, n in ((0, 0), (0, 2), (1, 0))])
    assert float(mrcnn_mask_loss(masks, classes, logits)) == pytest.approx(want, rel=1e-5)


def test_agnostic_loss_uses_the_single_map():
    masks, classes, logits = _mask_case(1, maps=1)
    want = np.mean([_sigmoid_bce(logits[b, n, ..., 0], masks[b, n]) for b, n in ((0, 0), (0, 2), (1, 0))])
    assert float(mrcnn_mask_loss(masks, classes, logits)) == pytest.approx(want, rel=1e-5)


def test_softmax_loss_is_multinomial_against_gt_class_or_background():
    masks, classes, logits = _mask_case(2)
    losses = []
    for b, n in ((0, 0), (0, 2), (1, 0)):
        z = logits[b, n].astype(np.float64)
        log_probs = z - z.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        label = np.where(masks[b, n] > 0.5, classes[b, n], 0)
        losses.append(-np.take_along_axis(log_probs, label[..., None], -1)[..., 0])
    got = float(mrcnn_mask_loss(masks, classes, logits, loss="softmax"))
    assert got == pytest.approx(np.mean(losses), rel=1e-5)
    # Not the sigmoid loss, and every map gets a gradient (the classes compete).
    assert got != pytest.approx(float(mrcnn_mask_loss(masks, classes, logits)), rel=1e-3)
    logits_t = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits_t)
        loss = mrcnn_mask_loss(masks, classes, logits_t, loss="softmax")
    grad = tape.gradient(loss, logits_t).numpy()
    assert (np.abs(grad[0, 0]).sum(axis=(0, 1)) > 0).all() and not grad[0, 1].any()


def test_mask_loss_bad_arguments_and_empty():
    masks, classes, logits = _mask_case()
    with pytest.raises(ValueError, match="loss"):
        mrcnn_mask_loss(masks, classes, logits, loss="focal")
    with pytest.raises(ValueError, match="class-agnostic"):
        mrcnn_mask_loss(masks, classes, logits[..., :1], loss="softmax")
    none = np.zeros_like(classes)
    assert float(mrcnn_mask_loss(masks, none, logits, loss="softmax")) == 0.0


# ------------------------------------------------------------- heads
def test_mask_heads_shapes_and_layers():
    fcn = build_mask_head(4, 7, 16, 8, class_agnostic=True)
    assert fcn.output.shape == (None, 14, 14, 1)
    mlp = build_mask_head(4, 7, 16, head="mlp")
    assert mlp.output.shape == (None, 14, 14, 4)
    # Two 1024-wide fully connected layers, then K * m * m outputs (the paper's MLP).
    assert [mlp.get_layer(n).kernel.shape[-1] for n in ("mrcnn_mask_fc1", "mrcnn_mask_fc2", "mrcnn_mask")] \
        == [1024, 1024, 4 * 14 * 14]
    assert mlp.get_layer("mrcnn_mask_fc1").kernel.shape[:3] == (7, 7, 16)
    with pytest.raises(ValueError, match="head"):
        build_mask_head(4, 7, 16, head="transformer")


def test_mlp_output_is_the_reshaped_last_layer():
    # Pixel (i, j) of map k is output (i * m + j) * K + k of the last FC layer.
    mlp = build_mask_head(3, 2, 4, head="mlp", mlp_size=8, norm="none")
    x = np.random.default_rng(0).normal(size=(2, 2, 2, 4)).astype(np.float32)
    hidden = keras.Model(mlp.input, mlp.get_layer("mrcnn_mask_fc2").output)(x).numpy().reshape(2, -1)
    last = mlp.get_layer("mrcnn_mask")
    flat = np.maximum(hidden, 0) @ last.kernel.numpy().reshape(8, -1) + last.bias.numpy()
    np.testing.assert_allclose(mlp(x).numpy(), flat.reshape(2, 4, 4, 3), rtol=1e-5, atol=1e-5)


def test_postprocess_uses_the_single_agnostic_map():
    rng = np.random.default_rng(3)
    _, info = mold_batch(np.zeros((1, 64, 64, 3), np.uint8), [[64, 64]], "square", 64, 64,
                         square_side=64)
    detections = np.zeros((1, 3, 6), np.float32)
    detections[0, :2] = [[0.1, 0.1, 0.5, 0.6, 2, 0.9], [0.3, 0.2, 0.9, 0.8, 3, 0.8]]
    one = rng.uniform(size=(1, 3, 8, 8, 1)).astype(np.float32)
    agnostic = postprocess(detections, one, info, include_box_masks=True)
    # The same as a class-specific output whose every map is that one map.
    specific = postprocess(detections, np.repeat(one, 4, axis=-1), info, include_box_masks=True)
    for key in ("detection_masks", "detection_box_masks", "num_detections"):
        np.testing.assert_array_equal(agnostic[key].numpy(), specific[key].numpy())
    assert agnostic["detection_masks"].numpy()[0, :2].any()


# ------------------------------------------------------------- save, load, export
@pytest.mark.slow
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_switches_survive_keras_file_and_saved_model(setting, tmp_path):
    keras.utils.set_random_seed(2)
    config = TinyConfig(**SETTINGS[setting])
    model = MaskRCNN("inference", config, model_dir=str(tmp_path / "logs"))
    image = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    # The mask head's probabilities are the switch's: softmax maps sum to 1 at each pixel.
    molded, info = mold_batch(image[None], [[64, 64]], "square", 64, 64, mean_pixel=config.MEAN_PIXEL,
                              square_side=64)
    from mrcnn_tf.image_meta import compose_image_meta
    inputs = {"input_image": molded, "input_image_meta": compose_image_meta(info, np.ones(4))}
    before = model.keras_model(inputs)
    probs, valid = before["mrcnn_mask"].numpy()[0], before["detections"].numpy()[0, :, 5] > 0
    assert valid.any()
    assert probs.shape[-1] == (1 if config.MASK_CLASS_AGNOSTIC else 4)
    if config.MASK_LOSS == "softmax":
        np.testing.assert_allclose(probs[valid].sum(-1), 1.0, atol=1e-5)

    model.keras_model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    pooler = reloaded.get_layer("roi_align_mask")
    assert (pooler.method, pooler.aggregate, pooler.sampling_ratio, pooler.fixed_level) == (
        config.ROI_POOLING, config.ROI_ALIGN_AGGREGATE, config.ROI_ALIGN_SAMPLING_RATIO,
        config.ROI_FEATURE_LEVEL)
    after = reloaded(inputs)
    for name in ("detections", "mrcnn_mask"):
        np.testing.assert_allclose(np.asarray(after[name]), np.asarray(before[name]), atol=1e-6)

    # The SavedModel answers what detect() returns.
    reference = model.detect([image])[0]
    assert len(reference["scores"]) > 0
    path = export_saved_model(model, str(tmp_path / "export"))
    out = tf.saved_model.load(path).signatures["serving_tensor"](images=tf.constant(image[None]))
    served = {k: v.numpy() for k, v in out.items()}
    count = int(served["num_detections"][0])
    assert count == len(reference["scores"])
    np.testing.assert_array_equal(served["detection_classes"][0, :count], reference["class_ids"])
    np.testing.assert_array_equal(served["detection_masks"][0, :count].astype(bool),
                                  np.moveaxis(reference["masks"], -1, 0))


@pytest.mark.slow
def test_ablation_benchmark_smallest_setting(tmp_path):
    """benchmarks/ablation.py --smoke: every row trains a few steps and is evaluated."""
    out = tmp_path / "rows.json"
    run = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "ablation.py"), "--smoke",
                          "--json", str(out)], capture_output=True, text=True, timeout=1200,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["row"] for r in rows][:5] == ["RoIPool, max", "RoIWarp, max", "RoIWarp, avg",
                                            "RoIAlign, max", "RoIAlign, avg (default)"]
    assert len(rows) == 13 and all(0.0 <= r["AP"] <= 100.0 for r in rows)
    assert [r["overrides"] for r in rows if r["section"] == "e"] == [
        {"ROI_POOLING": "pool", "ROI_FEATURE_LEVEL": 4}, {"ROI_FEATURE_LEVEL": 4}]
    assert "paper 2d" in run.stdout and "RoIPool, P4 only" in run.stdout
