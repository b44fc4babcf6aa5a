"""Tests for keras_practise.graph.taps: teacher taps and prefix cuts."""

import keras
import pytest

from keras_practise.distillation import losses
from keras_practise.graph import flat_graph
from keras_practise.graph import taps
from tests import tiny_models


def test_tap_is_the_input_of_the_head():
    model = tiny_models.tiny_resnet()
    tap = taps.feature_tap(model)
    assert tap is model.get_layer("s2_block2_out").output


def test_tap_skips_squeeze_and_excitation_pooling():
    model = tiny_models.tiny_se_net()
    tap = taps.feature_tap(model)
    assert flat_graph.tensor_key(tap) == "top_act"


def test_tap_of_a_model_without_head_is_its_output():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    outputs = keras.layers.Conv2D(4, 3, padding="same", name="last")(x)
    model = keras.Model(inputs, outputs)
    assert flat_graph.tensor_key(taps.feature_tap(model)) == "last"


def test_prefix_cut_is_the_last_main_path_tensor_before_a_change():
    model = tiny_models.tiny_resnet()
    cut = taps.frozen_prefix_cut(model, ["s1_block3_1_conv"])
    assert flat_graph.tensor_key(cut) == "s1_block2_out"
    assert taps.frozen_prefix_cut(model, ["stem_conv"]) is model.inputs[0]


def _head(kind):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if kind == "softmax_layer":
        x = keras.layers.Softmax()(keras.layers.Dense(3)(x))
    elif kind == "softmax_activation_layer":
        x = keras.layers.Activation("softmax")(keras.layers.Dense(3)(x))
    elif kind == "dense_softmax":
        x = keras.layers.Dense(3, activation="softmax")(x)
    else:
        x = keras.layers.Dense(3)(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("softmax_layer", True),
        ("softmax_activation_layer", True),
        ("dense_softmax", True),
        ("logits", False),
    ],
)
def test_ends_in_softmax(kind, expected):
    model = _head(kind)
    assert taps.ends_in_softmax(model) is expected
    # The same head inside a classifier that nests the model.
    inputs = keras.Input((8, 8, 3))
    nested = keras.Model(inputs, model(inputs))
    assert taps.ends_in_softmax(nested) is expected
    loss = losses.classification_loss(nested)
    assert loss.from_logits is (not expected)


def _nested():
    inner = tiny_models.tiny_resnet()
    backbone = keras.Model(inner.input, taps.feature_tap(inner), name="backbone")
    inputs = keras.Input(backbone.input_shape[1:])
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(backbone(inputs)))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("build,shares", [(tiny_models.tiny_resnet, True), (_nested, False)])
def test_tap_model_reads_the_same_activations_as_a_rewritten_copy(build, shares):
    import numpy as np

    from keras_practise.graph import surgery

    model = build()
    tiny_models.randomize_batchnorm(model)
    graph = flat_graph.FlatGraph(model)
    tensors = [t for _, t in graph.cut_tensors()][1:3] + [taps.feature_tap(model)]
    tapped = taps.tap_model(model, tensors)
    x = tiny_models.images(4)
    expected = surgery.rewrite(model, outputs=tensors)(x)
    for actual, wanted in zip(tapped(x), expected):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(wanted),
            atol=1e-5,
        )
    # A plain model's own layers serve (no copy); a nested one's are copied.
    own = {id(layer) for layer in model.layers}
    assert any(id(layer) in own for layer in tapped.layers[1:]) == shares
