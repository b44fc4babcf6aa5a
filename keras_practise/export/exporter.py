"""`export()`: a Keras model to ONNX, LiteRT, SavedModel or OpenVINO, verified.

Built on Keras 3's own `model.export(path, format=...)`. Keras writes LiteRT
and SavedModel files from the TensorFlow backend only, ONNX from JAX only
with jax2onnx (which the `[onnx]` extra does not install), and OpenVINO
from JAX as ops OpenVINO cannot convert; so on torch (LiteRT, SavedModel)
and JAX (every format) the model is saved as `.keras` and exported by a
TensorFlow-backend subprocess (the model is a plain Functional model, so it reloads on any
backend). The file is written beside its target and renamed into place only
once it passed its runtime check, so an interrupted or failed export leaves
no partial file.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_practise.export import runtimes

# Format -> (Keras `export` format, file suffix, modules the writer needs).
FORMATS = {
    "onnx": ("onnx", ".onnx", {"tensorflow": ["tf2onnx", "onnx"],
                               "torch": ["onnxscript", "onnx"]}),
    "litert": ("litert", ".tflite", {}),
    "saved_model": ("tf_saved_model", "", {}),
    "openvino": ("openvino", ".xml", {}),
}
# Formats written in this process on each backend; a TensorFlow-backend
# subprocess writes the others.
_IN_PROCESS = {
    "tensorflow": tuple(FORMATS),
    "torch": ("onnx", "openvino"),
    # JAX's OpenVINO path (jax2tf) leaves XlaCallModule ops OpenVINO
    # cannot convert (jax 0.10).
    "jax": (),
}


@dataclasses.dataclass
class ExportResult:
    """An exported model and its runtime check.

    Attributes:
        path: The exported file (a folder for `"saved_model"`).
        format: The format.
        size_bytes: Size on disk (all files for a folder; `.xml` + `.bin`
            for OpenVINO).
        max_abs_diff: Largest absolute difference between the runtime's and
            the Keras model's outputs on the check inputs.
        tolerance: The tolerance the difference was checked against.
        checked_on: Number of inputs compared.
    """

    path: str
    format: str
    size_bytes: int
    max_abs_diff: float
    tolerance: float
    checked_on: int

    def __str__(self):
        return (
            f"{self.format}: {self.path} ({self.size_bytes / 1e6:.2f} MB), "
            f"max |runtime - keras| = {self.max_abs_diff:.2e} on "
            f"{self.checked_on} inputs (tolerance {self.tolerance:g})"
        )


def _check_format(format):
    if format not in FORMATS:
        raise ValueError(
            f"Unknown export format. Expected one of {sorted(FORMATS)}. "
            f"Received: format={format!r}"
        )


def _size(path, format):
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(path)
            for name in names
        )
    size = os.path.getsize(path)
    if format == "openvino":
        weights = os.path.splitext(path)[0] + ".bin"
        size += os.path.getsize(weights) if os.path.exists(weights) else 0
    return size


def write(model, path, format):
    """Writes `model` in `format` to `path`, unchecked (see `export`).

    Raises:
        ImportError: If the converter the format needs is missing.
    """
    keras_format, _, needs = FORMATS[format]
    backend = keras.backend.backend()
    in_process = format in _IN_PROCESS.get(backend, ())
    for module in needs.get(backend if in_process else "tensorflow", []):
        runtimes.require(module, format)
    if in_process:
        model.export(path, format=keras_format, verbose=False)
    else:
        _write_with_tensorflow(model, path, keras_format)


def _write_with_tensorflow(model, path, keras_format):
    runtimes.require("tensorflow", "tensorflow")
    source = os.path.join(os.path.dirname(path), "model.keras")
    model.save(source)
    # Keras' ONNX export wants a signature from a model never called, as
    # a reloaded one is; the one it would take from the inputs is given.
    script = (
        "import sys, keras\n"
        "model = keras.saving.load_model(sys.argv[1])\n"
        "inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs\n"
        "options = {'input_signature': [inputs]} if sys.argv[3] == 'onnx' else {}\n"
        "model.export(sys.argv[2], format=sys.argv[3], verbose=False, **options)\n"
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, "-c", script, source, path, keras_format],
        env=env, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise ValueError(
            f"Exporting to {keras_format} with the TensorFlow backend failed: "
            f"{result.stderr.strip()[-2000:]}"
        )


def _sample(model, sample):
    if sample is None:
        shape = model.inputs[0].shape[1:]
        if any(d is None for d in shape):
            raise ValueError(
                "The model has a dynamic input shape: pass `sample` images to "
                f"check the export on. Received: input shape {tuple(shape)}"
            )
        sample = np.random.default_rng(0).uniform(size=(4, *shape))
    return np.asarray(sample, dtype="float32")


def export(model, path, format="onnx", sample=None, tolerance=1e-3):
    """Exports `model` to a deployment format and checks it in its runtime.

    After writing, the file is loaded in its runtime (ONNX Runtime, the LiteRT
    interpreter, TensorFlow, OpenVINO) and its outputs are compared with the
    Keras model's on `sample`, so a broken export is caught before shipping.

    Args:
        model: A Functional `keras.Model` with one input.
        path: Where to write: a `.onnx`, `.tflite` or `.xml` (OpenVINO; the
            weights go to the `.bin` beside it) file, or a folder for
            `"saved_model"`. Replaced only after the check passed.
        format: `"onnx"`, `"litert"`, `"saved_model"` or `"openvino"`.
        sample: Inputs to check on (e.g. the tiny set). Defaults to 4 random
            images when the input shape is fixed.
        tolerance: Largest accepted absolute output difference.

    Returns:
        An `ExportResult` (path, size, max abs difference).

    Raises:
        ValueError: If the format is unknown, the export fails, or the
            runtime's outputs differ by more than `tolerance`.
        ImportError: If the runtime or converter is missing; the message
            names the extra to install (`pip install "keras-practise[onnx]"`).

    Example:

    ```python
    result = keras_practise.export(small, "small.onnx", format="onnx",
                                   sample=images[:8])
    print(result)  # onnx: small.onnx (0.31 MB), max |runtime - keras| = ...
    ```
    """
    _check_format(format)
    runtimes.require(*runtimes.RUNTIMES[format])
    sample = _sample(model, sample)
    expected = keras.ops.convert_to_numpy(model(sample, training=False))
    path = os.path.abspath(os.fspath(path))
    staging = tempfile.mkdtemp(
        prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path)
    )
    try:
        staged = os.path.join(staging, os.path.basename(path))
        write(model, staged, format)
        actual = runtimes.run_exported(staged, format, sample)
        if actual.shape != expected.shape:
            raise ValueError(
                f"The {format} export outputs shape {actual.shape}; the Keras "
                f"model outputs {expected.shape}."
            )
        diff = float(np.max(np.abs(actual - expected)))
        if not diff <= tolerance:
            raise ValueError(
                f"The {format} export does not match the Keras model: max "
                f"absolute difference {diff:.3g} > tolerance {tolerance:g} on "
                f"{len(sample)} inputs. The file was not written."
            )
        _move(staged, path, format)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(
        path=path, format=format, size_bytes=_size(path, format),
        max_abs_diff=diff, tolerance=tolerance, checked_on=len(sample),
    )


def _move(staged, path, format):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.replace(staged, path)
    if format == "openvino":
        os.replace(
            os.path.splitext(staged)[0] + ".bin", os.path.splitext(path)[0] + ".bin"
        )


# File suffix -> format, for targets given as a bare path.
_SUFFIX_FORMATS = {
    suffix: name for name, (_, suffix, _) in FORMATS.items() if suffix
}


def resolve_target(target):
    """Reads an export target: a path with a known suffix, or `(format, path)`.

    Checks that the format's runtime is installed, so a missing extra is an
    error before any training.

    Args:
        target: `"small.onnx"`, `"small.tflite"`, `"small.xml"` (OpenVINO),
            or a `(format, path)` pair (needed for `"saved_model"` folders).

    Returns:
        A `(path, format)` pair.

    Raises:
        ValueError: If the format is unknown or cannot be told from the path.
        ImportError: If the format's runtime is not installed.
    """
    if isinstance(target, (tuple, list)) and len(target) == 2:
        format, path = target
    elif isinstance(target, (str, os.PathLike)):
        path = os.fspath(target)
        format = _SUFFIX_FORMATS.get(os.path.splitext(path)[1].lower())
        if format is None:
            raise ValueError(
                "Cannot tell the export format from the path: use a "
                f"{', '.join(sorted(_SUFFIX_FORMATS))} file or pass "
                f"`(format, path)`. Received: export={target!r}"
            )
    else:
        raise TypeError(
            "`export` must be a path or a `(format, path)` pair. "
            f"Received: {target!r} of type {type(target).__name__}"
        )
    _check_format(format)
    runtimes.require(*runtimes.RUNTIMES[format])
    return os.fspath(path), format


def path_beside(path, format):
    """The export path that goes with a `.keras` path (`small.keras` ->
    `small.onnx`; a `small_saved_model` folder for SavedModel)."""
    stem = path[: -len(".keras")] if path.endswith(".keras") else path
    return stem + (FORMATS[format][1] or "_saved_model")
