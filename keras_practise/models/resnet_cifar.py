"""CIFAR ResNet-20 and ResNet-56 (He et al. 2016, section 4.2).

Built by the same basic-block builder as the ImageNet ResNets, so block and
layer names match (`conv2_block1_1_conv`, ...). Downsampling blocks use a
1x1 conv+BN projection shortcut (the paper's option B).
"""

import keras

from keras_practise.models.resnet_imagenet import build_resnet
from keras_practise.models.resnet_imagenet import conv_bn


def _cifar_stem(x):
    x = conv_bn(x, 16, 3, 1, name="conv1")
    return keras.layers.Activation("relu", name="conv1_relu")(x)


_CIFAR_DOC = """Instantiates the CIFAR ResNet-{depth}.

    3x3 conv stem with 16 filters, BatchNorm and ReLU; three stages of
    {n} basic blocks with widths 16, 32, 64 (the second and third stage halve
    the resolution in their first block, which gets a 1x1 conv+BN projection
    shortcut); global average pooling and a dense classifier. Convolutions are
    bias-free and strided ones pad like PyTorch; layer names follow
    `keras.applications.ResNet50` (`conv1_conv`, `conv2_block1_1_conv`, ...,
    `avg_pool`, `predictions`).

    Args:
        include_top: Whether to include global average pooling and the dense
            classifier. Defaults to `True`.
        weights: `None` (random initialization) or the path to a
            `.weights.h5` file written by `model.save_weights()` for the same
            architecture. Defaults to `None`.
        input_tensor: Optional Keras tensor (e.g. from `keras.Input()`) to use
            as image input.
        input_shape: Optional shape tuple without the batch size; `None`
            dimensions give a size-agnostic model. Ignored when
            `input_tensor` is given. Defaults to `(32, 32, 3)`
            (`(3, 32, 32)` for `"channels_first"`).
        pooling: Pooling applied when `include_top=False`: `None` returns the
            last feature map, `"avg"` or `"max"` a global pooling of it.
        classes: Number of classes of the classifier. Defaults to `1000`, as
            in `keras.applications`; pass `classes=10` for CIFAR-10.
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
    model = keras_practise.models.{func}(classes=10)
    model.summary()
    ```
    """


def _cifar_resnet(n, **kwargs):
    return build_resnet(
        _cifar_stem,
        stage_filters=(16, 32, 64),
        stage_blocks=(n, n, n),
        default_size=32,
        **kwargs,
    )


def ResNet20(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet20",
):
    return _cifar_resnet(
        3,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


def ResNet56(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet56",
):
    return _cifar_resnet(
        9,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


ResNet20.__doc__ = _CIFAR_DOC.format(
    depth=20, n=3, name="resnet20", func="ResNet20"
)
ResNet56.__doc__ = _CIFAR_DOC.format(
    depth=56, n=9, name="resnet56", func="ResNet56"
)
