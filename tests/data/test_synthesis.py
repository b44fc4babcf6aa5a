"""Tests for keras_practise.data.synthesis: DeepInversion and Gaussian noise."""

import os

import keras
import numpy as np
import pytest

from keras_practise.data import synthesis

_SIZE = 16
_CLASSES = 4


def _reference_images(num=64, seed=0):
    """The "training set" whose statistics the teacher's BN layers store."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(num, _SIZE, _SIZE, 3)) * [0.3, 0.2, 0.4]
    return (images + [0.8, -0.4, 0.2]).astype("float32")


def _teacher(softmax=True):
    """conv-BN-ReLU x2, GAP, Dense; BN moving stats = those of the reference.

    The stats are set layer by layer in inference mode, so they are exactly
    reachable by some images but far from those of standard normal noise.
    """
    inputs = keras.Input((_SIZE, _SIZE, 3))
    x = inputs
    for _ in range(2):
        x = keras.layers.Conv2D(8, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    activation = "softmax" if softmax else None
    outputs = keras.layers.Dense(_CLASSES, activation=activation)(x)
    model = keras.Model(inputs, outputs)
    reference = _reference_images()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            features = keras.Model(model.inputs, layer.input).predict(
                reference, verbose=0
            )
            layer.moving_mean.assign(features.mean(axis=(0, 1, 2)))
            layer.moving_variance.assign(features.var(axis=(0, 1, 2)))
    return model


def test_synthesis_matches_bn_statistics_and_target_classes():
    teacher = _teacher(softmax=True)
    noise = synthesis.gaussian_noise(16, _SIZE)
    result = synthesis.synthesize_images(
        teacher, 16, steps=50, batch_size=16, lr=0.25, class_weight=2.0,
        verbose=0,
    )
    assert result.images.shape == (16, _SIZE, _SIZE, 3)
    assert result.images.dtype == np.float32
    np.testing.assert_array_equal(result.labels, np.arange(16) % _CLASSES)

    noise_loss = synthesis.bn_statistics_loss(teacher, noise)
    synth_loss = synthesis.bn_statistics_loss(teacher, result.images)
    reference_loss = synthesis.bn_statistics_loss(teacher, _reference_images())
    assert reference_loss < 0.01 * noise_loss  # The metric itself is sane.
    assert synth_loss < 0.1 * noise_loss

    predicted = teacher.predict(result.images, verbose=0).argmax(axis=-1)
    assert np.mean(predicted == result.labels) >= 0.75


def test_synthesis_is_deterministic_by_seed_in_several_batches():
    teacher = _teacher(softmax=False)
    kwargs = dict(num_images=6, steps=4, batch_size=4, verbose=0)
    first = synthesis.synthesize_images(teacher, seed=1, **kwargs)
    again = synthesis.synthesize_images(teacher, seed=1, **kwargs)
    other = synthesis.synthesize_images(teacher, seed=2, **kwargs)
    assert first.images.shape == (6, _SIZE, _SIZE, 3)
    np.testing.assert_allclose(first.images, again.images, atol=1e-6)
    assert not np.allclose(first.images, other.images)
    # The two batches start from different noise.
    assert not np.allclose(first.images[:2], first.images[4:])


def test_teacher_is_not_modified():
    teacher = _teacher(softmax=True)
    weights = [w.copy() for w in teacher.get_weights()]
    synthesis.synthesize_images(teacher, 4, steps=3, batch_size=4, verbose=0)
    for before, after in zip(weights, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert all(layer.trainable for layer in teacher.layers)
    head = teacher.layers[-1]
    assert head.activation is keras.activations.softmax
    assert len(teacher.trainable_weights) == 10


def test_labels_and_value_range():
    teacher = _teacher()
    labels = np.array([3, 3, 1])
    result = synthesis.synthesize_images(
        teacher, 3, steps=3, labels=labels, value_range=(0.0, 1.0), verbose=0
    )
    np.testing.assert_array_equal(result.labels, labels)
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    assert result.images.std() > 0.05  # Not collapsed onto a bound.
    with pytest.raises(ValueError, match="labels"):
        synthesis.synthesize_images(teacher, 3, steps=1, labels=[0, 1])
    with pytest.raises(ValueError, match="labels"):
        synthesis.synthesize_images(teacher, 2, steps=1, labels=[0, 4])
    with pytest.raises(ValueError, match="value_range"):
        synthesis.synthesize_images(teacher, 2, steps=1, value_range=(1, 0))


def test_nested_backbone_and_image_size():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    backbone = keras.Model(inputs, keras.layers.ReLU()(x), name="backbone")
    teacher = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            backbone,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    result = synthesis.synthesize_images(
        teacher, 2, image_size=(12, 10), steps=2, verbose=0
    )
    assert result.images.shape == (2, 12, 10, 3)
    with pytest.raises(ValueError, match="image_size"):
        synthesis.synthesize_images(teacher, 2, steps=1)


def test_teacher_without_batchnorm_is_rejected():
    inputs = keras.Input((_SIZE, _SIZE, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    teacher = keras.Model(inputs, keras.layers.Dense(_CLASSES)(x))
    with pytest.raises(ValueError, match="BatchNormalization"):
        synthesis.synthesize_images(teacher, 2, steps=1)
    with pytest.raises(ValueError, match="BatchNormalization"):
        synthesis.bn_statistics_loss(teacher, np.zeros((1, _SIZE, _SIZE, 3)))


def test_subclassed_teacher_is_rejected():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError):
        synthesis.synthesize_images(Net(), 2, steps=1)


def test_save_images_writes_one_png_per_image(tmp_path):
    images = synthesis.gaussian_noise(5, (6, 7), channels=3, seed=3)
    paths = synthesis.save_images(images, tmp_path / "out", prefix="synth")
    assert sorted(os.listdir(tmp_path / "out")) == [
        f"synth_{i:05d}.png" for i in range(5)
    ]
    pixels = keras.utils.img_to_array(keras.utils.load_img(paths[0]))
    assert pixels.shape == (6, 7, 3)
    # Per-image min-max stretch uses the full 0-255 range.
    assert pixels.min() == 0 and pixels.max() == 255
    gray = synthesis.save_images(images[:2, ..., :1], tmp_path / "gray")
    assert len(gray) == 2
    with pytest.raises(ValueError, match="shape"):
        synthesis.save_images(images[0], tmp_path)


def test_gaussian_noise():
    noise = synthesis.gaussian_noise(40, (8, 6), channels=2, mean=1.0, std=2.0)
    assert noise.shape == (40, 8, 6, 2)
    assert noise.dtype == np.float32
    assert abs(noise.mean() - 1.0) < 0.1
    assert abs(noise.std() - 2.0) < 0.1
    np.testing.assert_array_equal(
        noise, synthesis.gaussian_noise(40, (8, 6), 2, 1.0, 2.0, seed=0)
    )
    assert not np.allclose(noise, synthesis.gaussian_noise(40, (8, 6), 2, seed=1))
    assert synthesis.gaussian_noise(2, 5).shape == (2, 5, 5, 3)
    with pytest.raises(ValueError, match="num_images"):
        synthesis.gaussian_noise(0, 5)
    with pytest.raises(ValueError, match="std"):
        synthesis.gaussian_noise(1, 5, std=-1.0)
