"""ImageNet ResNet-18 and ResNet-34 (torchvision layout) and the shared
basic-block ResNet builder also used by the CIFAR ResNets.

Layer names follow `keras.applications.ResNet50`, so block prefixes read
`conv{stage}_block{j}`: `conv3_block2_1_conv` is the first conv of the second
block of the second stage. Blocks are found from the graph's topology, not
from these names; the names make reports read like keras.applications'.
"""

import os

import keras

# torchvision initialises convolutions with kaiming_normal_(mode="fan_out",
# nonlinearity="relu"); matching it keeps from-scratch training comparable.
_CONV_INIT_CONFIG = {
    "scale": 2.0,
    "mode": "fan_out",
    "distribution": "untruncated_normal",
}
# torchvision BatchNorm2d defaults: eps=1e-5, momentum=0.1 (a running
# average weight of 0.9 in Keras' convention). Matching them lets
# torchvision weights be ported without changing the numerics.
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9


def _channel_axis():
    return 1 if keras.config.image_data_format() == "channels_first" else -1


def conv_bn(x, filters, kernel_size, strides, name):
    """Applies a bias-free convolution followed by BatchNormalization.

    Strided convolutions get an explicit symmetric `ZeroPadding2D` and a
    `"valid"` convolution, as PyTorch pads; Keras' `"same"` padding would pad
    only the bottom/right side for even inputs and shift the sampling grid.
    Stride-1 convolutions use `"same"`, which is symmetric for odd kernels.

    Args:
        x: Input tensor.
        filters: Number of output channels.
        kernel_size: Odd integer, the square kernel size.
        strides: Integer stride.
        name: Layer prefix; creates `{name}_pad` (strided convs with
            `kernel_size > 1` only), `{name}_conv` and `{name}_bn`.

    Returns:
        Output tensor of the BatchNormalization layer.
    """
    if strides > 1 and kernel_size > 1:
        pad = kernel_size // 2
        x = keras.layers.ZeroPadding2D(padding=pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(
            **_CONV_INIT_CONFIG
        ),
        name=f"{name}_conv",
    )(x)
    return keras.layers.BatchNormalization(
        axis=_channel_axis(),
        epsilon=_BN_EPSILON,
        momentum=_BN_MOMENTUM,
        name=f"{name}_bn",
    )(x)


def basic_block(x, filters, stride=1, name=None):
    """A ResNet basic block: two 3x3 conv+BN, residual add, ReLU.

    The shortcut is a 1x1 conv+BN projection (`{name}_0_conv`,
    `{name}_0_bn`) when the block changes the stride or the width, and the
    identity otherwise.

    Args:
        x: Input tensor.
        filters: Number of output channels of both convolutions.
        stride: Stride of the first convolution and of the projection.
            Defaults to `1`.
        name: Block prefix, e.g. `"conv3_block1"`.

    Returns:
        Output tensor of the block (`{name}_out`).
    """
    if stride != 1 or x.shape[_channel_axis()] != filters:
        shortcut = conv_bn(x, filters, 1, stride, name=f"{name}_0")
    else:
        shortcut = x
    x = conv_bn(x, filters, 3, stride, name=f"{name}_1")
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = conv_bn(x, filters, 3, 1, name=f"{name}_2")
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def stack_basic_blocks(x, filters, blocks, stride1=2, name=None):
    """A stage of `blocks` basic blocks; only the first one may downsample.

    Args:
        x: Input tensor.
        filters: Width of every block of the stage.
        blocks: Number of blocks.
        stride1: Stride of the first block. Defaults to `2`.
        name: Stage prefix, e.g. `"conv3"`; blocks are named
            `{name}_block1` ... `{name}_block{blocks}`.

    Returns:
        Output tensor of the last block.
    """
    x = basic_block(x, filters, stride=stride1, name=f"{name}_block1")
    for j in range(2, blocks + 1):
        x = basic_block(x, filters, name=f"{name}_block{j}")
    return x


def validate_arguments(weights, pooling):
    """Raises `ValueError` for a `weights` or `pooling` argument builders refuse.

    `weights` must be `None` or an existing `.weights.h5` file; `pooling`
    `None`, `"avg"` or `"max"`.
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            "`pooling` should be one of None, 'avg', 'max'. "
            f"Received: pooling={pooling!r}"
        )
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)) or not os.fspath(
        weights
    ).endswith(".weights.h5"):
        raise ValueError(
            "`weights` should be `None` (random initialization) or the path "
            "to a `.weights.h5` file written by `model.save_weights()`. "
            "No pretrained weights are bundled. "
            f"Received: weights={weights!r}"
        )
    if not os.path.exists(weights):
        raise ValueError(
            f"The weights file does not exist. Received: weights={weights!r}"
        )


def model_input(input_tensor, input_shape, default_size):
    """The image input: `input_tensor`, or a `keras.Input` of `input_shape`.

    Raises:
        TypeError: If `input_tensor` is not a Keras tensor.
        ValueError: If `input_shape` does not have 3 dimensions.
    """
    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise TypeError(
                "`input_tensor` should be a Keras tensor, e.g. the output of "
                f"`keras.Input()`. Received: input_tensor={input_tensor!r}"
            )
        return input_tensor
    if input_shape is None:
        if keras.config.image_data_format() == "channels_first":
            input_shape = (3, default_size, default_size)
        else:
            input_shape = (default_size, default_size, 3)
    elif len(input_shape) != 3:
        raise ValueError(
            "`input_shape` should be a tuple of 3 integers (height, width, "
            "channels), without the batch size. "
            f"Received: input_shape={input_shape}"
        )
    return keras.Input(shape=input_shape)


def build_resnet(
    stem_fn,
    stage_filters,
    stage_blocks,
    default_size,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    name,
):
    """Builds a basic-block ResNet as a Functional model.

    Stages are named `conv2`, `conv3`, ...; the first stage keeps the stem's
    resolution and every later stage halves it in its first block.

    Args:
        stem_fn: Callable mapping the image tensor to the stem output.
        stage_filters: Sequence of stage widths.
        stage_blocks: Sequence of block counts, one per stage.
        default_size: Height and width of the input when neither
            `input_tensor` nor `input_shape` is given.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: As in `ResNet18`.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: If `weights`, `input_shape` or `pooling` is invalid.
        TypeError: If `input_tensor` is not a Keras tensor.
    """
    validate_arguments(weights, pooling)
    img_input = model_input(input_tensor, input_shape, default_size)

    x = stem_fn(img_input)
    for stage, (filters, blocks) in enumerate(
        zip(stage_filters, stage_blocks)
    ):
        x = stack_basic_blocks(
            x,
            filters,
            blocks,
            stride1=1 if stage == 0 else 2,
            name=f"conv{stage + 2}",
        )

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(
            classes, activation=classifier_activation, name="predictions"
        )(x)
        pooling = None
    return finish_model(img_input, input_tensor, x, pooling, name, weights)


def finish_model(image, input_tensor, x, pooling, name, weights):
    """Pools `x` as `pooling` says, builds the model and loads `weights`.

    Args:
        image: The image input (`model_input`'s result).
        input_tensor: The builder's `input_tensor` argument.
        x: The last tensor (feature map, or the classifier's output with
            `pooling=None`).
        pooling: `None`, `"avg"` or `"max"` (global pooling of `x`).
        name: Model name.
        weights: `None` or a `.weights.h5` path.

    Returns:
        A `keras.Model`.
    """
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
    else:
        inputs = image
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def _imagenet_stem(x):
    x = conv_bn(x, 64, 7, 2, name="conv1")
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(padding=1, name="pool1_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


_IMAGENET_DOC = """Instantiates an ImageNet ResNet-{depth}, torchvision layout.

    7x7/2 conv stem with BatchNorm and ReLU, 3x3/2 max pooling, four stages of
    basic blocks ({blocks}) with widths 64, 128, 256, 512, global average
    pooling and a dense classifier. Convolutions are bias-free and strided ones
    pad like PyTorch; layer names follow `keras.applications.ResNet50`
    (`conv1_conv`, `conv2_block1_1_conv`, ..., `avg_pool`, `predictions`).

    Args:
        include_top: Whether to include global average pooling and the dense
            classifier. Defaults to `True`.
        weights: `None` (random initialization) or the path to a
            `.weights.h5` file written by `model.save_weights()` for the same
            architecture. Defaults to `None`.
        input_tensor: Optional Keras tensor (e.g. from `keras.Input()`) to use
            as image input.
        input_shape: Optional shape tuple without the batch size, e.g.
            `(224, 224, 3)`; `None` dimensions give a size-agnostic model.
            Ignored when `input_tensor` is given. Defaults to
            `(224, 224, 3)` (`(3, 224, 224)` for `"channels_first"`).
        pooling: Pooling applied when `include_top=False`: `None` returns the
            last feature map, `"avg"` or `"max"` a global pooling of it.
        classes: Number of classes of the classifier. Defaults to `1000`.
        classifier_activation: Activation of the classifier; `None` returns
            logits. Defaults to `"softmax"`.
        name: Model name. Defaults to `"{name}"`.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: If `weights` is neither `None` nor an existing
            `.weights.h5` path, if `pooling` is not `None`, `"avg"` or
            `"max"`, or if `input_shape` does not have 3 dimensions.
        TypeError: If `input_tensor` is not a Keras tensor.

    Example:

    ```python
    model = keras_practise.models.{func}(classes=10, input_shape=(64, 64, 3))
    model.summary()
    ```
    """


def ResNet18(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet18",
):
    return build_resnet(
        _imagenet_stem,
        stage_filters=(64, 128, 256, 512),
        stage_blocks=(2, 2, 2, 2),
        default_size=224,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


def ResNet34(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet34",
):
    return build_resnet(
        _imagenet_stem,
        stage_filters=(64, 128, 256, 512),
        stage_blocks=(3, 4, 6, 3),
        default_size=224,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


ResNet18.__doc__ = _IMAGENET_DOC.format(
    depth=18, blocks="2, 2, 2, 2", name="resnet18", func="ResNet18"
)
ResNet34.__doc__ = _IMAGENET_DOC.format(
    depth=34, blocks="3, 4, 6, 3", name="resnet34", func="ResNet34"
)
