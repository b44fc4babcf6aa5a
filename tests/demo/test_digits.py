"""Tests for the cluttered coloured digits task and its bundled teacher."""

import keras
import numpy as np
import pytest

from keras_practise.demo import digits


def test_class_names():
    assert len(digits.CLASS_NAMES) == digits.NUM_CLASSES == 30
    assert digits.CLASS_NAMES[3 * 7 + 1] == "7_green"


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("image_size", [32, 20])
def test_shapes_and_ranges(split, image_size):
    images, labels = digits.load_cluttered_digits(
        split, num_images=40, seed=3, image_size=image_size
    )
    assert images.shape == (40, image_size, image_size, 3)
    assert images.dtype == np.float32
    assert labels.shape == (40,)
    assert np.issubdtype(labels.dtype, np.integer)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert labels.min() >= 0 and labels.max() < digits.NUM_CLASSES
    # Textured, not blank: every image has real contrast.
    assert images.std(axis=(1, 2, 3)).min() > 0.03


def test_empty_request():
    images, labels = digits.load_cluttered_digits("test", num_images=0)
    assert images.shape == (0, 32, 32, 3) and labels.shape == (0,)


def test_deterministic_by_seed():
    x1, y1 = digits.load_cluttered_digits("train", num_images=50, seed=7)
    x2, y2 = digits.load_cluttered_digits("train", num_images=50, seed=7)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x3, _ = digits.load_cluttered_digits("train", num_images=50, seed=8)
    x4, _ = digits.load_cluttered_digits("test", num_images=50, seed=7)
    assert not np.allclose(x1, x3)
    assert not np.allclose(x1, x4)


def test_train_and_test_digit_pools_are_disjoint():
    pools = digits._digit_pools()
    train = {image.tobytes() for image in pools["train"][0]}
    test = [image.tobytes() for image in pools["test"][0]]
    assert len(train) + len(test) == 1797
    assert not train.intersection(test)
    # Every digit appears in both pools, so both splits can draw all classes.
    for _, labels in pools.values():
        assert set(labels.tolist()) == set(range(10))


def test_classes_roughly_uniform():
    _, labels = digits.load_cluttered_digits("train", num_images=1500, seed=0)
    counts = np.bincount(labels, minlength=digits.NUM_CLASSES)
    # 50 expected per class; +-28 is 4 standard deviations.
    assert counts.min() > 22 and counts.max() < 78


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"split": "validation"}, ValueError, "split='validation'"),
        ({"num_images": -1}, ValueError, "num_images=-1"),
        ({"seed": -3}, ValueError, "seed=-3"),
        ({"image_size": 8}, ValueError, "image_size=8"),
        ({"num_images": 2.5}, TypeError, "num_images=2.5"),
        ({"seed": True}, TypeError, "seed=True"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        digits.load_cluttered_digits(**kwargs)


def test_bundled_teacher_is_accurate():
    teacher = keras.saving.load_model(digits.TEACHER_PATH)
    assert teacher.output_shape == (None, digits.NUM_CLASSES)
    images, labels = digits.load_cluttered_digits(
        "test", num_images=300, seed=11
    )
    predictions = teacher.predict(images, batch_size=100, verbose=0)
    assert (predictions.argmax(axis=-1) == labels).mean() > 0.7
