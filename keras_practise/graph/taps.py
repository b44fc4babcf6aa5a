"""Where to tap a model: the feature map before its head, and prefix cuts."""

import keras

from keras_practise.graph import flat_graph
from keras_practise.graph import layer_kinds
from keras_practise.graph import surgery


def feature_tap(model):
    """Returns the last feature map before the classifier head.

    That is the input of the first global pooling, flatten or dense layer on
    the main path (a pooling inside a squeeze-and-excitation branch does not
    count), or the model's output when it has no head.

    Args:
        model: A Functional or Sequential `keras.Model`.

    Returns:
        The tap as a tensor of `model`'s flat graph.
    """
    graph = flat_graph.FlatGraph(model)
    on_main_path = {id(tensor) for _, tensor in graph.cut_tensors()}
    for flat_node in graph.nodes:
        if (
            isinstance(flat_node.layer, layer_kinds.HEAD)
            and id(flat_node.inputs[0]) in on_main_path
            and id(flat_node.outputs[0]) in on_main_path
        ):
            return flat_node.inputs[0]
    return graph.outputs[0]


def frozen_prefix_cut(model, changed_layers):
    """Returns the last main-path tensor before any of `changed_layers` runs.

    Args:
        model: A Functional or Sequential `keras.Model`.
        changed_layers: Names of the layers that differ between teacher and
            student (dropped layers and convs that receive adaptors).

    Returns:
        A tensor of `model`'s flat graph (the model input when the very first
        layers change).
    """
    graph = flat_graph.FlatGraph(model)
    changed = set(changed_layers)
    first = next(
        (i for i, n in enumerate(graph.nodes) if n.layer.name in changed),
        len(graph.nodes),
    )
    best = graph.inputs[0]
    for position, tensor in graph.cut_tensors():
        if position <= first:
            best = tensor
    return best


def output_node(model):
    """The flat-graph node that produces `model`'s (first) output."""
    graph = flat_graph.FlatGraph(model)
    return graph.nodes[graph.producer[id(graph.outputs[0])]]


def ends_in_softmax(model):
    """Whether `model` outputs probabilities: its last layer is a softmax.

    That is a `keras.layers.Softmax` layer or a layer with a softmax
    activation (`Dense(activation="softmax")`, `Activation("softmax")`),
    also when it sits in a nested model.
    """
    return layer_kinds.is_softmax(output_node(model).layer)


def tap_model(model, tensors):
    """A model that outputs `tensors` of `model`'s flat graph, for inference.

    Where every tensor is in `model`'s own graph this is a `keras.Model` on
    that graph: `model`'s layers, nothing copied (a copy of a ResNet-50
    costs about a second). Tensors inside a nested model are not reachable
    from its inputs; for those the model is rewritten into a flat copy.
    Training the result may train `model`'s layers: read activations only.

    Args:
        model: A Functional or Sequential `keras.Model`.
        tensors: Tensors of `model`'s flat graph (e.g. `feature_tap`).

    Returns:
        A Functional `keras.Model` with one output per tensor.
    """
    try:
        # `model.input`, not `.inputs`: a one-element list would make Keras
        # warn on every call with a plain tensor.
        return keras.Model(model.input, list(tensors))
    except ValueError:  # "not connected to `inputs`": inside a nested model.
        return surgery.rewrite(model, outputs=list(tensors))
