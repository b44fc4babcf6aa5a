"""The layer-wise engine that every compression scheme shares.

The earlier PRACTISE paper (Sections 3.1-3.3) recovers any scheme that
compresses a network layer by layer the same way: the compressed layer gets
trainable 1x1 convolutions around it, only those (and the BatchNorm between
them, whose statistics are updated) train to make the *next* feature map
match the teacher's, and then they fold into the neighbouring convolutions.

A scheme describes one layer's step as a `Step`: how the layer looks while it
trains (a `surgery.rewrite` of the current network), which layers train,
which feature maps to mimic, and how to fold the trained layers into the
compressed form. `run_steps` does the rest, in network order: each step
starts from the network with all earlier steps already folded (so its input
carries their remaining error, which the step can correct), trains on a
sub-network from the last cut before the layer, folds, and checks that the
folded network computes what the trained one computed.
"""

import dataclasses
import functools
import math

import keras
import numpy as np

from keras_practise.distillation import adaptors as adaptors_lib
from keras_practise.distillation import inference
from keras_practise.distillation import memory as memory_lib
from keras_practise.distillation import trainer
from keras_practise.graph import flat_graph as graph_lib
from keras_practise.graph import layer_kinds
from keras_practise.graph import surgery
from keras_practise.graph import taps
from keras_practise.recovery import fold as fold_lib

# Batch size of the forward passes that compute activations.
_BATCH = 64
# A step whose inputs and targets would exceed the memory given to them
# keeps evenly spaced views, but at least this many of each split.
MIN_VIEWS = 32

# Layers a feature map passes on its way from one conv to the next without
# mixing channels.
_CHANNELWISE = layer_kinds.NORM_AND_ACTIVATION + layer_kinds.POOLING + (
    keras.layers.ZeroPadding2D,
)


@dataclasses.dataclass(frozen=True)
class Chain:
    """Where conv output maps go before channels get mixed again.

    Attributes:
        producers: Names of the convs producing the map, in network order
            (one, or several whose outputs residual adds join: `follow_stream`).
        between: Names of the channel-wise layers (BatchNorm, activations,
            pooling, padding, and for a stream the adds) the map passes, in
            call order.
        consumers: Names of the foldable convs that read the map.
        ends: Names of the layers whose outputs leave the chain elsewhere
            (a residual add, a concatenation, the classifier, the model
            output); empty when only convs read the map.
    """

    producers: tuple
    between: tuple
    consumers: tuple
    ends: tuple

    @property
    def closed(self):
        """Whether only convs read the map (it can shrink and be restored)."""
        return bool(self.consumers) and not self.ends

    @property
    def targets(self):
        """Layers whose outputs are the next feature map to mimic."""
        return self.consumers + self.ends


def follow(model, conv_name):
    """Follows a conv's output through channel-wise layers (see `Chain`).

    Args:
        model: A flat Functional model (every layer called once).
        conv_name: Name of the conv.

    Returns:
        A `Chain`.
    """
    graph = graph_lib.FlatGraph(model)
    between, consumers, ends = [], [], []
    outputs = {id(t) for t in graph.outputs}

    def walk(tensor, producer):
        readers = graph.consumers.get(id(tensor), [])
        if not readers or id(tensor) in outputs:
            ends.append(producer)
        for index in readers:
            layer = graph.nodes[index].layer
            if layer_kinds.is_foldable_conv(layer):
                consumers.append(layer.name)
            elif isinstance(layer, _CHANNELWISE) and len(graph.nodes[index].inputs) == 1:
                between.append(layer.name)
                walk(graph.nodes[index].outputs[0], layer.name)
            elif producer not in ends:
                ends.append(producer)

    walk(model.get_layer(conv_name).output, conv_name)
    return Chain((conv_name,), tuple(between), tuple(consumers), tuple(ends))


def follow_stream(model, conv_name):
    """Follows a conv's output map through channel-wise layers *and* adds.

    The residual stream between blocks (the earlier paper's Figure 4c/d) is
    one feature map that several convs write (the last conv of every block,
    a projection shortcut) through residual adds, and several convs read
    (the first conv of every block, the next stage's projection). Pruning it
    shrinks all of them together; the identity shortcuts then carry the
    kept channels. Starting from one producer, this collects the connected
    map: forward to its readers, and backward from every add to the other
    convs writing into it. For a map that no add joins, it is `follow`.

    Args:
        model: A flat Functional model (every layer called once).
        conv_name: Name of one conv writing the map.

    Returns:
        A `Chain`; a conv that both reads and writes the map is an end.
    """
    graph = graph_lib.FlatGraph(model)
    outputs = {id(t) for t in graph.outputs}
    inputs = {id(t) for t in graph.inputs}
    start = graph.producer[id(model.get_layer(conv_name).output)]
    producers, between, consumers, ends = {start}, set(), set(), []
    pending, seen = list(graph.nodes[start].outputs), set()

    def joins(index):
        node = graph.nodes[index]
        return graph_lib.is_add(node.layer) or (
            isinstance(node.layer, _CHANNELWISE) and len(node.inputs) == 1
        )

    def enter(index):
        if index not in between:
            between.add(index)
            pending.extend(graph.nodes[index].inputs + graph.nodes[index].outputs)

    while pending:
        tensor = pending.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        if id(tensor) in outputs or id(tensor) in inputs:
            ends.append(graph_lib.tensor_key(tensor))
        for index in graph.consumers.get(id(tensor), []):
            layer = graph.nodes[index].layer
            if layer_kinds.is_foldable_conv(layer):
                consumers.add(index)
            elif joins(index):
                enter(index)
            else:
                ends.append(layer.name)
        index = graph.producer.get(id(tensor))
        if index is None:
            continue
        layer = graph.nodes[index].layer
        if layer_kinds.is_foldable_conv(layer) and layer_kinds.has_linear_output(layer):
            if index not in producers:
                producers.add(index)
                pending.extend(graph.nodes[index].outputs)
        elif joins(index):
            enter(index)
        else:
            ends.append(layer.name)
    ends += [graph.nodes[i].layer.name for i in producers & consumers]

    def names(indices):
        return tuple(graph.nodes[i].layer.name for i in sorted(indices))

    return Chain(
        names(producers), names(between), names(consumers - producers),
        tuple(dict.fromkeys(ends)),
    )


def layer_like(template, weights, input_channels, name=None, **overrides):
    """A built copy of `template` with changed config and the given weights.

    Args:
        template: The layer to copy (e.g. a conv).
        weights: Its new weights, in `get_weights()` order.
        input_channels: Channels of the input it will be called on.
        name: Optional new name.
        **overrides: Config entries to change (e.g. `filters=32`).

    Returns:
        A built layer.
    """
    layer = graph_lib.clone_layer(template, name=name, **overrides)
    layer.build((None, None, None, input_channels))
    layer.set_weights(weights)
    return layer


def applier(*layers):
    """A callable that applies `layers` in order (for `rewrite(replace=)`)."""

    def apply(tensor):
        for layer in layers:
            tensor = layer(tensor)
        return tensor

    return apply


@dataclasses.dataclass
class Step:
    """One layer's compression step.

    Attributes:
        layer: Name of the compressed layer.
        student: Keyword arguments of `surgery.rewrite` (`replace`, `before`,
            `after`, `weights`) that turn the current network into the
            student of this step; the trainable layers it creates are
            initialised so that the student equals the plainly compressed
            layer.
        trainable: Names of the layers that train (adaptors, pointwise
            convs, and the BatchNorm layers between them).
        targets: Names of the layers whose outputs the student mimics.
        fold: Callable `trained_student -> rewrite kwargs` giving the
            compressed form of the layer with the trained layers folded in.
        detail: What the step kept (channels, rank, sparsity), for the report.
    """

    layer: str
    student: dict
    trainable: tuple
    targets: tuple
    fold: object
    detail: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class StepRecord:
    """What one step achieved.

    Attributes:
        layer: Name of the compressed layer.
        detail: The step's `detail`.
        mse_init: Next-feature-map MSE on the eval views before training.
        mse_trained: The same after training.
        fold_error: Max abs difference between the trained student and the
            folded network on the eval views (exactness check).
        batchnorm: `"updated"` (trained in training mode, statistics set to
            the data's, as in the paper), `"frozen"` (kept in inference mode
            because updating them did worse) or `"none"`.
        curve: `(step, loss)` pairs of the training.
    """

    layer: str
    detail: dict
    mse_init: float
    mse_trained: float
    fold_error: float
    batchnorm: str
    curve: list


def flat_copy(model):
    """A flat Functional copy of `model` with unique layer names."""
    return surgery.rewrite(model)


def activations(model, tensors, x, batch_size=_BATCH):
    """`model`'s values of `tensors` on `x` (a list of arrays)."""
    if len(tensors) == 1 and tensors[0] is graph_lib.FlatGraph(model).inputs[0]:
        return [x]
    return inference.activations(taps.tap_model(model, tensors), x, batch_size)


def _mse(model, x, targets, batch_size):
    """Mean over the outputs of each output's MSE against its target."""
    predictions = inference.activations(model, x, batch_size)
    return float(
        np.mean([np.mean((p - t) ** 2) for p, t in zip(predictions, targets)])
    )


def recalibrate_batchnorm(model, names, x, batch_size=_BATCH):
    """Sets the moving statistics of BatchNorm layers to their data statistics.

    Trained in training mode, a step's BatchNorm normalises by batch
    statistics; its moving averages lag behind. Their exact values on the
    training views make inference match what was trained.
    """
    norms = [
        model.get_layer(n)
        for n in names
        if isinstance(model.get_layer(n), keras.layers.BatchNormalization)
    ]
    if not norms:
        return
    probe = keras.Model(model.input, [layer.input for layer in norms])
    values = inference.activations(probe, x, batch_size)
    for layer, value in zip(norms, values):
        axes = tuple(range(value.ndim - 1))
        layer.moving_mean.assign(value.mean(axis=axes))
        layer.moving_variance.assign(value.var(axis=axes))


def _view_bytes(model, tensors, x):
    """Bytes `model`'s values of `tensors` take per view of `x`."""
    elements = memory_lib.elements_per_sample(tensors)
    if elements is not None:
        return 4 * elements  # float32 values (fewer bytes under mixed precision).
    # A size known only once run (a dynamic input size): one view tells.
    return sum(a.nbytes for a in activations(model, tensors, x[:1]))


def thin_views(views, view_bytes, max_bytes):
    """The views whose per-layer values fit `max_bytes`.

    Each split keeps evenly spaced views (views are grouped by image, so
    the kept ones spread over the images): at least `MIN_VIEWS` (or all it has), the
    others the same share of theirs, what fits beside those minimums.

    Args:
        views: Dict of split name -> NHWC array.
        view_bytes: Bytes a step holds per view (its inputs and targets).
        max_bytes: Bytes those may take in all (`math.inf`: no bound).

    Returns:
        A dict like `views`, the same arrays where they fit.
    """
    total = view_bytes * sum(len(v) for v in views.values())
    if total <= max_bytes:
        return views
    share = max_bytes / total
    least = {s: min(len(x), MIN_VIEWS) for s, x in views.items()}
    floor = {s for s, x in views.items() if len(x) * share < least[s]}
    if floor and len(floor) < len(views):
        room = max_bytes - view_bytes * sum(least[s] for s in floor)
        rest = sum(len(x) for s, x in views.items() if s not in floor)
        share = max(0, room) / (view_bytes * rest)
    thinned = {}
    for split, x in views.items():
        keep = max(least[split], math.floor(len(x) * share))
        if keep < len(x):
            x = x[np.linspace(0, len(x) - 1, keep).round().astype(int)]
        thinned[split] = x
    return thinned


def _probe(model, x, max_bytes, tensors):
    x = thin_views({"train": x}, _view_bytes(model, tensors, x), max_bytes)["train"]
    return activations(model, tensors, x)


def _norms(model, names):
    return [
        n
        for n in names
        if n in {layer.name for layer in model.layers}
        and isinstance(model.get_layer(n), keras.layers.BatchNormalization)
    ]


def _targets(teacher, current, names, x):
    """Values of the target layers' outputs on `x`, the teacher's where it can.

    A map that an earlier step shrank (a pruned residual stream's writers)
    has no teacher counterpart of its width; its target is the current
    network's value, which that step trained to serve the teacher's next maps.
    """
    same = [
        teacher.get_layer(n).output.shape == current.get_layer(n).output.shape
        for n in names
    ]
    values = {}
    for source, wanted in ((teacher, True), (current, False)):
        chosen = [n for n, s in zip(names, same) if s == wanted]
        if chosen:
            tensors = [source.get_layer(n).output for n in chosen]
            values.update(zip(chosen, activations(source, tensors, x)))
    return [values[n] for n in names]


def _train_step(current, step, cut, inputs, targets, config, freeze_norms):
    """Trains one step's student; returns it with its MSE before and after."""
    student = surgery.rewrite(
        current,
        start=cut,
        outputs=[current.get_layer(t).output for t in step.targets],
        **step.student,
    )
    mse_init = _mse(student, inputs["eval"], targets["eval"], _BATCH)
    curve = []
    if config is not None:
        norms = _norms(current, step.trainable)
        trainable = [n for n in step.trainable if not (freeze_norms and n in norms)]
        trainer.set_trainable(student, "adaptors", trainable)
        curve = trainer.fit_or_skip(
            student,
            inputs["train"],
            targets["train"],
            ["mse"] * len(step.targets),
            config,
            normalize=True,
        )
        if not freeze_norms:
            recalibrate_batchnorm(student, norms, inputs["train"], _BATCH)
    mse_trained = _mse(student, inputs["eval"], targets["eval"], _BATCH)
    return student, mse_init, mse_trained, curve


def run_steps(
    teacher, layer_names, make_step, views, config, verbose=0, max_bytes=math.inf
):
    """Compresses `teacher` layer by layer in network order.

    Each step mimics the teacher's next feature maps; where an earlier step
    shrank one of them (a pruned stream), the network's value before the
    step (`_targets`).

    Args:
        teacher: A flat Functional model (from `flat_copy`); not modified.
        layer_names: Names of the layers to compress, in network order.
        make_step: Callable `(current_model, layer_name, probe) -> Step`;
            `probe(tensors)` returns the current model's values of `tensors`
            on the training views (e.g. responses for a PCA).
        views: Dict with `"train"` and `"eval"` NHWC arrays.
        config: A `trainer.TrainConfig` for each step, or `None` to fold the
            initial (untrained) step.
        verbose: 0 silent, 1 one line per step.
        max_bytes: Memory for one step's inputs and targets on the views
            (and a probe's values); a layer whose values would take more
            uses fewer views (`thin_views`).

    Returns:
        A tuple `(compressed_model, [StepRecord, ...])`.
    """
    batch_size = _BATCH
    current = teacher
    records = []
    for name in layer_names:
        probe = functools.partial(_probe, current, views["train"], max_bytes)
        step = make_step(current, name, probe)
        cut = taps.frozen_prefix_cut(current, [name])
        held = [cut] + [current.get_layer(t).output for t in step.targets]
        fit = thin_views(views, _view_bytes(current, held, views["eval"]), max_bytes)
        inputs = {s: activations(current, [cut], v, batch_size)[0] for s, v in fit.items()}
        targets = {s: _targets(teacher, current, step.targets, v) for s, v in fit.items()}
        trained = _train_step(current, step, cut, inputs, targets, config, False)
        student, mse_init, mse_trained, curve = trained
        batchnorm = "updated" if _norms(current, step.trainable) else "none"
        if config is not None and mse_trained > mse_init and batchnorm == "updated":
            # Statistics of a tiny set that the teacher's do not match (other
            # domain, untrained statistics) can make updating them hurt:
            # train again with them frozen and keep the better result.
            retry = make_step(current, name, probe)
            again = _train_step(current, retry, cut, inputs, targets, config, True)
            if again[2] < mse_trained:
                step, batchnorm = retry, "frozen"
                student, _, mse_trained, curve = again
        current = surgery.rewrite(current, **step.fold(student))
        folded = surgery.rewrite(
            current,
            # The same cut: a layer the fold adds may create a later one.
            start=current.get_layer(graph_lib.tensor_key(cut)).output,
            outputs=[current.get_layer(t).output for t in step.targets],
        )
        fold_error = max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(
                inference.activations(student, inputs["eval"], batch_size),
                inference.activations(folded, inputs["eval"], batch_size),
            )
        )
        records.append(
            StepRecord(
                name, step.detail, mse_init, mse_trained, fold_error, batchnorm, curve
            )
        )
        if verbose:
            print(
                f"{name}: {step.detail} next-map MSE {mse_init:.4g} -> "
                f"{mse_trained:.4g}, fold error {fold_error:.2g}"
            )
    return current, records


def copy_layer(layer):
    """A built copy of a trained single-input layer, with its weights."""
    return layer_like(layer, layer.get_weights(), layer.input.shape[-1])


def replacement_step(model, conv_name, layers, trainable, detail, finalize=None):
    """The step that replaces a conv by a small stack of new layers.

    The conv's map keeps its channels, so besides the new layers' trainable
    part only identity adaptors before the consuming convs (folded into
    them afterwards) and the BatchNorm layers between train.

    Args:
        model: The current flat model.
        conv_name: Name of the replaced conv.
        layers: The new built layers, applied in order; the last one should
            carry `conv_name` so that later steps and targets find the map.
        trainable: Names of the new layers that train.
        detail: The step's `detail`.
        finalize: Optional callable `trained_layers -> layers` giving the
            plain layers of the compressed form. Defaults to copies.

    Returns:
        A `Step`.
    """
    chain = follow(model, conv_name)
    channels = model.get_layer(conv_name).filters
    in_names = {
        q: adaptors_lib.Site(q, adaptors_lib.BEFORE, channels).adaptor_name
        for q in chain.consumers
    }
    norms = [
        b
        for b in chain.between
        if isinstance(model.get_layer(b), keras.layers.BatchNormalization)
    ]
    names = [layer.name for layer in layers]
    finalize = finalize or (lambda trained: [copy_layer(t) for t in trained])

    def fold(trained):
        compressed = finalize([trained.get_layer(n) for n in names])
        weights = {b: trained.get_layer(b).get_weights() for b in norms}
        for q, name in in_names.items():
            weights[q] = fold_lib.folded_conv_weights(
                model.get_layer(q),
                before=fold_lib.adaptor_matrix(trained.get_layer(name)),
            )
        return dict(replace={conv_name: applier(*compressed)}, weights=weights)

    return Step(
        layer=conv_name,
        student=dict(
            replace={conv_name: applier(*layers)},
            before={
                q: adaptors_lib.linear_adaptor(name, np.eye(channels))
                for q, name in in_names.items()
            },
        ),
        trainable=(*trainable, *in_names.values(), *norms),
        targets=chain.targets,
        fold=fold,
        detail=detail,
    )
