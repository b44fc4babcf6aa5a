"""Finding the droppable blocks of a CNN from its graph topology.

The network is cut into *units* along its main path (the tensors every path
from input to output crosses): residual blocks (a merge `Add` whose other
inputs branch off the unit's input), conv units (a convolution with the
BatchNorm, activation and padding around it; a depthwise conv and the pointwise
conv after it join the unit they follow, which makes an inverted bottleneck one
unit), and pooling layers, which only separate units.

Units are grouped into stages: a new stage starts where the width (channels)
of the main path changes or a pooling layer intervenes. A block is droppable
when removing it leaves every shape unchanged:

* a residual block with an identity shortcut (the unit's input is one of the
  `Add`'s inputs) that is not the first unit of its stage, as in the paper
  ("the non-first blocks of each stage");
* a plain conv unit whose output shape equals its input shape: a single
  ordinary convolution (VGG's `block1_conv2`), or a depthwise-separable pair,
  a depthwise conv and its 1x1 pointwise conv (MobileNet's `conv_pw_7`) or one
  `SeparableConv2D`;
* a single layer of a kind these rules do not know (a library's block layer,
  such as KerasHub's MobileNetV3 `InvertedResidualBlock`) that has weights and
  whose output shape equals its input shape: the layer is the block.
"""

import dataclasses
import os
import re

import keras

from keras_practise.graph import flat_graph as graph_lib
from keras_practise.graph import layer_kinds
from keras_practise.utils import text_table

_STAGE_POSITION = re.compile(r"^\s*(\d+)\.(\d+)\s*$")


@dataclasses.dataclass(frozen=True, eq=False)
class Block:
    """A droppable block of a network.

    Attributes:
        name: Unique name, following Keras' naming where it exists
            (`conv2_block2`, `block_4`, `block1_conv2`).
        stage: 1-based stage index (ResNet's conv2_x is stage 1).
        position: 1-based position of the block within its stage.
        kind: `"residual"` (identity-shortcut block), `"conv"` (plain
            shape-preserving conv unit) or `"layer"` (one shape-preserving
            block layer of another library, e.g. KerasHub).
        layers: The layers that make up the block, in call order.
        input: The block's input tensor (a `KerasTensor` of the model).
        output: The block's output tensor; dropping the block feeds `input`
            where `output` was used.
        param_count: Number of weights (trainable and not) in the block.
    """

    name: str
    stage: int
    position: int
    kind: str
    layers: tuple
    input: object
    output: object
    param_count: int

    @property
    def label(self):
        """The paper's `stage.position` name, e.g. `"1.2"`."""
        return f"{self.stage}.{self.position}"

    @property
    def layer_names(self):
        """Names of the block's layers."""
        return [layer.name for layer in self.layers]

    def __repr__(self):
        return (
            f"Block(name={self.name!r}, label={self.label!r}, "
            f"kind={self.kind!r}, layers={len(self.layers)}, "
            f"params={self.param_count})"
        )


@dataclasses.dataclass(eq=False)
class _Unit:
    kind: str  # "residual", "merge", "conv", "layer" or "pool"
    node_indices: list
    input: object
    output: object = None
    identity: bool = False
    convs: int = 0
    depthwise: bool = False
    # A depthwise conv waits for the pointwise conv that completes it.
    awaits_pointwise: bool = False


def _split_units(graph):
    """Cuts the flat graph's main path into units, in network order."""
    cuts = graph.cut_tensors()
    units = []
    current = None
    pending = []  # Padding layers waiting for the conv they pad.
    for (start, cut), (end, _) in zip(cuts, cuts[1:]):
        indices = list(range(start, end))
        if len(indices) > 1:
            last = graph.nodes[indices[-1]].layer
            is_add = graph_lib.is_add(last)
            if not is_add and current is not None and current.awaits_pointwise:
                # A squeeze-and-excitation (or other gating) branch between a
                # depthwise conv and its pointwise conv (EfficientNet,
                # MobileNetV3) belongs to that bottleneck.
                current.node_indices += pending + indices
                current.output = graph.nodes[indices[-1]].outputs[0]
                pending = []
                continue
            current, pending = None, []
            identity = is_add and any(
                t is cut for t in graph.nodes[indices[-1]].inputs
            )
            units.append(
                _Unit(
                    kind="residual" if is_add else "merge",
                    node_indices=indices,
                    input=cut,
                    output=graph.nodes[indices[-1]].outputs[0],
                    identity=identity,
                )
            )
            continue
        index = indices[0]
        layer = graph.nodes[index].layer
        output = graph.nodes[index].outputs[0]
        if isinstance(layer, keras.layers.ZeroPadding2D):
            pending.append(index)
        elif layer_kinds.is_conv(layer) and not (
            current is not None and current.awaits_pointwise and layer_kinds.is_1x1(layer)
        ):
            unit_input = graph.nodes[pending[0]].inputs[0] if pending else cut
            current = _Unit(
                kind="conv",
                node_indices=pending + [index],
                input=unit_input,
                output=output,
                convs=1,
            )
            units.append(current)
            pending = []
        elif isinstance(layer, layer_kinds.DEPTHWISE) or layer_kinds.is_conv(layer):
            # A depthwise conv after a complete depthwise-pointwise pair opens
            # a unit of its own (MobileNet v1's separable stacks).
            if current is None or (
                isinstance(layer, layer_kinds.DEPTHWISE)
                and current.depthwise
                and not current.awaits_pointwise
            ):
                unit_input = graph.nodes[pending[0]].inputs[0] if pending else cut
                current = _Unit(kind="conv", node_indices=[], input=unit_input)
                units.append(current)
            current.node_indices += pending + [index]
            current.output = output
            current.convs += 1
            is_depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            current.depthwise = current.depthwise or isinstance(
                layer, layer_kinds.DEPTHWISE
            )
            current.awaits_pointwise = is_depthwise
            pending = []
        elif isinstance(layer, layer_kinds.NORM_AND_ACTIVATION):
            previous = units[-1] if units else None
            if current is not None:
                current.node_indices.append(index)
                current.output = output
            elif (
                previous is not None
                and previous.kind == "residual"
                and previous.output is cut
                and isinstance(layer, layer_kinds.ACTIVATIONS)
            ):
                # ResNet v1: the activation after the add ends the block.
                previous.node_indices.append(index)
                previous.output = output
        elif isinstance(layer, layer_kinds.POOLING):
            current, pending = None, []
            units.append(_Unit(kind="pool", node_indices=[index], input=cut))
        elif isinstance(layer, layer_kinds.HEAD):
            break
        elif _is_block_layer(graph.nodes[index]):
            current, pending = None, []
            units.append(
                _Unit(kind="layer", node_indices=[index], input=cut, output=output)
            )
        else:
            current, pending = None, []
    return units


def _is_block_layer(flat_node):
    """A layer with weights, one input, and no known kind: a library's block."""
    layer = flat_node.layer
    return (
        not isinstance(layer, keras.Model)
        and layer.__class__.__module__.split(".")[0] != "keras"
        and graph_lib.weight_count(layer) > 0
        and len(flat_node.inputs) == 1
        and len(flat_node.outputs) == 1
    )


def _channels(tensor):
    return tensor.shape[-1]


def _counts_for_stages(unit, residual_mode, graph):
    if unit.kind in ("residual", "layer"):
        return True
    if unit.kind != "conv":
        return False
    if not residual_mode:
        return True
    # In residual networks, a multi-conv unit (an inverted bottleneck without
    # shortcut) is a block of its stage; a lone stem conv is not.
    return unit.convs > 1 or _is_plain_candidate(unit, graph)


def _unit_convs(unit, graph):
    return [
        graph.nodes[i].layer
        for i in unit.node_indices
        if layer_kinds.is_conv(graph.nodes[i].layer)
        or isinstance(graph.nodes[i].layer, layer_kinds.DEPTHWISE)
    ]


def _is_plain_candidate(unit, graph):
    """A shape-preserving conv unit: one conv, or one separable conv."""
    if unit.kind != "conv" or tuple(unit.input.shape[1:]) != tuple(
        unit.output.shape[1:]
    ):
        return False
    convs = _unit_convs(unit, graph)
    if len(convs) == 1:
        conv = convs[0]
        return isinstance(conv, keras.layers.SeparableConv2D) or (
            layer_kinds.is_conv(conv) and conv.groups == 1
        )
    if len(convs) == 2:
        depthwise, pointwise = convs
        return (
            isinstance(depthwise, keras.layers.DepthwiseConv2D)
            and layer_kinds.is_conv(pointwise)
            and layer_kinds.is_1x1(pointwise)
            and pointwise.groups == 1
        )
    return False


def _block_name(layers, merge_layer):
    # Layers with weights carry the model's naming scheme; element-wise ops
    # and activations are often auto-named (`add_3`, `re_lu_7`).
    names = [layer.name for layer in layers if graph_lib.weight_count(layer)]
    names = names or [layer.name for layer in layers]
    prefix = os.path.commonprefix(names)
    if prefix not in names:
        prefix = re.sub(r"[^_./-]*$", "", prefix)
    prefix = prefix.rstrip("_./-")
    return prefix or merge_layer.name


def _analyse(model):
    graph = graph_lib.FlatGraph(model)
    units = _split_units(graph)
    residual_mode = any(u.kind == "residual" for u in units)
    blocks = []
    stage, position, previous, pooled = 0, 0, None, False
    for unit in units:
        if unit.kind == "pool":
            pooled = True
            continue
        if not _counts_for_stages(unit, residual_mode, graph):
            continue
        if (
            previous is None
            or pooled
            or _channels(unit.output) != _channels(previous.output)
        ):
            stage, position = stage + 1, 0
        position += 1
        previous, pooled = unit, False
        droppable = (
            unit.kind == "residual"
            and unit.identity
            and position > 1
            and tuple(unit.input.shape[1:]) == tuple(unit.output.shape[1:])
        ) or _is_plain_candidate(unit, graph) or (
            unit.kind == "layer"
            and tuple(unit.input.shape[1:]) == tuple(unit.output.shape[1:])
        )
        if not droppable:
            continue
        layers = [graph.nodes[i].layer for i in unit.node_indices]
        merge = graph.nodes[unit.node_indices[-1]].layer
        if unit.kind == "residual":
            merge = next(l for l in layers if graph_lib.is_add(l))
            name = _block_name(layers, merge)
        elif unit.kind == "layer":
            name = layers[0].name
        else:
            # The pointwise conv names a depthwise-separable pair.
            name = _unit_convs(unit, graph)[-1].name
        blocks.append(
            Block(
                name=name,
                stage=stage,
                position=position,
                kind=unit.kind if unit.kind in ("residual", "layer") else "conv",
                layers=tuple(layers),
                input=unit.input,
                output=unit.output,
                param_count=sum(graph_lib.weight_count(l) for l in layers),
            )
        )
    names = [b.name for b in blocks]
    if len(set(names)) != len(names):
        blocks = [
            dataclasses.replace(b, name=_merge_name(b)) for b in blocks
        ]
    return graph, blocks


def _merge_name(block):
    for layer in block.layers:
        if graph_lib.is_add(layer) or layer_kinds.is_conv(layer):
            return layer.name
    return block.layers[-1].name


def find_blocks(model):
    """Finds the blocks of `model` that can be dropped, in network order.

    Detection reads the graph, not layer names: identity-shortcut residual
    blocks that do not open a stage, and plain convolutions whose output shape
    equals their input shape. Functional or Sequential models nested inside
    the model are searched too.

    Args:
        model: A Functional or Sequential `keras.Model`.

    Returns:
        A list of `Block` objects in network order.

    Raises:
        TypeError: If `model` is not a Functional or Sequential model.

    Example:

    ```python
    model = keras.applications.ResNet50(weights=None)
    blocks = keras_practise.find_blocks(model)
    [b.name for b in blocks][:2]  # ['conv2_block2', 'conv2_block3']
    blocks[0].label  # '1.2'
    ```
    """
    return _analyse(model)[1]


def no_blocks_reason(model):
    """Why `model` has no droppable block, as a sentence for an error.

    Counts what the main path holds instead: residual blocks that open a
    stage or have a projection shortcut, convolutions and block layers that
    change the shape, and merges of parallel branches (Inception, CSPNet's
    split stages), whose insides are not searched.

    Args:
        model: A Functional or Sequential `keras.Model`.

    Returns:
        A message naming the model and what its main path holds.
    """
    graph = graph_lib.FlatGraph(model)
    counts = {}
    for unit in _split_units(graph):
        counts[unit.kind] = counts.get(unit.kind, 0) + 1
    found = [
        f"{counts[kind]} {text}"
        for kind, text in (
            ("residual", "residual blocks, each opening a stage or with a "
             "projection shortcut"),
            ("conv", "convolution units that change the shape"),
            ("layer", "block layers that change the shape"),
            ("merge", "merges of parallel branches, whose insides are not "
             "searched"),
        )
        if counts.get(kind)
    ]
    return (
        f"Model {model.name!r} has no droppable blocks: a droppable block is "
        "a residual block with an identity shortcut that does not open a "
        "stage, a shape-preserving convolution (or depthwise-separable pair), "
        "or a shape-preserving block layer. Its main path has "
        + ("; ".join(found) if found else "no such units")
        + f" ({len(graph.nodes)} layer calls)."
    )


def resolve_blocks(model, blocks, candidates=None):
    """Turns names, `stage.position` labels or `Block`s into `model`'s blocks.

    Args:
        model: The model the blocks belong to.
        blocks: A block, a name, a label, or a list of them. Duplicates are
            kept once.
        candidates: Optional precomputed `find_blocks(model)` result.

    Returns:
        A list of distinct `Block`s of `model`, in network order.

    Raises:
        ValueError: If a name is unknown or not droppable; the message lists
            the valid names.
        TypeError: If an entry is neither a string nor a `Block`.
    """
    if candidates is None:
        candidates = find_blocks(model)
    if isinstance(blocks, (str, Block)):
        blocks = [blocks]
    if blocks is None:
        blocks = []
    by_key = {}
    for block in candidates:
        by_key[block.name] = block
        by_key.setdefault(block.label, block)
    chosen = []
    for entry in blocks:
        if isinstance(entry, Block):
            key = entry.name
        elif isinstance(entry, str):
            key = entry.strip()
            match = _STAGE_POSITION.match(key)
            if match:
                key = f"{int(match.group(1))}.{int(match.group(2))}"
        else:
            raise TypeError(
                "Blocks are given as names (e.g. 'conv2_block2'), "
                "'stage.position' labels (e.g. '1.2') or `Block` objects. "
                f"Received: {entry!r} of type {type(entry).__name__}"
            )
        if key not in by_key:
            valid = ", ".join(f"{b.name} ({b.label})" for b in candidates)
            raise ValueError(
                f"Unknown or non-droppable block {entry if isinstance(entry, str) else entry.name!r}. "
                f"Droppable blocks of model {model.name!r}: "
                f"{valid or 'none'}. Received: blocks={_describe(blocks)}"
            )
        block = by_key[key]
        if block not in chosen:
            chosen.append(block)
    order = {id(b): i for i, b in enumerate(candidates)}
    return sorted(chosen, key=lambda b: order[id(b)])


def _describe(blocks):
    return [b.name if isinstance(b, Block) else b for b in blocks]


def blocks_table(blocks):
    """Formats blocks as a text table (name, label, kind, layers, params)."""
    rows = [("block", "stage.pos", "kind", "layers", "params")]
    for block in blocks:
        rows.append(
            (
                block.name,
                block.label,
                block.kind,
                str(len(block.layers)),
                f"{block.param_count:,}",
            )
        )
    return text_table.format_table(rows)
