"""Small digits classifiers of different families for the selection benchmark.

Besides the bundled ResNet-20 teacher, `benchmarks/selection.py` compresses
three networks written the way users write them, each with six droppable
blocks (two per stage) and about 2-12 M MACs at 32x32, so that recovering
every subset of blocks stays affordable on a CPU:

* `user_resnet`: basic residual blocks joined with `keras.layers.add` and
  `Activation("relu")`, 16/32/64 channels on a stride-2 stem.
* `mobilenet`: MobileNetV2-style inverted residuals (1x1 expand, 3x3
  depthwise, 1x1 linear projection, ReLU6), 16/24/32 channels.
* `vgg`: plain Conv-BN-ReLU stacks separated by max pooling, no shortcuts.

Two keras.applications networks, built without pretrained weights for
32x32 inputs and 30 classes, serve the benchmarks that need one trained on
the same task (`benchmarks/scheme_defaults.py`):

* `keras_mobilenet`: `keras.applications.MobileNet` (v1) at width 0.5, a
  plain stack of depthwise-separable convs; it learns the task under the
  harness's recipe (10 epochs: docs/results_fidelity.md).
* `mobilenet_v2`: `keras.applications.MobileNetV2` at width 0.35. It did
  not learn the task in 5 epochs: its BatchNorm layers keep moving
  statistics with momentum 0.999, which a few hundred steps barely move
  from their initial values, so the model in inference mode stays at
  chance while its training accuracy climbs.

`tiny` (two candidates, 0.1 M MACs) only keeps the smoke test fast.

They are trained on the cluttered-digits task by `harness.train_classifier`
and cached as `.keras` files.
"""

import os

import keras

from benchmarks import harness

_INPUT_SHAPE = (32, 32, 3)
_CLASSES = 30


def _conv_bn(x, filters, kernel, strides, name, activation="relu"):
    x = keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{name}_act")(x)
    return x


def _head(inputs, x, name):
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(
        _CLASSES, activation="softmax", name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=name)


def user_resnet():
    """Basic residual blocks, `layers.add`, 3 stages of 3 blocks."""
    inputs = keras.Input(_INPUT_SHAPE)
    x = _conv_bn(inputs, 16, 3, 2, "stem")
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, 4):
            name = f"s{stage}b{block}"
            stride = 2 if block == 1 and stage > 1 else 1
            y = _conv_bn(x, filters, 3, stride, f"{name}_1")
            y = _conv_bn(y, filters, 3, 1, f"{name}_2", activation=None)
            shortcut = x
            if stride != 1 or x.shape[-1] != filters:
                shortcut = _conv_bn(x, filters, 1, stride, f"{name}_0", None)
            x = keras.layers.add([shortcut, y], name=f"{name}_add")
            x = keras.layers.Activation("relu", name=f"{name}_out")(x)
    return _head(inputs, x, "user_resnet")


def mobilenet():
    """MobileNetV2-style inverted residuals, expansion 4, 3 stages."""
    inputs = keras.Input(_INPUT_SHAPE)
    x = _conv_bn(inputs, 24, 3, 2, "stem", "relu6")
    for stage, filters in enumerate((16, 24, 32), start=1):
        for block in range(1, 4):
            name = f"s{stage}b{block}"
            stride = 2 if block == 1 and stage > 1 else 1
            y = _conv_bn(x, 4 * x.shape[-1], 1, 1, f"{name}_expand", "relu6")
            y = keras.layers.DepthwiseConv2D(
                3, strides=stride, padding="same", use_bias=False,
                name=f"{name}_dw",
            )(y)
            y = keras.layers.BatchNormalization(name=f"{name}_dw_bn")(y)
            y = keras.layers.Activation("relu6", name=f"{name}_dw_act")(y)
            y = _conv_bn(y, filters, 1, 1, f"{name}_project", None)
            if stride == 1 and x.shape[-1] == filters:
                y = keras.layers.add([x, y], name=f"{name}_add")
            x = y
    x = _conv_bn(x, 128, 1, 1, "top", "relu6")
    return _head(inputs, x, "mobilenet")


def vgg():
    """Plain Conv-BN-ReLU stacks, 3 convs per stage, max pooling between."""
    inputs = keras.Input(_INPUT_SHAPE)
    x = inputs
    for stage, filters in enumerate((16, 32, 64), start=1):
        for conv in range(1, 4):
            stride = 2 if stage == 1 and conv == 1 else 1
            x = _conv_bn(x, filters, 3, stride, f"block{stage}_conv{conv}")
        if stage < 3:
            x = keras.layers.MaxPooling2D(name=f"block{stage}_pool")(x)
    return _head(inputs, x, "vgg")


def mobilenet_v2():
    """`keras.applications.MobileNetV2(alpha=0.35)` for 32x32 digits."""
    return keras.applications.MobileNetV2(
        input_shape=_INPUT_SHAPE, alpha=0.35, weights=None, classes=_CLASSES,
        name="mobilenet_v2",
    )


def keras_mobilenet():
    """`keras.applications.MobileNet(alpha=0.5)` (v1) for 32x32 digits."""
    return keras.applications.MobileNet(
        input_shape=_INPUT_SHAPE, alpha=0.5, weights=None, classes=_CLASSES,
        name="keras_mobilenet",
    )


def tiny():
    """Two droppable 8-channel convs: the smoke test's model."""
    inputs = keras.Input(_INPUT_SHAPE)
    x = keras.layers.MaxPooling2D(4, name="stem_pool")(inputs)
    for conv in range(1, 4):
        x = _conv_bn(x, 8, 3, 1, f"block1_conv{conv}")
    return _head(inputs, x, "tiny")


BUILDERS = {
    "user_resnet": user_resnet, "mobilenet": mobilenet, "vgg": vgg,
    "keras_mobilenet": keras_mobilenet, "mobilenet_v2": mobilenet_v2,
    "tiny": tiny,
}


def load_or_train(name, cache_dir, epochs, num_train, seed=0):
    """Loads the trained `name` from `cache_dir`, training it first if absent.

    Args:
        name: A key of `BUILDERS`, or `"resnet20"` for the bundled teacher.
        cache_dir: Folder of the cached `.keras` files.
        epochs: Training passes over the train split (when training).
        num_train: Generated train images (when training).
        seed: Training seed.

    Returns:
        A tuple `(model, note)`: the trained model and a line saying where it
        came from (with the test accuracy when it was just trained).
    """
    if name == "resnet20":
        return harness.load_teacher(), "bundled teacher"
    path = os.path.join(
        cache_dir, f"{name}_e{epochs}_n{num_train}_s{seed}.keras"
    )
    if os.path.exists(path):
        return keras.saving.load_model(path), f"cached {path}"
    os.makedirs(cache_dir, exist_ok=True)
    model, test_accuracy = harness.train_classifier(
        BUILDERS[name], epochs, num_train, num_test=2000, batch_size=64,
        learning_rate=0.05, seed=seed,
    )
    model.save(path)
    return model, f"trained, test accuracy {100 * test_accuracy:.2f}%, {path}"
