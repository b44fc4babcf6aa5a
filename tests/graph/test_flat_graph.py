import keras
import numpy as np
import pytest

from keras_practise.graph import flat_graph as graph
from tests import tiny_models


def _nested_classifier():
    """A backbone model called inside a classifier, as with applications."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv_b")(x)
    x = keras.layers.Add(name="add")([x, y])
    backbone = keras.Model(inputs, x, name="backbone")

    outer_inputs = keras.Input((8, 8, 3))
    features = backbone(outer_inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    outputs = keras.layers.Dense(2, name="head")(pooled)
    return keras.Model(outer_inputs, outputs, name="classifier")


def test_nested_model_is_expanded_in_place():
    flat = graph.FlatGraph(_nested_classifier())
    names = [layer.name for layer in flat.layers()]
    assert names == ["conv_a", "conv_b", "add", "pool", "head"]
    # The backbone's input is an alias of the classifier's input.
    conv_a = flat.nodes[0]
    assert conv_a.inputs[0] is flat.inputs[0]


def test_layers_are_distinct_when_a_layer_is_called_twice():
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    outputs = shared(shared(inputs))
    flat = graph.FlatGraph(keras.Model(inputs, outputs))
    assert len(flat.nodes) == 2
    assert [layer.name for layer in flat.layers()] == ["shared"]


def test_cut_tensors_skip_the_inside_of_residual_blocks():
    model = tiny_models.tiny_resnet()
    flat = graph.FlatGraph(model)
    cut_layers = [
        tensor._keras_history[0].name for _, tensor in flat.cut_tensors()
    ]
    assert cut_layers[0] == model.inputs[0]._keras_history[0].name
    for block in ["s1_block1", "s1_block2", "s1_block3", "s2_block1"]:
        assert f"{block}_out" in cut_layers
    assert not any(name.endswith(("_1_relu", "_2_bn")) for name in cut_layers)


def test_replay_identity_reproduces_the_model():
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    flat = graph.FlatGraph(model)
    copy = graph.replay(
        flat, lambda flat_node, args, kwargs: flat_node.layer(*args, **kwargs)
    )
    x = tiny_models.images(4)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(copy(x)),
        keras.ops.convert_to_numpy(model(x)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_replay_reports_an_unreachable_output():
    model = tiny_models.tiny_resnet()
    flat = graph.FlatGraph(model)
    with pytest.raises(ValueError, match="does not reach the model output"):
        graph.replay(flat, lambda flat_node, args, kwargs: None)


def test_nested_model_called_twice_is_rejected():
    inputs = keras.Input((4,))
    inner = keras.Model(inputs, keras.layers.Dense(4)(inputs), name="inner")
    outer_inputs = keras.Input((4,))
    outer = keras.Model(outer_inputs, inner(inner(outer_inputs)))
    with pytest.raises(ValueError, match="more than once"):
        graph.FlatGraph(outer)


def test_subclassed_model_is_rejected():
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="Subclassed models have no graph"):
        graph.check_graph_model(Subclassed())
    with pytest.raises(TypeError, match="Expected a `keras.Model`"):
        graph.check_graph_model("not a model")


def test_sequential_without_input_shape_is_rejected():
    with pytest.raises(ValueError, match="no known input shape"):
        graph.check_graph_model(keras.Sequential([keras.layers.Dense(2)]))


def test_clone_layer_renames_and_is_unbuilt():
    layer = keras.layers.Conv2D(4, 3, name="original")
    layer.build((None, 8, 8, 3))
    copy = graph.clone_layer(layer, name="copy")
    assert copy.name == "copy"
    assert not copy.built
    assert copy.get_config()["filters"] == 4


def test_input_shape_of_functional_and_sequential_models():
    assert graph.input_shape(tiny_models.tiny_resnet(size=12)) == (None, 12, 12, 3)
    sequential = keras.Sequential([keras.Input((5, 7, 2)), keras.layers.Conv2D(3, 1)])
    assert graph.input_shape(sequential) == (None, 5, 7, 2)
    with pytest.raises(TypeError, match="Expected a `keras.Model`"):
        graph.input_shape("not a model")


def test_nested_model_called_on_its_own_input_is_expanded():
    # `keras.Model(base.input, head(base(base.input)))`, as KerasHub's image
    # classifiers build themselves: once an endless loop.
    base = tiny_models.tiny_resnet()
    features = keras.Model(base.input, base.get_layer("s2_block2_out").output)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(
        features(features.input)
    )
    model = keras.Model(features.input, keras.layers.Dense(2, name="head")(pooled))
    flat = graph.FlatGraph(model)
    assert flat.nodes[0].inputs[0] is flat.inputs[0]
    assert [layer.name for layer in flat.layers()][-2:] == ["pool", "head"]
    copy = graph.replay(
        flat, lambda flat_node, args, kwargs: flat_node.layer(*args, **kwargs)
    )
    x = tiny_models.images(2)
    np.testing.assert_allclose(
        copy.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_alias_cycle_is_an_error_not_a_loop():
    flat = graph.FlatGraph(tiny_models.tiny_resnet())
    a, b = flat.nodes[0].outputs[0], flat.nodes[1].outputs[0]
    flat._alias[id(a)] = b
    flat._alias[id(b)] = a
    with pytest.raises(ValueError, match="cycle"):
        flat.canonical(a)


def test_substitute_cycle_is_an_error_not_a_loop():
    flat = graph.FlatGraph(tiny_models.tiny_resnet())
    skipped = flat.nodes[3:5]
    a, b = skipped[0].outputs[0], skipped[1].outputs[0]

    def call_node(flat_node, args, kwargs):
        if flat_node in skipped:
            return None
        return flat_node.layer(*args, **kwargs)

    with pytest.raises(ValueError, match="cycle"):
        graph.replay(flat, call_node, substitutes={id(a): b, id(b): a})
