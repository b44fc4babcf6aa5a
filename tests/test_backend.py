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


def _conv_cases():
    for kernel in (1, 2, 3, 5):
        for strides in (1, 2):
            for padding in ("same", "valid"):
                for dilation in (1, 2) if strides == 1 else (1,):
                    if padding == "valid" and (kernel - 1) * dilation >= 7:
                        continue  # no output pixel left
                    for groups in (1, 2):
                        yield kernel, strides, padding, dilation, groups


def _value_and_grads(layer, x, weights):
    import torch

    outputs = layer(x)
    # A fixed random target: a normalised output's own norm would be
    # constant and leave BatchNorm's input gradient at rounding noise.
    target = np.random.default_rng(1).normal(size=tuple(outputs.shape))
    loss = (outputs - torch.tensor(target.astype("float32"))).square().sum()
    grads = torch.autograd.grad(loss, [x, *(w.value for w in weights)])
    return [t.detach().numpy() for t in (outputs, *grads)]


def _assert_close_to_scale(actual, expected, rtol=1e-5):
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, atol=rtol * np.abs(e).max())


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch kernels")
@pytest.mark.parametrize("size", [7, 8])
def test_fused_convolutions_match_keras(size):
    import torch

    rng = np.random.default_rng(0)
    for kernel, strides, padding, dilation, groups in _conv_cases():
        layer = keras.layers.Conv2D(
            6, kernel, strides=strides, padding=padding,
            dilation_rate=dilation, groups=groups,
        )
        x = torch.tensor(
            rng.normal(size=(2, size, size + 1, 4)).astype("float32"),
            requires_grad=True,
        )
        layer.build(tuple(x.shape))
        expected = _value_and_grads(layer, x, [layer.kernel])
        with backend.fused_kernels():
            actual = _value_and_grads(layer, x, [layer.kernel])
        _assert_close_to_scale(actual, expected)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch kernels")
@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_matches_keras_and_uses_torch_kernel(training):
    from unittest import mock

    import torch

    layer = keras.layers.BatchNormalization(momentum=0.5)
    x = torch.tensor(
        np.random.default_rng(0).normal(2.0, 3.0, (4, 5, 6, 3)).astype("float32"),
        requires_grad=True,
    )
    layer.build(x.shape)
    _randomize_batchnorm(keras.Sequential([layer]))
    start = [w.copy() for w in layer.get_weights()]

    def run():
        layer.set_weights(start)
        values = _value_and_grads(
            lambda t: layer(t, training=training), x, [layer.gamma, layer.beta]
        )
        return values + [w.copy() for w in layer.get_weights()]

    expected = run()
    batch_norm = torch.nn.functional.batch_norm
    with backend.fused_kernels(), mock.patch.object(
        torch.nn.functional, "batch_norm", wraps=batch_norm
    ) as fused:
        actual = run()
    assert fused.call_count == 1
    # Outputs, gradients, and the moving statistics the layer updated.
    _assert_close_to_scale(actual, expected)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch kernels")
def test_fused_kernels_end_on_exit_even_after_errors_and_nesting():
    from unittest import mock

    import torch

    layer = keras.layers.Conv2D(4, 1)
    x = np.ones((1, 3, 3, 2), "float32")
    layer(x)

    def matmuls():
        with mock.patch.object(torch, "matmul", wraps=torch.matmul) as spy:
            layer(x)
        return spy.call_count

    with pytest.raises(RuntimeError, match="inside"):
        with backend.fused_kernels():
            with backend.fused_kernels():
                assert matmuls() == 1
            assert matmuls() == 1
            raise RuntimeError("inside")
    assert matmuls() == 0


def _small_resnet():
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.Conv2D(8, 1)(keras.layers.ReLU()(y))
    x = keras.layers.Add()([y, keras.layers.Conv2D(8, 1, strides=2)(x)])
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_training_in_fused_kernels_gives_keras_results():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 12, 12, 3)).astype("float32")
    y = rng.normal(size=(16, 3)).astype("float32")
    model = _small_resnet()
    start = model.get_weights()
    results = []
    for fused in (False, True):
        model.set_weights(start)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
        if fused:
            with backend.fused_kernels():
                model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
        else:
            model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
        results.append(model.get_weights() + [model.predict(x, verbose=0)])
    for fused, plain in zip(results[1], results[0]):
        np.testing.assert_allclose(fused, plain, atol=1e-4 * np.abs(plain).max() + 1e-7)
    # The weights moved, so the comparison covers training, not just the start.
    assert not np.allclose(results[0][0], start[0])


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch kernels")
def test_fused_batch_norm_training_is_float32_accurate_over_many_values():
    # torch's channels-last CPU kernel sums less accurately than Keras'
    # composed ops (docs/results.md, "Robustness"): here 3e-6 of gamma's
    # gradient over 16k values per channel, against Keras' 3e-7. Bounded
    # so that a kernel that loses more precision is caught.
    import torch

    rng = np.random.default_rng(0)
    x64 = rng.normal(3.0, 2.0, (16, 32, 32, 8))
    weights = rng.normal(size=x64.shape)
    layer = keras.layers.BatchNormalization()
    layer.build(x64.shape)
    gamma = rng.normal(size=8)
    beta = rng.normal(size=8)
    layer.set_weights([gamma, beta, np.zeros(8), np.ones(8)])

    x = torch.tensor(x64.astype("float32"), requires_grad=True)
    with backend.fused_kernels():
        y = layer(x, training=True)
    (y * torch.tensor(weights.astype("float32"))).sum().backward()

    mean = x64.mean(axis=(0, 1, 2))
    inv = 1.0 / np.sqrt(x64.var(axis=(0, 1, 2)) + layer.epsilon)
    x_hat = (x64 - mean) * inv
    expected_y = x_hat * gamma + beta
    dy_hat = weights * gamma
    expected_dx = inv * (
        dy_hat - dy_hat.mean(axis=(0, 1, 2))
        - x_hat * (dy_hat * x_hat).mean(axis=(0, 1, 2))
    )
    for actual, expected in (
        (y.detach().numpy(), expected_y),
        (x.grad.numpy(), expected_dx),
        (layer.gamma.value.grad.numpy(), (weights * x_hat).sum(axis=(0, 1, 2))),
    ):
        error = np.abs(actual - expected).max() / np.abs(expected).max()
        assert error < 2e-5


def test_fused_batch_norm_of_a_single_value_per_channel_is_keras_own():
    # torch's fused kernel refuses batch statistics of one value; Keras
    # normalises it to beta. Inside fused_kernels() the result is Keras'.
    layer = keras.layers.BatchNormalization(beta_initializer="ones")
    x = np.full((1, 1, 1, 3), 2.0, "float32")
    with backend.fused_kernels():
        outputs = backend.to_numpy(layer(x, training=True))
    np.testing.assert_allclose(outputs, np.ones((1, 1, 1, 3)), atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch kernels")
def test_fused_kernels_warn_and_step_aside_when_keras_is_laid_out_differently(
    monkeypatch,
):
    from keras.src.backend.torch import nn as torch_nn

    monkeypatch.delattr(torch_nn, "moments")
    conv = torch_nn.conv
    with pytest.warns(RuntimeWarning, match="Keras' own torch kernels"):
        with backend.fused_kernels():
            assert torch_nn.conv is conv
    assert torch_nn.conv is conv


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="only torch's Dropout draws from a global generator",
)
def test_seeded_global_rng_fixes_torch_dropout_and_restores_the_state():
    layer = keras.layers.Dropout(0.5)
    x = keras.ops.ones((4, 32))

    def masks(seed):
        with backend.seeded_global_rng(seed):
            return [backend.to_numpy(layer(x, training=True)) for _ in range(2)]

    import torch

    state = torch.random.get_rng_state()
    first, again, other = masks(0), masks(0), masks(1)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], other[0])
    assert torch.equal(torch.random.get_rng_state(), state)
