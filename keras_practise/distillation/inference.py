"""Inference passes over a tiny set: eager batches, traced chunks, errors.

The library runs a model over a few hundred views many times (the
teacher's features, a candidate's error, a student's outputs); these
helpers do it in inference mode, in batches whose layer outputs fit
`memory.inference_batch`'s share, and return NumPy arrays.
"""

import numpy as np

from keras_practise import backend
from keras_practise.distillation import memory as memory_lib


def predict(model, x, batch_size=64, infer=None):
    """`model(x)` in inference mode, batch by batch, as NumPy.

    Runs eagerly unless `infer` is given: for the few hundred views of a
    tiny set this is faster than tracing a `predict` function for every
    model (on TensorFlow, one trace of a ResNet-50 per batch shape costs
    about a second).

    Args:
        model: The model.
        x: Its input array.
        batch_size: Batch size of the forward passes.
        infer: Optional compiled inference call of `model`
            (`CompiledStep.infer`) to use instead.

    Returns:
        An array, or a list of arrays for a model with several outputs.
    """
    infer = infer or backend.compile_inference(model, jit=False)
    batch_size = memory_lib.inference_batch(model, batch_size)
    batches = [
        backend.to_numpy(infer(x[i : i + batch_size]))
        for i in range(0, len(x), batch_size)
    ]
    if isinstance(batches[0], (list, tuple)):
        return [np.concatenate(parts) for parts in zip(*batches)]
    return np.concatenate(batches)


# Up to this many batches `activations` runs eagerly: tracing Keras' predict
# cost a ResNet-50 call about 2 s on TensorFlow, more than eager lost on 96
# views; on 1,280 views eager was 24% slower than the traced graph (27 s
# against 22 s), so larger inputs trace once. Larger inputs go to Keras'
# predict in chunks of `_CHUNK_BYTES` of input (at least `_EAGER_BATCHES`
# batches): on TensorFlow it copies its whole input into a dataset, and it
# gathers the outputs before concatenating them (a MobileNetV2 pass over
# 1,500 views at 224 px peaked 2.6 GB above what it returned).
_EAGER_BATCHES = 4
_CHUNK_BYTES = 2**28


def activations(model, x, batch_size=64):
    """`model(x)` in inference mode for a one-off pass, as a list of arrays.

    Eager (`predict`) for up to `_EAGER_BATCHES` batches; beyond, Keras'
    traced `predict`, `_CHUNK_BYTES` of input per call, every batch of one
    shape (the last one padded and its padding dropped), so TensorFlow
    traces once per model; the outputs are written into arrays of their
    final size.

    Returns:
        One array per model output.
    """
    batch_size = memory_lib.inference_batch(model, batch_size)
    if len(x) <= _EAGER_BATCHES * batch_size:
        outputs = predict(model, x, batch_size)
        return outputs if isinstance(outputs, list) else [outputs]
    batches = max(_EAGER_BATCHES, _CHUNK_BYTES // (x[0].nbytes * batch_size))
    chunk = batches * batch_size
    outputs = None
    for begin in range(0, len(x), chunk):
        part = x[begin : begin + chunk]
        count = len(part)
        if count % batch_size:
            pad = np.repeat(part[:1], batch_size - count % batch_size, 0)
            part = np.concatenate([part, pad])
        values = model.predict(part, batch_size=batch_size, verbose=0)
        values = values if isinstance(values, list) else [values]
        if outputs is None:
            outputs = [np.empty((len(x),) + v.shape[1:], v.dtype) for v in values]
        for output, value in zip(outputs, values):
            output[begin : begin + count] = value[:count]
    return outputs


def feature_mse(model, x, targets, batch_size=64, scale=1.0, infer=None):
    """Mean squared error between `model(x)` and `targets` (inference mode).

    Args:
        model: A model with one output.
        x: Its input array.
        targets: The expected outputs.
        batch_size: Batch size of the forward passes.
        scale: The MSE is divided by it (e.g. `feature_scale(targets)`).
        infer: Optional compiled inference call of `model` (see `predict`).

    Returns:
        A Python float (NaN or inf when the model's outputs are).
    """
    predictions = predict(model, x, batch_size, infer)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.mean((predictions - targets) ** 2, dtype="float64")) / scale
