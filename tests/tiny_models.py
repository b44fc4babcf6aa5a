"""Small models shared by the tests (fast to build and train)."""

import keras
import numpy as np


def tiny_resnet(classes=4, size=16, width=8, softmax=False, bn_momentum=0.99):
    """A two-stage residual net with three droppable blocks (1.2, 1.3, 2.2)."""

    def batch_norm(name):
        return keras.layers.BatchNormalization(momentum=bn_momentum, name=name)

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)

    def block(x, filters, stride, name):
        shortcut = x
        if stride != 1 or x.shape[-1] != filters:
            shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv")(x)
            shortcut = batch_norm(f"{name}_0_bn")(shortcut)
        y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_1_conv")(x)
        y = batch_norm(f"{name}_1_bn")(y)
        y = keras.layers.ReLU(name=f"{name}_1_relu")(y)
        y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
        y = batch_norm(f"{name}_2_bn")(y)
        y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
        return keras.layers.ReLU(name=f"{name}_out")(y)

    for i in range(1, 4):
        x = block(x, width, 1, f"s1_block{i}")
    x = block(x, 2 * width, 2, "s2_block1")
    x = block(x, 2 * width, 1, "s2_block2")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(
        classes, activation="softmax" if softmax else None, name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name="tiny_resnet")


def randomize_batchnorm(model, seed=0):
    """Gives BatchNorm layers non-trivial statistics."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()]
            )


def calibrate_batchnorm(model, x):
    """Sets BatchNorm moving statistics to those of `x`, as in a trained net.

    Random gammas and betas are kept; only where training left a network
    do its moving statistics match its data's batch statistics, so that
    training-mode steps do not move its inference outputs by themselves.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            probe = keras.Model(model.input, layer.input)
            values = keras.ops.convert_to_numpy(probe(x, training=False))
            axes = tuple(range(values.ndim - 1))
            layer.moving_mean.assign(values.mean(axis=axes))
            layer.moving_variance.assign(values.var(axis=axes))


def images(n=24, size=16, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype("float32")


def tiny_se_net(classes=4, size=16, width=8):
    """Inverted bottlenecks with squeeze-and-excitation, EfficientNet-style.

    Residual sums are written `x + y` (a `keras.ops` operation, not an `Add`
    layer), and the excitation gate uses a plain operation (`x * 0.5`), so the
    graph mixes layers and operations. Droppable: `b2` and `b3`.
    """

    def bottleneck(x, out_channels, stride, name):
        y = keras.layers.Conv2D(2 * x.shape[-1], 1, use_bias=False, name=f"{name}_expand")(x)
        y = keras.layers.BatchNormalization(name=f"{name}_expand_bn")(y)
        y = keras.layers.Activation("swish", name=f"{name}_expand_act")(y)
        y = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
        y = keras.layers.BatchNormalization(name=f"{name}_dw_bn")(y)
        y = keras.layers.Activation("swish", name=f"{name}_dw_act")(y)
        se = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(y)
        se = keras.layers.Conv2D(4, 1, activation="swish", name=f"{name}_se_reduce")(se)
        se = keras.layers.Conv2D(y.shape[-1], 1, activation="sigmoid", name=f"{name}_se_expand")(se)
        y = keras.layers.Multiply(name=f"{name}_se_excite")([y, se * 2.0])
        y = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=f"{name}_project")(y)
        y = keras.layers.BatchNormalization(name=f"{name}_project_bn")(y)
        if stride == 1 and x.shape[-1] == out_channels:
            y = x + y
        return y

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("swish", name="stem_act")(x)
    x = bottleneck(x, 2 * width, 1, "b1")
    x = bottleneck(x, 2 * width, 1, "b2")
    x = bottleneck(x, 2 * width, 1, "b3")
    x = keras.layers.Conv2D(4 * width, 1, use_bias=False, name="top_conv")(x)
    x = keras.layers.BatchNormalization(name="top_bn")(x)
    x = keras.layers.Activation("swish", name="top_act")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny_se_net")


def user_resnet(classes=100, size=32, widths=(16, 32, 64), blocks=3):
    """A residual net as a user would write it: Conv-BN-ReLU, `layers.add`.

    Convs keep their default bias, blocks are joined with `keras.layers.add`
    and plain ReLU; each stage after the first opens with a strided block
    with a projection shortcut. With the defaults it has 6 droppable blocks
    (two per stage) and about 40 M MACs at 32x32.
    """
    layers = keras.layers

    def conv_bn(x, filters, stride=1, relu=True):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same")(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x) if relu else x

    inputs = keras.Input((size, size, 3))
    x = conv_bn(inputs, widths[0])
    for stage, filters in enumerate(widths):
        for index in range(blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            shortcut = x
            if stride != 1 or x.shape[-1] != filters:
                shortcut = layers.Conv2D(filters, 1, strides=stride)(x)
                shortcut = layers.BatchNormalization()(shortcut)
            y = conv_bn(x, filters, stride)
            y = conv_bn(y, filters, relu=False)
            x = layers.ReLU()(layers.add([shortcut, y]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes)(x)
    return keras.Model(inputs, outputs, name="user_resnet")
