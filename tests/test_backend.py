"""Tests for keras_practise.backend: compiled inference, sync, device names."""

import keras
import numpy as np
import pytest

from keras_practise import backend


def _two_conv_net(outputs=1):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    logits = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    if outputs == 1:
        return keras.Model(inputs, logits)
    return keras.Model(inputs, {"features": x, "logits": logits})


def _randomize_batchnorm(model):
    # Non-trivial moving statistics make training=True/False give different
    # outputs, so the test sees which mode the compiled function ran in.
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [rng.uniform(0.5, 1.5, w.shape).astype("float32")
                 for w in layer.get_weights()]
            )


@pytest.mark.parametrize("jit", [True, False])
def test_compile_inference_matches_predict(jit):
    model = _two_conv_net()
    _randomize_batchnorm(model)
    x = np.random.default_rng(0).random((5, 16, 16, 3)).astype("float32")
    infer = backend.compile_inference(model, jit=jit)
    outputs = backend.to_numpy(infer(keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=1e-5)


def test_compile_inference_multi_output():
    model = _two_conv_net(outputs=2)
    _randomize_batchnorm(model)
    x = np.random.default_rng(0).random((3, 16, 16, 3)).astype("float32")
    outputs = backend.to_numpy(backend.compile_inference(model)(x))
    expected = model.predict(x, verbose=0)
    assert set(outputs) == {"features", "logits"}
    for key in expected:
        assert isinstance(outputs[key], np.ndarray)
        np.testing.assert_allclose(outputs[key], expected[key], atol=1e-5)


def test_compiled_inference_follows_weight_updates():
    model = _two_conv_net()
    infer = backend.compile_inference(model)
    x = np.ones((2, 16, 16, 3), "float32")
    infer(x)
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias + 1.0])
    np.testing.assert_allclose(
        backend.to_numpy(infer(x)), model.predict(x, verbose=0), atol=1e-5
    )


def test_compile_inference_rejects_non_layers():
    with pytest.raises(TypeError, match="Received: model=.*function"):
        backend.compile_inference(lambda x: x)


def test_synchronize_accepts_outputs():
    model = _two_conv_net(outputs=2)
    x = np.zeros((1, 16, 16, 3), "float32")
    outputs = backend.compile_inference(model)(x)
    backend.synchronize(outputs)
    backend.synchronize()
    assert backend.to_numpy(outputs)["logits"].shape == (1, 4)


def test_device_name_names_the_device():
    name = backend.device_name()
    kind, _, detail = name.partition(": ")
    assert kind in ("CPU", "GPU", "TPU")
    assert detail
    if kind == "CPU":
        assert detail.endswith(" cores")


def test_to_numpy_keeps_structure():
    tensors = {"a": keras.ops.ones((2,)), "b": [keras.ops.zeros((1, 3))]}
    arrays = backend.to_numpy(tensors)
    assert isinstance(arrays["a"], np.ndarray)
    assert isinstance(arrays["b"], list)
    np.testing.assert_array_equal(arrays["b"][0], np.zeros((1, 3)))


def test_compile_inference_of_call_without_training_argument():
    class Doubler(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return 2.0 * self.dense(x)

    model = Doubler()
    x = np.ones((2, 5), "float32")
    expected = backend.to_numpy(model(x))
    outputs = backend.to_numpy(backend.compile_inference(model)(x))
    np.testing.assert_allclose(outputs, expected, atol=1e-6)


@pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="TorchScript tracing is torch's path"
)
def test_torch_inference_falls_back_to_eager_when_tracing_fails(monkeypatch):
    import torch

    def broken_trace(*args, **kwargs):
        raise RuntimeError("cannot trace this graph")

    monkeypatch.setattr(torch.jit, "trace", broken_trace)
    model = _two_conv_net()
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    with pytest.warns(RuntimeWarning, match="cannot trace this graph.*runs eagerly"):
        outputs = backend.to_numpy(backend.compile_inference(model)(x))
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=1e-5)
