"""torchvision's Mask R-CNNs (v1 and v2) against our port, on the same seeded weights.

The fixtures are torchvision's own outputs on two balloon photos
(tests/fixtures/torchvision/make_fixtures.py, run with torch); the weights
are rebuilt here without torch from the seed and key list they store
(tests/reference/torchvision_weights.py). Stage by stage to float32
precision, then end to end with the issue's thresholds.

One forward pass per model serves every assertion: ``InferencePipeline.run``
(the function ``detect()`` traces and the SavedModel serves) runs eagerly on
a view of the inference model that also returns its FPN levels, so no graph
is traced (tracing the whole model costs more than running it here).
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.image_meta import parse_image_meta
from mrcnn_tf.inference import InferencePipeline, unbatch_results
from mrcnn_tf.modeling.roi_heads import PyramidROIAlign
from mrcnn_tf.pretrained import load_torchvision_weights, torchvision_model
from tests.reference.torchvision_weights import seeded_state_dict

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "torchvision")
NAMES = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")
XYXY_TO_YXYX = [1, 0, 3, 2]   # also (dx, dy, dw, dh) -> (dy, dx, dh, dw)

pytestmark = pytest.mark.slow


def fixture_state_dict(name):
    """(fixture arrays, the seeded torchvision state dict they were made with)."""
    data = dict(np.load(os.path.join(FIXTURES, f"{name}.npz")))
    keys_shapes = [(k, tuple(int(v) for v in s.split(",") if v)) for k, s in zip(data["keys"], data["shapes"])]
    return data, seeded_state_dict(keys_shapes, int(data["seed"]))


def _close(ours, theirs, what, rel=2e-3):
    """Equal to float32 precision of a deep net: errors under ``rel`` of the values' spread."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = max(float(np.std(theirs)), 1e-6)
    worst = float(np.max(np.abs(ours - theirs))) / scale
    assert worst < rel, f"{what}: max error {worst:.2e} of the spread ({scale:.3g}), allowed {rel}"


def _box_iou(a, b):
    """IoU of every pair, boxes (y1, x1, y2, x2) (a numpy reference, independent of ops.boxes)."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=-1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


class _Recorder:
    """Calls a Keras model and keeps its inputs and raw outputs (numpy)."""

    def __init__(self, model):
        self.model, self.inputs, self.outputs = model, None, None

    def __call__(self, inputs, training=False):
        outputs = self.model(inputs, training=training)
        self.inputs = {k: v.numpy() for k, v in inputs.items()}
        self.outputs = {k: [t.numpy() for t in v] if isinstance(v, list) else v.numpy()
                        for k, v in outputs.items()}
        return outputs


class Run:
    """One model's fixture, our model on its weights, and our outputs of one pass."""

    def __init__(self, name):
        self.name = name
        self.data, self.state = fixture_state_dict(name)
        state = self.state
        self.model = torchvision_model(name, weights=state, IMAGE_MIN_DIM=int(self.data["min_size"]),
                                       IMAGE_MAX_DIM=int(self.data["max_size"]))
        inference = self.model.inference_model
        # The P2..P6 maps in the graph: the anchor layer's inputs after the image.
        view = keras.Model(inference.input, {**inference.output,
                                             "pyramid": inference.get_layer("anchors").input[1:]})
        recorder = _Recorder(view)
        images = self.data["images"]
        sizes = np.array([i.shape[:2] for i in images], np.int32)
        outputs = InferencePipeline(recorder, self.model.config).run(tf.constant(images), tf.constant(sizes))
        self.detections = unbatch_results({k: v.numpy() for k, v in outputs.items()})
        self.molded = recorder.inputs["input_image"]
        self.meta = parse_image_meta(recorder.inputs["input_image_meta"])
        self.raw = recorder.outputs
        self.pyramid = self.raw["pyramid"]
        self.image_shape = tf.constant([[*self.molded.shape[1:3], 3]] * len(images), tf.float32)

    def heads(self, rois_xyxy, pool_size, head):
        """Our head on torchvision's boxes [N, R, (x1, y1, x2, y2)] (resized-image pixels)."""
        hw = np.array(tuple(self.molded.shape[1:3]) * 2, np.float32)
        boxes = rois_xyxy[..., XYXY_TO_YXYX] / hw
        pooled = PyramidROIAlign(pool_size, sampling_ratio=2, aligned=False, level_eps=1e-6)(
            [tf.constant(boxes), self.image_shape, *[tf.constant(p) for p in self.pyramid[:4]]])
        return head(tf.reshape(pooled, [-1, pool_size, pool_size, pooled.shape[-1]]))


@pytest.fixture(scope="module", params=NAMES)
def run(request):
    return Run(request.param)


def test_input_and_fpn_match(run):
    d = run.data
    assert tuple(run.molded.shape) == tuple(d["batch_shape"])
    window = np.asarray(run.meta["window"])
    np.testing.assert_array_equal(window[:, 2:], d["image_sizes"])
    _close(run.molded.reshape(-1)[d["batch_index"]], d["batch_values"], "transformed batch")
    assert len(run.pyramid) == 5
    for level, ours in enumerate(run.pyramid):
        assert ours.shape == tuple(d[f"fpn{level}_shape"]), f"P{level + 2} shape"
        _close(ours.reshape(-1)[d[f"fpn{level}_index"]], d[f"fpn{level}_values"], f"P{level + 2}")


def test_rpn_outputs_and_proposals_match(run):
    d = run.data
    # The graph keeps softmax((0, z)) of each objectness logit z: z = log(p1) - log(p0).
    probs = run.raw["rpn_class"].astype(np.float64)
    logits = np.log(probs[..., 1]) - np.log(probs[..., 0])
    _close(logits.reshape(-1)[d["rpn_index"]], d["rpn_logits"], "RPN objectness logits")
    _close(run.raw["rpn_bbox"].reshape(-1, 4)[d["rpn_index"]], d["rpn_deltas"][:, XYXY_TO_YXYX], "RPN deltas")
    hw = np.array(tuple(run.molded.shape[1:3]) * 2, np.float32)
    ours = run.raw["rpn_rois"] * hw
    for b, theirs in enumerate(d["proposals"]):
        theirs = theirs[:, XYXY_TO_YXYX]
        best = _box_iou(theirs, ours[b]).max(axis=1)
        # Ties and IoUs at the 0.7 NMS threshold may flip a few of 1000 in float32.
        assert np.mean(best > 0.999) >= 0.98, f"image {b}: {np.mean(best > 0.999):.3f} proposals equal"
        np.testing.assert_allclose(ours[b, :100], theirs[:100], atol=0.05)


def test_box_and_mask_heads_match_on_torchvision_boxes(run):
    d = run.data
    logits, deltas = run.heads(d["box_head_rois"], 7, run.model._submodels.box_head)
    _close(logits.numpy(), d["box_head_logits"], "class logits")
    theirs = d["box_head_deltas"].reshape(len(d["box_head_deltas"]), -1, 4)[..., XYXY_TO_YXYX]
    _close(deltas.numpy(), theirs, "box deltas")
    counts = d["mask_head_counts"]
    rois = np.zeros([len(counts), counts.max(), 4], np.float32)
    for b, start in enumerate(np.cumsum(counts) - counts):
        rois[b, :counts[b]] = d["mask_head_boxes"][start:start + counts[b]]
    mask_logits = run.heads(rois, 14, run.model._submodels.mask_head).numpy()
    mask_logits = mask_logits.reshape(len(counts), counts.max(), *mask_logits.shape[1:])
    ours = np.concatenate([mask_logits[b, :counts[b]] for b in range(len(counts))])
    ours = ours[np.arange(len(ours)), :, :, d["mask_head_labels"]]
    _close(ours, d["mask_head_logits"], "mask logits")


def _mask_iou(a, b):
    union = (a | b).sum()
    return (a & b).sum() / union if union else 1.0  # two empty masks are equal


def test_end_to_end_detections_match(run):
    d = run.data
    matched, box_ious, mask_ious, total = 0, [], [], 0
    for i, result in enumerate(run.detections):
        boxes = d[f"final{i}_boxes"][:, XYXY_TO_YXYX]
        labels, scores = d[f"final{i}_labels"], d[f"final{i}_scores"]
        width = d["images"][i].shape[1]
        masks = np.unpackbits(d[f"final{i}_masks"], axis=-1, count=width).astype(bool)
        assert result["masks"].shape[:2] == d["images"][i].shape[:2]
        iou = _box_iou(boxes, result["boxes"])
        for j in range(len(boxes)):
            same = result["class_ids"] == labels[j]
            if not same.any():
                continue
            k = int(np.argmax(np.where(same, iou[j], -1.0)))
            box_ious.append(iou[j, k])
            if iou[j, k] >= 0.9 and abs(result["scores"][k] - scores[j]) <= 0.02:
                matched += 1
            mask_ious.append(_mask_iou(result["masks"][..., k], masks[j]))
        total += len(boxes)
    print(f"{run.name}: {matched}/{total} matched, median box IoU {np.median(box_ious):.4f}, "
          f"median mask IoU {np.median(mask_ious):.4f}, mean mask IoU {np.mean(mask_ious):.4f}")
    assert total >= 80 and matched >= 0.8 * total, f"{matched}/{total} detections matched"
    assert np.median(box_ious) >= 0.98
    assert np.median(mask_ious) >= 0.95


# ------------------------------------------------------------------ the loader, on the same models
def _kernel(run, layer):
    return run.model.find_layer(layer).weights[0].numpy()


def test_loaded_weights_are_the_state_dicts(run):
    """The conversions written out independently of torchvision_layout, on three kinds of layer."""
    state = run.state
    np.testing.assert_array_equal(_kernel(run, "conv1"), state["backbone.body.conv1.weight"].transpose(2, 3, 1, 0))
    gamma, beta, mean, var = (w.numpy() for w in run.model.find_layer("bn_conv1").weights)
    np.testing.assert_array_equal(var, state["backbone.body.bn1.running_var"])
    np.testing.assert_array_equal(gamma, state["backbone.body.bn1.weight"])
    # ConvTranspose2d [in, out, kh, kw] -> Keras Conv2DTranspose [kh, kw, out, in].
    np.testing.assert_array_equal(_kernel(run, "mrcnn_mask_deconv"),
                                  state["roi_heads.mask_predictor.conv5_mask.weight"].transpose(2, 3, 1, 0))
    # Box deltas (dx, dy, dw, dh) per class -> (dy, dx, dh, dw): Linear [91 * 4, 1024] -> [1024, 91 * 4].
    theirs = state["roi_heads.box_predictor.bbox_pred.weight"].reshape(91, 4, -1)[:, XYXY_TO_YXYX]
    np.testing.assert_array_equal(_kernel(run, "mrcnn_bbox_fc"), theirs.reshape(91 * 4, -1).T)


def test_bad_state_dicts_raise_naming_the_key_and_load_nothing(run):
    name, state = run.name, run.state
    doubled = {k: v * 2 for k, v in state.items()}  # any partial load would show in conv1
    before = _kernel(run, "conv1")
    missing = dict(doubled)
    del missing["roi_heads.mask_predictor.mask_fcn_logits.bias"]  # the last layer read
    with pytest.raises(ValueError, match=r"lack 'roi_heads\.mask_predictor\.mask_fcn_logits\.bias'"):
        load_torchvision_weights(run.model, missing, name)
    extra = {**doubled, "roi_heads.box_head.fc8.weight": np.zeros([4, 4], np.float32)}
    with pytest.raises(ValueError, match=r"unexpected key.*'roi_heads\.box_head\.fc8\.weight'"):
        load_torchvision_weights(run.model, extra, name)
    key = "roi_heads.mask_predictor.mask_fcn_logits.weight"
    wrong = {**doubled, key: doubled[key][:90]}
    with pytest.raises(ValueError, match=rf"{key.replace('.', '[.]')} has shape \(90, 256, 1, 1\)"):
        load_torchvision_weights(run.model, wrong, name)
    with pytest.raises(ValueError, match="unknown torchvision model 'maskrcnn_resnet101_fpn'"):
        load_torchvision_weights(run.model, state, "maskrcnn_resnet101_fpn")
    np.testing.assert_array_equal(_kernel(run, "conv1"), before)


def _old_layout(state):
    """torchvision's pre-0.13 names (the v1 COCO release's): unwrapped FPN/RPN convs, mask_fcnN."""
    old = {}
    for key, value in state.items():
        for prefix in ("backbone.fpn.inner_blocks.", "backbone.fpn.layer_blocks."):
            if key.startswith(prefix) and key.count(".") == 5:  # backbone.fpn.inner_blocks.0.0.weight
                key = key[:len(prefix) + 1] + key[len(prefix) + 3:]
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        if key.startswith("roi_heads.mask_head.") and key.split(".")[3] == "0":
            index = int(key.split(".")[2])
            key = f"roi_heads.mask_head.mask_fcn{index + 1}.{key.split('.')[-1]}"
        old[key] = value
    return old


def test_both_key_layouts_and_frozen_batchnorm_load(run):
    """The old names (v1 only: v2 postdates them), and no num_batches_tracked (FrozenBatchNorm2d)."""
    state = {k: v for k, v in run.state.items() if not k.endswith("num_batches_tracked")}
    assert len(state) < len(run.state)
    if run.name == "maskrcnn_resnet50_fpn":
        state = _old_layout(state)
        assert "roi_heads.mask_head.mask_fcn4.weight" in state and "rpn.head.conv.weight" in state
    probe = state["backbone.body.conv1.weight"].copy()
    state["backbone.body.conv1.weight"] = probe + 1.0
    try:
        load_torchvision_weights(run.model, state, run.name)
        np.testing.assert_array_equal(_kernel(run, "conv1"), (probe + 1.0).transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(_kernel(run, "mrcnn_mask_conv4"),
                                      run.state["roi_heads.mask_head.3.0.weight"].transpose(2, 3, 1, 0))
    finally:
        load_torchvision_weights(run.model, run.state, run.name)
    np.testing.assert_array_equal(_kernel(run, "conv1"), probe.transpose(2, 3, 1, 0))
