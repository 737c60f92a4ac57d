"""Pictures of detections, anchors/proposals and evaluation curves.

Figures are built as ``matplotlib.figure.Figure`` on an Agg canvas, never
through ``pyplot``: that is headless-safe, leaves the user's backend and
pyplot's figure list alone (nothing to close), and a returned Figure still
displays in a notebook. Nothing here calls ``plt.show``.

Boxes are ``(y1, x1, y2, x2)`` pixels, y2/x2 exclusive. ``imshow`` puts
the centre of pixel ``i`` at coordinate ``i``, so a box is drawn from
``x1 - 0.5`` to ``x2 - 0.5``: exactly around its pixels.
"""

import colorsys

import numpy as np
from matplotlib import patches
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from skimage.measure import find_contours

from mrcnn_tf.ops.image import LUMA_WEIGHTS

IMAGE_MARGIN = 10  # pixels of blank around the image so edge boxes show whole


def _new_figure(figsize, ncols=1, nrows=1):
    """Figure on its own Agg canvas and its axes (array if several)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=True)


def _figure_and_ax(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    return _new_figure(figsize)


def random_colors(n, seed=0):
    """``n`` bright, distinct RGB colours in [0, 1] (evenly spaced hues,
    shuffled by ``seed`` so neighbours differ)."""
    colors = [colorsys.hsv_to_rgb(i / max(n, 1), 1.0, 1.0) for i in range(n)]
    order = np.random.default_rng(seed).permutation(n)
    return [tuple(float(c) for c in colors[i]) for i in order]


def apply_mask(image, mask, color, alpha=0.5):
    """Blend ``color`` into the pixels under ``mask``.

    Args:
        image: [H, W, 3], uint8 or float in 0..255. Not modified.
        mask: bool [H, W].
        color: RGB in [0, 1].
    Returns:
        New array, dtype of ``image``: ``(1 - alpha) * pixel + alpha * 255 *
        color`` under the mask (rounded for integer images), unchanged elsewhere.
    """
    image = np.asarray(image)
    mask = np.asarray(mask, bool)
    if image.ndim != 3 or image.shape[2] != 3 or mask.shape != image.shape[:2]:
        raise ValueError(f"need image [H, W, 3] and mask [H, W], got {image.shape} "
                         f"and {mask.shape}")
    blended = image.astype(np.float64) * (1 - alpha) + alpha * 255.0 * np.asarray(color)
    out = np.where(mask[:, :, None], blended, image)
    if np.issubdtype(image.dtype, np.integer):
        out = np.clip(np.round(out), 0, 255)
    return out.astype(image.dtype)


def _show_image(ax, image, title):
    height, width = image.shape[:2]
    ax.set_ylim(height + IMAGE_MARGIN, -IMAGE_MARGIN)
    ax.set_xlim(-IMAGE_MARGIN, width + IMAGE_MARGIN)
    ax.axis("off")
    ax.set_title(title)
    ax.imshow(np.clip(image, 0, 255).astype(np.uint8))


def _box_patch(box, color, linestyle="dashed", alpha=0.7, linewidth=2):
    y1, x1, y2, x2 = (float(v) for v in box)
    return patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, linewidth=linewidth,
                             alpha=alpha, linestyle=linestyle, edgecolor=color,
                             facecolor="none")


def _draw_contours(ax, mask, color):
    # Pad so masks touching the border still give closed contours; the -1
    # undoes the padding offset.
    padded = np.pad(mask.astype(np.uint8), 1)
    for verts in find_contours(padded, 0.5):
        ax.add_patch(patches.Polygon(np.fliplr(verts) - 1, facecolor="none",
                                     edgecolor=color))


def display_instances(image, boxes, masks, class_ids, class_names, scores=None, title="",
                      figsize=(8, 8), ax=None, show_mask=True, show_bbox=True, colors=None,
                      save_path=None):
    """Draw instances: masks blended in, dashed boxes, "name score" captions.

    Args:
        image: uint8 [H, W, 3].
        boxes: int [N, (y1, x1, y2, x2)] pixels. masks: bool [H, W, N].
        class_ids: int [N] into ``class_names``. scores: float [N] or None.
        ax: draw there instead of a new figure.
        colors: N RGB colours in [0, 1]; default ``random_colors(N)``.
        save_path: also write the figure there as a PNG (at the figure's dpi).
    Returns:
        The matplotlib Figure.
    """
    image = np.asarray(image)
    boxes = np.asarray(boxes).reshape(-1, 4)
    count = boxes.shape[0]
    masks = np.zeros(image.shape[:2] + (0,), bool) if masks is None else np.asarray(masks, bool)
    if len(class_ids) != count or (show_mask and masks.shape[-1] != count):
        raise ValueError(f"{count} boxes but {len(class_ids)} class ids and "
                         f"{masks.shape[-1]} masks")
    fig, ax = _figure_and_ax(ax, figsize)
    colors = random_colors(count) if colors is None else list(colors)
    masked_image = image.astype(np.float64)
    for i in range(count):
        if show_bbox:
            ax.add_patch(_box_patch(boxes[i], colors[i]))
        y1, x1 = boxes[i, :2]
        label = class_names[class_ids[i]]
        caption = f"{label} {scores[i]:.3f}" if scores is not None else label
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")
        if show_mask:
            masked_image = apply_mask(masked_image, masks[:, :, i], colors[i])
            _draw_contours(ax, masks[:, :, i], colors[i])
    _show_image(ax, masked_image, title)
    if save_path is not None:
        fig.savefig(save_path, format="png", dpi=fig.dpi)
    return fig


def display_top_masks(image, mask, class_ids, class_names, limit=4):
    """The image and the union masks of the ``limit`` classes covering the
    most pixels, one panel each. ``mask`` bool [H, W, N], ``class_ids`` [N].
    Returns the Figure."""
    mask = np.asarray(mask, bool)
    class_ids = np.asarray(class_ids).reshape(-1)
    unique_ids = np.unique(class_ids)
    area = [mask[:, :, class_ids == c].sum() for c in unique_ids]
    top_ids = [c for _, c in sorted(zip(area, unique_ids), key=lambda e: -e[0])][:limit]
    fig, axes = _new_figure((3 * (limit + 1), 3), ncols=limit + 1)
    axes = np.atleast_1d(axes)
    titles = ["H x W={}x{}".format(*image.shape[:2])]
    panels = [np.asarray(image)]
    for c in top_ids:
        panels.append(mask[:, :, class_ids == c].any(axis=2).astype(np.float32))
        titles.append(class_names[c])
    for ax, panel, title in zip(axes, panels, titles):
        ax.imshow(panel, cmap=None if panel.ndim == 3 else "Blues_r")
        ax.set_title(title)
        ax.axis("off")
    for ax in axes[len(panels):]:
        ax.axis("off")
    return fig


def draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None, title="",
               ax=None, figsize=(8, 8)):
    """Draw anchors, proposals or sampled RoIs, and how they were refined.

    Args:
        image: uint8 [H, W, 3].
        boxes: [N, (y1, x1, y2, x2)] pixels; drawn dotted grey if
            ``refined_boxes`` is given, else solid in colour.
        refined_boxes: [N, 4], the same boxes after refinement, solid, joined
            to their originals by a line.
        masks: bool [H, W, N] or None. captions: N strings or None.
    Returns:
        The Figure.
    """
    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes needs boxes or refined_boxes")
    boxes = None if boxes is None else np.asarray(boxes).reshape(-1, 4)
    refined = None if refined_boxes is None else np.asarray(refined_boxes).reshape(-1, 4)
    count = (boxes if boxes is not None else refined).shape[0]
    if boxes is not None and refined is not None and refined.shape[0] != count:
        raise ValueError(f"{count} boxes but {refined.shape[0]} refined boxes")
    fig, ax = _figure_and_ax(ax, figsize)
    colors = random_colors(count)
    masked_image = np.asarray(image).astype(np.float64)
    for i in range(count):
        color = colors[i]
        if boxes is not None:
            dotted = refined is not None
            ax.add_patch(_box_patch(boxes[i], "grey" if dotted else color,
                                    linestyle="dotted" if dotted else "solid",
                                    alpha=1.0, linewidth=1 if dotted else 2))
        if refined is not None:
            ax.add_patch(_box_patch(refined[i], color, linestyle="solid", alpha=1.0))
            if boxes is not None:  # where each box moved to
                ax.plot([boxes[i, 1] - 0.5, refined[i, 1] - 0.5],
                        [boxes[i, 0] - 0.5, refined[i, 0] - 0.5], color=color)
        if captions is not None:
            y1, x1 = (refined if refined is not None else boxes)[i, :2]
            ax.text(x1, y1, captions[i], size=11, verticalalignment="top", color="w",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})
        if masks is not None:
            masked_image = apply_mask(masked_image, np.asarray(masks, bool)[:, :, i], color)
            _draw_contours(ax, np.asarray(masks, bool)[:, :, i], color)
    _show_image(ax, masked_image, title)
    return fig


def plot_precision_recall(ap, precisions, recalls, figsize=(6, 5)):
    """Step plot of a precision-recall curve (from ``compute_ap``), AP in the title."""
    fig, ax = _new_figure(figsize)
    ax.set_title(f"Precision-Recall Curve. AP@50 = {ap:.3f}")
    ax.set_xlim(0, 1.1)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.step(np.asarray(recalls), np.asarray(precisions), where="post")
    return fig


def plot_precision_recall_curves(curves, figsize=(6, 5)):
    """One precision-recall step curve per class on one axes, AP in the legend.

    Args:
        curves: {class_name: (ap, precisions, recalls)}, from
            ``evaluate.per_class_precision_recall``.
    """
    fig, ax = _new_figure(figsize)
    ax.set_title("Precision-recall per class")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    for name, (ap, precisions, recalls) in curves.items():
        ax.step(np.asarray(recalls), np.asarray(precisions), where="post", label=f"{name} ({ap:.3f})")
    if curves:
        ax.legend(loc="lower left")
    return fig


def plot_confusion_matrix(matrix, class_names, figsize=None):
    """Heat map of ``evaluate.confusion_matrix`` (rows GT, columns predictions), counts written in."""
    matrix = np.asarray(matrix)
    labels = ["BG"] + list(class_names[1:])
    side = 1.5 + 0.5 * len(labels)
    fig, ax = _new_figure(figsize or (side, side))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.set_xlabel("predicted (BG: missed GT)")
    ax.set_ylabel("ground truth (BG: false positive)")
    for (y, x), value in np.ndenumerate(matrix):
        ax.text(x, y, str(int(value)), ha="center", va="center")
    return fig


def plot_per_class_ap(ap_by_class, figsize=None):
    """Horizontal bars of ``{class_name: AP}`` (from ``per_class_ap``)."""
    names = list(ap_by_class)
    values = [float(ap_by_class[n]) for n in names]
    fig, ax = _new_figure(figsize or (6, 1 + 0.35 * max(len(names), 1)))
    positions = np.arange(len(names))
    ax.barh(positions, values)
    ax.set_yticks(positions, names)
    ax.invert_yaxis()  # first class on top
    ax.set_xlim(0, 1)
    ax.set_xlabel("AP")
    for y, value in zip(positions, values):
        ax.text(min(value, 0.9) + 0.01, y, f"{value:.3f}", va="center")
    return fig


def color_splash(image, masks):
    """Greyscale image with the instances left in colour.

    Args:
        image: uint8 [H, W, 3]. masks: bool [H, W, N] (N may be 0).
    Returns:
        uint8 [H, W, 3]: original pixels inside the union of the masks,
        grey (R == G == B, the BT.601 luma of ``LUMA_WEIGHTS``) elsewhere.
    """
    image = np.asarray(image)
    masks = np.asarray(masks, bool)
    if masks.ndim != 3 or masks.shape[:2] != image.shape[:2]:
        raise ValueError(f"masks must be [H, W, N] for image {image.shape}, got {masks.shape}")
    luma = np.clip(np.round(image[..., :3].astype(np.float64) @ LUMA_WEIGHTS), 0, 255)
    grey = np.repeat(luma[:, :, None], 3, axis=2).astype(np.uint8)
    keep = masks.any(axis=2, keepdims=True)
    return np.where(keep, image[..., :3], grey).astype(np.uint8)


def draw_detections(image, result, colors=None):
    """uint8 [H, W, 3] with each instance's mask tinted and its box outlined."""
    canvas = image.copy()
    count = len(result["class_ids"])
    colors = colors or random_colors(max(count, 1))
    for i in range(count):
        color = colors[i % len(colors)]
        canvas = apply_mask(canvas, result["masks"][:, :, i], color)
        y1, x1, y2, x2 = (int(v) for v in result["rois"][i])
        # The outline runs on the box's first and last pixel rows/columns (y2, x2 exclusive).
        y1, x1 = max(y1, 0), max(x1, 0)
        y2, x2 = min(y2, image.shape[0]) - 1, min(x2, image.shape[1]) - 1
        if y2 < y1 or x2 < x1:
            continue
        rgb = (np.array(color) * 255).astype(np.uint8)
        canvas[y1, x1:x2 + 1] = canvas[y2, x1:x2 + 1] = rgb
        canvas[y1:y2 + 1, x1] = canvas[y1:y2 + 1, x2] = rgb
    return canvas


def _signed_area(points):
    """Shoelace area of a closed ring of (row, col) points; > 0 counter-clockwise in (row, col)."""
    rows, cols = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(rows, np.roll(cols, -1)) - np.dot(cols, np.roll(rows, -1)))


def mask_to_polygons(mask, tolerance=1.0):
    """Outlines of a binary mask as simplified polygons, outer contours with their holes.

    Contours are traced between pixel centres at level 0.5 (marching squares
    on the mask padded by one pixel, so objects touching the border close),
    then simplified by Douglas-Peucker within ``tolerance`` pixels.
    Coordinates are continuous, pixel ``i`` covering ``[i, i + 1)`` (the
    VIA loader's convention): filling a polygon by pixel centres gives the
    mask back, up to the simplification.

    Args:
        mask: bool [H, W].
        tolerance: max distance in pixels of the simplified outline from the
            traced one; 0 keeps every vertex.
    Returns:
        list of ``(exterior, holes)``, one per connected region:
        ``exterior`` float64 [K, (x, y)] (K >= 3, not repeating the first
        point), ``holes`` a list of such arrays inside it. Empty for an
        empty mask.
    Raises:
        ValueError: ``mask`` is not 2-D, or ``tolerance`` is negative.
    """
    from skimage.measure import approximate_polygon, points_in_poly

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W], got shape {mask.shape}")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
    padded = np.pad(mask.astype(np.uint8), 1)
    exteriors, holes = [], []
    # "high": each ring winds counter-clockwise (in (row, col)) around the mask's pixels,
    # so outer contours have a positive signed area and holes a negative one.
    for ring in find_contours(padded, 0.5, positive_orientation="high"):
        area = _signed_area(ring)
        ring = approximate_polygon(ring, tolerance) if tolerance > 0 else ring
        if np.allclose(ring[0], ring[-1]):
            ring = ring[:-1]
        if len(ring) < 3:
            continue
        # (row, col) of padded pixel centres -> continuous (x, y): -1 pad, +0.5 centre.
        xy = np.fliplr(ring) - 0.5
        (exteriors if area > 0 else holes).append((abs(area), xy))
    polygons = [(xy, []) for _, xy in sorted(exteriors, key=lambda item: -item[0])]
    for _, hole in holes:
        # A hole belongs to the smallest exterior containing it (the last in area order).
        owners = [p for p in polygons if points_in_poly(hole[:1], p[0])[0]]
        if owners:
            owners[-1][1].append(hole)
    return polygons
