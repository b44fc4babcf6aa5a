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
  call (with a warning) where tracing fails. `torch.compile` took 20 s to
  compile a 9-conv net and 140 s for MobileNetV2, hit Dynamo's recompile
  limit inside Keras' layer hooks and was not faster on MobileNetV2. The
  eager path uses `no_grad` rather than `inference_mode`: a model built
  during an inference-mode call would get inference tensors as weights,
  which later training cannot use.
- JAX: `jax.jit` of `model.stateless_call`, fed the variables' current values
  on every call so that the compiled function follows later weight updates.
"""

import inspect
import os
import platform
import warnings

import keras
import numpy as np


def compile_inference(model, jit=True):
    """Returns a function that runs `model(x, training=False)` fast.

    Args:
        model: A built `keras.Model` (or any Keras layer).
        jit: Whether to compile a graph: `tf.function` on TensorFlow,
            `jax.jit` on JAX, a frozen TorchScript trace per input shape on
            torch (see the module docstring). Defaults to `True`.

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
        return _compile_tensorflow(model, jit)
    if backend == "torch":
        return _compile_torch(model, jit)
    if backend == "jax":
        return _compile_jax(model, jit)
    raise ValueError(
        "compile_inference supports the tensorflow, torch and jax backends. "
        f"Received: backend={backend!r}"
    )


def _compile_tensorflow(model, jit):
    import tensorflow as tf

    def infer(x):
        return model(x, training=False)

    return tf.function(infer, jit_compile=False) if jit else infer


def _compile_torch(model, jit):
    import torch

    def eager(x):
        with torch.no_grad():
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

    with torch.no_grad(), warnings.catch_warnings():
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
    return np.asarray(value)
