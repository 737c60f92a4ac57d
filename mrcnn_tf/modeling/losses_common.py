"""What every loss shares: an empty-safe mean and the smooth L1.

Each loss is a mean over the elements it is defined on and is exactly 0 (not
NaN) when that set is empty, e.g. an image with no object has no positive
anchor and no positive RoI.
"""

import tensorflow as tf


def safe_mean(values):
    """Mean of a 1-D tensor; 0 for an empty one (never NaN)."""
    values = tf.reshape(tf.cast(values, tf.float32), [-1])
    count = tf.cast(tf.size(values), tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(values), count)


def smooth_l1(diff, beta=1.0):
    """Elementwise smooth L1 (Huber with slope 1): 0.5 d^2 / beta below beta, |d| - 0.5 beta above."""
    diff = tf.abs(diff)
    return tf.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
