"""Tiny sets without any real image: DeepInversion synthesis and noise.

PRACTISE needs some images to measure recoverability and to finetune. When the
customer can share none, the paper inverts the teacher itself with
DeepInversion (Yin et al., CVPR 2020): start from random inputs and optimise
them until every BatchNormalization layer sees the batch statistics it stored
during training, while the teacher classifies them as chosen target classes.
Gaussian noise (the paper's "FakeData") is the baseline that shows such
statistics matter.

The optimisation runs through Keras' own training loop (`Model.fit` with an
overridden `compute_loss`, the images being the model's only trainable
weight), so one code path serves every backend.
"""

import collections
import functools
import os

import keras
import numpy as np
from keras import ops

from keras_practise import backend
from keras_practise.graph import flat_graph as graph_lib
from keras_practise.graph import layer_kinds
from keras_practise.graph import surgery
from keras_practise.graph import taps
from keras_practise.utils import progress
from keras_practise.utils import validation

SynthesizedImages = collections.namedtuple(
    "SynthesizedImages", ["images", "labels"]
)
SynthesizedImages.__doc__ = """Result of `synthesize_images`.

Attributes:
    images: float32 numpy array `(num_images, height, width, channels)`.
    labels: int32 numpy array `(num_images,)`, the target class of each image.
"""


def gaussian_noise(num_images, image_size, channels=3, mean=0.0, std=1.0, seed=0):
    """Images of i.i.d. Gaussian pixels (the paper's "FakeData" baseline).

    Args:
        num_images: Number of images.
        image_size: `int` or `(height, width)`.
        channels: Number of channels. Defaults to `3`.
        mean: Mean of every pixel. Defaults to `0.0`.
        std: Standard deviation of every pixel. Defaults to `1.0`.
        seed: Seed of the numpy generator. Defaults to `0`.

    Returns:
        A float32 numpy array `(num_images, height, width, channels)`.

    Raises:
        ValueError: If a size is not positive or `std` is negative.

    Example:

    ```python
    noise = keras_practise.gaussian_noise(50, 224)  # (50, 224, 224, 3)
    ```
    """
    num_images = validation.check_int("num_images", num_images)
    height, width = validation.as_size(image_size)
    channels = validation.check_int("channels", channels)
    if std < 0:
        raise ValueError(f"`std` must be >= 0. Received: std={std}")
    rng = np.random.default_rng(seed)
    shape = (num_images, height, width, channels)
    return rng.normal(mean, std, size=shape).astype("float32")


@backend.fused_kernels()
def synthesize_images(
    teacher,
    num_images,
    image_size=None,
    steps=2000,
    batch_size=64,
    lr=0.1,
    bn_weight=1.0,
    class_weight=1.0,
    tv_weight=1e-2,
    l2_weight=1e-4,
    labels=None,
    jitter=None,
    flip=True,
    value_range=None,
    seed=0,
    verbose=1,
):
    """Synthesises images from a trained classifier alone (DeepInversion).

    Images are optimised in batches of `batch_size`, starting from seeded
    Gaussian noise, with Adam (betas 0.5 / 0.9, learning rate cosine-decayed
    to zero over `steps`) to minimise

    `bn_weight * sum_l (||mu_l - mean_l||_2 + ||var_l - var'_l||_2)
    + class_weight * crossentropy(logits, targets)
    + tv_weight * TV + l2_weight * L2`

    where `mu_l, var_l` are the batch mean and (biased) variance of the input
    of the l-th BatchNormalization layer, per channel, and `mean_l, var'_l`
    its stored moving statistics. TV is the mean squared difference between
    neighbouring pixels (horizontal and vertical) and L2 the mean squared
    pixel value, both on the normalised images (see `value_range`); unlike
    the original's norms, these means do not grow with image and batch size.
    As in DeepInversion, each step sees the batch randomly shifted (with
    wrap-around) by up to `jitter` pixels and randomly mirrored.

    The teacher runs in inference mode (BatchNormalization uses its moving
    statistics, Dropout is off) on a frozen copy; `teacher` itself is not
    modified. If its output layer applies a softmax (a `Softmax` layer, an
    `Activation("softmax")` or a layer with `activation="softmax"`), the
    copy drops that softmax, so the cross-entropy is computed from logits
    and its gradient does not vanish on confidently wrong images.

    Args:
        teacher: Trained Functional or Sequential classifier with one image
            input (channels last) and one `(batch, classes)` output; nested
            Functional backbones are fine. Must contain BatchNormalization.
        num_images: Number of images to synthesise.
        image_size: `int` or `(height, width)`. Defaults to the teacher's
            input size, which must then be fixed.
        steps: Optimiser steps per batch. Defaults to `2000`.
        batch_size: Images optimised together; the batch statistics are
            matched per batch, so use at least a few dozen. Defaults to `64`.
        lr: Initial Adam learning rate. Defaults to `0.1`.
        bn_weight: Weight of the BatchNormalization statistics loss.
            Defaults to `1.0`.
        class_weight: Weight of the cross-entropy to the target classes.
            Defaults to `1.0`.
        tv_weight: Weight of the total-variation prior. Defaults to `1e-2`.
        l2_weight: Weight of the L2 prior. Defaults to `1e-4`.
        labels: Optional int array of `num_images` target classes. Defaults
            to round-robin over all classes (`i % num_classes`), which keeps
            the classes balanced.
        jitter: Largest random shift in pixels. Defaults to 1/8 of the
            smaller image side; `0` disables it.
        flip: Whether to mirror the batch at random at each step. Defaults
            to `True`.
        value_range: Optional `(low, high)` range of the teacher's inputs,
            e.g. `(0, 1)` or `(0, 255)`. When given, the optimiser works on
            images rescaled to [-1, 1] (initialised from a normal with
            standard deviation 0.5 and clipped to [-1, 1] after every step),
            so `lr` and the priors do not depend on the pixel scale, and the
            returned images lie in `[low, high]`. When `None`, images are
            unbounded and start from a standard normal, which suits teachers
            that take standardised inputs. Defaults to `None`.
        seed: Seed of the initial images and of the jitter and flips.
            Defaults to `0`.
        verbose: `0` is silent, `1` shows a progress bar over batches, `2`
            also Keras' bar over the steps of each batch. Defaults to `1`.

    Returns:
        A `SynthesizedImages(images, labels)` named tuple: float32 images
        `(num_images, height, width, channels)` and their int32 target
        classes `(num_images,)`.

    Raises:
        ValueError: If the teacher has no BatchNormalization layer, has
            several inputs or outputs, or an argument is out of range.
        TypeError: If `teacher` is not a Functional or Sequential model.

    Example:

    ```python
    teacher = keras.applications.ResNet50(weights="imagenet")
    images, labels = keras_practise.synthesize_images(
        teacher, 64, steps=2000, value_range=(0, 255)
    )
    keras_practise.save_images(images, "/tmp/synth", value_range=(0, 255))
    ```
    """
    num_images = validation.check_int("num_images", num_images)
    steps = validation.check_int("steps", steps)
    batch_size = min(validation.check_int("batch_size", batch_size), num_images)
    for name, weight in (
        ("bn_weight", bn_weight),
        ("class_weight", class_weight),
        ("tv_weight", tv_weight),
        ("l2_weight", l2_weight),
    ):
        if weight < 0:
            raise ValueError(f"`{name}` must be >= 0. Received: {name}={weight}")
    scale = _Rescaling(value_range)
    view, moments = _inversion_view(teacher, with_logits=True)
    shape = _input_shape(view.inputs[0].shape, image_size)
    labels = _target_labels(labels, num_images, view.outputs[-1].shape[-1])
    if jitter is None:
        jitter = min(shape[0], shape[1]) // 8
    if not 0 <= jitter < min(shape[0], shape[1]):
        raise ValueError(
            "`jitter` must be in [0, image side). "
            f"Received: jitter={jitter} for image size {shape[:2]}"
        )

    model = _ImageInversion(
        view,
        moments,
        shape=(batch_size,) + shape,
        scale=scale,
        weights=(bn_weight, class_weight, tv_weight, l2_weight),
        jitter=jitter,
        flip=flip,
        seed=seed,
    )
    optimizer = keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(lr, steps),
        beta_1=0.5,
        beta_2=0.9,
    )
    model.compile(optimizer=optimizer)
    # One dummy sample per step: fit then takes exactly `steps` steps.
    dummy = np.zeros((steps, 1), "float32")
    rng = np.random.default_rng(seed)
    batches = []
    num_batches = -(-num_images // batch_size)
    progbar = progress.progbar(num_batches, verbose, unit_name="batch")
    for index in range(num_batches):
        # The last batch is filled up to full size and cut afterwards, so
        # that every batch reuses the one traced training step.
        start = index * batch_size
        targets = np.resize(labels[start : start + batch_size], batch_size)
        initial = rng.standard_normal((batch_size,) + shape) * scale.init_std
        model.reset(initial, targets)
        model.fit(
            dummy,
            batch_size=1,
            epochs=1,
            shuffle=False,
            verbose=1 if verbose == 2 else 0,
        )
        batches.append(scale.to_pixels(model.images.numpy()))
        # The loss of the final images, not the mean over all the steps.
        loss = model.evaluate(dummy[:1], batch_size=1, verbose=0)
        progbar.update(index + 1, [("loss", loss)])
    images = np.concatenate(batches)[:num_images].astype("float32")
    return SynthesizedImages(images, labels)


def bn_statistics_loss(teacher, images, batch_size=64):
    """Distance of a set's BatchNormalization input statistics to the stored.

    Sums, over the teacher's BatchNormalization layers, the L2 distances
    between the per-channel mean and (biased) variance of the layer's input
    over all of `images` and the layer's moving mean and variance, the
    DeepInversion prior. Real training images score low, noise scores high.

    Args:
        teacher: Functional or Sequential model with BatchNormalization.
        images: numpy array of model inputs.
        batch_size: Images per forward pass. Defaults to `64`.

    Returns:
        The loss, a Python float.

    Raises:
        ValueError: If the teacher has no BatchNormalization layer.
        TypeError: If `teacher` is not a Functional or Sequential model.

    Example:

    ```python
    keras_practise.bn_statistics_loss(teacher, tiny_set)
    ```
    """
    view, moments = _inversion_view(teacher, with_logits=False)
    batch_size = validation.check_int("batch_size", batch_size)
    images = np.asarray(images, dtype="float32")
    sums = [0.0] * len(moments)
    squares = [0.0] * len(moments)
    counts = [0] * len(moments)
    for start in range(0, len(images), batch_size):
        outputs = view.predict_on_batch(images[start : start + batch_size])
        if len(moments) == 1:
            outputs = [outputs]
        for i, (features, (axis, _, _)) in enumerate(zip(outputs, moments)):
            features = np.moveaxis(features.astype("float64"), axis, -1)
            features = features.reshape(-1, features.shape[-1])
            sums[i] = sums[i] + features.sum(axis=0)
            squares[i] = squares[i] + np.square(features).sum(axis=0)
            counts[i] += features.shape[0]
    total = 0.0
    for i, (_, moving_mean, moving_var) in enumerate(moments):
        mean = sums[i] / counts[i]
        var = squares[i] / counts[i] - np.square(mean)
        total += np.linalg.norm(mean - moving_mean)
        total += np.linalg.norm(var - moving_var)
    return float(total)


def save_images(images, directory, prefix="image", value_range=None):
    """Writes images as PNG files, rescaled to 0-255 for viewing.

    Args:
        images: Array `(num_images, height, width, channels)` with 1, 3 or 4
            channels.
        directory: Output folder, created if missing.
        prefix: File name prefix; files are `{prefix}_{index:05d}.png`.
            Defaults to `"image"`.
        value_range: Optional `(low, high)` mapped to 0-255 for all images.
            Defaults to stretching each image from its own min to max.

    Returns:
        The list of written paths.

    Raises:
        ValueError: If `images` is not a 4-D array with 1, 3 or 4 channels.

    Example:

    ```python
    save_images(result.images, "/tmp/synthetic", prefix="resnet50")
    ```
    """
    images = np.asarray(images, dtype="float32")
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            "Expected images of shape (num_images, height, width, channels) "
            f"with 1, 3 or 4 channels. Received: shape={images.shape}"
        )
    os.makedirs(directory, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        if value_range is None:
            low, high = image.min(), image.max()
        else:
            low, high = value_range
        pixels = np.clip((image - low) / max(high - low, 1e-12), 0.0, 1.0)
        path = os.path.join(directory, f"{prefix}_{index:05d}.png")
        keras.utils.save_img(path, pixels * 255.0, scale=False)
        paths.append(path)
    return paths


class _Rescaling:
    """Maps between pixel values and the [-1, 1] space that is optimised."""

    def __init__(self, value_range):
        if value_range is None:
            self.bounded = False
            self.center, self.half_width, self.init_std = 0.0, 1.0, 1.0
            return
        try:
            low, high = (float(v) for v in value_range)
        except (TypeError, ValueError):
            low = high = 0.0
        if not low < high:
            raise ValueError(
                "`value_range` must be (low, high) with low < high. "
                f"Received: value_range={value_range}"
            )
        self.bounded = True
        self.center = (low + high) / 2.0
        self.half_width = (high - low) / 2.0
        self.init_std = 0.5

    def to_pixels(self, values):
        return values * self.half_width + self.center


class _ClipToUnit(keras.constraints.Constraint):
    """Clips a variable to [-1, 1] after each optimiser update."""

    def __call__(self, w):
        return ops.clip(w, -1.0, 1.0)


class _ImageInversion(keras.Model):
    """A model whose only trainable weight is a batch of images.

    Its forward pass runs the frozen teacher view on the (augmented) images;
    `compute_loss` turns the view's outputs into the DeepInversion loss.
    """

    def __init__(self, view, moments, shape, scale, weights, jitter, flip, seed):
        super().__init__(name="image_inversion")
        self.view = view
        self._moments = moments
        self._scale = scale
        self._weights = weights
        self._jitter = jitter
        self._flip = flip
        self._seed_generator = keras.random.SeedGenerator(seed)
        self.images = self.add_weight(
            shape=shape,
            initializer="zeros",
            constraint=_ClipToUnit() if scale.bounded else None,
            name="images",
        )
        self.targets = self.add_weight(
            shape=shape[:1],
            initializer="zeros",
            dtype="int32",
            trainable=False,
            name="targets",
        )

    def reset(self, initial, targets):
        """Starts a new batch: new images and targets, fresh Adam state."""
        if self._scale.bounded:
            initial = np.clip(initial, -1.0, 1.0)
        self.images.assign(initial.astype("float32"))
        self.targets.assign(targets)
        # Zero moments and step count, so that the learning-rate schedule
        # and Adam's bias correction restart too (the learning rate is a
        # schedule, not an optimizer variable).
        for variable in self.optimizer.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def _augment(self, images):
        if self._jitter:
            shifts = keras.random.randint(
                (2,), -self._jitter, self._jitter + 1, seed=self._seed_generator
            )
            # A roll by a traced shift, written as a gather so that it works
            # on backends whose roll wants Python integers.
            for axis, shift in ((1, shifts[0]), (2, shifts[1])):
                size = images.shape[axis]
                index = ops.mod(ops.arange(size, dtype="int32") - shift, size)
                images = ops.take(images, index, axis=axis)
        if self._flip:
            coin = keras.random.uniform((), seed=self._seed_generator) < 0.5
            images = ops.where(coin, ops.flip(images, axis=2), images)
        return images

    def call(self, inputs, training=False):
        del inputs  # A dummy batch: the data are the weights.
        images = self.images
        if training:
            images = self._augment(images)
        images = images * self._scale.half_width + self._scale.center
        return self.view(images, training=False)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        bn_weight, class_weight, tv_weight, l2_weight = self._weights
        *features, logits = y_pred
        bn_loss = 0.0
        for tensor, (axis, moving_mean, moving_var) in zip(
            features, self._moments
        ):
            tensor = ops.cast(tensor, "float32")
            reduce = [a for a in range(len(tensor.shape)) if a != axis]
            mean = ops.mean(tensor, axis=reduce)
            var = ops.var(tensor, axis=reduce)
            moving_mean = ops.convert_to_tensor(moving_mean)
            moving_var = ops.convert_to_tensor(moving_var)
            bn_loss = bn_loss + ops.norm(mean - moving_mean)
            bn_loss = bn_loss + ops.norm(var - moving_var)
        class_loss = ops.mean(
            keras.losses.sparse_categorical_crossentropy(
                self.targets,
                ops.cast(logits, "float32"),
                from_logits=True,
            )
        )
        images = self.images
        tv = ops.mean(ops.square(images[:, 1:] - images[:, :-1]))
        tv = tv + ops.mean(ops.square(images[:, :, 1:] - images[:, :, :-1]))
        l2 = ops.mean(ops.square(images))
        return (
            bn_weight * bn_loss
            + class_weight * class_loss
            + tv_weight * tv
            + l2_weight * l2
        )


def _inversion_view(teacher, with_logits):
    """A frozen copy of `teacher` returning each BatchNormalization input.

    Returns:
        `(view, moments)`: `view` maps images to the list of BN inputs (plus
        the logits if `with_logits`); `moments` holds, per BN call, the
        channel axis (non-negative) and the moving mean and variance as
        float32 numpy arrays.
    """
    graph = graph_lib.FlatGraph(teacher)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ValueError(
            "Expected a teacher with one input and one output. Received: "
            f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs"
        )
    bn_layers = [
        layer
        for layer in graph.layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not bn_layers:
        raise ValueError(
            "DeepInversion matches the statistics stored in BatchNormalization "
            "layers, and the teacher has none. Use real or out-of-domain "
            "images instead (e.g. `sample_photographs`). "
            f"Received: teacher={teacher.name}"
        )
    recorded = []

    def record(bn, tensor):
        axis = bn.axis % len(tensor.shape)
        recorded.append((tensor, axis, bn))
        return tensor

    before = {bn.name: functools.partial(record, bn) for bn in bn_layers}
    output_node = taps.output_node(teacher)
    output_layer = output_node.layer
    if with_logits and layer_kinds.is_softmax(output_layer):
        # Stop at the softmax layer's input; a layer that applies the
        # softmax as its activation is then repeated without it.
        copy = surgery.rewrite(
            teacher, before=before, outputs=[output_node.inputs[0]]
        )
        logits = copy.outputs[0]
        if not isinstance(
            output_layer, (keras.layers.Softmax, keras.layers.Activation)
        ):
            config = output_layer.get_config()
            config["activation"] = "linear"
            linear = output_layer.__class__.from_config(config)
            logits = linear(logits)
            linear.set_weights(output_layer.get_weights())
    else:
        copy = surgery.rewrite(teacher, before=before)
        logits = copy.outputs[0]
    outputs = [tensor for tensor, _, _ in recorded]
    if with_logits:
        if len(logits.shape) != 2:
            raise ValueError(
                "Expected a classifier output of shape (batch, classes). "
                f"Received: output shape={logits.shape}"
            )
        outputs.append(logits)
    view = keras.Model(copy.inputs[0], outputs, name=f"{teacher.name}_inversion")
    view.trainable = False
    moments = [
        (
            axis,
            ops.convert_to_numpy(bn.moving_mean).astype("float32"),
            ops.convert_to_numpy(bn.moving_variance).astype("float32"),
        )
        for _, axis, bn in recorded
    ]
    return view, moments


def _input_shape(input_shape, image_size):
    """The `(height, width, channels)` of one synthesised image."""
    shape = tuple(input_shape[1:])
    if len(shape) != 3 or shape[-1] is None:
        raise ValueError(
            "Expected a teacher taking images (batch, height, width, "
            f"channels) with a fixed number of channels. "
            f"Received: input shape={input_shape}"
        )
    if image_size is None:
        if None in shape[:2]:
            raise ValueError(
                "The teacher accepts any image size: pass `image_size`. "
                f"Received: input shape={input_shape}"
            )
        return shape
    height, width = validation.as_size(image_size)
    for expected, got in zip(shape[:2], (height, width)):
        if expected is not None and expected != got:
            raise ValueError(
                f"`image_size` does not fit the teacher's input shape "
                f"{input_shape}. Received: image_size={image_size}"
            )
    return (height, width, shape[-1])


def _target_labels(labels, num_images, num_classes):
    if labels is None:
        return (np.arange(num_images) % num_classes).astype("int32")
    labels = np.asarray(labels)
    if labels.shape != (num_images,) or not np.issubdtype(
        labels.dtype, np.integer
    ):
        raise ValueError(
            f"`labels` must be {num_images} integers. Received: labels with "
            f"shape={labels.shape} and dtype={labels.dtype}"
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"`labels` must lie in [0, {num_classes}). Received: labels in "
            f"[{labels.min()}, {labels.max()}]"
        )
    return labels.astype("int32")
