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


def images(n=24, size=16, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype("float32")
