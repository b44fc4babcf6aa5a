"""The deployment runtimes, one `Runtime` record each, in one registry.

Export, runtime latency and the CLI read `RUNTIMES`. Adding a runtime is a
module beside these holding its loader, its quantizer and its `RUNTIME`
record, plus one line in `RUNTIMES`. Each runtime is an optional dependency;
a missing one is an `ImportError` that names the pip extra installing it.
"""

import numpy as np

from keras_practise.export.runtimes import litert
from keras_practise.export.runtimes import onnx
from keras_practise.export.runtimes import openvino
from keras_practise.export.runtimes import saved_model

# Format name -> its `Runtime`.
RUNTIMES = {
    runtime.format: runtime
    for runtime in (
        onnx.RUNTIME,
        litert.RUNTIME,
        saved_model.RUNTIME,
        openvino.RUNTIME,
    )
}


def get(format):
    """The `Runtime` of an export format.

    Raises:
        ValueError: If the format is unknown.
    """
    if format not in RUNTIMES:
        raise ValueError(
            f"Unknown export format. Expected one of {sorted(RUNTIMES)}. "
            f"Received: format={format!r}"
        )
    return RUNTIMES[format]


def latency_runtimes():
    """Runtime name (`"onnxruntime"`, ...) -> `Runtime`, for those that time
    models."""
    return {r.name: r for r in RUNTIMES.values() if r.name is not None}


def load_runner(path, format, threads=None):
    """Loads an exported model in its runtime, once, for repeated calls.

    Args:
        path: The exported file (a folder for `"saved_model"`).
        format: A format in `RUNTIMES`.
        threads: Number of CPU threads the runtime may use. Defaults to the
            runtime's own choice.

    Returns:
        A function `f(x)` from a float32 numpy batch to the first output.

    Raises:
        ImportError: If the runtime is not installed (names the extra).
    """
    return get(format).load(path, threads)


def run_exported(path, format, x):
    """Runs an exported model on `x` in its runtime and returns the output.

    Args:
        path: The exported file (a folder for `"saved_model"`).
        format: A format in `RUNTIMES`.
        x: A float32 numpy batch.

    Returns:
        The first output as a numpy array.

    Raises:
        ImportError: If the runtime is not installed (names the extra).
    """
    runner = load_runner(path, format)
    return np.asarray(runner(np.asarray(x, dtype="float32")))
