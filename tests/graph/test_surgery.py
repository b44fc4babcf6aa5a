"""Tests for keras_practise.graph.surgery: dropping blocks from a model."""

import os

import keras
import numpy as np
import pytest

from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import surgery

FACTORIES = {
    "resnet50": lambda: keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=7
    ),
    "resnet50v2": lambda: keras.applications.ResNet50V2(
        weights=None, input_shape=(32, 32, 3), classes=7
    ),
    "mobilenetv2": lambda: keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=7
    ),
    "vgg16": lambda: keras.applications.VGG16(
        weights=None, input_shape=(32, 32, 3), classes=7
    ),
}


def _randomize_batchnorm(model, seed=0):
    """Non-trivial BN statistics so that equivalence checks mean something."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = layer.get_weights()
            layer.set_weights(
                [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in weights]
            )


def _inputs(shape=(2, 32, 32, 3)):
    return np.random.default_rng(1).uniform(0, 1, shape).astype("float32")


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_dropping_nothing_reproduces_predictions(name):
    model = FACTORIES[name]()
    _randomize_batchnorm(model)
    copy = surgery.drop_blocks(model, [])
    x = _inputs()
    np.testing.assert_allclose(
        copy.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )
    assert not {id(l) for l in copy.layers} & {id(l) for l in model.layers}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_drop_keeps_weights_shapes_and_counts(name):
    model = FACTORIES[name]()
    before = [w.copy() for w in model.get_weights()]
    found = blocks_lib.find_blocks(model)
    chosen = [found[0], found[-1]]
    dropped = surgery.drop_blocks(model, chosen)
    assert dropped.output.shape == model.output.shape
    assert model.count_params() - dropped.count_params() == sum(
        b.param_count for b in chosen
    )
    gone = {n for b in chosen for n in b.layer_names}
    for layer in dropped.layers:
        assert layer.name not in gone
        original = model.get_layer(layer.name)
        assert original is not layer
        for new, old in zip(layer.get_weights(), original.get_weights()):
            np.testing.assert_array_equal(new, old)
    # The user's model is untouched.
    for new, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(new, old)
    assert len(blocks_lib.find_blocks(model)) == len(found)


def test_dropped_block_output_is_its_input():
    model = FACTORIES["resnet50"]()
    _randomize_batchnorm(model)
    dropped = surgery.drop_blocks(model, ["conv5_block3"])
    # conv5_block3 is the last block: the head now reads conv5_block2's output.
    features = keras.Model(model.input, model.get_layer("conv5_block2_out").output)
    head = keras.Sequential(
        [model.get_layer("avg_pool"), model.get_layer("predictions")]
    )
    x = _inputs()
    expected = head(features(x))
    np.testing.assert_allclose(
        dropped.predict(x, verbose=0), keras.ops.convert_to_numpy(expected), atol=1e-5
    )


def test_save_and_reload_without_custom_objects(tmp_path):
    model = FACTORIES["mobilenetv2"]()
    dropped = surgery.drop_blocks(model, ["block_4", "5.3"])
    path = os.path.join(tmp_path, "dropped.keras")
    dropped.save(path)
    reloaded = keras.saving.load_model(path)
    x = _inputs()
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), dropped.predict(x, verbose=0), atol=1e-6
    )


def test_duplicates_are_dropped_once():
    model = FACTORIES["resnet50"]()
    once = surgery.drop_blocks(model, ["1.2"])
    twice = surgery.drop_blocks(model, ["1.2", "conv2_block2"])
    assert once.count_params() == twice.count_params()


def test_unknown_block_lists_valid_names():
    model = FACTORIES["vgg16"]()
    with pytest.raises(ValueError, match="block1_conv2 \\(1.2\\)"):
        surgery.drop_blocks(model, ["block1_conv1"])


def test_nested_model_is_flattened():
    backbone = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), include_top=False
    )
    _randomize_batchnorm(backbone)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    flat = surgery.drop_blocks(model, [])
    assert not any(isinstance(l, keras.Model) for l in flat.layers)
    x = _inputs()
    np.testing.assert_allclose(
        flat.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )
    dropped = surgery.drop_blocks(model, ["3.2"])
    assert dropped.count_params() < model.count_params()


def test_rewrite_wraps_layer_calls():
    model = FACTORIES["vgg16"]()
    zeroed = surgery.rewrite(
        model, after={"block5_pool": lambda t: keras.ops.multiply(t, 0.0)}
    )
    x = _inputs()
    # Zeroed features leave only the biases flowing through the head.
    expected_head = keras.Sequential(
        [
            model.get_layer("flatten"),
            model.get_layer("fc1"),
            model.get_layer("fc2"),
            model.get_layer("predictions"),
        ]
    )
    zero = np.zeros((2, 1, 1, 512), "float32")
    np.testing.assert_allclose(
        zeroed.predict(x, verbose=0),
        keras.ops.convert_to_numpy(expected_head(zero)),
        atol=1e-5,
    )


def test_rewrite_fixes_and_frees_the_input_size():
    from keras_practise import models

    dynamic = models.ResNet20(weights=None, input_shape=(None, None, 3), classes=4)
    fixed = surgery.rewrite(dynamic, input_shape=(24, 24, 3))
    assert fixed.input_shape == (None, 24, 24, 3)
    freed = surgery.rewrite(fixed, input_shape=(None, None, 3))
    assert freed.input_shape == (None, None, None, 3)
    x = np.random.default_rng(0).uniform(size=(2, 24, 24, 3)).astype("float32")
    expected = dynamic.predict(x, verbose=0)
    np.testing.assert_allclose(fixed.predict(x, verbose=0), expected, atol=1e-5)
    np.testing.assert_allclose(freed.predict(x, verbose=0), expected, atol=1e-5)
    # The freed copy takes other sizes again.
    assert freed.predict(np.zeros((1, 40, 40, 3), "float32"), verbose=0).shape == (1, 4)
