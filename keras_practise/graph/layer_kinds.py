"""Layer kinds that the graph analyses (blocks, adaptors, taps, MACs) agree on."""

import keras

NORM_AND_ACTIVATION = (
    keras.layers.BatchNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
)
ACTIVATIONS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
)
POOLING = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
)
HEAD = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Flatten,
    keras.layers.Dense,
)
DEPTHWISE = (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def is_conv(layer):
    """Whether `layer` is an ordinary (not depthwise or separable) 2D conv."""
    return isinstance(layer, keras.layers.Conv2D) and not isinstance(
        layer, DEPTHWISE
    )


def is_1x1(layer):
    """Whether a conv layer's kernel is 1x1."""
    return tuple(layer.kernel_size) == (1, 1)


def is_softmax(layer):
    """Whether `layer` is a softmax or applies one as its activation."""
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(layer, "activation", None) is keras.activations.softmax


def is_foldable_conv(layer):
    """Whether a 1x1 adaptor can fold into `layer` (a plain NHWC 2D conv)."""
    return (
        is_conv(layer)
        and layer.groups == 1
        and layer.data_format == "channels_last"
    )


def has_linear_output(layer):
    """Whether `layer` has no activation fused into it."""
    return keras.activations.serialize(layer.activation) in ("linear", None) or (
        layer.activation is keras.activations.linear
    )
