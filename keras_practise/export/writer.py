"""Writing a model in a runtime's format with Keras' own exporter.

Keras writes LiteRT and SavedModel files from the TensorFlow backend only,
ONNX from JAX only with jax2onnx (which the `[onnx]` extra does not
install), and OpenVINO from JAX as ops OpenVINO cannot convert; so on torch
(LiteRT, SavedModel) and JAX (every format) the model is saved as `.keras`
and written by a TensorFlow-backend subprocess (the model is a plain
Functional model, so it reloads on any backend). The same subprocess runs
TensorFlow-only quantizers.
"""

import os
import subprocess
import sys
import tempfile

import keras

import keras_practise
from keras_practise.export.runtimes import runtime as runtime_lib


def write(model, path, runtime, **converter_options):
    """Writes `model` to `path` in `runtime`'s format, unchecked.

    Args:
        model: A Functional `keras.Model`.
        path: The file (or folder) to write.
        runtime: A `Runtime` record.
        **converter_options: Passed to `keras.Model.export` (e.g. LiteRT
            converter settings); plain values only on a backend that writes
            through the TensorFlow subprocess.

    Raises:
        ImportError: If a converter the format needs is missing.
        ValueError: If the TensorFlow subprocess fails.
    """
    backend = keras.backend.backend()
    here = in_process(runtime, backend)
    for module in runtime.converters.get(backend if here else "tensorflow", ()):
        runtime_lib.require(module, runtime.extra)
    if here:
        model.export(
            path, format=runtime.keras_format, verbose=False, **converter_options
        )
    else:
        in_tensorflow(model, f"{__name__}.export_saved", path, runtime.keras_format)


def in_process(runtime, backend):
    """Whether `backend` writes `runtime`'s format itself (else TensorFlow)."""
    if backend == "jax":  # jax 0.10: see the module's docstring.
        return False
    return backend == "tensorflow" or not runtime.tensorflow_only


def export_saved(model_path, path, keras_format):
    """Exports a `.keras` file to `path` (run in the TensorFlow subprocess)."""
    model = keras.saving.load_model(model_path)
    options = {}
    if keras_format == "onnx":
        # Keras' ONNX export takes its signature from a model that was
        # called; a reloaded one never was, so it is given.
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        options["input_signature"] = [inputs]
    model.export(path, format=keras_format, verbose=False, **options)


def in_tensorflow(model, function, *args):
    """Calls `function(model_path, *args)` with the TensorFlow backend.

    `model` is saved to a temporary `.keras` file and `function` (a dotted
    path) runs on it in a subprocess with `KERAS_BACKEND=tensorflow`, which
    imports this same copy of keras_practise.

    Args:
        model: A Functional `keras.Model`.
        function: Dotted path of a module-level function.
        *args: Further string arguments of `function`.

    Raises:
        ImportError: If TensorFlow is not installed.
        ValueError: If the subprocess fails (with the end of its stderr).
    """
    runtime_lib.require("tensorflow", "tensorflow")
    script = (
        "import importlib, sys\n"
        "module, name = sys.argv[1].rsplit('.', 1)\n"
        "getattr(importlib.import_module(module), name)(*sys.argv[2:])\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(keras_practise.__file__)))
    python_path = os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=python_path)
    with tempfile.TemporaryDirectory(prefix="keras_practise_export_") as folder:
        source = os.path.join(folder, "model.keras")
        model.save(source)
        result = subprocess.run(
            [sys.executable, "-c", script, function, source, *map(str, args)],
            env=env, capture_output=True, text=True,
        )
    if result.returncode != 0:
        raise ValueError(
            f"{function} with the TensorFlow backend failed: "
            f"{result.stderr.strip()[-2000:]}"
        )
