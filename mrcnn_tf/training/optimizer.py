"""The training optimizer: SGD with momentum, weight decay "decoupled" (Keras) or "l2" (PyTorch).

The two updates, for a weight ``w`` with gradient ``g``, momentum ``mu``,
learning rate ``lr_t`` at step ``t`` and decay ``wd``:

* ``"decoupled"`` (``keras.optimizers.SGD(weight_decay=wd)``)::

      w <- w - lr_t * wd * w            # decay applied to the weight, outside the momentum
      m <- mu * m - lr_t * g ;  w <- w + m

* ``"l2"`` (``torch.optim.SGD(weight_decay=wd)``, what detectron2's ``1e-4`` means)::

      b <- mu * b + (g + wd * w) ;  w <- w - lr_t * b

  The decay term goes through the momentum, and the buffer holds gradients,
  not steps (``lr_t`` multiplies the buffer), so a schedule changes the step
  size at once, as in PyTorch.

Gradient clipping (``global_clipnorm``) acts on ``g`` before either update, as
``clip_grad_norm_`` before ``optimizer.step()``. Biases and normalisation
scales/offsets are never decayed (Goyal et al. 2017; detectron2's
``WEIGHT_DECAY_NORM = 0``).
"""

import keras
from keras import ops

WEIGHT_DECAY_MODES = ("decoupled", "l2")
# Variables named like these are not decayed.
NO_DECAY_NAMES = ("bias", "gamma", "beta")


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class TorchSGD(keras.optimizers.SGD):
    """SGD with momentum as ``torch.optim.SGD`` (dampening 0, not Nesterov), L2 weight decay.

    Args:
        learning_rate: float or ``LearningRateSchedule``.
        momentum: float in [0, 1).
        l2: the L2 factor added to the gradient as ``l2 * w`` (0: none);
            variables passed to ``exclude_from_weight_decay`` get none.
        **kwargs: of ``keras.optimizers.SGD`` (``global_clipnorm``, ...),
            except ``weight_decay`` and ``nesterov``.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2=0.0, name="torch_sgd", **kwargs):
        if kwargs.get("weight_decay") or kwargs.get("nesterov"):
            raise ValueError("TorchSGD takes its decay as l2= and has no Nesterov variant")
        kwargs.pop("weight_decay", None)
        kwargs.pop("nesterov", None)
        super().__init__(learning_rate=learning_rate, momentum=momentum, name=name, **kwargs)
        if not l2 >= 0:
            raise ValueError(f"l2 must be >= 0, got {l2!r}")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2 and self._use_weight_decay(variable):
            gradient = ops.add(gradient, ops.multiply(variable, ops.cast(self.l2, variable.dtype)))
        if self.momentum != 0:
            buffer = self.momentums[self._get_variable_index(variable)]
            self.assign(buffer, ops.add(ops.multiply(buffer, ops.cast(self.momentum, variable.dtype)),
                                        gradient))
            gradient = buffer
        self.assign_sub(variable, ops.multiply(gradient, learning_rate))

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


def build_optimizer(learning_rate, momentum, weight_decay, weight_decay_mode="decoupled",
                    clip_norm=None):
    """The SGD optimizer of ``MaskRCNN.compile``.

    Args:
        learning_rate: float or ``LearningRateSchedule``.
        momentum: SGD momentum.
        weight_decay: the decay factor (0 or None: none).
        weight_decay_mode: "decoupled" (Keras's SGD) or "l2" (:class:`TorchSGD`).
        clip_norm: global gradient-norm clip, or None.
    Returns:
        a Keras optimizer, biases and norm parameters excluded from the decay.
    """
    if weight_decay_mode not in WEIGHT_DECAY_MODES:
        raise ValueError(f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, "
                         f"got {weight_decay_mode!r}")
    if weight_decay_mode == "l2":
        optimizer = TorchSGD(learning_rate, momentum, l2=weight_decay or 0.0,
                             global_clipnorm=clip_norm)
    else:
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum,
                                         weight_decay=weight_decay or None, global_clipnorm=clip_norm)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
    return optimizer
