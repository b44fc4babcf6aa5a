"""The one module that branches on the Keras backend.

Everything else in keras_practise is written with `keras.ops` and Keras APIs.
What cannot be written that way lives here: compiling a model's inference
call, waiting for asynchronous device work before reading a clock, and naming
the device that a latency table was measured on.

Choices below were measured on a 2-core AMD EPYC CPU (Keras 3.15, TF 2.21,
torch 2.13):

- TensorFlow: `tf.function` without XLA. With `jit_compile=True` inference
  was 1.1x slower on a plain residual net and 7x slower on MobileNetV2 and
  ResNet50 (the oneDNN kernels that plain graphs use beat XLA's CPU ones).
- torch: a TorchScript trace per input shape, frozen and passed through
  `torch.jit.optimize_for_inference` (about 3 s for ResNet-50; the frozen
  graph folds BatchNorm into the convs and drops the per-conv layout
  copies of Keras' channels-last convs): ResNet-50 at 128x128, batch 8, ran
  in 177 ms against 354 ms eagerly. It is traced again when a weight
  changes, checked against the eager call once, and replaced by the eager
  call (with a warning) where tracing fails. Both trace and eager call run
  `fused_kernels()` (below): 224 vs 294 ms traced, 326 vs 528 ms eager.
  `torch.compile` took 20 s to
  compile a 9-conv net and 140 s for MobileNetV2, hit Dynamo's recompile
  limit inside Keras' layer hooks and was not faster on MobileNetV2. The
  eager path uses `no_grad` rather than `inference_mode`: a model built
  during an inference-mode call would get inference tensors as weights,
  which later training cannot use.
- JAX: `jax.jit` of `model.stateless_call`, fed the variables' current values
  on every call so that the compiled function follows later weight updates.

Training and eager inference on torch run inside `fused_kernels()`, which
swaps three of Keras' torch functions (conv, moments, batch normalization)
for leaner ones while it is active, the only place keras_practise touches
Keras internals: a 1x1 convolution is a matrix product on the channels-last
tensor, a KxK kernel is transposed as one 2-D matrix (8x faster than Keras'
4-D permute of a 512x512x3x3 kernel), activations keep their memory layout
(Keras copies each one twice per conv), and BatchNormalization normalises
with torch's fused kernel. ResNet-50 at 128x128, batch 16, one thread: train
step 2.02 -> 1.37 s, eager inference 0.76 -> 0.49 s, same results to float
rounding (torch's channels-last BatchNorm rounds about 10x more than Keras'
ops; its channels-first kernel, exact to Keras' level, needs two copies per
layer and was 4-5x slower).
"""

import contextlib
import inspect
import os
import platform
import threading
import warnings
import weakref

import keras
import numpy as np


def compile_inference(model, jit=True, changing=False):
    """Returns a function that runs `model(x, training=False)` fast.

    Args:
        model: A built `keras.Model` (or any Keras layer).
        jit: Whether to compile a graph: `tf.function` on TensorFlow,
            `jax.jit` on JAX, a frozen TorchScript trace per input shape on
            torch (see the module docstring). Defaults to `True`.
        changing: Whether the model's weights change between most calls
            (a student between training runs). torch then runs eagerly:
            its frozen trace would be redone after every change; the
            TensorFlow and JAX graphs read the current weights anyway.

    Returns:
        A function `f(x)` taking what `model` takes (backend tensors or
        NumPy arrays) and returning the model's outputs as backend tensors,
        nested like the model's outputs.

    Raises:
        TypeError: If `model` is not a Keras layer.

    Example:

    ```python
    infer = compile_inference(model)
    outputs = to_numpy(infer(keras.ops.ones((8, 32, 32, 3))))
    ```
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "`model` must be a Keras model or layer. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _compile_tensorflow(model, jit, changing)
    if backend == "torch":
        return _compile_torch(model, jit and not changing)
    if backend == "jax":
        return _compile_jax(model, jit)
    raise ValueError(
        "compile_inference supports the tensorflow, torch and jax backends. "
        f"Received: backend={backend!r}"
    )


def _compile_tensorflow(model, jit, changing):
    import tensorflow as tf

    def infer(x):
        return model(x, training=False)

    # A model reused across runs meets several batch sizes: one trace with
    # a free batch dimension rather than one per size (and TF's warning).
    return tf.function(infer, jit_compile=False, reduce_retracing=changing) if jit else infer


def _compile_torch(model, jit):
    import torch

    def eager(x):
        with torch.no_grad(), fused_kernels():
            return model(x, training=False)

    if not jit:
        return eager
    traced = {}
    variables = list(model.weights)

    def infer(x):
        x = keras.tree.map_structure(keras.ops.convert_to_tensor, x)
        # In-place weight updates bump a tensor's version counter; replaced
        # tensors change identity. Either makes the frozen graph stale.
        weights = tuple((id(v.value), v.value._version) for v in variables)
        key = tuple((tuple(t.shape), t.dtype) for t in keras.tree.flatten(x))
        entry = traced.get(key)
        if entry is None or entry[0] != weights:
            entry = traced[key] = (weights, _trace_torch(model, x, eager))
        return entry[1](x)

    return infer


def _trace_torch(model, x, eager):
    """A frozen TorchScript graph of `model` for inputs shaped like `x`.

    Falls back to `eager`, with a warning, when tracing fails or the traced
    graph disagrees with the eager call (value-dependent control flow).
    """
    import torch

    with torch.no_grad(), fused_kernels(), warnings.catch_warnings():
        # Keras' shape arithmetic on tensors is constant for a fixed input
        # shape, which is what the trace is specialised to.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        expected = keras.tree.flatten(eager(x))
        try:
            graph = torch.jit.trace(model, (x,), check_trace=False, strict=False)
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(graph.eval()))
            actual = keras.tree.flatten(graph(x))
            problem = None
            if len(actual) != len(expected) or not all(
                torch.allclose(a, e, rtol=1e-4, atol=1e-4)
                for a, e in zip(actual, expected)
            ):
                problem = "its outputs differ from the eager call"
        except Exception as error:  # Any failure to trace means: run eagerly.
            problem = str(error)
    if problem is not None:
        warnings.warn(
            f"Could not compile {model.name!r} for inference with TorchScript "
            f"({problem}); it runs eagerly.",
            RuntimeWarning,
            stacklevel=4,
        )
        return eager

    def run(x):
        with torch.no_grad():
            return graph(x)

    return run


def _compile_jax(model, jit):
    import jax

    if not jit:
        return lambda x: model(x, training=False)
    # `model(x, training=...)` drops the argument when `call` lacks it;
    # `stateless_call` passes it through, so decide the same way here.
    parameters = inspect.signature(model.call).parameters
    takes_training = "training" in parameters or any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
    call_kwargs = {"training": False} if takes_training else {}

    @jax.jit
    def stateless_infer(trainable_values, non_trainable_values, x):
        outputs, _ = model.stateless_call(
            trainable_values, non_trainable_values, x, **call_kwargs
        )
        return outputs

    def infer(x):
        return stateless_infer(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            x,
        )

    return infer


def traces_train_step():
    """Whether Keras traces (compiles) a model's train step on this backend.

    TensorFlow and JAX do; torch runs it eagerly, so a student shared by
    many trainings saves no trace there and was no faster (a greedy choice
    of 3 of 6 ResNet-20 blocks at 10 steps: 21.4 and 26.2 s switched against
    22.1 and 20.1 s with a student per set, docs/results.md).
    """
    return keras.backend.backend() != "torch"


def training_memory():
    """`(factor, fixed)` of a training step's resident memory on this backend.

    A step added `factor` times the float32 size of the layer outputs it
    differentiates through, per sample, plus `fixed` bytes: measured for
    MobileNetV2 and ResNet-50 at 224 px, batches of 8-64 (per sample
    1.0-1.06x on TensorFlow, 1.05-1.15x on torch, 1.13-1.23x on JAX, whose
    compiled step also took about 1 GiB whatever the batch), and for the
    adaptor students of ResNet-50 at 128 px (only 1x1 adaptors train, the
    frozen layers behind them are differentiated through), where torch
    kept 1.33-1.44x (batches 16 and 64; TensorFlow and JAX stayed within
    their factors).
    """
    if keras.backend.backend() == "jax":
        return 1.25, 2**30
    if keras.backend.backend() == "torch":
        return 1.5, 2**28
    return 1.25, 2**28


def switched_conv(x, kernel, on):
    """`conv(x, kernel)` (1x1, channels last) where `on` is true, else `x`.

    `on` is a scalar tensor, read when the call runs, so one traced graph
    serves both. TensorFlow and torch branch (`keras.ops.cond`): an adaptor
    that is off costs nothing. JAX blends, `x + on * (conv(x) - x)`: its
    compiled train step ran 3-4x slower per step with a branch per adaptor
    on this CPU (ResNet-20, 30 steps: 6.9 s against 2.6 s blended), while
    TensorFlow's ran 2.6x slower blended (21 s against 8 s). Either way an
    adaptor that is off gets no gradient.

    Args:
        x: The input, channels last.
        kernel: The `(1, 1, channels, channels)` kernel.
        on: A scalar boolean tensor.

    Returns:
        A tensor shaped like `x`.
    """
    if keras.backend.backend() == "jax":
        y = keras.ops.conv(x, kernel)
        return x + keras.ops.cast(on, x.dtype) * (y - x)
    return keras.ops.cond(on, lambda: keras.ops.conv(x, kernel), lambda: x)


def synchronize(outputs=None):
    """Blocks until the device has finished the work queued so far.

    Call it before reading a clock: GPU kernels (and JAX on any device) run
    asynchronously, so a function can return before its result exists.

    Args:
        outputs: Backend tensors (any nesting) just returned by a call. JAX
            can only wait on arrays, so pass them there; the other backends
            wait for the whole device and ignore it. Defaults to `None`.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.test.experimental.sync_devices()
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    elif backend == "jax" and outputs is not None:
        import jax

        jax.block_until_ready(outputs)


def device_name():
    """Names the device that Keras computes on, for result tables.

    Returns:
        A string: `"GPU: <name>"` when the backend uses an accelerator,
        otherwise `"CPU: <model name>, <n> cores"` with the model name
        from `/proc/cpuinfo` (or `platform` where that file is missing)
        and the number of cores this process may run on.
    """
    accelerator = _accelerator_name()
    if accelerator:
        return accelerator
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count()
    return f"CPU: {_cpu_model_name()}, {cores} cores"


def _accelerator_name():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU: {details.get('device_name', gpus[0].name)}"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)}"
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"{device.platform.upper()}: {device.device_kind}"
    return None


def _cpu_model_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        # Not Linux: fall through to what `platform` knows.
        pass
    return platform.processor() or platform.machine() or "unknown"


@contextlib.contextmanager
def seeded_global_rng(seed):
    """Runs the block with the backend's global random generator at `seed`.

    Keras' torch `Dropout` without a seed draws its masks from torch's global
    generator, which training must not depend on; the generator's state is
    restored on exit. TensorFlow and JAX draw from the layers' own seed
    generators (`trainer.seed_random_layers`), so there this does nothing.

    Args:
        seed: An integer seed.

    Example:

    ```python
    with seeded_global_rng(0):
        model.fit(x, y, epochs=1)
    ```
    """
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def to_numpy(x):
    """Converts backend tensors (any nesting) to NumPy arrays.

    Args:
        x: A tensor of any framework (numpy, TensorFlow, torch, JAX), or a
            list / tuple / dict of them.

    Returns:
        The same structure with every tensor replaced by a `np.ndarray`.
    """
    return keras.tree.map_structure(_leaf_to_numpy, x)


def _leaf_to_numpy(value):
    # Data loaders hand over torch tensors whatever Keras runs on, possibly
    # on an accelerator or attached to an autograd graph.
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # NumPy has no bfloat16.
            value = value.float()
    return np.asarray(value)


_fused_lock = threading.Lock()
_fused_depth = 0
_fused_originals = None
# The batch tensor each pair of moments was computed from, so that
# BatchNormalization's normalisation can recognise its own batch statistics.
_BATCH_OF = "_keras_practise_batch_of"


@contextlib.contextmanager
def fused_kernels():
    """Runs Keras' convolutions and BatchNormalization on fused torch kernels.

    Inside the block, and on the torch backend only, 2-D channels-last
    convolutions and batch normalisation skip the layout copies and the
    separate elementwise passes of Keras' torch implementations (see the
    module docstring); results agree with Keras' to float rounding.
    Anything else (other ranks, asymmetric "same" padding, masks, other
    dtypes) runs Keras' own code. A no-op on the other backends. Blocks
    may nest and may run in several threads.

    Example:

    ```python
    with fused_kernels():
        model.fit(x, y, epochs=1)
    ```
    """
    if keras.backend.backend() != "torch":
        yield
        return
    from keras.src.backend.torch import nn as torch_nn

    if not all(
        callable(getattr(torch_nn, name, None))
        for name in ("conv", "moments", "batch_normalization")
    ):
        # A Keras version laid out differently: its own kernels, slower.
        warnings.warn(
            f"Keras {keras.__version__} has no torch conv / moments / "
            "batch_normalization functions where keras_practise expects "
            "them; training runs on Keras' own torch kernels.",
            RuntimeWarning,
            stacklevel=3,
        )
        yield
        return
    global _fused_depth, _fused_originals
    with _fused_lock:
        if _fused_depth == 0:
            _fused_originals = (
                torch_nn.conv,
                torch_nn.moments,
                torch_nn.batch_normalization,
            )
            torch_nn.conv = _fused_conv(_fused_originals[0])
            torch_nn.moments = _tagged_moments(_fused_originals[1])
            torch_nn.batch_normalization = _fused_batch_norm(
                _fused_originals[2]
            )
        _fused_depth += 1
    try:
        yield
    finally:
        with _fused_lock:
            _fused_depth -= 1
            if _fused_depth == 0:
                (
                    torch_nn.conv,
                    torch_nn.moments,
                    torch_nn.batch_normalization,
                ) = _fused_originals


def _same_padding(size, kernel, stride, dilation):
    """Keras' per-side "same" padding, or `None` where it is asymmetric."""
    effective = (kernel - 1) * dilation + 1
    total = max(0, (-(-size // stride) - 1) * stride + effective - size)
    return None if total % 2 else total // 2


def _fused_conv(keras_conv):
    import torch

    def conv(
        inputs, kernel, strides=1, padding="valid", data_format=None,
        dilation_rate=1,
    ):
        data_format = data_format or keras.config.image_data_format()
        inputs = keras.ops.convert_to_tensor(inputs)
        kernel = keras.ops.convert_to_tensor(kernel)
        if (
            data_format != "channels_last"
            or inputs.ndim != 4
            or kernel.ndim != 4
            or inputs.dtype != kernel.dtype
            or padding not in ("valid", "same")
        ):
            return keras_conv(
                inputs, kernel, strides, padding, data_format, dilation_rate
            )
        strides = _pair(strides)
        dilation = _pair(dilation_rate)
        height, width, in_channels, out_channels = kernel.shape
        if (height, width) == (1, 1) and in_channels == inputs.shape[-1]:
            # Strided 1x1 convs read every stride-th pixel whatever the
            # padding ("same" pads nothing for a 1x1 kernel).
            x = inputs[:, :: strides[0], :: strides[1], :]
            return torch.matmul(x, kernel[0, 0])
        pads = (0, 0)
        if padding == "same":
            pads = tuple(
                _same_padding(n, k, s, d)
                for n, k, s, d in zip(
                    inputs.shape[1:3], (height, width), strides, dilation
                )
            )
            if None in pads:
                return keras_conv(
                    inputs, kernel, strides, padding, data_format,
                    dilation_rate,
                )
        # (out, in, h, w) with channels-last strides, built by one 2-D
        # transpose; the permuted input is already channels-last in memory.
        weight = (
            kernel.reshape(-1, out_channels)
            .t()
            .contiguous()
            .reshape(out_channels, height, width, in_channels)
            .permute(0, 3, 1, 2)
        )
        x = inputs.permute(0, 3, 1, 2)
        outputs = torch.nn.functional.conv2d(
            x,
            weight,
            stride=strides,
            padding=pads,
            dilation=dilation,
            groups=x.shape[1] // in_channels,
        )
        return outputs.permute(0, 2, 3, 1)

    return conv


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _tagged_moments(keras_moments):
    def moments(x, axes, keepdims=False, synchronized=False):
        mean, variance = keras_moments(x, axes, keepdims, synchronized)
        x = keras.ops.convert_to_tensor(x)
        if (
            x.ndim == 4
            and not keepdims
            and str(x.dtype) in ("torch.float32", "torch.float64")
            and sorted(a % 4 for a in axes) == [0, 1, 2]
        ):
            setattr(mean, _BATCH_OF, weakref.ref(x))
            setattr(variance, _BATCH_OF, weakref.ref(x))
        return mean, variance

    return moments


def _fused_batch_norm(keras_batch_norm):
    import torch

    def batch_normalization(
        x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3
    ):
        x, mean, variance, offset, scale = (
            None if t is None else keras.ops.convert_to_tensor(t)
            for t in (x, mean, variance, offset, scale)
        )
        if x.ndim != 4 or axis not in (-1, 3) or mean.ndim != 1:
            return keras_batch_norm(
                x, mean, variance, axis, offset, scale, epsilon
            )
        batch_of = (
            getattr(mean, _BATCH_OF, None),
            getattr(variance, _BATCH_OF, None),
        )
        if all(ref is not None and ref() is x for ref in batch_of):
            if x.shape[0] * x.shape[1] * x.shape[2] == 1:
                # torch refuses batch statistics of one value per channel.
                return keras_batch_norm(
                    x, mean, variance, axis, offset, scale, epsilon
                )
            # The layer's own batch statistics: torch recomputes them in
            # its fused kernel and differentiates through them alike.
            training, mean, variance = True, None, None
        elif not (mean.requires_grad or variance.requires_grad):
            training = False
        else:
            return keras_batch_norm(
                x, mean, variance, axis, offset, scale, epsilon
            )
        outputs = torch.nn.functional.batch_norm(
            x.permute(0, 3, 1, 2),
            mean,
            variance,
            weight=scale,
            bias=offset,
            training=training,
            eps=epsilon,
        )
        return outputs.permute(0, 2, 3, 1)

    return batch_normalization
