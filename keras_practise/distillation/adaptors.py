"""Identity-initialised 1x1 adaptors around dropped blocks.

Where adaptors go is read from the graph. From a hole's output, the signal is
followed forward through normalisation, activations, pooling, padding and
identity shortcuts until it reaches convolutions: an adaptor goes *before*
each of them (for a ResNet, the first conv of every later block of the stage
and both convs of the next stage's first block). From the hole's input, the
signal is followed backward through the same kinds of layers and through
residual adds until convolutions: an adaptor goes *after* each (the last conv
of every earlier block of the stage and the stage's projection conv). This is
the placement of the PRACTISE authors' code, for any topology.

Adaptors are plain bias-free `Conv2D` layers, so a model with adaptors is an
ordinary Functional model. An "after" adaptor sits right behind its conv and
a "before" adaptor right in front of it, so each one folds exactly into that
conv's kernel (see `fold.py`).
"""

import dataclasses

import keras
import numpy as np

from keras_practise.graph import flat_graph as graph_lib
from keras_practise.graph import layer_kinds
from keras_practise.graph import surgery

_SPATIAL = (keras.layers.ZeroPadding2D,) + layer_kinds.POOLING


def _passes_through(layer):
    """Whether a signal passes `layer` on its way between a hole and a conv."""
    return isinstance(layer, layer_kinds.NORM_AND_ACTIVATION) or graph_lib.is_add(
        layer
    )

BEFORE = "before"
AFTER = "after"


@dataclasses.dataclass(frozen=True)
class Site:
    """Where one adaptor goes.

    Attributes:
        conv: Name of the convolution the adaptor belongs to.
        side: `"before"` (on the conv's input) or `"after"` (on its output).
        channels: Number of channels the adaptor maps.
    """

    conv: str
    side: str
    channels: int

    @property
    def adaptor_name(self):
        """Name of the adaptor layer in a model with adaptors."""
        return f"{self.conv}_adaptor_{'in' if self.side == BEFORE else 'out'}"


def find_sites(model, blocks):
    """Finds the adaptor sites for dropping `blocks` from `model` together.

    Args:
        model: A Functional or Sequential `keras.Model`.
        blocks: `Block`s of `model` (from `find_blocks`).

    Returns:
        A list of `Site`s in network order, without duplicates.
    """
    graph = graph_lib.FlatGraph(model)
    by_input = {}
    by_output = {}
    dropped = set()
    for block in blocks:
        by_input.setdefault(id(graph.canonical(block.input)), []).append(block)
        by_output[id(graph.canonical(block.output))] = block
        dropped.update(id(layer) for layer in block.layers)
    sites = {}

    def add(flat_node, side):
        layer = flat_node.layer
        channels = (
            layer.input.shape[-1] if side == BEFORE else layer.filters
        )
        sites[(layer.name, side)] = (
            graph.producer[id(flat_node.outputs[0])],
            Site(conv=layer.name, side=side, channels=channels),
        )

    def forward(tensor, seen):
        if id(tensor) in seen:
            return
        seen.add(id(tensor))
        # A hole right behind this one passes the signal straight on.
        for block in by_input.get(id(tensor), []):
            forward(graph.canonical(block.output), seen)
        for index in graph.consumers.get(id(tensor), []):
            flat_node = graph.nodes[index]
            layer = flat_node.layer
            if id(layer) in dropped:
                continue
            if layer_kinds.is_foldable_conv(layer):
                add(flat_node, BEFORE)
            elif _passes_through(layer) or isinstance(layer, _SPATIAL):
                for output in flat_node.outputs:
                    forward(output, seen)

    def backward(tensor, seen):
        if id(tensor) in seen:
            return
        seen.add(id(tensor))
        if id(tensor) in by_output:
            backward(graph.canonical(by_output[id(tensor)].input), seen)
            return
        index = graph.producer.get(id(tensor))
        if index is None:
            return
        flat_node = graph.nodes[index]
        layer = flat_node.layer
        if layer_kinds.is_foldable_conv(layer):
            if layer_kinds.has_linear_output(layer):
                add(flat_node, AFTER)
        elif _passes_through(layer):
            for source in flat_node.inputs:
                backward(source, seen)

    for block in blocks:
        forward(graph.canonical(block.output), set())
        backward(graph.canonical(block.input), set())
    return [site for _, site in sorted(sites.values(), key=lambda s: s[0])]


def linear_adaptor(name, matrix):
    """A bias-free 1x1 `Conv2D` that maps channels by `matrix`.

    Args:
        name: Layer name.
        matrix: `(in_channels, out_channels)` array; the identity gives an
            identity adaptor, a column selection keeps some channels.

    Returns:
        A built `keras.layers.Conv2D`.
    """
    matrix = np.asarray(matrix, dtype="float32")
    layer = keras.layers.Conv2D(matrix.shape[1], 1, use_bias=False, name=name)
    layer.build((None, None, None, matrix.shape[0]))
    layer.set_weights([matrix[None, None, :, :]])
    return layer


def _identity_adaptor(site):
    return linear_adaptor(site.adaptor_name, np.eye(site.channels))


def insert_adaptors(model, blocks, sites=None, outputs=None, start=None):
    """Drops `blocks` and inserts identity adaptors around the holes.

    With untrained adaptors, the result predicts exactly what
    `drop_blocks(model, blocks)` predicts.

    Args:
        model: A Functional or Sequential `keras.Model`.
        blocks: `Block`s of `model` to drop.
        sites: Optional list of `Site`s. Defaults to `find_sites(model,
            blocks)`.
        outputs: Optional tensors of `model` to output instead of its
            outputs (feature maps to mimic).
        start: Optional tensor of `model` to start the new model from (the
            frozen prefix before it is left out).

    Returns:
        A tuple `(student, sites)`: the new Functional model and the sites of
        its adaptor layers (named `Site.adaptor_name`).
    """
    if sites is None:
        sites = find_sites(model, blocks)
    before = {}
    after = {}
    for site in sites:
        adaptor = _identity_adaptor(site)
        (before if site.side == BEFORE else after)[site.conv] = adaptor
    student = surgery.rewrite(
        model, drop=blocks, before=before, after=after, outputs=outputs, start=start
    )
    return student, sites

