"""to_rgb_uint8: the one pixel conversion of detect() and Dataset.load_image, and its errors."""

import keras
import numpy as np
import pytest
from PIL import Image

from mrcnn_tf import Dataset, MaskRCNN
from mrcnn_tf.data.validation import to_rgb_uint8
from test_export import TinyConfig


@pytest.mark.parametrize("image, error, message", [
    (np.full((4, 4, 3), np.nan, np.float32), ValueError, r"photo has NaN or Inf pixels \(48 values, first at row 0"),
    (np.pad(np.zeros((2, 2, 3)), [(0, 0), (0, 1), (0, 0)], constant_values=np.inf), ValueError,
     r"photo has NaN or Inf pixels \(6 values, first at row 0, column 2"),
    (np.zeros((4, 4, 5), np.uint8), ValueError, r"photo must be grey .* got shape \(4, 4, 5\)"),
    (np.zeros((4, 4, 2), np.uint8), ValueError, r"got shape \(4, 4, 2\)"),
    (np.zeros((4,), np.uint8), ValueError, r"got shape \(4,\)"),
    (np.zeros((1, 4, 4, 3), np.uint8), ValueError, r"got shape \(1, 4, 4, 3\)"),
    (np.zeros((0, 4, 3), np.uint8), ValueError, "photo is empty"),
    (np.zeros((4, 4, 3), bool), TypeError, "dtype bool"),
    (np.full((4, 4, 3), "a"), TypeError, "dtype <U1"),
], ids=["nan", "inf", "5_channels", "2_channels", "rank_1", "rank_4", "empty", "bool", "strings"])
def test_bad_pixels_name_the_image(image, error, message):
    with pytest.raises(error, match=message):
        to_rgb_uint8(image, "photo")


def test_layouts_and_ranges_by_hand():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert to_rgb_uint8(rgb) is rgb
    grey = np.array([[0, 100], [200, 255]], np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(grey), np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(to_rgb_uint8(grey[..., None]), to_rgb_uint8(grey))
    rgba = np.concatenate([rgb, np.full((2, 3, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgb)
    # 16-bit: / 257, rounded (65535 -> 255, 257 -> 1, 385 -> 1.498 -> 1, 386 -> 1.502 -> 2).
    sixteen = np.array([[0, 65535], [257, 386]], np.uint16)
    np.testing.assert_array_equal(to_rgb_uint8(sixteen)[..., 0], [[0, 255], [1, 2]])
    # Floats: 0..1 times 255; 0..255 as is; other ranges stretched min..max.
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[0.0, 0.5, 1.0]]))[..., 0], [[0, 128, 255]])
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[0.0, 2.4, 254.6]]))[..., 0], [[0, 2, 255]])
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[-1.0, 0.0, 1.0]]))[..., 0], [[0, 128, 255]])
    # Wide integers: 0..255 as is, 0..65535 as 16-bit.
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[3, 255]], np.int64))[..., 0], [[3, 255]])
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[514, 65535]], np.int32))[..., 0], [[2, 255]])


def test_dataset_reads_16_bit_files_as_detect_converts_arrays(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 65536, (6, 5), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "grey16.png")
    dataset = Dataset()
    dataset.add_image("x", image_id=0, path=str(tmp_path / "grey16.png"))
    dataset.prepare()
    np.testing.assert_array_equal(dataset.load_image(0), to_rgb_uint8(pixels))


@pytest.mark.slow
def test_detect_takes_grey_rgba_and_16_bit_as_their_rgb(tmp_path):
    keras.utils.set_random_seed(2)
    model = MaskRCNN("inference", TinyConfig(IMAGES_PER_GPU=1), model_dir=str(tmp_path))
    grey = np.random.default_rng(3).integers(0, 256, (90, 120), dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.zeros((90, 120, 1), np.uint8)], axis=2)
    reference = model.detect([rgb])[0]
    assert len(reference["scores"]) > 0
    for variant in (grey, grey[..., None], rgba, rgb.astype(np.uint16) * 257):
        result = model.detect([variant])[0]
        for key in ("boxes", "class_ids", "scores", "masks"):
            np.testing.assert_array_equal(result[key], reference[key])
    with pytest.raises(ValueError, match="image 1 must be grey"):
        model.detect([rgb, np.zeros((8, 8, 5), np.uint8)])
