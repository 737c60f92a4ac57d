"""Learning-rate schedules (detectron2's formulas, hand-computed), the two weight-decay modes
(PyTorch's SGD update worked out by hand for two steps), FREEZE_AT."""

import keras
import numpy as np
import pytest

from mrcnn_tf import Config, MaskRCNN
from mrcnn_tf.model import _stage_start_epoch
from mrcnn_tf.training.checkpoint import ResumeState
from mrcnn_tf.training.optimizer import TorchSGD, build_optimizer
from mrcnn_tf.training.schedules import WarmupCosine, WarmupMultiStep, build_schedule
from test_model import TinyConfig


def rates(schedule, iterations):
    return [float(schedule(i)) for i in iterations]


def test_warmup_multistep_is_detectron2s_formula():
    # base 0.02, warmup 4 iterations from factor 0.001, x0.1 at 6 and 8:
    # it 2: 0.02 * (0.001 * (1 - 0.5) + 0.5) = 0.01001.
    schedule = WarmupMultiStep(0.02, steps=(6, 8), gamma=0.1, warmup_iters=4, warmup_factor=0.001)
    np.testing.assert_allclose(rates(schedule, [0, 2, 4, 5, 6, 7, 8, 100]),
                               [2e-5, 0.01001, 0.02, 0.02, 0.002, 0.002, 0.0002, 0.0002], rtol=1e-5)
    cosine = WarmupCosine(1.0, total_iters=10, warmup_iters=0)
    np.testing.assert_allclose(rates(cosine, [0, 5, 10, 20]), [1.0, 0.5, 0.0, 0.0], atol=1e-6)
    # Serialisable, as Keras saves optimizers: the round trip gives the same rates.
    for s in (schedule, WarmupCosine(0.1, 50, 5, 0.01)):
        again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
        assert type(again) is type(s) and again.get_config() == s.get_config()
        np.testing.assert_allclose(rates(again, range(0, 60, 7)), rates(s, range(0, 60, 7)))
    with pytest.raises(ValueError, match="steps must be increasing"):
        WarmupMultiStep(0.1, steps=(8, 6))


def test_build_schedule_from_config():
    assert build_schedule(Config(), 0.01) == 0.01  # today's default: a constant
    schedule = build_schedule(Config(WARMUP_ITERS=10, LR_STEPS=(20,), LR_GAMMA=0.5), 0.04)
    np.testing.assert_allclose(rates(schedule, [10, 20]), [0.04, 0.02])
    cosine = build_schedule(Config(LR_SCHEDULE="cosine"), 0.04, total_iters=8)
    assert float(cosine(4)) == pytest.approx(0.02)
    for name, value in (("LR_STEPS", (5, 5)), ("WEIGHT_DECAY_MODE", "L2"), ("FREEZE_AT", 6),
                        ("LR_SCHEDULE", "poly"), ("WARMUP_FACTOR", 2.0)):
        with pytest.raises(ValueError, match=name):
            Config(**{name: value})


def two_steps(optimizer):
    """A Dense(1) layer, w = [1, -2], b = 0.5, fed two fixed gradients by apply_gradients."""
    layer = keras.layers.Dense(1)
    layer.build((None, 2))
    layer.kernel.assign([[1.0], [-2.0]])
    layer.bias.assign([0.5])
    for g_kernel, g_bias in (([[0.2], [0.4]], [0.1]), ([[-0.1], [0.3]], [0.1])):
        optimizer.apply_gradients([(np.array(g_kernel, np.float32), layer.kernel),
                                   (np.array(g_bias, np.float32), layer.bias)])
    return layer.kernel.numpy()[:, 0], layer.bias.numpy()


def test_l2_mode_is_pytorchs_sgd_update_by_hand():
    # lr 0.1 then 0.05 (a step at iteration 1), momentum 0.9, weight decay 0.01 (kernel only).
    # torch.optim.SGD: d = g + wd * w; b = 0.9 * b + d; w -= lr * b.
    # step 1: d = [0.2 + 0.01, 0.4 - 0.02] = [0.21, 0.38] = b; w = [0.979, -2.038]
    # step 2: d = [-0.1 + 0.00979, 0.3 - 0.02038] = [-0.09021, 0.27962]
    #         b = [0.189 - 0.09021, 0.342 + 0.27962] = [0.09879, 0.62162]
    #         w = [0.979 - 0.05 * 0.09879, -2.038 - 0.05 * 0.62162] = [0.9740605, -2.069081]
    # bias (not decayed): b = 0.1, 0.19; bias = 0.5 - 0.01 = 0.49, 0.49 - 0.0095 = 0.4805
    lr = WarmupMultiStep(0.1, steps=(1,), gamma=0.5)
    kernel, bias = two_steps(build_optimizer(lr, 0.9, 0.01, "l2"))
    np.testing.assert_allclose(kernel, [0.9740605, -2.069081], rtol=1e-6)
    np.testing.assert_allclose(bias, [0.4805], rtol=1e-6)
    # Keras's decoupled decay is another update: w -= lr * wd * w outside the momentum, and a
    # momentum of steps (lr inside). Step 1: w = 1 - 0.001 - 0.02 = 0.979 as well; step 2 differs:
    # w = 0.979 - 0.05 * 0.01 * 0.979 + (0.9 * -0.02 - 0.05 * -0.1) = 0.9655105.
    kernel, bias = two_steps(build_optimizer(lr, 0.9, 0.01, "decoupled"))
    assert kernel[0] == pytest.approx(0.9655105, rel=1e-6)
    assert bias[0] == pytest.approx(0.5 - 0.01 + (0.9 * -0.01 - 0.005), rel=1e-6)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(TorchSGD(lr, 0.9, l2=0.01)))
    assert isinstance(again, TorchSGD) and again.l2 == 0.01


def test_freeze_at_keeps_the_stem_and_res2_frozen():
    model = MaskRCNN("training", TinyConfig(BACKBONE="resnet50", FREEZE_AT=2, TRAIN_BN=True),
                     model_dir="/tmp/unused")
    model.set_trainable("all")
    for name, trainable in (("conv1", False), ("bn_conv1", False), ("res2a_branch2a", False),
                            ("bn2c_branch2c", False), ("res3a_branch2a", True), ("bn3a_branch2a", True),
                            ("res5c_branch2c", True), ("fpn_c5p5", True), ("mrcnn_mask", True)):
        assert model.find_layer(name).trainable is trainable, name
    model.config.FREEZE_AT = 0
    model.set_trainable("all")
    assert model.find_layer("conv1").trainable and model.find_layer("res2a_branch2a").trainable


def test_a_resumed_call_keeps_its_stage_start_for_the_schedule():
    state = ResumeState(epoch=3, optimizer_variables=[],
                        training={"layers": "all", "end_epoch": 6, "start_epoch": 2})
    assert _stage_start_epoch(state, 3, "all", 6) == 2  # continues: cosine over epochs 2..6
    assert _stage_start_epoch(state, 3, "heads", 6) == 3  # another stage starts afresh
    assert _stage_start_epoch(state, 3, "all", 8) == 3
    assert _stage_start_epoch(None, 4, "all", 6) == 4
