"""Filter pruning recovered by PRACTISE (the earlier paper's Figures 2 and 4a/b).

A conv's output map shrinks from C to N channels: the N filters with the
largest L1 norm are kept (Li et al.'s criterion, the paper's starting point).
While the map trains, the conv keeps all C filters and a 1x1 adaptor (C -> N,
a column selection at first) follows it; the BatchNorm on the map keeps the
kept channels' parameters; a 1x1 adaptor (N -> C, putting the kept channels
back in place) precedes every conv reading the map. At initialisation this
student computes exactly what the plainly pruned network computes. The two
adaptors and the BatchNorm train to mimic the consuming convs' outputs, then
the first adaptor folds into the producing conv (N filters) and the second
into each consumer (N input channels).

Maps that only convs read can shrink this way: inside residual blocks (the
first conv of a basic block, the first two of a bottleneck, Figure 4a/b)
and along plain conv chains (VGG). The residual stream between blocks
(Figure 4c/d) shrinks as a whole: every conv writing it through the adds
(each block's last conv, the projection shortcut: the "extra" adaptor of
Figure 4d) gets the first adaptor, every conv reading it the second, and the
identity shortcuts carry the kept channels (`prunable_streams`).
"""

import keras
import numpy as np

from keras_practise.distillation import adaptors as adaptors_lib
from keras_practise.graph import flat_graph as graph_lib
from keras_practise.graph import layer_kinds
from keras_practise.graph import surgery
from keras_practise.recovery import fold as fold_lib
from keras_practise.schemes import core
from keras_practise.schemes import layerwise


def _on_map(model, chain):
    """The layers on `chain`'s map (adds written as `x + y` are operations,
    not layers, and carry no weights)."""
    layers = {layer.name: layer for layer in model.layers}
    return [layers[b] for b in chain.between if b in layers]


def _norms(model, chain):
    """Names of the BatchNorm layers on `chain`'s map."""
    return [
        layer.name
        for layer in _on_map(model, chain)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def _shrinkable(model, chain):
    """Whether `chain`'s map can shrink: only convs read it, and nothing with
    weights but BatchNorm (whose per-channel weights are sliced) is on it."""
    return chain.closed and all(
        isinstance(layer, keras.layers.BatchNormalization)
        or not graph_lib.weight_count(layer)
        for layer in _on_map(model, chain)
    )


def _producing_convs(model):
    return [
        layer.name
        for layer in model.layers
        if layer_kinds.is_foldable_conv(layer) and layer_kinds.has_linear_output(layer)
    ]


def prunable_maps(model):
    """Names of the convs whose output map can shrink, in network order.

    Args:
        model: A flat Functional model.

    Returns:
        Names of foldable convs without a fused activation whose map reaches
        only foldable convs through BatchNorm, activations, pooling or
        padding.
    """
    return [
        name
        for name in _producing_convs(model)
        if _shrinkable(model, core.follow(model, name))
    ]


def prunable_streams(model):
    """Residual streams that can shrink (Figure 4c/d), in network order.

    A stream is named by the first conv writing it (a stage's projection
    shortcut, or the stem conv before identity blocks); pruning it shrinks
    every conv writing it (`core.follow_stream`). A ResNet's last stream
    reaches the classifier and stays whole.

    Args:
        model: A flat Functional model.

    Returns:
        Names of the streams' first producing convs.
    """
    names, covered = [], set()
    for name in _producing_convs(model):
        if name in covered or _shrinkable(model, core.follow(model, name)):
            continue
        chain = core.follow_stream(model, name)
        covered.update(chain.producers)
        if _shrinkable(model, chain):
            names.append(chain.producers[0])
    return names


def kept_count(channels, keep):
    """Channels kept out of `channels` for a kept fraction `keep` (at least 1)."""
    return max(1, int(round(channels * keep)))


def l1_choice(kernels, count):
    """Indices (sorted) of the `count` channels with the largest L1 norm.

    Args:
        kernels: The kernels of the convs writing the map (one for a map
            inside a block, several for a stream). Each kernel's filter norms
            are divided by their sum first, so that no conv's scale decides
            for the others (for one conv this is Li et al.'s L1 choice).
        count: Channels to keep.

    Returns:
        A sorted integer array.
    """
    norms = 0
    for kernel in kernels:
        norm = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
        norms = norms + norm / max(float(norm.sum()), np.finfo("float32").tiny)
    return np.sort(np.argsort(-norms, kind="stable")[:count])


def filter_step(model, conv_name, keep):
    """The step that shrinks a map (or a stream) to a fraction `keep`.

    Args:
        model: The current flat model.
        conv_name: A name from `prunable_maps(model)` or
            `prunable_streams(model)`.
        keep: Fraction of the channels kept, in (0, 1].

    Returns:
        A `core.Step`.
    """
    chain = core.follow_stream(model, conv_name)
    convs = [model.get_layer(p) for p in chain.producers]
    channels = convs[0].filters
    count = kept_count(channels, keep)
    kept = l1_choice([c.get_weights()[0] for c in convs], count)
    select = np.eye(channels)[:, kept]
    out_names = {
        c.name: adaptors_lib.Site(c.name, adaptors_lib.AFTER, count).adaptor_name
        for c in convs
    }
    in_names = {
        q: adaptors_lib.Site(q, adaptors_lib.BEFORE, count).adaptor_name
        for q in chain.consumers
    }
    norms = _norms(model, chain)
    student = dict(
        after={p: adaptors_lib.linear_adaptor(n, select) for p, n in out_names.items()},
        before={
            q: adaptors_lib.linear_adaptor(name, select.T)
            for q, name in in_names.items()
        },
        weights={
            b: [w[kept] for w in model.get_layer(b).get_weights()] for b in norms
        },
    )

    def fold(trained):
        replace = {}
        for conv in convs:
            matrix = fold_lib.adaptor_matrix(trained.get_layer(out_names[conv.name]))
            replace[conv.name] = core.applier(core.layer_like(
                conv,
                fold_lib.folded_conv_weights(conv, after=matrix),
                conv.input.shape[-1],
                filters=count,
            ))
        weights = {b: trained.get_layer(b).get_weights() for b in norms}
        for q, name in in_names.items():
            weights[q] = fold_lib.folded_conv_weights(
                model.get_layer(q),
                before=fold_lib.adaptor_matrix(trained.get_layer(name)),
            )
        return dict(replace=replace, weights=weights)

    return core.Step(
        layer=conv_name,
        student=student,
        trainable=(*out_names.values(), *in_names.values(), *norms),
        targets=chain.consumers,
        fold=fold,
        detail={"channels": (channels, count), "convs": len(convs)},
    )


def resolve_keep(model, keep, layers=None):
    """Validates `keep` and `layers`, returning `{name: kept fraction}`.

    Args:
        model: The flat model.
        keep: One fraction for every chosen map, or a dict mapping names
            to fractions (then `layers` defaults to its keys).
        layers: Optional names from `prunable_maps` or `prunable_streams`;
            defaults to every prunable map inside the blocks (the papers'
            filter pruning; streams only when named).

    Returns:
        An ordered dict (network order).

    Raises:
        ValueError: If a fraction is outside (0, 1] or a layer is neither a
            prunable map nor a prunable stream.
        TypeError: If `keep` is neither a number nor a dict.
    """
    maps = prunable_maps(model)
    candidates = maps + prunable_streams(model)
    if isinstance(keep, dict):
        layers = list(keep) if layers is None else layers
        fractions = dict(keep)
    elif isinstance(keep, (int, float)):
        layers = maps if layers is None else list(layers)
        fractions = {name: keep for name in layers}
    else:
        raise TypeError(
            "`keep` must be a fraction or a dict of fractions per conv. "
            f"Received: keep={keep!r} of type {type(keep).__name__}"
        )
    unknown = [name for name in layers if name not in candidates]
    if unknown:
        raise ValueError(
            f"Cannot prune the filters of {unknown}: only maps read by convs "
            "alone can shrink, and a residual stream is named by its first "
            f"producing conv. Prunable maps: {maps}; streams: "
            f"{candidates[len(maps):]}"
        )
    missing = [name for name in layers if name not in fractions]
    if missing:
        raise ValueError(f"`keep` has no fraction for {missing}.")
    for name in layers:
        if not 0 < fractions[name] <= 1:
            raise ValueError(
                "Kept fractions must be in (0, 1]. Received: "
                f"keep[{name!r}]={fractions[name]}"
            )
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    return {name: fractions[name] for name in sorted(layers, key=order.get)}


def l1_pruned(model, keep, layers=None):
    """Prunes filters by L1 norm without recovery, in one rewrite.

    The same network that `compress(..., scheme="filters", steps=0)`
    returns (the paper's "before recovery" model), built without
    the per-layer passes, so that counting a large model is quick.

    Args:
        model: A Functional or Sequential model; not modified.
        keep: See `resolve_keep`.
        layers: See `resolve_keep`.

    Returns:
        A new Functional model.
    """
    flat = core.flat_copy(model)
    fractions = resolve_keep(flat, keep, layers)
    weights = {
        layer.name: layer.get_weights()
        for layer in flat.layers
        if graph_lib.weight_count(layer)
    }
    shrunk = set()
    for name, fraction in fractions.items():
        chain = core.follow_stream(flat, name)
        kernels = [weights[p][0] for p in chain.producers]
        kept = l1_choice(kernels, kept_count(kernels[0].shape[-1], fraction))
        for p in chain.producers:
            weights[p] = [weights[p][0][..., kept]] + [b[kept] for b in weights[p][1:]]
        shrunk.update(chain.producers)
        for b in chain.between:
            if b in weights:
                weights[b] = [w[kept] for w in weights[b]]
        for q in chain.consumers:
            weights[q] = [weights[q][0][:, :, kept, :]] + weights[q][1:]
    replace = {
        name: core.applier(
            core.layer_like(
                flat.get_layer(name),
                weights[name],
                weights[name][0].shape[2],
                filters=weights[name][0].shape[-1],
            )
        )
        for name in shrunk
    }
    return surgery.rewrite(flat, replace=replace, weights=weights, name=model.name)


def _resnet34_li_b():
    """Li et al.'s ResNet-34-pruned-B, the few-shot papers' "ResNet-34-50%".

    The first conv of the basic blocks, skipping the sensitive blocks 1, 4,
    7, 8 and 13-16 (layers 2, 8, 14, 16, 26, 28, 30, 32), pruning 50%, 60%
    and 40% of the filters in stages 1, 2 and 3.
    """
    keep = {}
    index = 0
    for stage, (blocks, fraction) in enumerate(((3, 0.5), (4, 0.4), (6, 0.6), (3, 1.0))):
        for block in range(1, blocks + 1):
            index += 1
            if index not in (1, 4, 7, 8, 13, 14, 15, 16):
                keep[f"conv{stage + 2}_block{block}_1_conv"] = fraction
    return keep


RESNET34_LI_B = _resnet34_li_b()


def _vgg16_cifar_half():
    """The earlier paper's CIFAR "VGG-16-50%" (its Table 16).

    Half the filters of every conv whose map only convs read except the
    first: `block1_conv2` to `block5_conv2` (`block5_conv3` feeds the
    classifier). The appendix gives only the totals (4.53 M parameters,
    91.11 M MACs); this choice gives 4.55 M / 91.69 M, where pruning
    `block1_conv1` too gives 95.5 M MACs.
    """
    stages = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    names = [f"block{s}_conv{c}" for s, n in stages for c in range(1, n + 1)]
    return {name: 0.5 for name in names[1:-1]}


VGG16_CIFAR_HALF = _vgg16_cifar_half()


def _plan(teacher, options):
    fractions = resolve_keep(teacher, options["keep"], options["layers"])
    return list(fractions), lambda m, n, probe: filter_step(m, n, fractions[n])


SCHEME = layerwise.scheme(
    "filters", _plan,
    knob=layerwise.Knob(
        "keep", layerwise.FRACTIONS,
        lambda teacher, options: l1_pruned(teacher, options["keep"], options["layers"]),
    ),
)
