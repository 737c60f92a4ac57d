"""mrcnn_tf.visualize: blending and splash on arrays, rendered pixels read back."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from mrcnn_tf.visualize import (apply_mask, color_splash, display_instances, display_top_masks,
                                draw_boxes, plot_per_class_ap, plot_precision_recall,
                                random_colors)

GREY = 128
RED = (1.0, 0.0, 0.0)


def rect(y1, x1, y2, x2, hw=(100, 100)):
    mask = np.zeros(hw, bool)
    mask[y1:y2, x1:x2] = True
    return mask


def test_random_colors_distinct_and_seeded():
    colors = random_colors(6)
    assert len(set(colors)) == 6
    assert all(0.0 <= c <= 1.0 for color in colors for c in color)
    assert random_colors(6) == colors
    assert random_colors(6, seed=1) != colors
    assert sorted(random_colors(6, seed=1)) == sorted(colors)  # same palette, reordered


def test_apply_mask_blends_only_inside():
    image = np.full((4, 5, 3), 100, np.uint8)
    mask = rect(1, 1, 3, 3, hw=(4, 5))
    out = apply_mask(image, mask, RED, alpha=0.5)
    assert out.dtype == np.uint8
    # 0.5 * 100 + 0.5 * 255 = 177.5 -> 178 (round half to even); 0.5 * 100 = 50.
    np.testing.assert_array_equal(out[mask], np.tile([178, 50, 50], (4, 1)))
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert (image == 100).all()  # input untouched
    out_float = apply_mask(image.astype(np.float32), mask, RED, alpha=0.25)
    np.testing.assert_allclose(out_float[1, 1], [0.75 * 100 + 0.25 * 255, 75, 75])
    with pytest.raises(ValueError, match="mask"):
        apply_mask(image, mask[:3], RED)


def test_color_splash_keeps_colour_only_under_masks():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    masks = np.stack([rect(2, 2, 8, 8, hw=(20, 30)), rect(10, 15, 18, 28, hw=(20, 30))], -1)
    union = masks.any(axis=2)
    splash = color_splash(image, masks)
    assert splash.dtype == np.uint8 and splash.shape == image.shape
    np.testing.assert_array_equal(splash[union], image[union])
    outside = splash[~union].astype(int)
    assert (outside[:, 0] == outside[:, 1]).all() and (outside[:, 1] == outside[:, 2]).all()
    luma = image[~union].astype(float) @ [0.299, 0.587, 0.114]  # ITU-R BT.601
    np.testing.assert_allclose(outside[:, 0], luma, atol=0.5)
    assert (splash[~union] != image[~union]).any()  # colour really removed
    all_grey = color_splash(image, np.zeros((20, 30, 0), bool))
    assert (all_grey[..., 0] == all_grey[..., 2]).all()


def _pixel(fig, buffer, x, y):
    """RGB of the rendered figure at data point (x, y) of its first axes."""
    dx, dy = fig.axes[0].transData.transform((x, y))
    return buffer[int(buffer.shape[0] - dy), int(dx), :3].astype(int)


def test_display_instances_pixels_and_png(tmp_path):
    image = np.full((100, 100, 3), GREY, np.uint8)
    mask = rect(30, 30, 70, 70)
    path = tmp_path / "instances.png"
    fig = display_instances(image, np.array([[30, 30, 70, 70]]), mask[:, :, None], [1],
                            ["BG", "square"], scores=[0.9], colors=[RED], save_path=path,
                            figsize=(4, 4))
    assert isinstance(fig, Figure)
    fig.canvas.draw()
    rendered = np.asarray(fig.canvas.buffer_rgba())
    png = np.asarray(Image.open(path).convert("RGBA"))
    assert png.shape == rendered.shape
    blended = [192, 64, 64]  # 0.5 * 128 + 0.5 * 255 = 191.5 -> 192
    for buffer in (rendered, png):
        inside = _pixel(fig, buffer, 55, 60)
        np.testing.assert_allclose(inside, blended, atol=2)
        for x, y in [(5, 5), (95, 95), (5, 95), (90, 10)]:  # far from the box
            np.testing.assert_array_equal(_pixel(fig, buffer, x, y), [GREY] * 3)
    # The dashed box, contour and caption were drawn.
    ax = fig.axes[0]
    assert len(ax.patches) == 2 and [t.get_text() for t in ax.texts] == ["square 0.900"]


def test_display_instances_on_given_ax_without_masks():
    fig = Figure()
    ax = fig.subplots()
    image = np.full((50, 60, 3), GREY, np.uint8)
    out = display_instances(image, [[5, 5, 20, 30], [25, 10, 45, 50]], None, [1, 2],
                            ["BG", "a", "b"], show_mask=False, title="t", ax=ax)
    assert out is fig and len(ax.patches) == 2
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    with pytest.raises(ValueError, match="class ids"):
        display_instances(image, [[5, 5, 20, 30]], None, [1, 2], ["BG", "a", "b"],
                          show_mask=False)


def test_display_instances_does_not_touch_pyplot():
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    display_instances(np.zeros((10, 10, 3), np.uint8), np.zeros((0, 4)),
                      np.zeros((10, 10, 0), bool), [], ["BG"])
    assert plt.get_fignums() == before


def test_draw_boxes_refined(tmp_path):
    image = np.full((64, 64, 3), GREY, np.uint8)
    boxes = np.array([[5, 5, 20, 20], [30, 30, 50, 60]])
    refined = boxes + 2
    masks = np.stack([rect(6, 6, 18, 18, hw=(64, 64)), rect(32, 32, 48, 58, hw=(64, 64))], -1)
    fig = draw_boxes(image, boxes=boxes, refined_boxes=refined, masks=masks,
                     captions=["a", "b"], title="rois")
    ax = fig.axes[0]
    rectangles = [p for p in ax.patches if type(p).__name__ == "Rectangle"]
    assert len(rectangles) == 4 and len(ax.lines) == 2
    fig.savefig(tmp_path / "boxes.png")
    assert (tmp_path / "boxes.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="refined"):
        draw_boxes(image, boxes=boxes, refined_boxes=refined[:1])


def test_display_top_masks_picks_largest_classes():
    masks = np.stack([rect(0, 0, 10, 10), rect(0, 0, 50, 50), rect(60, 60, 62, 62)], -1)
    fig = display_top_masks(np.zeros((100, 100, 3), np.uint8), masks, [1, 2, 3],
                            ["BG", "small", "big", "tiny"], limit=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["H x W=100x100", "big", "small"]


def test_plots_render(tmp_path):
    fig = plot_precision_recall(0.75, np.array([0, 1, 0.5, 0]), np.array([0, 0.5, 1, 1]))
    assert "0.750" in fig.axes[0].get_title()
    fig.savefig(tmp_path / "pr.png")
    fig = plot_per_class_ap({"square": 0.9, "circle": 0.5})
    bars = fig.axes[0].patches
    assert [round(b.get_width(), 3) for b in bars] == [0.9, 0.5]
    fig.savefig(tmp_path / "ap.png")
    assert (tmp_path / "pr.png").stat().st_size > 1000
    assert (tmp_path / "ap.png").stat().st_size > 1000
