"""Learning-rate schedules of the detectron2 recipe, as serialisable Keras ``LearningRateSchedule``s.

Both are functions of the optimizer's iteration count (``optimizer.iterations``),
which a checkpoint stores with the momentum slots: a resumed run evaluates the
schedule at the restored count, so it continues on the same learning rate.

``WarmupMultiStep`` is detectron2's ``WarmupMultiStepLR`` (``solver/lr_scheduler.py``)::

    lr(it) = base_lr * warmup(it) * gamma ** (number of steps <= it)
    warmup(it) = factor * (1 - it / warmup_iters) + it / warmup_iters   for it < warmup_iters, else 1

``WarmupCosine`` is detectron2's ``WarmupCosineLR``: the same warmup times
``0.5 * (1 + cos(pi * it / total_iters))`` (0 from ``total_iters`` on).
With ``warmup_iters = 0`` and no steps, ``WarmupMultiStep`` is a constant.
"""

import math

import keras
import tensorflow as tf

SCHEDULES = ("step", "cosine")


def _check(base_lr, warmup_iters, warmup_factor):
    if not (isinstance(base_lr, (int, float)) and math.isfinite(base_lr) and base_lr > 0):
        raise ValueError(f"base_lr must be a positive number, got {base_lr!r}")
    if not isinstance(warmup_iters, int) or isinstance(warmup_iters, bool) or warmup_iters < 0:
        raise ValueError(f"warmup_iters must be an int >= 0, got {warmup_iters!r}")
    if not (isinstance(warmup_factor, (int, float)) and 0 <= warmup_factor <= 1):
        raise ValueError(f"warmup_factor must be a number in [0, 1], got {warmup_factor!r}")


def _warmup(step, warmup_iters, warmup_factor):
    """float32 multiplier of the linear warmup at ``step`` (float32 scalar)."""
    if warmup_iters == 0:
        return tf.constant(1.0, tf.float32)
    alpha = tf.minimum(step / float(warmup_iters), 1.0)
    return warmup_factor * (1.0 - alpha) + alpha


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class WarmupMultiStep(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then ``base_lr`` times ``gamma`` per milestone passed.

    Args:
        base_lr: the learning rate after warmup, before any step.
        steps: increasing iteration numbers at which the rate is multiplied by ``gamma``.
        gamma: the factor per step (detectron2: 0.1).
        warmup_iters: iterations of linear warmup (0: none).
        warmup_factor: the multiplier at iteration 0 (detectron2: 0.001).
    """

    def __init__(self, base_lr, steps=(), gamma=0.1, warmup_iters=0, warmup_factor=0.001):
        _check(base_lr, warmup_iters, warmup_factor)
        steps = tuple(int(s) for s in steps)
        if any(s <= 0 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError(f"steps must be increasing positive iteration numbers, got {steps!r}")
        if not (isinstance(gamma, (int, float)) and 0 < gamma <= 1):
            raise ValueError(f"gamma must be a number in (0, 1], got {gamma!r}")
        self.base_lr, self.steps, self.gamma = float(base_lr), steps, float(gamma)
        self.warmup_iters, self.warmup_factor = int(warmup_iters), float(warmup_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        passed = tf.add_n([tf.cast(step >= s, tf.float32) for s in self.steps]) if self.steps \
            else tf.constant(0.0)
        decay = tf.pow(tf.constant(self.gamma, tf.float32), passed)
        return self.base_lr * _warmup(step, self.warmup_iters, self.warmup_factor) * decay

    def get_config(self):
        return {"base_lr": self.base_lr, "steps": list(self.steps), "gamma": self.gamma,
                "warmup_iters": self.warmup_iters, "warmup_factor": self.warmup_factor}


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then half a cosine from ``base_lr`` to 0 at ``total_iters``.

    Args:
        base_lr: the peak learning rate.
        total_iters: iterations of the whole schedule (warmup included), > 0.
        warmup_iters, warmup_factor: as :class:`WarmupMultiStep`.
    """

    def __init__(self, base_lr, total_iters, warmup_iters=0, warmup_factor=0.001):
        _check(base_lr, warmup_iters, warmup_factor)
        if not isinstance(total_iters, int) or isinstance(total_iters, bool) or total_iters < 1:
            raise ValueError(f"total_iters must be an int >= 1, got {total_iters!r}")
        self.base_lr, self.total_iters = float(base_lr), int(total_iters)
        self.warmup_iters, self.warmup_factor = int(warmup_iters), float(warmup_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = tf.minimum(step / float(self.total_iters), 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        return self.base_lr * _warmup(step, self.warmup_iters, self.warmup_factor) * cosine

    def get_config(self):
        return {"base_lr": self.base_lr, "total_iters": self.total_iters,
                "warmup_iters": self.warmup_iters, "warmup_factor": self.warmup_factor}


def build_schedule(config, base_lr, total_iters=None):
    """The learning rate ``config`` asks for: a float (no warmup, no steps) or a schedule.

    Args:
        config: reads LR_SCHEDULE, WARMUP_ITERS, WARMUP_FACTOR, LR_STEPS, LR_GAMMA.
        base_lr: the peak learning rate (``train()``'s ``learning_rate``).
        total_iters: iterations of the ``train()`` call ("cosine" needs it).
    Returns:
        ``base_lr`` itself when the schedule would be constant (today's
        behaviour, and a plain optimizer variable), else a
        ``WarmupMultiStep`` / ``WarmupCosine``.
    """
    if config.LR_SCHEDULE == "cosine":
        if total_iters is None:
            raise ValueError("LR_SCHEDULE 'cosine' needs the number of iterations of the run")
        return WarmupCosine(base_lr, int(total_iters), config.WARMUP_ITERS, config.WARMUP_FACTOR)
    if not config.WARMUP_ITERS and not config.LR_STEPS:
        return base_lr
    return WarmupMultiStep(base_lr, config.LR_STEPS, config.LR_GAMMA, config.WARMUP_ITERS,
                           config.WARMUP_FACTOR)
