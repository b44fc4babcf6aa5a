"""Low-rank decomposition recovered by PRACTISE (ResNet-50-LRD, reference [13]).

A KxK conv's responses `z` (out channels) mostly live in a low-dimensional
subspace. With the mean `mu` and the top `r` principal directions `V`
(`out x r`) of the responses on the tiny set, `z ~ V V^T z + (I - V V^T) mu`:
a KxK conv with `r` filters (kernel `W V`) followed by a 1x1 conv (kernel
`V^T`, bias `(I - V V^T) mu`). The rank is the smallest number of components
whose explained-variance ratio adds up to more than `energy` (scikit-learn's
`PCA(n_components=energy)` rule; the paper keeps components "where the PCA
energy ratio is greater than 0.4", i.e. `energy=0.4`, on ImageNet; the
default is 0.95, since 0.4 removes ~95% of a small network's MACs and leaves
it near chance, docs/results_fidelity.md), or a given fraction of the
channels. The 1x1 conv, identity adaptors before the consuming convs and
the BatchNorm between then train to mimic the next feature map.
"""

import numpy as np

from keras_practise.graph import layer_kinds
from keras_practise.graph import surgery
from keras_practise.schemes import core
from keras_practise.schemes import layerwise

# Rows of responses used for the PCA: enough for a stable covariance of a few
# hundred channels, small enough for memory.
_MAX_ROWS = 200_000


def candidates(model):
    """Foldable 3x3 convs without a fused activation, in network order."""
    return [
        layer.name
        for layer in model.layers
        if layer_kinds.is_foldable_conv(layer)
        and tuple(layer.kernel_size) == (3, 3)
        and layer_kinds.has_linear_output(layer)
    ]


def principal_components(responses, seed=0):
    """Mean, eigenvalues (descending) and eigenvectors of response channels."""
    rows = responses.reshape(-1, responses.shape[-1]).astype("float64")
    if len(rows) > _MAX_ROWS:
        pick = np.random.default_rng(seed).choice(len(rows), _MAX_ROWS, replace=False)
        rows = rows[pick]
    mean = rows.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(rows - mean, rowvar=False))
    order = np.argsort(values)[::-1]
    return mean, np.clip(values[order], 0, None), vectors[:, order]


def energy_rank(eigenvalues, energy):
    """Fewest components whose explained-variance ratio sums above `energy`."""
    total = eigenvalues.sum()
    if total <= 0:
        return 1
    cumulative = np.cumsum(eigenvalues) / total
    rank = int(np.searchsorted(cumulative, energy, side="right")) + 1
    return min(rank, len(eigenvalues))


def lowrank_layers(conv, mean, basis):
    """The reduced KxK conv and the 1x1 conv that replace `conv`.

    Args:
        conv: A foldable `Conv2D` without a fused activation (built).
        mean: Mean of its responses, `(filters,)`.
        basis: Orthonormal principal directions, `(filters, rank)`.

    Returns:
        `[reduce, expand]`, built; `expand` carries `conv`'s name.
    """
    weights = conv.get_weights()
    rank = basis.shape[1]
    reduce = core.layer_like(
        conv,
        [(weights[0].astype("float64") @ basis).astype("float32")]
        + [(b.astype("float64") @ basis).astype("float32") for b in weights[1:]],
        conv.input.shape[-1],
        name=f"{conv.name}_reduce",
        filters=rank,
    )
    expand = core.layer_like(
        conv,
        [
            basis.T[None, None].astype("float32"),
            (mean - basis @ (basis.T @ mean)).astype("float32"),
        ],
        rank,
        kernel_size=(1, 1),
        strides=(1, 1),
        padding="valid",
        dilation_rate=(1, 1),
        use_bias=True,
    )
    return [reduce, expand]


def lowrank_step(model, conv_name, responses, energy=0.95, rank=None):
    """The step that decomposes `conv_name` by PCA of its `responses`.

    Args:
        model: The current flat model.
        conv_name: A name from `candidates(model)`.
        responses: The conv's outputs on the tiny set (NHWC).
        energy: Explained-variance ratio to exceed.
        rank: Optional fraction of the output channels (in (0, 1]) or
            number of components, used instead of `energy`.

    Returns:
        A `core.Step`.
    """
    conv = model.get_layer(conv_name)
    mean, eigenvalues, vectors = principal_components(responses)
    if rank is None:
        count = energy_rank(eigenvalues, energy)
    elif isinstance(rank, float):
        count = max(1, int(round(rank * conv.filters)))
    else:
        count = rank
    count = min(count, conv.filters)
    kept = eigenvalues[:count].sum() / max(eigenvalues.sum(), 1e-30)
    return core.replacement_step(
        model,
        conv_name,
        lowrank_layers(conv, mean, vectors[:, :count]),
        trainable=(conv_name,),
        detail={"rank": (conv.filters, count), "energy": round(float(kept), 4)},
    )


def _check(options):
    energy, rank = options["energy"], options["rank"]
    if not 0 < energy <= 1:
        raise ValueError(f"`energy` must be in (0, 1]. Received: energy={energy}")
    if rank is not None and not (
        (isinstance(rank, float) and 0 < rank <= 1)
        or (isinstance(rank, int) and rank >= 1)
    ):
        raise ValueError(
            "`rank` must be a fraction in (0, 1], a positive integer or None. "
            f"Received: rank={rank!r}"
        )


def _plan(teacher, options):
    names = layerwise.chosen_layers("lowrank", candidates(teacher), options["layers"])

    def make_step(model, name, probe):
        responses = probe([model.get_layer(name).output])[0]
        return lowrank_step(model, name, responses, options["energy"], options["rank"])

    return names, make_step


def _preview(teacher, options):
    """The layers and shapes of the decomposition at `rank`, any basis."""
    names = layerwise.chosen_layers("lowrank", candidates(teacher), options["layers"])
    replace = {}
    for name in names:
        conv = teacher.get_layer(name)
        count = min(conv.filters, max(1, int(round(options["rank"] * conv.filters))))
        basis = np.eye(conv.filters)[:, :count]
        replace[name] = core.applier(
            *lowrank_layers(conv, np.zeros(conv.filters), basis)
        )
    return surgery.rewrite(teacher, replace=replace)


SCHEME = layerwise.scheme(
    "lowrank", _plan, _check,
    knob=layerwise.Knob("rank", layerwise.FRACTIONS, _preview),
)
