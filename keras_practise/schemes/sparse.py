"""Unstructured sparsity recovered by PRACTISE (the earlier paper's Section 4.4).

Each conv keeps the largest-magnitude fraction of its kernel entries: a mask
`M`. The adaptor `U` (a 1x1 map over the output channels) enters *inside*
the mask: the conv computes with kernel `(W @ U) * M`, so while `U` trains
(with identity adaptors before the consuming convs and the BatchNorm between)
the mask holds, and folding gives a plain conv with kernel `(W @ U) * M` and
bias `b @ U`: as sparse as `M`, and exactly what was trained.

The default keeps half of each kernel (`sparsity=0.5`); the paper's
ImageNet setting, 0.9, leaves small networks near chance
(docs/results_fidelity.md).

Dense kernels with zeros run no faster on ordinary runtimes (Keras, XLA,
cuDNN, oneDNN): sparsity pays only on a sparse-aware runtime or in
compressed storage.
"""

import keras
import numpy as np

from keras_practise.graph import layer_kinds
from keras_practise.schemes import core
from keras_practise.schemes import layerwise


def candidates(model):
    """Every foldable conv, in network order."""
    return [layer.name for layer in model.layers if layer_kinds.is_foldable_conv(layer)]


def magnitude_mask(kernel, sparsity):
    """A 0/1 mask zeroing the `sparsity` fraction of smallest-magnitude entries."""
    count = int(round(sparsity * kernel.size))
    mask = np.ones(kernel.size, "float32")
    mask[np.argsort(np.abs(kernel).ravel(), kind="stable")[:count]] = 0
    return mask.reshape(kernel.shape)


class MaskedAdaptedConv(keras.layers.Layer):
    """A conv with kernel `(W @ U) * M`; only `U` trains.

    Used only inside the training sub-model; folding replaces it by a plain
    `Conv2D`, so no model this library returns contains it.

    Args:
        conv: The `Conv2D` to sparsify.
        mask: Its 0/1 mask.
    """

    def __init__(self, conv, mask, **kwargs):
        super().__init__(name=conv.name, **kwargs)
        # Plain values, not the layer: a tracked sub-layer would train too.
        self.conv_weights = conv.get_weights()
        self.mask_value = mask
        self.strides = conv.strides
        self.padding = conv.padding
        self.dilation_rate = conv.dilation_rate
        self.activation = conv.activation

    def build(self, input_shape):
        weights = self.conv_weights
        filters = weights[0].shape[-1]

        def constant(name, value, trainable=False):
            variable = self.add_weight(
                name=name, shape=value.shape, initializer="zeros", trainable=trainable
            )
            variable.assign(value)
            return variable

        self.kernel = constant("kernel", weights[0])
        self.mask = constant("mask", self.mask_value)
        self.bias = constant("bias", weights[1]) if len(weights) > 1 else None
        self.adaptor = constant("adaptor", np.eye(filters, dtype="float32"), True)

    def call(self, inputs):
        kernel = keras.ops.einsum("hwio,op->hwip", self.kernel, self.adaptor)
        outputs = keras.ops.conv(
            inputs,
            kernel * self.mask,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
        )
        if self.bias is not None:
            outputs = outputs + keras.ops.matmul(self.bias, self.adaptor)
        return self.activation(outputs)

    def folded_weights(self):
        """Plain conv weights: kernel `(W @ U) * M` and bias `b @ U`."""
        adaptor = keras.ops.convert_to_numpy(self.adaptor).astype("float64")
        kernel = self.conv_weights[0].astype("float64") @ adaptor
        weights = [(kernel * self.mask_value).astype("float32")]
        if self.bias is not None:
            bias = self.conv_weights[1].astype("float64")
            weights.append((bias @ adaptor).astype("float32"))
        return weights


def sparse_step(model, conv_name, sparsity):
    """The step that sparsifies `conv_name`'s kernel to `sparsity` zeros.

    Args:
        model: The current flat model.
        conv_name: A name from `candidates(model)`.
        sparsity: Fraction of kernel entries set to zero, in [0, 1).

    Returns:
        A `core.Step`.
    """
    conv = model.get_layer(conv_name)
    mask = magnitude_mask(conv.get_weights()[0], sparsity)
    layer = MaskedAdaptedConv(conv, mask)

    def finalize(trained):
        (masked,) = trained
        return [
            core.layer_like(conv, masked.folded_weights(), conv.input.shape[-1])
        ]

    return core.replacement_step(
        model,
        conv_name,
        [layer],
        trainable=(conv_name,),
        detail={"zeros": round(float(1 - mask.mean()), 4)},
        finalize=finalize,
    )


def sparsity_of(model, layer_names):
    """Fraction of zero kernel entries over the named convs."""
    zeros = total = 0
    for name in layer_names:
        kernel = model.get_layer(name).get_weights()[0]
        zeros += int(np.sum(kernel == 0))
        total += kernel.size
    return zeros / total if total else 0.0


def _check(options):
    sparsity = options["sparsity"]
    if not 0 <= sparsity < 1:
        raise ValueError(f"`sparsity` must be in [0, 1). Received: sparsity={sparsity}")


def _plan(teacher, options):
    names = layerwise.chosen_layers("sparse", candidates(teacher), options["layers"])
    return names, lambda m, n, probe: sparse_step(m, n, options["sparsity"])


SCHEME = layerwise.scheme(
    "sparse", _plan, _check,
    extra=lambda model, names: {"sparsity": sparsity_of(model, names)},
)
