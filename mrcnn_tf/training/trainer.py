"""The training-mode Keras model: the five weighted losses in ``compute_loss``, for ``fit``."""

import keras
import tensorflow as tf

from mrcnn_tf.config import DEFAULT_LOSS_WEIGHTS, LOSS_NAMES
from mrcnn_tf.modeling.roi_heads import mrcnn_bbox_loss, mrcnn_class_loss, mrcnn_mask_loss
from mrcnn_tf.modeling.rpn import rpn_bbox_loss, rpn_class_loss


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class MaskRCNNTrainer(keras.Model):
    """The training-mode functional model: ``fit`` works as for any Keras model.

    ``compute_loss`` turns the graph's outputs into the five weighted losses
    and logs each as its own metric (``rpn_class_loss``, ...,
    ``mrcnn_mask_loss``), next to Keras's total ``loss``.
    """

    def __init__(self, *args, loss_weights=None, mask_loss="sigmoid", **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_weights = dict(loss_weights or DEFAULT_LOSS_WEIGHTS)
        self.mask_loss = mask_loss  # Config.MASK_LOSS: "sigmoid" or "softmax"
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}

    def named_losses(self, x, y_pred):
        """The five unweighted losses (float32 scalars) by name."""
        return {
            "rpn_class_loss": rpn_class_loss(y_pred["rpn_match"], y_pred["rpn_class_logits"]),
            "rpn_bbox_loss": rpn_bbox_loss(y_pred["target_rpn_bbox"], y_pred["rpn_match"],
                                           y_pred["rpn_bbox"]),
            "mrcnn_class_loss": mrcnn_class_loss(
                y_pred["target_class_ids"], y_pred["mrcnn_class_logits"], y_pred["active_class_ids"]),
            "mrcnn_bbox_loss": mrcnn_bbox_loss(
                y_pred["target_deltas"], y_pred["target_class_ids"], y_pred["mrcnn_bbox"]),
            "mrcnn_mask_loss": mrcnn_mask_loss(
                y_pred["target_masks"], y_pred["target_class_ids"][:, :y_pred["target_masks"].shape[1]],
                y_pred["mrcnn_mask_logits"], loss=self.mask_loss),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The weighted sum of the five losses, divided by the number of replicas.

        Under a tf.distribute strategy Keras sums the replicas' gradients and
        multiplies the returned loss back by the replica count for its ``loss``
        metric (what its own ``compute_loss`` expects), so the update is that
        of the mean over replicas. One device: the plain weighted sum.
        """
        named = self.named_losses(x, y_pred)
        total = 0.0
        for name, value in named.items():
            self.loss_trackers[name].update_state(value)
            total = total + self.loss_weights.get(name, 1.0) * value
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return total / replicas if replicas > 1 else total

    def train_step(self, data):
        return _with_batch_axis_for_multi_worker(super().train_step(data))

    def test_step(self, data):
        return _with_batch_axis_for_multi_worker(super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras's TF trainer builds a model under a strategy from one batch that it
        # first averages over the replicas (strategy.reduce). That all-reduce fails
        # for dict inputs under MultiWorkerMirroredStrategy (and for bool tensors
        # anywhere); the build needs shapes only, so use this worker's first
        # replica's values instead.
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for step in iterator:
            batch = next(step[-1])
            data_batch = tf.nest.map_structure(
                lambda value: strategy.experimental_local_results(value)[0]
                if isinstance(value, tf.distribute.DistributedValues) else value, batch)
            break
        return super()._maybe_symbolic_build(data_batch=data_batch)

    def get_config(self):
        return {**super().get_config(), "loss_weights": self.loss_weights, "mask_loss": self.mask_loss}


def _with_batch_axis_for_multi_worker(logs):
    """Logs of a step as [1] tensors under MultiWorkerMirroredStrategy, else unchanged.

    Keras 3 reduces a multi-worker step's logs with ``strategy.reduce("MEAN",
    axis=0)``, which fails on scalars (tensorflow/tensorflow#72388); with a batch
    axis the reduction is the mean over all replicas, a scalar again.
    """
    strategy = tf.distribute.get_strategy()
    multi_worker = getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)()
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and multi_worker):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}
