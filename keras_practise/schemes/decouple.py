"""Network decoupling recovered by PRACTISE (ResNet-50-DW-PW, reference [4]).

A regular KxK conv is a sum over its input channels of a KxK map per channel
followed by a channel mix. Per input channel c, the kernel slice
`W[:, :, c, :]` is a `(K*K, out)` matrix; its SVD `sum_t s_t u_t v_t^T`
splits it into `rank` depthwise KxK filters `sqrt(s_t) u_t` and pointwise
rows `sqrt(s_t) v_t`. A `DepthwiseConv2D` with `depth_multiplier=rank`
followed by a 1x1 conv computes exactly that truncated sum (exact when
`rank >= min(K*K, out)`). The depthwise part stays fixed; the pointwise conv
(a 1x1 conv: what an adaptor after it would fold into), identity adaptors
before the consuming convs and the BatchNorm between train to mimic the next
feature map.

With `rank=3`, decoupling every 3x3 conv of a torchvision ResNet-50 gives the
paper's 18.11 M parameters and 2.89 G MACs.
"""

import keras
import numpy as np

from keras_practise.graph import layer_kinds
from keras_practise.graph import surgery
from keras_practise.schemes import core
from keras_practise.schemes import layerwise


def candidates(model):
    """Foldable convs with a kernel larger than 1x1, in network order."""
    return [
        layer.name
        for layer in model.layers
        if layer_kinds.is_foldable_conv(layer) and tuple(layer.kernel_size) != (1, 1)
    ]


def decoupled_kernels(kernel, rank):
    """Depthwise and pointwise kernels whose composition approximates `kernel`.

    Args:
        kernel: `(kh, kw, in, out)` conv kernel.
        rank: Depthwise filters per input channel.

    Returns:
        `(depthwise, pointwise)`: `(kh, kw, in, rank)` and
        `(1, 1, in * rank, out)` arrays (`rank` capped at `min(kh*kw, out)`).
    """
    kh, kw, cin, cout = kernel.shape
    rank = min(rank, kh * kw, cout)
    depthwise = np.zeros((kh, kw, cin, rank), "float64")
    pointwise = np.zeros((cin, rank, cout), "float64")
    for c in range(cin):
        u, s, vt = np.linalg.svd(
            kernel[:, :, c, :].reshape(kh * kw, cout).astype("float64"),
            full_matrices=False,
        )
        root = np.sqrt(s[:rank])
        depthwise[:, :, c, :] = (u[:, :rank] * root).reshape(kh, kw, rank)
        pointwise[c] = root[:, None] * vt[:rank]
    # DepthwiseConv2D orders its outputs channel-major: c * rank + t.
    pointwise = pointwise.reshape(1, 1, cin * rank, cout)
    return depthwise.astype("float32"), pointwise.astype("float32")


def decoupled_layers(conv, rank):
    """The depthwise and pointwise layers that replace `conv`.

    Args:
        conv: A foldable KxK `Conv2D` (built).
        rank: Depthwise filters per input channel.

    Returns:
        `[depthwise, pointwise]`, built; the pointwise conv carries `conv`'s
        name, bias and activation.
    """
    weights = conv.get_weights()
    cin = conv.input.shape[-1]
    depthwise_kernel, pointwise_kernel = decoupled_kernels(weights[0], rank)
    rank = depthwise_kernel.shape[-1]
    depthwise = keras.layers.DepthwiseConv2D(
        conv.kernel_size,
        strides=conv.strides,
        padding=conv.padding,
        depth_multiplier=rank,
        dilation_rate=conv.dilation_rate,
        use_bias=False,
        name=f"{conv.name}_dw",
    )
    depthwise.build((None, None, None, cin))
    depthwise.set_weights([depthwise_kernel])
    pointwise = core.layer_like(
        conv,
        [pointwise_kernel] + weights[1:],
        cin * rank,
        kernel_size=(1, 1),
        strides=(1, 1),
        padding="valid",
        dilation_rate=(1, 1),
    )
    return [depthwise, pointwise]


def decouple_step(model, conv_name, rank):
    """The step that decouples `conv_name` into depthwise + pointwise.

    Args:
        model: The current flat model.
        conv_name: A name from `candidates(model)`.
        rank: Depthwise filters per input channel.

    Returns:
        A `core.Step`.
    """
    layers = decoupled_layers(model.get_layer(conv_name), rank)
    return core.replacement_step(
        model,
        conv_name,
        layers,
        trainable=(conv_name,),
        detail={"rank": layers[0].depth_multiplier},
    )


def _check(options):
    rank = options["rank"]
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(
            f"`rank` must be a positive integer for decoupling. Received: rank={rank!r}"
        )


def _plan(teacher, options):
    names = layerwise.chosen_layers("decouple", candidates(teacher), options["layers"])
    return names, lambda m, n, probe: decouple_step(m, n, options["rank"])


def _preview(teacher, options):
    names = layerwise.chosen_layers("decouple", candidates(teacher), options["layers"])
    replace = {
        n: core.applier(*decoupled_layers(teacher.get_layer(n), options["rank"]))
        for n in names
    }
    return surgery.rewrite(teacher, replace=replace)


SCHEME = layerwise.scheme(
    "decouple", _plan, _check,
    # More depthwise filters per channel than 8 rarely saves anything.
    knob=layerwise.Knob("rank", tuple(range(8, 0, -1)), _preview),
)
