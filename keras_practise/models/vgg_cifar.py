"""The CIFAR VGG-16 of the filter-pruning literature (Li et al. 2017).

Thirteen 3x3 Conv-BN-ReLU layers in five stages (64, 64 | 128, 128 | 256 x 3
| 512 x 3 | 512 x 3) with 2x2 max pooling after each stage, then a 512-unit
Dense-BN-ReLU layer and the classifier: 14.99 M parameters and 313.5 M MACs
at 32x32, the VGG-16 of the earlier PRACTISE paper's Table 16.
"""

import keras

from keras_practise.models import resnet_imagenet

_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def VGG16(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="vgg16_cifar",
):
    """Instantiates the CIFAR VGG-16 (with BatchNorm).

    Layer names follow `keras.applications.VGG16` (`block1_conv1`, ...,
    `block5_pool`, `fc1`, `predictions`); each conv is bias-free and followed
    by `{conv}_bn` and `{conv}_relu`. Every conv but the first of each stage
    reads a map of its own width, so `keras_practise.find_blocks` offers it
    as a droppable block.

    Args:
        include_top: Whether to include the 512-unit hidden layer and the
            classifier on the flattened last map. Defaults to `True`.
        weights: `None` (random initialization) or the path to a
            `.weights.h5` file written by `model.save_weights()` for the same
            architecture. Defaults to `None`.
        input_tensor: Optional Keras tensor to use as image input.
        input_shape: Optional shape tuple without the batch size. Defaults to
            `(32, 32, 3)`. With `include_top`, the last map must be 1x1
            (32x32 inputs) for the 512-unit layer's 512 inputs.
        pooling: Pooling applied when `include_top=False`: `None`, `"avg"`
            or `"max"`.
        classes: Number of classes. Defaults to `1000`, as in
            `keras.applications`; pass `classes=10` for CIFAR-10.
        classifier_activation: Activation of the classifier; `None` returns
            logits. Defaults to `"softmax"`.
        name: Model name.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: If `weights`, `input_shape` or `pooling` is invalid.
        TypeError: If `input_tensor` is not a Keras tensor.

    Example:

    ```python
    model = keras_practise.models.VGG16(classes=10)
    print(model.count_params())  # 14,992,970 with the BatchNorm statistics
    ```
    """
    resnet_imagenet.validate_arguments(weights, pooling)
    image = resnet_imagenet.model_input(input_tensor, input_shape, 32)
    x = image
    for stage, (filters, convs) in enumerate(_STAGES, start=1):
        for conv in range(1, convs + 1):
            layer = f"block{stage}_conv{conv}"
            x = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=layer
            )(x)
            x = keras.layers.BatchNormalization(name=f"{layer}_bn")(x)
            x = keras.layers.Activation("relu", name=f"{layer}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(512, use_bias=False, name="fc1")(x)
        x = keras.layers.BatchNormalization(name="fc1_bn")(x)
        x = keras.layers.Activation("relu", name="fc1_relu")(x)
        x = keras.layers.Dense(
            classes, activation=classifier_activation, name="predictions"
        )(x)
        pooling = None
    return resnet_imagenet.finish_model(image, input_tensor, x, pooling, name, weights)
