"""Folding trained 1x1 adaptors into their convolutions.

An adaptor is a linear map `M` over channels. After a conv, `M` composes with
the conv's kernel and bias on the output side; before a conv, with the kernel
on the input side (zero padding commutes with `M`, which has no bias). Either
way the folded conv computes exactly what conv + adaptor computed.
"""

import keras
import numpy as np

from keras_practise.distillation import adaptors as adaptors_lib
from keras_practise.graph import surgery


def adaptor_matrix(adaptor):
    """The `(in_channels, out_channels)` matrix of a 1x1 adaptor layer."""
    return keras.ops.convert_to_numpy(adaptor.kernel)[0, 0]


def folded_conv_weights(conv, before=None, after=None):
    """Returns `conv`'s weights with adaptor matrices merged in.

    Args:
        conv: A `Conv2D` layer (channels_last, groups=1).
        before: Optional `(in_channels, in_channels)` matrix applied to the
            conv's input.
        after: Optional `(filters, filters)` matrix applied to its output.

    Returns:
        A list of weights in `conv.get_weights()` order.
    """
    weights = conv.get_weights()
    kernel = weights[0].astype("float64")
    if before is not None:
        kernel = np.einsum("ab,hwbo->hwao", before.astype("float64"), kernel)
    if after is not None:
        after = after.astype("float64")
        kernel = kernel @ after
        if conv.use_bias:
            weights[1] = (weights[1].astype("float64") @ after).astype("float32")
    weights[0] = kernel.astype("float32")
    return weights


def fold_adaptors(student, sites, name=None):
    """Returns a copy of `student` with every adaptor folded away.

    Args:
        student: A model built by `insert_adaptors` (possibly trained).
        sites: The `Site`s of its adaptors.
        name: Name of the folded model. Defaults to `student.name`.

    Returns:
        A Functional `keras.Model` with the layers of `drop_blocks(model,
        blocks)` that predicts what `student` predicts.
    """
    matrices = {}
    for site in sites:
        matrices.setdefault(site.conv, {})[site.side] = adaptor_matrix(
            student.get_layer(site.adaptor_name)
        )
    weights = {
        conv: folded_conv_weights(
            student.get_layer(conv),
            before=sides.get(adaptors_lib.BEFORE),
            after=sides.get(adaptors_lib.AFTER),
        )
        for conv, sides in matrices.items()
    }
    return surgery.rewrite(
        student,
        bypass=[site.adaptor_name for site in sites],
        weights=weights,
        name=name,
    )
