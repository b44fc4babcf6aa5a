"""From a tiny set to the views a model trains and evaluates on."""

import math

import numpy as np

from keras_practise.data import augment
from keras_practise.data import tiny_set as tiny_set_lib
from keras_practise.graph import input_size
from keras_practise.utils import validation

# Views in the training bank when the caller does not say.
_DEFAULT_BANK = 2048
_MAX_VIEWS_PER_IMAGE = 32


def load_for_model(
    model,
    data,
    num_samples=None,
    per_class=None,
    seed=0,
    image_size=None,
    preprocess=None,
    data_dir=None,
):
    """Draws a `TinySet` from `data` for `model` (a `TinySet` passes through).

    Files and datasets named by a string come in any size: they are loaded a
    little larger than the model's input, so the eval transform can
    centre-crop; arrays are kept as they are.
    """
    if isinstance(data, tiny_set_lib.TinySet):
        return data
    load_size = None
    if isinstance(data, str):
        size = input_size.model_image_size(model, image_size)
        load_size = tuple(round(s / 0.875) for s in size)
    return tiny_set_lib.load_tiny_set(
        data,
        num_samples=num_samples,
        per_class=per_class,
        seed=seed,
        image_size=load_size,
        preprocess=preprocess,
        data_dir=data_dir,
    )


def prepare_views(
    tiny_set, size, augment_views=None, seed=0, channels=None
):
    """Turns a tiny set into a training bank of views and evaluation views.

    Evaluation views are the images themselves when they already have the
    model's size (e.g. 32x32 images for a CIFAR-style network), else the
    authors' resize + centre crop. Training views are random-resized crops
    with horizontal flips; small images get a larger minimum crop area.

    Args:
        tiny_set: A `TinySet`.
        size: The model's `(height, width)`.
        augment_views: Augmented views per image. `0` trains on the
            evaluation views themselves. Defaults to about 2048 views in all,
            at most 32 per image.
        seed: Seed of the augmentation.
        channels: Number of channels the model expects, checked if given.

    Returns:
        A tuple `(train_views, eval_views, labels)` where `labels` is `None` or
        a pair `(train_labels, eval_labels)`.

    Raises:
        ValueError: If the images do not have the channels the model expects.
    """
    images = tiny_set.images
    if channels is not None and images.shape[-1] != channels:
        raise ValueError(
            f"The model expects images with {channels} channels. Received: "
            f"images of shape {images.shape}"
        )
    if tuple(images.shape[1:3]) == tuple(size):
        eval_views = images
    else:
        eval_views = augment.eval_transform(size)(images)
    if augment_views is None:
        augment_views = min(
            _MAX_VIEWS_PER_IMAGE, max(1, math.ceil(_DEFAULT_BANK / len(images)))
        )
    validation.check_int("augment_views", augment_views, 0)
    if augment_views == 0:
        train_views, repeats = eval_views, 1
    else:
        scale = (0.08, 1.0) if min(size) >= 128 else (0.35, 1.0)
        train_views = augment.make_views(
            images, augment_views, size, seed=seed, scale=scale
        )
        repeats = augment_views
    labels = None
    if tiny_set.labels is not None:
        labels = (np.repeat(tiny_set.labels, repeats), tiny_set.labels)
    return train_views, eval_views, labels
