import keras
import numpy as np
import pytest

from keras_practise.data import augment


def _images(num=3, height=12, width=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((num, height, width, 3)).astype(np.float32)


def test_make_views_shape_order_and_determinism():
    images = _images(num=3, height=20, width=16)
    views = augment.make_views(images, num_views=4, image_size=(8, 10), seed=1)
    assert views.shape == (12, 8, 10, 3)
    assert views.dtype == np.float32
    np.testing.assert_array_equal(
        views, augment.make_views(images, num_views=4, image_size=(8, 10), seed=1))
    assert not np.allclose(
        views, augment.make_views(images, num_views=4, image_size=(8, 10), seed=2))
    # Image-major order: with crops of the whole image and no flips, the
    # views of image i are rows i * num_views ... of the bank.
    whole = augment.make_views(images, num_views=2, image_size=(20, 16), seed=0,
                               scale=(1.0, 1.0), ratio=(0.8, 0.8), flip=False)
    np.testing.assert_allclose(whole, np.repeat(images, 2, axis=0), atol=1e-6)


def test_flip_mirrors_exactly_and_both_ways_occur():
    images = _images(num=2)
    views = augment.make_views(images, num_views=16, image_size=12, seed=0,
                               scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True)
    sources = np.repeat(images, 16, axis=0)
    same = np.all(np.isclose(views, sources, atol=1e-6), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(views, sources[:, :, ::-1], atol=1e-6), axis=(1, 2, 3))
    assert np.all(same ^ mirrored)
    assert same.any() and mirrored.any()


def test_train_augmentation_calls_are_reproducible_and_fresh():
    images = _images(num=2)
    first = augment.train_augmentation(6, seed=3)
    second = augment.train_augmentation(6, seed=3)
    a1, a2 = first(images), first(images)
    np.testing.assert_array_equal(a1, second(images))
    np.testing.assert_array_equal(a2, second(images))
    assert not np.allclose(a1, a2)
    assert "image_size=(6, 6)" in repr(first)


def test_crop_and_resize_whole_box_matches_keras_resize():
    images = _images(num=2, height=17, width=23)
    boxes = np.tile([0, 0, 17, 23], (2, 1))
    for size in [(8, 9), (30, 40)]:
        ours = augment.crop_and_resize(images, boxes, size)
        expected = keras.ops.convert_to_numpy(
            keras.ops.image.resize(images, size, antialias=True))
        np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_crop_and_resize_integer_box_is_an_exact_crop():
    images = _images(num=2, height=10, width=12)
    out = augment.crop_and_resize(images, [[2, 3, 4, 5], [0, 0, 4, 5]], (4, 5),
                                  image_index=[1, 1], flip=[False, True])
    np.testing.assert_allclose(out[0], images[1, 2:6, 3:8], atol=1e-6)
    np.testing.assert_allclose(out[1], images[1, 0:4, 4::-1], atol=1e-6)


def test_crop_and_resize_rejects_mismatched_boxes():
    with pytest.raises(ValueError, match="boxes.shape"):
        augment.crop_and_resize(_images(num=2), np.zeros((3, 4)), 4)
    with pytest.raises(ValueError, match="image_index"):
        augment.crop_and_resize(_images(num=2), [[0, 0, 4, 4]], 4, image_index=[5])


def test_sample_crop_boxes_respect_bounds():
    rng = np.random.default_rng(0)
    boxes = augment.sample_crop_boxes(rng, 500, 30, 40, scale=(0.2, 0.6),
                                      ratio=(0.5, 2.0))
    top, left, height, width = boxes.T
    assert np.all(top >= 0) and np.all(left >= 0)
    assert np.all(top + height <= 30) and np.all(left + width <= 40)
    area = height * width / (30 * 40)
    # Whole-pixel rounding moves area and aspect slightly off their ranges.
    assert area.min() > 0.15 and area.max() < 0.68
    aspect = width / height
    assert aspect.min() > 0.4 and aspect.max() < 2.5
    assert np.all(boxes == np.round(boxes))


def test_sample_crop_boxes_fall_back_to_a_centre_crop():
    # A square crop of 90% of a 4x100 image never fits: all draws fall back.
    boxes = augment.sample_crop_boxes(np.random.default_rng(0), 5, 4, 100,
                                      scale=(0.9, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_array_equal(boxes, np.tile([0, 48, 4, 4], (5, 1)))


def test_eval_transform_crops_the_centre_exactly():
    ramp = np.arange(8 * 10, dtype=np.float32).reshape(1, 8, 10, 1)
    # Shorter side 8 = 4 / 0.5: no resize, a 4x4 centre crop.
    out = augment.eval_transform(4, crop_fraction=0.5)(ramp)
    np.testing.assert_array_equal(out[0], ramp[0, 2:6, 3:7])


def test_eval_transform_resizes_shorter_side_then_crops():
    # Column ramp 0..15 on a 16x16 image; shorter side -> 8, centre 4x4 crop.
    ramp = np.tile(np.arange(16, dtype=np.float32), (1, 16, 1))[..., None]
    out = augment.eval_transform(4, crop_fraction=0.5)(ramp)
    assert out.shape == (1, 4, 4, 1)
    # Output column j sits at source pixel 4 + 2 j + 0.5 (the centre of its
    # 2-pixel footprint); a symmetric filter keeps a linear ramp exact.
    np.testing.assert_allclose(out[0, 0, :, 0], [4.5, 6.5, 8.5, 10.5], atol=1e-5)
    wide = augment.eval_transform((6, 8))(_images(num=2, height=30, width=50))
    assert wide.shape == (2, 6, 8, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": "big"}, "image_size"),
        ({"image_size": 8, "scale": (0.0, 1.0)}, "scale"),
        ({"image_size": 8, "scale": (0.5, 1.5)}, "scale"),
        ({"image_size": 8, "ratio": (2.0, 1.0)}, "ratio"),
    ],
)
def test_train_augmentation_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        augment.train_augmentation(**kwargs)


def test_bad_images_and_views_are_rejected():
    with pytest.raises(ValueError, match="crop_fraction"):
        augment.eval_transform(8, crop_fraction=0.0)
    with pytest.raises(ValueError, match=r"shape=\(12, 12, 3\)"):
        augment.make_views(_images()[0], num_views=2, image_size=8, seed=0)
    with pytest.raises(ValueError, match="num_views"):
        augment.make_views(_images(), num_views=0, image_size=8, seed=0)
