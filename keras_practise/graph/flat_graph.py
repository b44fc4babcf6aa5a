"""A flat view of a Keras graph model, and replaying it into a new model.

This is the only module that reads private Keras attributes (`_nodes_by_depth`,
`Sequential._functional`, nodes' symbolic arguments). Everything else in
keras_practise sees a `FlatGraph`: the model's layer calls in topological
order, with Functional or Sequential sub-models expanded in place, so that a
backbone nested inside a classifier is analysed and rewritten as one network.
"""

import dataclasses
import math

import keras

_GRAPH_MODEL_HELP = (
    "keras_practise works on Functional and Sequential models (and Functional "
    "or Sequential models nested inside them). Subclassed models have no "
    "graph to analyse: rebuild the network with the Functional API, e.g. "
    "`inputs = keras.Input(shape); outputs = ...; keras.Model(inputs, outputs)`."
)


def is_graph_model(layer):
    """Whether `layer` is a Functional or Sequential model with a built graph."""
    if isinstance(layer, keras.Sequential):
        return getattr(layer, "_functional", None) is not None
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")


def _graph_function(model):
    """Returns the Functional object that holds `model`'s graph."""
    if isinstance(model, keras.Sequential):
        if model._functional is None:
            raise ValueError(
                "The Sequential model has no known input shape, so it has no "
                "graph yet. Give it an `keras.Input(shape=...)` first layer or "
                f"call `model.build(input_shape)`. Received: model={model.name}"
            )
        return model._functional
    return model


def check_graph_model(model):
    """Raises `TypeError` unless `model` is a Functional or Sequential model.

    Args:
        model: The object to check.

    Raises:
        TypeError: If `model` is not a Keras graph model.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Expected a `keras.Model`. Received: "
            f"model={model!r} of type {type(model).__name__}"
        )
    if isinstance(model, keras.Sequential):
        _graph_function(model)
        return
    if not is_graph_model(model):
        raise TypeError(
            f"{_GRAPH_MODEL_HELP} Received: model={model.name} of type "
            f"{type(model).__name__}"
        )


def check_channels_last(model):
    """Raises `ValueError` if a layer of `model` computes channels first.

    Tiny-set views, adaptors and folding all take channels last.

    Args:
        model: A Keras model.

    Raises:
        ValueError: If a layer (of `model` or a model nested in it) has
            `data_format="channels_first"`.
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            check_channels_last(layer)
        elif getattr(layer, "data_format", None) == "channels_first":
            raise ValueError(
                "keras_practise works on channels-last models (Keras' default "
                "`data_format`). Received: layer "
                f"'{layer.name}' of model '{model.name}' with "
                "data_format='channels_first'. Rebuild the model without "
                "`data_format` (or with 'channels_last') and load its weights."
            )


def input_shape(model):
    """The batch shape of `model`'s first input, without flattening its graph.

    Raises:
        TypeError: If `model` is not a Functional or Sequential model.
        ValueError: If a Sequential model has no input shape yet.
    """
    check_graph_model(model)
    return tuple(_graph_function(model).inputs[0].shape)


@dataclasses.dataclass(eq=False)
class FlatNode:
    """One layer call of the flattened graph.

    Attributes:
        layer: The layer that is called.
        inputs: The canonical input tensors of the call.
        outputs: The canonical output tensors of the call.
        node: The Keras node (kept to rebuild the call's arguments).
    """

    layer: keras.layers.Layer
    inputs: list
    outputs: list
    node: object


class FlatGraph:
    """A model's layer calls in topological order, sub-models expanded.

    Tensors are identified by a canonical `KerasTensor`: where a nested model
    is called, its input tensors are aliases of the outer tensors it receives,
    and the outer call's outputs are aliases of the nested model's outputs.

    Args:
        model: A Functional or Sequential model.

    Raises:
        TypeError: If `model` is not a graph model.
        ValueError: If a nested model is called more than once.
    """

    def __init__(self, model):
        check_graph_model(model)
        self.model = model
        self._alias = {}
        self.nodes = []
        function = _graph_function(model)
        self.inputs = list(function.inputs)
        self._expand(function, seen_models=set())
        self.outputs = [self.canonical(t) for t in function.outputs]
        self._index()

    def canonical(self, tensor):
        """Returns the canonical tensor that `tensor` stands for.

        Raises:
            ValueError: If the aliases form a cycle (a graph this class
                cannot read); never loops.
        """
        return _follow(tensor, self._alias, "nested-model tensor aliases")

    def _expand(self, function, seen_models):
        depths = sorted(function._nodes_by_depth, reverse=True)
        for depth in depths:
            for node in function._nodes_by_depth[depth]:
                if node.operation is None or node.is_input:
                    continue
                layer = node.operation
                if is_graph_model(layer):
                    self._expand_nested(layer, node, seen_models)
                    continue
                self.nodes.append(
                    FlatNode(
                        layer=layer,
                        inputs=[self.canonical(t) for t in node.input_tensors],
                        outputs=list(node.outputs),
                        node=node,
                    )
                )

    def _expand_nested(self, model, node, seen_models):
        if id(model) in seen_models:
            raise ValueError(
                "A nested model is called more than once (shared weights), so "
                "its blocks cannot be dropped independently per call. "
                f"Received: nested model {model.name}"
            )
        seen_models.add(id(model))
        inner = _graph_function(model)
        outer_inputs = node.input_tensors
        if len(outer_inputs) != len(inner.inputs):
            raise ValueError(
                f"Cannot expand nested model {model.name}: it was called with "
                f"{len(outer_inputs)} tensors but has {len(inner.inputs)} inputs."
            )
        for inner_input, outer_input in zip(inner.inputs, outer_inputs):
            outer_input = self.canonical(outer_input)
            # `keras.Model(base.input, head(base(base.input)))` calls the
            # nested model on its own input tensor: that tensor is already
            # canonical, and aliasing it to itself would make a cycle.
            if outer_input is not inner_input:
                self._alias[id(inner_input)] = outer_input
        self._expand(inner, seen_models)
        for outer_output, inner_output in zip(node.outputs, inner.outputs):
            inner_output = self.canonical(inner_output)
            if inner_output is not outer_output:
                self._alias[id(outer_output)] = inner_output

    def _index(self):
        self.producer = {}
        self.consumers = {}
        for index, flat_node in enumerate(self.nodes):
            for tensor in flat_node.outputs:
                self.producer[id(tensor)] = index
            for tensor in flat_node.inputs:
                self.consumers.setdefault(id(tensor), []).append(index)

    def followers(self, layer):
        """The layers that read `layer`'s outputs (every call of it), in order."""
        found = []
        for flat_node in self.nodes:
            if flat_node.layer is not layer:
                continue
            for tensor in flat_node.outputs:
                found += [self.nodes[i].layer for i in self.consumers.get(id(tensor), [])]
        return found

    def layers(self):
        """Returns the distinct layers of the flat graph in call order."""
        seen, layers = set(), []
        for flat_node in self.nodes:
            if id(flat_node.layer) not in seen:
                seen.add(id(flat_node.layer))
                layers.append(flat_node.layer)
        return layers

    def cut_tensors(self):
        """Tensors that every path from the inputs to the outputs crosses.

        A tensor is a cut when, right after the node producing it, it is the
        only tensor still waiting for a consumer. Residual branches keep the
        shortcut alive, so the tensors inside a residual block are not cuts.

        Returns:
            A list of `(position, tensor)` pairs in network order, where
            `position` is the index of the first node after the cut (0 for a
            model input).
        """
        last_use = {}
        for index, flat_node in enumerate(self.nodes):
            for tensor in flat_node.inputs:
                last_use[id(tensor)] = index
        end = len(self.nodes)
        for tensor in self.outputs:
            last_use[id(tensor)] = end
        live = {}
        cuts = []
        for tensor in self.inputs:
            live[id(tensor)] = tensor
        if len(live) == 1:
            cuts.append((0, self.inputs[0]))
        for index, flat_node in enumerate(self.nodes):
            for tensor in flat_node.outputs:
                if last_use.get(id(tensor), -1) > index:
                    live[id(tensor)] = tensor
            for key in [k for k in live if last_use.get(k, -1) <= index]:
                del live[key]
            if len(live) == 1:
                cuts.append((index + 1, next(iter(live.values()))))
        return cuts


def _follow(tensor, links, what, stop=()):
    """Follows `links` (`id(tensor)` -> tensor) from `tensor` to its end.

    Stops early at a tensor whose id is in `stop`. A chain longer than the
    number of links can only be a cycle: it ends in a `ValueError` rather than
    an endless loop.
    """
    for _ in range(len(links) + 1):
        if id(tensor) in stop or id(tensor) not in links:
            return tensor
        tensor = links[id(tensor)]
    raise ValueError(
        f"keras_practise cannot read this graph: its {what} form a cycle at "
        f"tensor {getattr(tensor, 'name', tensor)!r}. Please report the model "
        "architecture (e.g. `model.summary()`)."
    )


def is_add(operation):
    """Whether a graph node's operation is an element-wise sum.

    Covers the `keras.layers.Add` layer and the operation that `x + y` on
    symbolic tensors records (ConvNeXt's residual sums are written so).
    """
    if isinstance(operation, keras.layers.Add):
        return True
    return (
        not isinstance(operation, keras.layers.Layer)
        and type(operation).__name__ == "Add"
        and type(operation).__module__.startswith("keras.")
    )


def weight_count(operation):
    """Number of weights of a graph node's operation, trainable or not.

    Functional graphs can hold plain operations (`x + 3.0` gives a
    `keras.ops` `Add`) that have no weights and no `count_params()`.
    """
    return sum(math.prod(w.shape) for w in getattr(operation, "weights", []))


def clone_layer(layer, name=None, **overrides):
    """Returns an unbuilt copy of `layer` (same config, optional new name).

    Args:
        layer: The layer to copy.
        name: Optional new name.
        **overrides: Config entries to change, e.g. `filters=32`.
    """
    config = layer.get_config()
    config.update(overrides)
    if name is not None:
        config["name"] = name
    return layer.__class__.from_config(config)


def replay(
    graph,
    call_node,
    substitutes=None,
    start=None,
    outputs=None,
    name=None,
    input_shape=None,
    joins=None,
):
    """Rebuilds a flat graph as a new Functional model.

    Args:
        graph: A `FlatGraph`.
        call_node: Callable `(flat_node, args, kwargs) -> outputs` that computes
            the new outputs of one layer call from its new arguments, or returns
            `None` to skip the call (its outputs must then be unused or
            substituted).
        substitutes: Optional dict mapping `id(tensor)` of a canonical tensor
            to another canonical tensor whose new value it takes (used to
            drop a block: its output becomes its input).
        start: Optional canonical tensor of the graph that becomes the new
            model's input instead of the graph's inputs (the layers before
            it are left out).
        outputs: Optional list of canonical tensors of the graph to use as
            the new model's outputs instead of the graph's outputs.
        name: Name of the new model. Defaults to the original's name.
        input_shape: Optional per-example shape of the new model's (single)
            input, e.g. to fix a dynamic image size or to make it dynamic
            again. Defaults to the original input's shape.
        joins: Optional dict mapping `id(tensor)` of a canonical tensor to
            a pair `(source, join)`: once the tensor's new value `v` is
            computed, it becomes `join(new value of source, v)` (used to
            switch a block on and off: its output joined with its input).

    Returns:
        A new Functional `keras.Model`.
    """
    substitutes = substitutes or {}
    joins = joins or {}
    values = {}
    new_inputs = []
    for tensor in [start] if start is not None else graph.inputs:
        shape = tensor.shape
        if input_shape is not None:
            shape = (shape[0],) + tuple(input_shape)
        old_layer = tensor._keras_history[0]
        new_input = keras.Input(
            batch_shape=shape, dtype=tensor.dtype, name=old_layer.name
        )
        # A new layer takes the global policy, which may have changed since
        # the model was built; the copy keeps the original's.
        new_input._keras_history[0].dtype_policy = old_layer.dtype_policy
        values[id(tensor)] = new_input
        new_inputs.append(new_input)

    def value_of(tensor):
        tensor = _follow(
            graph.canonical(tensor), substitutes, "block substitutes", stop=values
        )
        return values.get(id(tensor))

    for flat_node in graph.nodes:
        node = flat_node.node
        mapping = {id(t): value_of(t) for t in node.input_tensors}
        if any(v is None for v in mapping.values()):
            continue  # Feeds only a dropped block: its call is not needed.
        args, kwargs = node.arguments.fill_in(mapping)
        results = call_node(flat_node, args, kwargs)
        if results is None:
            continue
        for tensor, value in zip(flat_node.outputs, keras.tree.flatten(results)):
            if id(tensor) in joins:
                source, join = joins[id(tensor)]
                value = join(value_of(source), value)
            values[id(tensor)] = value
    new_outputs = []
    for tensor in graph.outputs if outputs is None else outputs:
        value = value_of(tensor)
        if value is None:
            raise ValueError(
                "The rewritten graph does not reach the model output "
                f"{tensor.name}."
            )
        new_outputs.append(value)
    model = graph.model
    outputs = new_outputs[0] if len(new_outputs) == 1 else new_outputs
    inputs = new_inputs[0] if len(new_inputs) == 1 else new_inputs
    return keras.Model(inputs, outputs, name=name or model.name)


def tensor_key(tensor):
    """A stable name for a graph tensor: its producing layer's name."""
    return tensor._keras_history[0].name
