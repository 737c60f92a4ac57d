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

import contextlib
import math

import tensorflow as tf

# How the r x r samples of a bin combine into its value.
AGGREGATES = ("avg", "max")


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


def roi_align(features, boxes, box_indices, output_size, sampling_ratio=2, aggregate="avg"):
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
        aggregate: how a bin's samples combine: "avg" (the mean, the paper's
            final choice) or "max" (the paper's ablation, Table 2c).
    Returns:
        [N, oh, ow, C], the dtype of ``features``.
    Raises:
        ValueError: on wrong ranks, sizes or aggregate (statically known).
        tf.errors.InvalidArgumentError: on inverted or non-finite boxes.
    """
    if int(sampling_ratio) < 1:
        raise ValueError(f"sampling_ratio must be >= 1, got {sampling_ratio}")
    check_aggregate(aggregate)
    features, boxes, box_indices, out_h, out_w = check_roi_args(
        features, boxes, box_indices, output_size, "roi_align")
    return roi_align_unchecked(features, boxes, box_indices, out_h, out_w, int(sampling_ratio),
                               aggregate=aggregate)


def check_roi_args(features, boxes, box_indices, output_size, name):
    """The checks and casts of every RoI feature extractor (roi_align, roi_pool, roi_warp).

    Returns:
        (features, boxes float32 [N, 4], box_indices int32 [N], out_h, out_w).
    Raises:
        ValueError naming the argument (ranks, sizes); boxes that are not
        finite or are inverted fail in the graph, naming ``name``.
    """
    features = tf.convert_to_tensor(features)
    boxes = tf.cast(boxes, tf.float32)
    box_indices = tf.cast(box_indices, tf.int32)
    _check_rank(features, 4, "features", "[B, H, W, C]")
    _check_rank(boxes, 2, "boxes", "[N, 4]")
    _check_rank(box_indices, 1, "box_indices", "[N]")
    out_h, out_w = _pair(output_size, "output_size")
    boxes = tf.ensure_shape(boxes, [None, 4])
    tf.debugging.assert_all_finite(boxes, f"{name}: boxes contain NaN or Inf")
    tf.debugging.assert_greater_equal(
        boxes[:, 2:], boxes[:, :2], message=f"{name}: boxes must have y2 >= y1 and x2 >= x1")
    return features, boxes, box_indices, out_h, out_w


def check_aggregate(aggregate):
    """``aggregate`` if it is one of AGGREGATES ("avg", "max"), else ValueError."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    return aggregate


def roi_align_unchecked(features, boxes, box_indices, out_h, out_w, sampling_ratio, aggregate="avg"):
    """roi_align without argument checks, for callers that built valid boxes."""
    compute_dtype = features.dtype
    # crop_and_resize is float32-only on CPU; bilinear weights also want float32.
    padded = tf.pad(tf.cast(features, tf.float32), [[0, 0], [1, 1], [1, 1], [0, 0]],
                    mode="SYMMETRIC")
    padded_h = tf.cast(tf.shape(padded)[1], tf.float32)
    padded_w = tf.cast(tf.shape(padded)[2], tf.float32)

    # Slices, not unstack: TFLite's UNPACK rejects an empty input (a pyramid level with no box).
    y1, x1, y2, x2 = (boxes[:, i] for i in range(4))
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
    if sampling_ratio > 1 and aggregate == "max":
        # A reshape and reduce_max, not max_pool2d: the oneDNN MaxPoolGrad kernel aborts
        # the process in graph mode here (TF 2.21, "int32 expected, got float").
        channels = samples.shape[-1] if samples.shape[-1] is not None else tf.shape(samples)[-1]
        samples = tf.reduce_max(tf.reshape(samples, [-1, out_h, sampling_ratio, out_w, sampling_ratio,
                                                     channels]), axis=[2, 4])
    elif sampling_ratio > 1:
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
    if _BUILTIN_SAMPLING:
        return gather_crop_and_resize(image, boxes, box_indices, crop_h, crop_w)
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


# Set inside builtin_sampling(): the export converters trace the graph there.
_BUILTIN_SAMPLING = []


@contextlib.contextmanager
def builtin_sampling():
    """Trace RoIAlign with :func:`gather_crop_and_resize` instead of ``CropAndResize``.

    For exports only (``export/tflite.py``, ``export/onnx.py``): TFLite has no
    ``CropAndResize`` builtin and cannot convert the non-inlined kernel
    function; the same samples come from Gather and arithmetic. Training and
    ``detect()`` keep the fused kernel (faster, with its own gradients).
    """
    _BUILTIN_SAMPLING.append(True)
    try:
        yield
    finally:
        _BUILTIN_SAMPLING.pop()


def gather_crop_and_resize(image, boxes, box_indices, crop_h, crop_w):
    """``tf.image.crop_and_resize`` (bilinear, extrapolation 0) from Gather and arithmetic.

    Args:
        image: float32 [B, H, W, C].
        boxes: float32 [N, (y1, x1, y2, x2)] normalised by (H - 1, W - 1),
            as ``crop_and_resize`` takes them.
        box_indices: int32 [N].
        crop_h, crop_w: ints, the samples per box along each axis.
    Returns:
        float32 [N, crop_h, crop_w, C]: the kernel's sample positions, corner
        order and lerp formula, so it agrees with it to float rounding; a
        sample outside ``[0, H - 1] x [0, W - 1]`` is 0.
    """
    height, width, channels = tf.shape(image)[1], tf.shape(image)[2], tf.shape(image)[3]

    def axis(start, end, size, count):
        """Sample positions along one axis -> (low, high int32 [N, count], frac, inside)."""
        last = tf.cast(size - 1, tf.float32)
        if count > 1:
            scale = (end - start) * last / (count - 1)
            pos = start[:, None] * last + tf.range(count, dtype=tf.float32)[None] * scale[:, None]
        else:
            pos = (0.5 * (start + end) * last)[:, None]
        inside = (pos >= 0.0) & (pos <= last)
        low = tf.floor(pos)
        low_i = tf.clip_by_value(tf.cast(low, tf.int32), 0, size - 1)
        # The kernel's ceil(pos); low + 1 instead has weight 0 when pos is whole.
        return low_i, tf.minimum(low_i + 1, size - 1), pos - low, inside

    top, bottom, y_frac, y_in = axis(boxes[:, 0], boxes[:, 2], height, crop_h)
    left, right, x_frac, x_in = axis(boxes[:, 1], boxes[:, 3], width, crop_w)
    flat = tf.reshape(image, [-1, channels])
    rows = box_indices[:, None] * height

    def corner(y, x):  # [N, crop_h, crop_w, C]
        return tf.gather(flat, ((rows + y)[:, :, None]) * width + x[:, None, :])

    x_frac = x_frac[:, None, :, None]
    upper = corner(top, left) + (corner(top, right) - corner(top, left)) * x_frac
    lower = corner(bottom, left) + (corner(bottom, right) - corner(bottom, left)) * x_frac
    values = upper + (lower - upper) * y_frac[:, :, None, None]
    inside = (y_in[:, :, None] & x_in[:, None, :])[..., None]
    return tf.where(inside, values, tf.zeros_like(values))


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


def unaligned_boxes(boxes):
    """Boxes for RoIAlign ``aligned=False`` (torchvision v1's, Detectron's original).

    That variant samples the map at index ``y`` where this module's
    convention samples at ``y - 0.5`` (the half-pixel offset of
    ``shared/design/roialign.md``), and it stretches boxes to at least one
    cell. Both amount to a box change, so the one RoIAlign serves both.

    Args:
        boxes: float32 [N, (y1, x1, y2, x2)] in the map's own pixels.
    Returns:
        float32 [N, 4]: shifted by +0.5 cell, each side at least 1 cell, to
        pool with :func:`roi_align` as ``aligned=False`` would pool ``boxes``.
    """
    start = boxes[:, :2] + 0.5
    size = tf.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
    return tf.concat([start, start + size], axis=1)


def fpn_level(boxes_px, k0=4, canonical_size=224, min_level=2, max_level=5, eps=0.0):
    """FPN level of each RoI: ``floor(k0 + log2(sqrt(h * w) / canonical_size) + eps)``.

    Args:
        boxes_px: float [..., (y1, x1, y2, x2)] in input-image pixels.
        k0: level of a box of the canonical size.
        canonical_size: 224, the ImageNet pre-training size.
        min_level, max_level: the clamp range (P2..P5).
        eps: added before the floor (torchvision's LevelMapper: 1e-6, so a
            box of exactly twice the canonical size is not put a level low
            by rounding).
    Returns:
        int32 [...]; boxes of zero area go to ``min_level``.
    """
    boxes_px = tf.cast(boxes_px, tf.float32)
    y1, x1, y2, x2 = tf.unstack(boxes_px, 4, axis=-1)
    size = tf.sqrt(tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0))
    # log2 of 0 is -inf; a tiny floor maps empty boxes to the lowest level.
    level = tf.floor(k0 + tf.math.log(tf.maximum(size, 1e-6) / canonical_size) / math.log(2.0) + eps)
    return tf.cast(tf.clip_by_value(level, min_level, max_level), tf.int32)
