"""Rebuilding a model without some blocks, optionally with layers inserted.

Every layer of the result is a fresh copy with the original's weights, so the
user's model is never touched and no layer object is shared with it.
"""

from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import flat_graph as graph_lib


def rewrite(
    model,
    drop=(),
    before=None,
    after=None,
    bypass=(),
    weights=None,
    replace=None,
    start=None,
    outputs=None,
    name=None,
    input_shape=None,
    gates=None,
):
    """Copies `model`, dropping blocks and wrapping chosen layer calls.

    Args:
        model: A Functional or Sequential `keras.Model`.
        drop: `Block`s of `model` (from `find_blocks`) to remove; each one's
            output is replaced by its input.
        before: Optional dict mapping a layer name to a callable
            `tensor -> tensor` applied to the layer's (single) input.
        after: Optional dict mapping a layer name to a callable applied to
            the layer's output.
        bypass: Names of layers whose calls are skipped (their output is
            their input), e.g. folded adaptors.
        weights: Optional dict mapping a layer name to the weights its copy
            gets instead of the original's (e.g. a conv with adaptors folded
            in).
        replace: Optional dict mapping a layer name to a callable
            `tensor -> tensor` that computes the layer's (single-input)
            call instead; the layer itself is not copied, so the callable
            may create new layers, even one of the same name (e.g. a conv
            with fewer filters).
        start: Optional tensor of `model` that becomes the input of the new
            model; the layers before it are left out.
        outputs: Optional list of tensors of `model` to output instead of
            the model's outputs (e.g. feature maps to mimic).
        name: Name of the new model. Defaults to `model.name`.
        input_shape: Optional per-example input shape of the new model, e.g.
            `(224, 224, 3)` to fix a dynamic image size.
        gates: Optional dict mapping a `Block` of `model` to a callable
            `(input, output) -> tensor` whose result replaces the block's
            output downstream (a switch that keeps or drops the block
            without rebuilding the model).

    Returns:
        A new Functional `keras.Model`.
    """
    before = before or {}
    after = after or {}
    bypass = set(bypass)
    weights = weights or {}
    replace = replace or {}
    graph = graph_lib.FlatGraph(model)
    dropped = {id(layer) for block in drop for layer in block.layers}
    substitutes = {
        id(graph.canonical(block.output)): graph.canonical(block.input)
        for block in drop
    }
    clones = {}
    used_names = set()
    pending_weights = []

    def call_node(flat_node, args, kwargs):
        layer = flat_node.layer
        if id(layer) in dropped:
            return None
        if layer.name in bypass:
            return args[0]
        if layer.name in replace:
            used_names.add(layer.name)
            return replace[layer.name](args[0])
        if id(layer) in clones:
            new_layer = clones[id(layer)]
        else:
            layer_name = layer.name
            suffix = 1
            while layer_name in used_names:
                layer_name = f"{layer.name}_{suffix}"
                suffix += 1
            new_layer = graph_lib.clone_layer(layer, name=layer_name)
            # Plain operations (`x + 3.0`) have no weights to copy.
            if graph_lib.weight_count(layer):
                pending_weights.append((new_layer, layer))
        clones[id(layer)] = new_layer
        used_names.add(new_layer.name)
        if layer.name in before:
            args = (before[layer.name](args[0]),) + tuple(args[1:])
        outputs = new_layer(*args, **kwargs)
        if layer.name in after:
            outputs = after[layer.name](outputs)
        return outputs

    new_model = graph_lib.replay(
        graph,
        call_node,
        substitutes=substitutes,
        start=None if start is None else graph.canonical(start),
        outputs=None
        if outputs is None
        else [graph.canonical(t) for t in outputs],
        name=name,
        input_shape=input_shape,
        joins={
            id(graph.canonical(block.output)): (graph.canonical(block.input), gate)
            for block, gate in (gates or {}).items()
        },
    )
    for new_layer, layer in pending_weights:
        new_layer.set_weights(weights.get(layer.name, layer.get_weights()))
    return new_model


def drop_blocks(model, blocks):
    """Returns a copy of `model` without `blocks`.

    Each dropped block's output is replaced by its input, so shapes downstream
    are unchanged. The remaining layers are fresh copies holding the original
    weights; `model` itself is not modified.

    Args:
        model: A Functional or Sequential `keras.Model` (nested Functional
            backbones are flattened into one model).
        blocks: Block names (`"conv2_block2"`), `stage.position` labels
            (`"1.2"`), `Block` objects, or a list of them. An empty list
            returns a plain copy.

    Returns:
        A new Functional `keras.Model`.

    Raises:
        ValueError: If a block is unknown or not droppable (the message lists
            the droppable blocks).
        TypeError: If `model` is not a graph model.

    Example:

    ```python
    model = keras.applications.ResNet50(weights=None)
    fast = keras_practise.drop_blocks(model, ["1.2", "conv3_block2"])
    ```
    """
    chosen = blocks_lib.resolve_blocks(model, blocks)
    return rewrite(model, drop=chosen)
