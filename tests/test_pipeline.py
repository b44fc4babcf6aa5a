"""Tests for keras_practise.pipeline: `compress()` end to end."""

import json
import os
import random
import warnings

import keras
import numpy as np
import pytest

import keras_practise
from keras_practise.graph import surgery
from tests import tiny_models


def _data(n=24, labels=True):
    x = tiny_models.images(n)
    return (x, np.arange(n) % 4) if labels else x


def test_compress_end_to_end_with_report(tmp_path):
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    before = [w.copy() for w in model.get_weights()]
    small, report = keras_practise.compress(
        model, _data(), drop=2, steps=3, finetune_steps=3, latency="macs",
        augment_views=2, verbose=0, return_report=True, latency_batch_size=2,
    )
    assert isinstance(small, keras.Model)
    assert len(report.blocks) == 2
    assert report.params[1] < report.params[0]
    assert report.macs[1] < report.macs[0]
    assert report.latency_ms[0] > 0 and report.latency_ms[1] > 0
    assert len(report.scores) == 3
    assert set(report.phase_seconds) >= {"recoverability", "recovery", "total"}
    assert report.tiny_set["size"] == 24
    json.dumps(report.to_dict())
    assert "params" in report.table()
    reference = surgery.drop_blocks(model, report.blocks)
    assert [l.name for l in small.layers] == [l.name for l in reference.layers]
    for new, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(new, old)
    path = os.path.join(tmp_path, "small.keras")
    small.save(path)
    reloaded = keras.saving.load_model(path)
    x = tiny_models.images(4)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), small.predict(x, verbose=0), atol=1e-6)


def test_same_seed_same_choice_and_model():
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    kwargs = dict(drop=1, steps=3, finetune_steps=4, latency="macs", augment_views=8,
                  verbose=0, return_report=True, latency_batch_size=0, num_samples=16, seed=5)
    # Whatever the global random states are, only `seed` decides.
    random.seed(1)
    np.random.seed(1)
    small, first = keras_practise.compress(model, _data(), **kwargs)
    random.seed(2)
    np.random.seed(2)
    again, second = keras_practise.compress(model, _data(), **kwargs)
    assert first.blocks == second.blocks
    assert first.tiny_set["indices"] == second.tiny_set["indices"]
    assert [s.mse for s in first.scores] == pytest.approx([s.mse for s in second.scores], rel=1e-4)
    for a, b in zip(small.get_weights(), again.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_explicit_blocks_skip_selection():
    model = tiny_models.tiny_resnet()
    small, report = keras_practise.compress(
        model, _data(labels=False), blocks=["1.3"], finetune_steps=2, verbose=0,
        return_report=True, latency_batch_size=0, augment_views=1,
    )
    assert report.blocks == ["s1_block3"] and len(report.scores) == 0


def test_data_free_compression():
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    small, report = keras_practise.compress(
        model, None, blocks=["2.2"], finetune_steps=2, num_samples=8,
        synthesis_steps=3, verbose=0, return_report=True, latency_batch_size=0,
        augment_views=1,
    )
    assert report.tiny_set["source"] == "data-free synthesis"
    assert report.tiny_set["size"] == 8


@pytest.mark.parametrize(
    "kwargs,data,error,match",
    [
        (dict(drop=5), "ok", ValueError, "larger than the number"),
        (dict(method="layerwise"), "ok", ValueError, "Unknown recovery method"),
        (dict(method="ce"), "unlabelled", ValueError, "labels"),
        (dict(), "bad_labels", ValueError, "Labels must be class indices"),
        (dict(), "wrong_channels", ValueError, "channels"),
        (dict(), "empty", ValueError, "empty|no images|0"),
        (dict(), "text", TypeError, "12345|int"),
    ],
)
def test_bad_input_fails_before_training(kwargs, data, error, match):
    model = tiny_models.tiny_resnet()
    datasets = {
        "ok": _data(),
        "unlabelled": _data(labels=False),
        "bad_labels": (tiny_models.images(8), np.full(8, 9)),
        "wrong_channels": np.zeros((8, 16, 16, 1), "float32"),
        "empty": np.zeros((0, 16, 16, 3), "float32"),
        "text": 12345,
    }
    with pytest.raises(error, match=match):
        keras_practise.compress(model, datasets[data], verbose=0, **kwargs)


def test_model_without_blocks_is_rejected():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(ValueError, match="no droppable blocks"):
        keras_practise.compress(model, _data(), verbose=0)


@pytest.mark.parametrize("scheme", ["blocks", "filters"])
def test_channels_first_model_is_rejected_by_name(scheme):
    inputs = keras.Input((3, 8, 8))
    x = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first")(inputs)
    y = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first",
                            name="cf_conv")(x)
    model = keras.Model(inputs, keras.layers.Flatten()(x + y))
    with pytest.raises(ValueError, match="channels-last models.*data_format='channels_first'"):
        keras_practise.compress(model, tiny_models.images(4, size=8), scheme=scheme,
                                verbose=0)


def test_unknown_scheme_is_named_before_other_arguments():
    with pytest.raises(ValueError, match="Unknown scheme.*scheme='bogus'"):
        keras_practise.compress(
            tiny_models.tiny_resnet(), _data(), scheme="bogus", latency="macs"
        )


def test_subclassed_model_is_rejected():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError):
        keras_practise.compress(Net(), _data(), verbose=0)


def test_compress_squeeze_and_excitation_net_with_operations(tmp_path):
    model = tiny_models.tiny_se_net()
    tiny_models.randomize_batchnorm(model)
    small, report = keras_practise.compress(
        model, _data(labels=False), drop=1, steps=2, finetune_steps=2,
        latency="macs", augment_views=1, verbose=0, return_report=True,
        latency_batch_size=0,
    )
    assert len(report.blocks) == 1 and report.blocks[0] in ("b2", "b3")
    assert not any(l.name.startswith(report.blocks[0] + "_") for l in small.layers)
    path = os.path.join(tmp_path, "small.keras")
    small.save(path)
    x = tiny_models.images(4)
    np.testing.assert_allclose(
        keras.saving.load_model(path).predict(x, verbose=0),
        small.predict(x, verbose=0),
        atol=1e-5,
    )


def test_size_agnostic_model_keeps_its_signature():
    model = tiny_models.tiny_resnet(size=None)
    with pytest.raises(ValueError, match="image_size"):
        keras_practise.compress(model, _data(), verbose=0)
    small, report = keras_practise.compress(
        model, _data(labels=False), drop=1, steps=2, finetune_steps=2,
        latency="macs", augment_views=1, verbose=0, return_report=True,
        latency_batch_size=2, image_size=(16, 16),
    )
    assert small.input_shape == (None, None, None, 3)
    assert report.macs[1] < report.macs[0]
    assert small.predict(np.zeros((1, 24, 24, 3), "float32"), verbose=0).shape == (1, 4)


def test_backbone_called_on_its_own_input_compresses():
    base = tiny_models.tiny_resnet()
    features = keras.Model(base.input, base.get_layer("s2_block2_out").output)
    head = keras.layers.GlobalAveragePooling2D(name="pool")
    model = keras.Model(features.input, head(features(features.input)))
    assert [b.label for b in keras_practise.find_blocks(model)] == ["1.2", "1.3", "2.2"]
    small = keras_practise.compress(
        model, _data(labels=False), drop=1, steps=2, finetune_steps=2,
        latency="macs", verbose=0, latency_batch_size=0,
    )
    assert keras_practise.count_params(small) < keras_practise.count_params(model)


@pytest.mark.parametrize("scheme", ["blocks", "filters"])
def test_no_keras_warnings_about_input_structure(scheme):
    # Internal models built on `model.inputs` (a list) made Keras warn on
    # every call with a single tensor.
    model = tiny_models.tiny_resnet()
    options = dict(drop=1, latency="macs") if scheme == "blocks" else dict(keep=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras_practise.compress(
            model, _data(labels=False), scheme=scheme, steps=2, finetune_steps=2,
            augment_views=1, verbose=0, latency_batch_size=0, **options,
        )
    assert not [w for w in caught if "structure of `inputs`" in str(w.message)]


def test_mixed_precision_model():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = tiny_models.tiny_resnet()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    small = keras_practise.compress(
        model, _data(labels=False), drop=1, steps=2, finetune_steps=2,
        latency="macs", augment_views=1, verbose=0,
    )
    assert small.layers[-1].dtype_policy.name == "mixed_bfloat16"
    outputs = keras.ops.convert_to_numpy(
        keras.ops.cast(small(tiny_models.images(2)), "float32")
    )
    assert np.isfinite(outputs).all()


@pytest.mark.parametrize("build_policy,call_policy", [
    ("float32", "mixed_bfloat16"), ("mixed_bfloat16", "float32"),
])
def test_layers_keep_their_dtype_policy_whatever_the_global_one(
    build_policy, call_policy,
):
    keras.mixed_precision.set_dtype_policy(build_policy)
    try:
        model = tiny_models.tiny_resnet()
        keras.mixed_precision.set_dtype_policy(call_policy)
        small = keras_practise.compress(
            model, _data(labels=False), drop=1, steps=2, finetune_steps=2,
            latency="macs", augment_views=1, verbose=0,
        )
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert {layer.dtype_policy.name for layer in small.layers} == {build_policy}
