"""From a tiny set to the views a model trains and evaluates on."""

import dataclasses
import math

import numpy as np

from keras_practise.data import augment
from keras_practise.data import tiny_set as tiny_set_lib
from keras_practise.graph import input_size
from keras_practise.utils import validation

# Views in the training bank when the caller does not say.
_DEFAULT_BANK = 2048
_MAX_VIEWS_PER_IMAGE = 32


@dataclasses.dataclass(frozen=True)
class TinySetSpec:
    """Where the tiny set comes from and how it becomes views.

    The public functions take these as keyword arguments; inside the library
    they travel together as one object.

    Attributes:
        data: Anything `load_tiny_set` accepts, or a `TinySet`.
        num_samples: Images to draw. Defaults to all.
        per_class: Images per class to draw instead (1 = "1-shot").
        seed: Seed of the draw and the augmentation.
        image_size: Input size for models with a dynamic input shape.
        augment_views: Augmented views per image (see `prepare_views`).
        preprocess: Callable applied to loaded images, e.g. a model's
            `preprocess_input`.
        data_dir: Folder of prepared tensorflow-datasets datasets.
        validation_split: Fraction of the images held out whole from
            training (see `split_tiny_set`).
        fold: `(index, folds)`: hold out the `index`-th of `folds` equal
            parts of the images instead (see `split_tiny_set`).
    """

    data: object
    num_samples: int = None
    per_class: int = None
    seed: int = 0
    image_size: tuple = None
    augment_views: int = None
    preprocess: object = None
    data_dir: str = None
    validation_split: float = 0.0
    fold: tuple = None

    def load(self, model):
        """Draws the `TinySet` for `model` (a `TinySet` passes through).

        Files and datasets named by a string come in any size: they are
        loaded a little larger than the model's input, so the eval transform
        can centre-crop; arrays are kept as they are.
        """
        if isinstance(self.data, tiny_set_lib.TinySet):
            return self.data
        load_size = None
        if isinstance(self.data, str):
            size = input_size.model_image_size(model, self.image_size)
            load_size = tuple(round(s / 0.875) for s in size)
        return tiny_set_lib.load_tiny_set(
            self.data,
            num_samples=self.num_samples,
            per_class=self.per_class,
            seed=self.seed,
            image_size=load_size,
            preprocess=self.preprocess,
            data_dir=self.data_dir,
        )


def split_tiny_set(tiny_set, validation_split, seed=0, fold=None):
    """Holds whole images of the tiny set out of training.

    Views of the images a model was fitted on are kinder judges than new
    images: on the real EfficientNet-Lite0, recovery from ten photographs
    lowered the feature error on their views while agreement on unseen
    photographs fell (docs/results_real_network.md). Held-out images judge
    what training cannot have fitted.

    Args:
        tiny_set: A `TinySet`.
        validation_split: Fraction of the images to hold out (at least one
            when positive, at least one left to train on); `0` holds out
            none.
        seed: Seed of the choice.
        fold: `(index, folds)` instead of a fraction: the images are cut
            into `folds` near-equal parts in a seeded order and the
            `index`-th is held out, so that over the folds every image is
            held out once (cross-fitting; `validation_split` must be `0`).
            `(0, 2)` holds out what `validation_split=0.5` does.

    Returns:
        A tuple `(fit_set, held_set)` of `TinySet`s; `held_set` is `None`
        when `validation_split` is `0` and there is no `fold`.

    Raises:
        ValueError: If `validation_split` is not in [0, 1), leaves no image
            on one side, or comes with a `fold`; if a fold is not an
            index below a count of at most the number of images.
    """
    validation.check_fraction("validation_split", validation_split, allow_zero=True)
    count = len(tiny_set.images)
    order = np.random.default_rng(seed + _SPLIT_SEED).permutation(count)
    if fold is not None:
        index, folds = fold
        if validation_split or not 0 <= index < folds <= count:
            raise ValueError(
                f"A fold must be (index, folds) with 0 <= index < folds <= "
                f"{count} images, without a validation_split. Received: "
                f"fold={fold!r}, validation_split={validation_split}"
            )
        bounds = [round(i * count / folds) for i in (index, index + 1)]
        held_rows = order[bounds[0]:bounds[1]]
        fit_rows = np.concatenate([order[:bounds[0]], order[bounds[1]:]])
    elif not validation_split:
        return tiny_set, None
    else:
        held = max(1, round(validation_split * count))
        if held >= count:
            raise ValueError(
                f"validation_split={validation_split} of {count} images leaves "
                "none to train on: pass more images or a smaller split."
            )
        held_rows, fit_rows = order[:held], order[held:]

    def part(rows):
        rows = np.sort(rows)
        labels = None if tiny_set.labels is None else tiny_set.labels[rows]
        indices = tiny_set.indices
        if indices is not None:
            indices = np.asarray(indices)[rows]
        return dataclasses.replace(
            tiny_set, images=tiny_set.images[rows], labels=labels, indices=indices
        )

    return part(fit_rows), part(held_rows)


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
        augment_views = default_augment_views(len(images))
    validation.check_int("augment_views", augment_views, 0)
    if augment_views == 0:
        train_views, repeats = eval_views, 1
    else:
        train_views = augment.make_views(
            images, augment_views, size, seed=seed, scale=_crop_scale(size)
        )
        repeats = augment_views
    labels = None
    if tiny_set.labels is not None:
        labels = (np.repeat(tiny_set.labels, repeats), tiny_set.labels)
    return train_views, eval_views, labels


def default_augment_views(count):
    """Augmented views per image of `count` images by default: about 2048
    views in all, at most 32 per image."""
    return min(_MAX_VIEWS_PER_IMAGE, max(1, math.ceil(_DEFAULT_BANK / count)))


def _crop_scale(size):
    """Crop areas of training views: small images keep more of themselves."""
    return (0.08, 1.0) if min(size) >= 128 else (0.35, 1.0)


# Added to the seed of the held-out images' choice, apart from the draw's.
_SPLIT_SEED = 7_919

# Added to the seed of held-out views, so that they are not the training
# views of any seed a user is likely to pass.
_HELD_OUT_SEED = 1_000_003


def held_out_views(tiny_set, size, seed=0, count=256):
    """Augmented views of the tiny set that no training step used.

    Random-resized crops of at least 60% of each image, from a seed of
    their own, without flips: new views of the same images, close to what
    the model will be shown. (Training views flip and crop harder: on the
    bundled digits task the teacher's top-1 accuracy is 89% on the images,
    45% on training-style views, 81% on these.) They judge a result without
    labels; being views of the images the model was fitted on, they are
    kinder than images it never saw.

    Args:
        tiny_set: A `TinySet`.
        size: The model's `(height, width)`.
        seed: The run's seed.
        count: About how many views (at least one per image).

    Returns:
        A tuple `(views, labels)`; `labels` is `None` for an unlabelled set.
    """
    per_image = max(1, math.ceil(count / len(tiny_set.images)))
    views = augment.make_views(
        tiny_set.images, per_image, size, seed=seed + _HELD_OUT_SEED,
        scale=(0.6, 1.0), flip=False,
    )
    labels = None
    if tiny_set.labels is not None:
        labels = np.repeat(tiny_set.labels, per_image)
    return views, labels
