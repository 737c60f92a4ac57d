"""Tests of the synthetic ShapesDataset: determinism and occlusion-aware masks."""

import numpy as np
import pytest
from skimage.draw import disk

from mrcnn_tf.data import ShapesDataset


def make_dataset(count=12, height=64, width=80, seed=0, **kwargs):
    dataset = ShapesDataset()
    dataset.load_shapes(count, height, width, seed=seed, **kwargs)
    dataset.prepare()
    return dataset


def test_classes_and_sizes():
    dataset = make_dataset()
    assert dataset.class_names == ["BG", "square", "circle", "triangle"]
    assert dataset.num_classes == 4 and dataset.num_images == 12
    assert dataset.source_class_ids["shapes"] == [0, 1, 2, 3]
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        assert image.shape == (64, 80, 3) and image.dtype == np.uint8
        masks, class_ids = dataset.load_mask(image_id)
        assert masks.shape[:2] == (64, 80) and masks.dtype == bool
        assert class_ids.dtype == np.int32 and masks.shape[2] == len(class_ids) >= 1
        assert set(class_ids) <= {1, 2, 3}
        for _, _, (_, _, size) in dataset.image_info[image_id]["shapes"]:
            assert 64 // 8 <= size <= 64 // 4


def test_same_seed_same_images_and_masks():
    first, second = make_dataset(seed=5), make_dataset(seed=5)
    other = make_dataset(seed=6)
    differs = False
    for image_id in first.image_ids:
        np.testing.assert_array_equal(first.load_image(image_id), second.load_image(image_id))
        for a, b in zip(first.load_mask(image_id), second.load_mask(image_id)):
            np.testing.assert_array_equal(a, b)
        differs |= not np.array_equal(first.load_image(image_id), other.load_image(image_id))
    assert differs


def test_image_does_not_depend_on_count():
    few, many = make_dataset(count=3, seed=2), make_dataset(count=10, seed=2)
    for image_id in few.image_ids:
        np.testing.assert_array_equal(few.load_image(image_id), many.load_image(image_id))


def test_masks_are_disjoint_and_cover_exactly_the_shape_pixels():
    dataset = make_dataset(count=30, seed=1, min_instances=2, max_instances=6)
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        masks, _ = dataset.load_mask(image_id)
        assert masks.sum(axis=2).max() <= 1, "an occluded pixel belongs to two instances"
        assert masks.any(axis=(0, 1)).all(), "an instance with no visible pixel was kept"
        background = np.array(dataset.image_info[image_id]["bg_color"], np.uint8)
        not_background = (image != background).any(axis=2)
        np.testing.assert_array_equal(masks.any(axis=2), not_background)


def test_each_visible_pixel_has_its_shapes_colour():
    dataset = make_dataset(count=20, seed=3)
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        masks, _ = dataset.load_mask(image_id)
        colours = {tuple(colour) for _, colour, _ in dataset.image_info[image_id]["shapes"]}
        for i in range(masks.shape[2]):
            pixels = image[masks[:, :, i]]
            assert len(np.unique(pixels, axis=0)) == 1
            assert tuple(pixels[0]) in colours


def test_hand_made_occlusion():
    dataset = make_dataset(count=1)
    info = dataset.image_info[0]
    info["shapes"] = [
        ("triangle", (255, 0, 0), (20, 20, 4)),    # hidden by the square below
        ("square", (0, 255, 0), (20, 20, 12)),     # rows/cols 8..31
        ("circle", (0, 0, 255), (20, 20, 5)),      # punches a hole in the square
    ]
    info["bg_color"] = (0, 0, 0)
    masks, class_ids = dataset.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1, 2])  # square, circle; triangle dropped
    circle = np.zeros([64, 80], bool)
    circle[disk((20, 20), 5, shape=(64, 80))] = True
    square = np.zeros([64, 80], bool)
    square[8:32, 8:32] = True
    np.testing.assert_array_equal(masks[:, :, 1], circle)
    np.testing.assert_array_equal(masks[:, :, 0], square & ~circle)
    image = dataset.load_image(0)
    assert tuple(image[20, 20]) == (0, 0, 255) and tuple(image[9, 9]) == (0, 255, 0)


def test_instance_count_limits():
    dataset = make_dataset(count=10, min_instances=3, max_instances=3)
    assert all(len(info["shapes"]) == 3 for info in dataset.image_info)
    with pytest.raises(ValueError, match="min_instances"):
        make_dataset(min_instances=3, max_instances=2)
    with pytest.raises(ValueError, match="count"):
        make_dataset(count=-1)


def test_loading_twice_adds_new_images():
    dataset = ShapesDataset()
    dataset.load_shapes(3, 32, 32, seed=0)
    dataset.load_shapes(2, 32, 32, seed=0)
    dataset.prepare()
    assert dataset.num_images == 5
    assert [info["id"] for info in dataset.image_info] == [0, 1, 2, 3, 4]


def test_image_reference_describes_the_spec():
    dataset = make_dataset(count=1)
    reference = dataset.image_reference(0)
    first_shape = dataset.image_info[0]["shapes"][0][0]
    assert "shapes image 0" in reference and first_shape in reference
