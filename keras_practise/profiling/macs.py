"""Multiply-accumulate (MAC) and parameter counts of Keras models.

MACs are what the PRACTISE tables call "FLOPs"/"MACs" (e.g. 3.66 G for
ResNet-34 at 224x224): one multiply-accumulate per weight use of a
convolution or dense layer, for one image.
"""

import dataclasses
import math
import warnings

import keras

from keras_practise.graph import flat_graph as graph_lib
from keras_practise.utils import text_table

_CONV_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)
_CONV_TRANSPOSE_LAYERS = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_SEPARABLE_LAYERS = (
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


@dataclasses.dataclass(frozen=True)
class MacsRow:
    """MACs and parameters of one layer call.

    Attributes:
        name: Layer name.
        class_name: Layer class name, e.g. `"Conv2D"`.
        output_shape: Output shape of the call, batch dimension included
            (the first output's, for layers with several).
        macs: Multiply-accumulates of the call for one sample.
        params: Number of weights of the layer (trainable and
            non-trainable) at its first call, 0 at later calls of a shared
            layer.
    """

    name: str
    class_name: str
    output_shape: tuple
    macs: int
    params: int


@dataclasses.dataclass(frozen=True)
class MacsReport:
    """Per-layer MACs of a model, printable as a table.

    Attributes:
        total: Total multiply-accumulates for one sample.
        rows: One `MacsRow` per layer call, in topological order, with
            nested models expanded.
    """

    total: int
    rows: list

    def to_table(self):
        """Formats the rows and the total as a fixed-width text table.

        Returns:
            A string, one line per layer plus a header and a total line.
        """
        header = ("Layer", "Class", "Output shape", "MACs", "Params")
        lines = [
            (
                row.name,
                row.class_name,
                str(row.output_shape),
                f"{row.macs:,}",
                f"{row.params:,}",
            )
            for row in self.rows
        ]
        total_params = sum(row.params for row in self.rows)
        footer = ("Total", "", "", f"{self.total:,}", f"{total_params:,}")
        return text_table.format_table(
            [header, *lines, footer],
            right_aligned=(3, 4),
            rules_after=(0, len(lines)),
        )

    def __str__(self):
        return self.to_table()


def _spatial_dims(shape, data_format, layer, which):
    """Returns the spatial dims of a batched conv tensor shape."""
    dims = shape[2:] if data_format == "channels_first" else shape[1:-1]
    _check_known(dims, layer, which, shape)
    return dims


def _check_known(dims, layer, which, shape):
    if any(d is None for d in dims):
        raise ValueError(
            "Cannot count MACs with unknown input dimensions: pass a model "
            "with a fixed input size, e.g. built on "
            "`keras.Input(shape=(224, 224, 3))`. "
            f"Received: layer '{layer.name}' with {which} shape "
            f"{tuple(shape)}"
        )


def _call_macs(layer, input_shape, output_shape):
    """MACs of one call of a layer, for a batch of one."""
    if isinstance(layer, _SEPARABLE_LAYERS):
        # The depthwise and the pointwise kernels both run at every output
        # position (the stride applies to the depthwise step).
        positions = math.prod(
            _spatial_dims(output_shape, layer.data_format, layer, "output")
        )
        return positions * (
            math.prod(layer.depthwise_kernel.shape)
            + math.prod(layer.pointwise_kernel.shape)
        )
    if isinstance(layer, _CONV_LAYERS):
        # Each output position uses every kernel weight once: kernel shape is
        # (*kernel_size, in_channels / groups, out_channels) for convolutions
        # and (*kernel_size, in_channels, depth_multiplier) for depthwise.
        positions = math.prod(
            _spatial_dims(output_shape, layer.data_format, layer, "output")
        )
        return positions * math.prod(layer.kernel.shape)
    if isinstance(layer, _CONV_TRANSPOSE_LAYERS):
        # Each input position scatters through every kernel weight once.
        positions = math.prod(
            _spatial_dims(input_shape, layer.data_format, layer, "input")
        )
        return positions * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.Dense):
        # Dense on a (batch, ..., features) input applies the kernel at every
        # position of the middle dimensions.
        _check_known(input_shape[1:-1], layer, "input", input_shape)
        return math.prod(input_shape[1:-1]) * math.prod(layer.kernel.shape)
    return 0


def _counted(layer):
    return isinstance(
        layer,
        _SEPARABLE_LAYERS + _CONV_LAYERS + _CONV_TRANSPOSE_LAYERS + (keras.layers.Dense,),
    )


def _sublayers(layer, seen=None):
    """The layers held in `layer`'s attributes (and lists of them), deeply,
    each once (layers that refer to each other do not loop)."""
    seen = {id(layer)} if seen is None else seen
    found = []
    for value in vars(layer).values():
        values = value if isinstance(value, (list, tuple)) else [value]
        for sub in values:
            if isinstance(sub, keras.layers.Layer) and id(sub) not in seen:
                seen.add(id(sub))
                found += [sub] + _sublayers(sub, seen)
    return found


def _inner_macs(layer, input_shape):
    """MACs of the counted layers that a custom layer calls inside `call`.

    A block written as one `Layer` subclass (KerasHub's MobileNetV3
    `InvertedResidualBlock`) hides its convolutions from the graph; its
    `call` is run once on zeros, batch of one, while each counted sublayer
    records the shapes it is called with.
    """
    inner = [sub for sub in _sublayers(layer) if _counted(sub)]
    if (
        not inner
        or not isinstance(input_shape, tuple)
        or any(d is None for d in input_shape[1:])
    ):
        return 0
    calls = []

    def recording(sub, call):
        def record(inputs, *args, **kwargs):
            outputs = call(inputs, *args, **kwargs)
            calls.append((sub, tuple(inputs.shape), tuple(outputs.shape)))
            return outputs

        return record

    for sub in inner:
        sub.call = recording(sub, sub.call)
    try:
        layer(keras.ops.zeros((1,) + input_shape[1:], dtype=layer.compute_dtype))
    except Exception as error:  # A user's layer may reject a probe input.
        warnings.warn(
            f"The MACs inside layer '{layer.name}' ({type(layer).__name__}) "
            f"are counted as 0: calling it on zeros of shape "
            f"{(1,) + input_shape[1:]} failed ({type(error).__name__}: {error}).",
            stacklevel=3,
        )
        return 0
    finally:
        for sub in inner:
            del sub.call
    return sum(_call_macs(sub, i, o) for sub, i, o in calls)


def count_macs(model, per_layer=False):
    """Counts the multiply-accumulates of one forward pass for one sample.

    Counted layers: `Conv1D`/`Conv2D`/`Conv3D` (grouped included),
    `DepthwiseConv1D`/`DepthwiseConv2D`, `SeparableConv1D`/`SeparableConv2D`,
    `Conv1DTranspose`/`Conv2DTranspose`/`Conv3DTranspose` and `Dense`
    (on inputs of any rank), including layers of Functional or Sequential
    models nested in `model` and those a custom layer calls inside its
    `call` (found among its attributes; the layer is run once on zeros to
    see their shapes). Bias additions, BatchNormalization,
    activations, pooling, element-wise adds and every other layer count as
    0, the convention of the PRACTISE tables (ResNet-34: 3.66 G).

    Every call of a layer is counted with the shapes of that call in the
    model graph, so a layer applied twice (shared weights) counts twice.

    Args:
        model: A Functional or Sequential `keras.Model` with a fixed input
            size.
        per_layer: Whether to return a per-layer `MacsReport` instead of the
            total. Defaults to `False`.

    Returns:
        The total MACs as an `int`, or a `MacsReport` (total plus one row per
        layer call, printable as a table) when `per_layer=True`.

    Raises:
        TypeError: If `model` is not a Functional or Sequential model.
        ValueError: If a Sequential model has no input shape yet, a nested
            model is called more than once, or a counted layer sees an
            unknown (None) dimension.

    Example:

    ```python
    model = keras.applications.VGG16(weights=None)
    count_macs(model)  # 15_470_264_320, i.e. 15.47 G
    print(count_macs(model, per_layer=True))
    ```
    """
    rows = []
    seen = set()
    for flat_node in graph_lib.FlatGraph(model).nodes:
        layer = flat_node.layer
        input_shape = flat_node.inputs[0].shape if flat_node.inputs else None
        output_shape = flat_node.outputs[0].shape
        # Weights are listed at a layer's first call only, so that the
        # params column sums to the model's parameter count.
        params = 0 if id(layer) in seen else graph_lib.weight_count(layer)
        seen.add(id(layer))
        rows.append(
            MacsRow(
                name=layer.name,
                class_name=type(layer).__name__,
                output_shape=tuple(output_shape),
                macs=int(
                    _call_macs(layer, input_shape, output_shape)
                    if _counted(layer)
                    else _inner_macs(layer, input_shape)
                ),
                params=params,
            )
        )
    total = sum(row.macs for row in rows)
    if per_layer:
        return MacsReport(total=total, rows=rows)
    return total


def count_params(model):
    """Counts all weights of a model, trainable and non-trainable.

    BatchNormalization moving statistics are included, as in
    `model.count_params()`; PyTorch parameter counts exclude them.

    Args:
        model: A built `keras.Model`.

    Returns:
        The number of weights as an `int`.

    Raises:
        TypeError: If `model` is not a `keras.Model`.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` should be a keras.Model. Received: model={model!r}"
        )
    return int(model.count_params())
