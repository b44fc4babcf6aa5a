"""Function-preserving twins of a model: the same function in other units.

Used by `benchmarks/twins.py` and the robustness tests: a scale-free
measurement or recovery must give a model and its twins the same answer.
"""

import keras

from keras_practise.graph import flat_graph


def _copy(model):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def rescale_conv_bn(model, c):
    """A function-preserving twin: every conv followed by BatchNorm computes
    `c` times its output, and the BatchNorm's moving mean, variance and
    epsilon are scaled by `c`, `c**2` and `c**2` to match."""
    twin = _copy(model)
    graph = flat_graph.FlatGraph(twin)
    for layer in twin.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        after = graph.followers(layer)
        if len(after) != 1 or not isinstance(after[0], keras.layers.BatchNormalization):
            continue
        bn = after[0]
        layer.set_weights([w * c for w in layer.get_weights()])
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma, beta, mean * c, var * c**2])
        bn.epsilon = bn.epsilon * c**2
    return twin


def scale_input(model, factor=255.0):
    """A twin for images in `[0, factor]`: the first conv's kernel / factor."""
    twin = _copy(model)
    conv = next(l for l in twin.layers if isinstance(l, keras.layers.Conv2D))
    kernel, *rest = conv.get_weights()
    conv.set_weights([kernel / factor, *rest])
    return twin


def rescale_stream(model, c):
    """A function-preserving twin whose residual stream is `c` times larger.

    The BatchNorms that write the stream (the stem's and those feeding an
    add) scale their output by `c`; every conv and dense layer reading the
    stream divides its kernel by `c` (ReLU, adds and pooling commute with a
    positive scale). Features at the tap are `c` times the original.
    """
    twin = _copy(model)
    graph = flat_graph.FlatGraph(twin)
    norms = [l for l in twin.layers if isinstance(l, keras.layers.BatchNormalization)]
    writers = [norms[0]] + [
        bn for bn in norms[1:]
        if any(flat_graph.is_add(f) for f in graph.followers(bn))
    ]
    for bn in writers:
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma * c, beta * c, mean, var])
    readers, frontier, seen = [], list(writers), set()
    while frontier:
        layer = frontier.pop()
        for follower in graph.followers(layer):
            if id(follower) in seen:
                continue
            seen.add(id(follower))
            if isinstance(follower, (keras.layers.Conv2D, keras.layers.Dense)):
                readers.append(follower)
            else:
                frontier.append(follower)
    for layer in readers:
        kernel, *rest = layer.get_weights()
        layer.set_weights([kernel / c, *rest])
    return twin


# Twin name -> (builder, factor the images are multiplied by).
TWINS = {
    "original": (_copy, 1.0),
    "conv x10": (lambda m: rescale_conv_bn(m, 10.0), 1.0),
    "conv x0.1": (lambda m: rescale_conv_bn(m, 0.1), 1.0),
    "images in [0, 255]": (scale_input, 255.0),
    "stream x10": (lambda m: rescale_stream(m, 10.0), 1.0),
}
