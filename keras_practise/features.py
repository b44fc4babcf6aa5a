"""Teacher feature maps: where to tap them, and computing them once.

Everything the frozen teacher computes on the tiny set is computed once and
kept: its feature maps at the tap (the mimicking targets) and its activations
at the main-path cuts where a student's trainable part begins (the frozen
prefix is the same computation for teacher and student).
"""

import math

import keras
import numpy as np

from keras_practise import augment
from keras_practise import blocks as blocks_lib
from keras_practise import data as data_lib
from keras_practise import graph as graph_lib
from keras_practise import surgery

# Views in the training bank when the caller does not say.
_DEFAULT_BANK = 2048
_MAX_VIEWS_PER_IMAGE = 32


def feature_tap(model):
    """Returns the last feature map before the classifier head.

    That is the input of the first global pooling, flatten or dense layer on
    the main path (a pooling inside a squeeze-and-excitation branch does not
    count), or the model's output when it has no head.

    Args:
        model: A Functional or Sequential `keras.Model`.

    Returns:
        The tap as a tensor of `model`'s flat graph.
    """
    graph = graph_lib.FlatGraph(model)
    on_main_path = {id(tensor) for _, tensor in graph.cut_tensors()}
    for flat_node in graph.nodes:
        if (
            isinstance(flat_node.layer, blocks_lib.HEAD)
            and id(flat_node.inputs[0]) in on_main_path
            and id(flat_node.outputs[0]) in on_main_path
        ):
            return flat_node.inputs[0]
    return graph.outputs[0]


def frozen_prefix_cut(model, changed_layers):
    """Returns the last main-path tensor before any of `changed_layers` runs.

    Args:
        model: A Functional or Sequential `keras.Model`.
        changed_layers: Names of the layers that differ between teacher and
            student (dropped layers and convs that receive adaptors).

    Returns:
        A tensor of `model`'s flat graph (the model input when the very first
        layers change).
    """
    graph = graph_lib.FlatGraph(model)
    changed = set(changed_layers)
    first = next(
        (i for i, n in enumerate(graph.nodes) if n.layer.name in changed),
        len(graph.nodes),
    )
    best = graph.inputs[0]
    for position, tensor in graph.cut_tensors():
        if position <= first:
            best = tensor
    return best


def tensor_key(tensor):
    """A stable name for a graph tensor: its producing layer's name."""
    return tensor._keras_history[0].name


class FeatureBank:
    """The tiny set's views and the teacher's features on them.

    Args:
        teacher: The user's model (never modified; copies are used).
        train_views: Augmented training views, an NHWC array.
        eval_views: Evaluation views (eval transform), an NHWC array.
        labels: Optional labels of the train views and of the eval views, as
            a pair of arrays.
        batch_size: Batch size of the teacher's forward passes.
    """

    def __init__(self, teacher, train_views, eval_views, labels=None, batch_size=64):
        self.teacher = teacher
        self.views = {"train": train_views, "eval": eval_views}
        self.labels = (
            {"train": labels[0], "eval": labels[1]} if labels is not None else None
        )
        self.batch_size = batch_size
        self.tap = feature_tap(teacher)
        self._input = graph_lib.FlatGraph(teacher).inputs[0]
        self._prefix = {}
        tap_model = surgery.rewrite(teacher, outputs=[self.tap])
        self.targets = {
            split: tap_model.predict(v, batch_size=batch_size, verbose=0)
            for split, v in self.views.items()
        }

    def prefix(self, cut, split):
        """The teacher's activations at `cut` for the `split` views."""
        key = (tensor_key(cut), split)
        if key not in self._prefix:
            if cut is self._input:
                self._prefix[key] = self.views[split]
            else:
                prefix_model = surgery.rewrite(self.teacher, outputs=[cut])
                self._prefix[key] = prefix_model.predict(
                    self.views[split], batch_size=self.batch_size, verbose=0
                )
        return self._prefix[key]

    def release(self, keep=()):
        """Frees cached prefix activations except the cuts named in `keep`."""
        self._prefix = {k: v for k, v in self._prefix.items() if k[0] in keep}


def model_image_size(model, image_size=None):
    """The `(height, width)` a model takes, or `image_size` when dynamic.

    Raises:
        ValueError: If the model's input size is dynamic and `image_size` is
            not given, or the input is not an image batch.
    """
    shape = graph_lib.input_shape(model)
    if len(shape) != 4:
        raise ValueError(
            "keras_practise compresses image models with inputs of shape "
            f"(batch, height, width, channels). Received: input shape {shape}"
        )
    if image_size is not None:
        return augment.as_size(image_size)
    if shape[1] is None or shape[2] is None:
        raise ValueError(
            f"Model {model.name!r} accepts any image size: pass "
            "`image_size=(height, width)`. Received: image_size=None"
        )
    return (shape[1], shape[2])


def fixed_size_model(model, image_size=None):
    """Returns `model`, or a copy with a fixed input size if it has none.

    MACs, latency and the candidates' training graphs need concrete shapes;
    a size-agnostic model is worked on at `image_size`.

    Args:
        model: A Functional or Sequential image model.
        image_size: `(height, width)` to fix a dynamic input size at.

    Returns:
        `model` itself when its input size is fixed, else a copy (same layer
        names and weights) whose input is `image_size`.

    Raises:
        ValueError: As `model_image_size`.
    """
    height, width = model_image_size(model, image_size)
    shape = graph_lib.input_shape(model)
    if shape[1] is not None and shape[2] is not None:
        return model
    return surgery.rewrite(model, input_shape=(height, width, shape[3]))


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
    if isinstance(data, data_lib.TinySet):
        return data
    load_size = None
    if isinstance(data, str):
        size = model_image_size(model, image_size)
        load_size = tuple(round(s / 0.875) for s in size)
    return data_lib.load_tiny_set(
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
    if augment_views < 0:
        raise ValueError(
            "`augment_views` must be >= 0. "
            f"Received: augment_views={augment_views}"
        )
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


def build_bank(
    model,
    data,
    num_samples=None,
    per_class=None,
    seed=0,
    image_size=None,
    augment_views=None,
    preprocess=None,
    data_dir=None,
    batch_size=64,
):
    """Draws the tiny set, makes its views and the teacher's features.

    Args:
        model: The teacher.
        data: Anything `data.load_tiny_set` accepts, or a `TinySet`.
        num_samples: Images to draw. Defaults to all.
        per_class: Images per class to draw instead (1 = "1-shot").
        seed: Seed of the draw and the augmentation.
        image_size: Input size for models with a dynamic input shape.
        augment_views: See `prepare_views`.
        preprocess: Callable applied to the loaded images (e.g. the model's
            `preprocess_input`).
        data_dir: Folder of prepared tensorflow-datasets datasets.
        batch_size: Batch size of the teacher's forward passes.

    Returns:
        A tuple `(bank, tiny_set)`.
    """
    size = model_image_size(model, image_size)
    tiny_set = load_for_model(
        model, data, num_samples, per_class, seed, image_size, preprocess, data_dir
    )
    channels = graph_lib.input_shape(model)[-1]
    train_views, eval_views, labels = prepare_views(
        tiny_set, size, augment_views, seed, channels
    )
    bank = FeatureBank(model, train_views, eval_views, labels, batch_size)
    return bank, tiny_set
