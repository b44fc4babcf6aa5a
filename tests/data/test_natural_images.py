"""Tests for keras_practise.data.natural_images: crops of bundled photographs."""

import sys

import numpy as np
import pytest

from keras_practise.data import natural_images


def test_shape_range_and_determinism():
    images = natural_images.sample_photographs(12, (20, 24), seed=5)
    assert images.shape == (12, 20, 24, 3)
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(
        images, natural_images.sample_photographs(12, (20, 24), seed=5)
    )
    other = natural_images.sample_photographs(12, (20, 24), seed=6)
    assert not np.allclose(images, other)


def test_crops_differ_and_are_not_flat():
    images = natural_images.sample_photographs(16, 16, seed=0)
    flat = images.reshape(len(images), -1)
    distances = np.abs(flat[:, None] - flat[None]).mean(axis=-1)
    off_diagonal = distances[~np.eye(len(images), dtype=bool)]
    assert off_diagonal.min() > 1e-3  # No two crops are the same.
    assert np.all(flat.std(axis=1) > 0.0)
    # Photographs, not noise: neighbouring pixels are strongly correlated.
    horizontal = np.corrcoef(
        images[:, :, 1:].ravel(), images[:, :, :-1].ravel()
    )[0, 1]
    assert horizontal > 0.5


def test_grayscale_and_photograph_subset():
    gray = natural_images.sample_photographs(4, 8, grayscale=True)
    assert gray.shape == (4, 8, 8, 1)
    # The camera man is grayscale: colour output repeats the channel.
    camera = natural_images.sample_photographs(3, 8, photographs=["camera"])
    np.testing.assert_allclose(camera[..., 0], camera[..., 2])
    # A full crop of a square photograph is the photograph, maybe mirrored.
    full = natural_images.sample_photographs(
        2, 8, photographs=["astronaut"], scale=(1.0, 1.0)
    )
    assert np.allclose(full[1], full[0], atol=1e-5) or np.allclose(
        full[1], full[0][:, ::-1], atol=1e-5
    )


def test_invalid_arguments():
    with pytest.raises(ValueError, match="photographs"):
        natural_images.sample_photographs(2, photographs=["lena"])
    with pytest.raises(ValueError, match="num_images"):
        natural_images.sample_photographs(0)
    with pytest.raises(ValueError, match="image_size"):
        natural_images.sample_photographs(2, image_size=(0, 4))
    with pytest.raises(ValueError, match="scale"):
        natural_images.sample_photographs(2, scale=(0.5, 2.0))


def test_missing_scikit_image_names_the_extra(monkeypatch):
    natural_images.load_photograph.cache_clear()
    for name in ("skimage", "skimage.color", "skimage.data", "skimage.util"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"keras-practise\[extras\]"):
        natural_images.sample_photographs(1)
    natural_images.load_photograph.cache_clear()
