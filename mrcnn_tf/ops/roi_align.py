"""RoIAlign (He et al. 2017) on ``tf.image.crop_and_resize``, and the FPN level rule.

The convention is ``shared/design/roialign.md``: no coordinate is rounded;
the RoI is split into ``m x m`` bins, each sampled on a regular ``r x r``
grid; a sample at continuous coordinate ``y`` reads the map by bilinear
interpolation at index position ``y - 0.5``; the bin is the mean of its
samples. A sample within one pixel outside the map reads the edge value,
one further out reads 0.

``crop_and_resize`` samples ``n`` points evenly from the first to the last
"box" edge inclusive, in index space scaled by ``(H - 1)``. Handing it the
first and last *sample centres* as the box gives exactly the ``m*r`` sample
grid, which is then average-pooled ``r x r``: exact RoIAlign on the fused
kernel. Padding the map by one edge-replicated pixel makes the
extrapolation rule match the border rule above.

In a graph the kernel runs in a one-op function of its own, with Grappler's
memory optimizer off there (see :func:`_crop_and_resize`): that optimizer
costs every op statically, and the cost model of ``CropAndResize`` fails on
a box count only known at run time (the per-level split always makes one),
logging a multi-kilobyte "Error in PredictCost()" line per call site.
"""

import math

import tensorflow as tf


def _pair(value, name):
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value}")
    return value


def _check_rank(tensor, rank, name, layout):
    if tensor.shape.rank is not None and tensor.shape.rank != rank:
        raise ValueError(f"{name} must have rank {rank} {layout}, got shape {tensor.shape}")


def roi_align(features, boxes, box_indices, output_size, sampling_ratio=2):
    """Exact RoIAlign of ``shared/design/roialign.md``.

    Args:
        features: float [B, H, W, C] feature maps.
        boxes: float [N, (y1, x1, y2, x2)] in this map's own pixel
            coordinates (continuous; pixel i covers [i, i + 1)).
            Requires y2 >= y1 and x2 >= x1, all finite; a zero-size box
            pools its single point.
        box_indices: int32 [N], the image in the batch each box reads.
        output_size: int or (oh, ow), the number of bins.
        sampling_ratio: samples per bin along each axis (r; r*r in all).
    Returns:
        [N, oh, ow, C], the dtype of ``features``.
    Raises:
        ValueError: on wrong ranks or sizes (statically known).
        tf.errors.InvalidArgumentError: on inverted or non-finite boxes.
    """
    features = tf.convert_to_tensor(features)
    boxes = tf.cast(boxes, tf.float32)
    box_indices = tf.cast(box_indices, tf.int32)
    _check_rank(features, 4, "features", "[B, H, W, C]")
    _check_rank(boxes, 2, "boxes", "[N, 4]")
    _check_rank(box_indices, 1, "box_indices", "[N]")
    out_h, out_w = _pair(output_size, "output_size")
    if int(sampling_ratio) < 1:
        raise ValueError(f"sampling_ratio must be >= 1, got {sampling_ratio}")
    sampling_ratio = int(sampling_ratio)
    boxes = tf.ensure_shape(boxes, [None, 4])
    tf.debugging.assert_all_finite(boxes, "roi_align: boxes contain NaN or Inf")
    tf.debugging.assert_greater_equal(
        boxes[:, 2:], boxes[:, :2], message="roi_align: boxes must have y2 >= y1 and x2 >= x1")
    return roi_align_unchecked(features, boxes, box_indices, out_h, out_w, sampling_ratio)


def roi_align_unchecked(features, boxes, box_indices, out_h, out_w, sampling_ratio):
    """roi_align without argument checks, for callers that built valid boxes."""
    compute_dtype = features.dtype
    # crop_and_resize is float32-only on CPU; bilinear weights also want float32.
    padded = tf.pad(tf.cast(features, tf.float32), [[0, 0], [1, 1], [1, 1], [0, 0]],
                    mode="SYMMETRIC")
    padded_h = tf.cast(tf.shape(padded)[1], tf.float32)
    padded_w = tf.cast(tf.shape(padded)[2], tf.float32)

    y1, x1, y2, x2 = tf.unstack(boxes, 4, axis=1)
    samples_h, samples_w = out_h * sampling_ratio, out_w * sampling_ratio
    step_y = (y2 - y1) / samples_h
    step_x = (x2 - x1) / samples_w
    # First and last sample centres, in index space (-0.5) of the padded map (+1).
    first_y = y1 + 0.5 * step_y + 0.5
    first_x = x1 + 0.5 * step_x + 0.5
    last_y = y2 - 0.5 * step_y + 0.5
    last_x = x2 - 0.5 * step_x + 0.5
    crop_boxes = tf.stack([first_y / (padded_h - 1.0), first_x / (padded_w - 1.0),
                           last_y / (padded_h - 1.0), last_x / (padded_w - 1.0)], axis=1)
    samples = _crop_and_resize(padded, crop_boxes, box_indices, samples_h, samples_w)
    if sampling_ratio > 1:
        samples = tf.nn.avg_pool2d(samples, sampling_ratio, sampling_ratio, "VALID")
    return tf.cast(samples, compute_dtype)


def _crop_and_resize(image, boxes, box_indices, crop_h, crop_w):
    """``tf.image.crop_and_resize`` (bilinear, extrapolation 0) that Grappler does not cost.

    Grappler's memory optimizer schedules each graph on a simulated device,
    costing every op. ``CropAndResize``'s cost model multiplies by the box
    count, which is unknown here (boxes per FPN level, detections per image,
    any batch), and on an unknown count it fails and logs the whole op
    (``op_level_cost_estimator ... Error in PredictCost()``). So in a graph
    the op runs in its own non-inlined function, called with the memory
    optimizer off: for one op it has nothing to schedule or swap, and the
    rest of the graph keeps every Grappler pass. Gradients are the op's own
    (image and boxes), given explicitly since a function call has none.
    Eagerly (no Grappler) or with a static box count (costed fine) the op
    runs as is.
    """
    box_indices = tf.cast(box_indices, tf.int32)
    if tf.executing_eagerly() or boxes.shape[0] is not None:
        return tf.image.crop_and_resize(image, boxes, box_indices, [crop_h, crop_w],
                                        method="bilinear", extrapolation_value=0.0)
    kernel = _crop_and_resize_function(image.shape[-1], crop_h, crop_w)

    @tf.custom_gradient
    def crop(image, boxes):
        crops, = tf.raw_ops.PartitionedCall(args=[image, boxes, box_indices], Tout=[tf.float32],
                                            f=kernel, config_proto=_no_memory_optimizer_config())
        crops.set_shape([boxes.shape[0], crop_h, crop_w, image.shape[-1]])

        def grad(upstream):
            d_image = tf.raw_ops.CropAndResizeGradImage(
                grads=upstream, boxes=boxes, box_ind=box_indices, image_size=tf.shape(image),
                T=tf.float32, method="bilinear")
            d_boxes = tf.raw_ops.CropAndResizeGradBoxes(
                grads=upstream, image=image, boxes=boxes, box_ind=box_indices, method="bilinear")
            return d_image, d_boxes

        return crops, grad

    return crop(image, boxes)


_CROP_FUNCTIONS = {}


def _crop_and_resize_function(channels, crop_h, crop_w):
    """The one-op CropAndResize function for this channel count and crop size."""
    key = (channels, crop_h, crop_w)
    if key not in _CROP_FUNCTIONS:
        def kernel(image, boxes, box_indices):
            return tf.raw_ops.CropAndResize(image=image, boxes=boxes, box_ind=box_indices,
                                            crop_size=[crop_h, crop_w], method="bilinear",
                                            extrapolation_value=0.0)

        # _noinline: an inlined body would rejoin the caller's graph and its memory optimizer.
        _CROP_FUNCTIONS[key] = tf.function(
            kernel, experimental_attributes={"_noinline": True}).get_concrete_function(
                tf.TensorSpec([None, None, None, channels], tf.float32),
                tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32))
    return _CROP_FUNCTIONS[key]


def _no_memory_optimizer_config():
    """Serialized ConfigProto for the call: TF's default for functions, memory optimizer off."""
    config = tf.compat.v1.ConfigProto(allow_soft_placement=tf.config.get_soft_device_placement())
    rewrite = config.graph_options.rewrite_options
    rewrite.memory_optimization = rewrite.NO_MEM_OPT
    return config.SerializeToString()


def fpn_level(boxes_px, k0=4, canonical_size=224, min_level=2, max_level=5):
    """FPN level of each RoI: ``floor(k0 + log2(sqrt(h * w) / canonical_size))``.

    Args:
        boxes_px: float [..., (y1, x1, y2, x2)] in input-image pixels.
        k0: level of a box of the canonical size.
        canonical_size: 224, the ImageNet pre-training size.
        min_level, max_level: the clamp range (P2..P5).
    Returns:
        int32 [...]; boxes of zero area go to ``min_level``.
    """
    boxes_px = tf.cast(boxes_px, tf.float32)
    y1, x1, y2, x2 = tf.unstack(boxes_px, 4, axis=-1)
    size = tf.sqrt(tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0))
    # log2 of 0 is -inf; a tiny floor maps empty boxes to the lowest level.
    level = tf.floor(k0 + tf.math.log(tf.maximum(size, 1e-6) / canonical_size) / math.log(2.0))
    return tf.cast(tf.clip_by_value(level, min_level, max_level), tf.int32)
