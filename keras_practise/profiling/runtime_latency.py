"""Latency in the runtime that will run the model, not the one it trains in.

PRACTISE's case is wall-clock latency where the model is deployed. Besides
Keras itself (`"keras"`: `tf.function` or eager torch), a model can be timed
in any runtime of `keras_practise.export.runtimes` that has a latency name
(ONNX Runtime, LiteRT, OpenVINO): it is exported once to a temporary folder
and loaded in that runtime, and the runtime's session is what
`compare_latency` times. A callable `f(model) -> milliseconds` covers any
other device or harness.
"""

import os

from keras_practise.export import runtimes
from keras_practise.export import writer

# Runtime name -> its `runtimes.Runtime` record.
RUNTIMES = runtimes.latency_runtimes()


def check_runtime(runtime):
    """Raises a `ValueError` unless `runtime` is `"keras"` or in `RUNTIMES`,
    and an `ImportError` naming the extra if its package is missing."""
    if runtime == "keras":
        return
    if runtime not in RUNTIMES:
        raise ValueError(
            f"Unknown runtime. Expected 'keras' or one of {sorted(RUNTIMES)}. "
            f"Received: runtime={runtime!r}"
        )
    RUNTIMES[runtime].require()


def runtime_inference(model, runtime, x, folder, threads=None):
    """Exports `model` into `folder` and returns `f(x)` running it in `runtime`.

    Args:
        model: A Functional `keras.Model`.
        runtime: A name in `RUNTIMES`.
        x: An input batch (calls the model once: torch's ONNX export needs a
            model that has run).
        folder: Where the exported file goes (the caller removes it).
        threads: CPU threads for the runtime. Defaults to its own choice.

    Returns:
        A function from a float32 numpy batch to the model's first output.
    """
    check_runtime(runtime)
    record = RUNTIMES[runtime]
    model(x, training=False)
    path = os.path.join(folder, f"{len(os.listdir(folder))}{record.suffix}")
    writer.write(model, path, record)
    return record.load(path, threads)


def describe(source):
    """A short name of a latency source for reports."""
    if callable(source):
        return getattr(source, "__name__", type(source).__name__)
    return source
