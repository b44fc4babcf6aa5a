"""`export()`: a Keras model to ONNX, LiteRT, SavedModel or OpenVINO, verified.

Built on Keras 3's own `model.export(path, format=...)` and, for int8, on
each runtime's own post-training quantizer (see `runtimes`). The file is
written beside its target and renamed into place only once it passed its
runtime check, so an interrupted or failed export leaves no partial file.
"""

import dataclasses
import os
import shutil
import tempfile
import typing

import keras
import numpy as np

from keras_practise.export import runtimes
from keras_practise.export import writer

# Format name -> its `runtimes.Runtime` record.
FORMATS = runtimes.RUNTIMES
QUANTIZATIONS = ("int8",)
_FLOAT_TOLERANCE = 1e-3


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
        tolerance: The tolerance the difference was checked against (`None`:
            not checked, the default for int8).
        checked_on: Number of inputs compared.
        quantize: `"int8"` for a quantized file, else `None`.
        mean_abs_diff: Mean absolute output difference.
        agreement: Fraction of check inputs whose top-1 class (argmax of the
            last axis) is the float Keras model's.
        min_agreement: The agreement an int8 file had to reach (`None` for
            a float file).
    """

    path: str
    format: str
    size_bytes: int
    max_abs_diff: float
    tolerance: typing.Optional[float]
    checked_on: int
    quantize: typing.Optional[str] = None
    mean_abs_diff: typing.Optional[float] = None
    agreement: typing.Optional[float] = None
    min_agreement: typing.Optional[float] = None

    def __str__(self):
        kind = f"{self.format} {self.quantize}" if self.quantize else self.format
        text = (
            f"{kind}: {self.path} ({self.size_bytes / 1e6:.2f} MB), "
            f"max |runtime - keras| = {self.max_abs_diff:.2e} on "
            f"{self.checked_on} inputs"
        )
        if self.tolerance is not None:
            text += f" (tolerance {self.tolerance:g})"
        if self.agreement is not None:
            text += f", top-1 agreement {100 * self.agreement:.1f}%"
            if self.min_agreement is not None:
                text += f" (at least {100 * self.min_agreement:g}%)"
        return text


def _size(path, runtime):
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(path)
            for name in names
        )
    return sum(
        os.path.getsize(p) for p in _companion_paths(path, runtime) if os.path.exists(p)
    )


def _companion_paths(path, runtime):
    """The file and the files written beside it (OpenVINO's `.bin`)."""
    stem = os.path.splitext(path)[0]
    return [path] + [stem + suffix for suffix in runtime.companions]


def _move(staged, path, runtime):
    if os.path.isdir(path):
        shutil.rmtree(path)
    for source, target in zip(
        _companion_paths(staged, runtime), _companion_paths(path, runtime)
    ):
        os.replace(source, target)


def _fixed_input_shape(model, what):
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"The model has a dynamic input shape: pass {what}. "
            f"Received: input shape {shape}"
        )
    return shape


def _images(name, images, model):
    images = np.asarray(images, dtype="float32")
    expected = tuple(model.inputs[0].shape[1:])
    if images.ndim != len(expected) + 1 or not all(
        e is None or e == s for e, s in zip(expected, images.shape[1:])
    ):
        raise ValueError(
            f"`{name}` must be a batch of model inputs of shape (N, "
            f"{', '.join(map(str, expected))}). Received: shape {images.shape}"
        )
    return images


def _check_quantize(quantize, runtime):
    quantizable = sorted(f for f, r in FORMATS.items() if r.quantize)
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"`quantize` must be None or one of {QUANTIZATIONS}. "
            f"Received: quantize={quantize!r}"
        )
    if runtime.quantize is None:
        raise ValueError(
            f"The {runtime.format} format has no {quantize} quantizer here; "
            f"use one of {quantizable}. Received: format={runtime.format!r}"
        )


def _check_inputs(model, runtime, sample, quantize, calibration, min_agreement):
    """Validates the int8 arguments; returns `(check inputs, calibration)`."""
    if quantize is None:
        if calibration is not None:
            raise ValueError(
                "`calibration` is used only with `quantize`. Received: "
                "quantize=None and calibration data"
            )
        if sample is None:
            shape = _fixed_input_shape(model, "`sample` images to check on")
            sample = np.random.default_rng(0).uniform(size=(4, *shape))
        return _images("sample", sample, model), None
    _check_quantize(quantize, runtime)
    if not 0 <= min_agreement <= 1:
        raise ValueError(
            "`min_agreement` must be a fraction in [0, 1]. "
            f"Received: min_agreement={min_agreement!r}"
        )
    if calibration is None:
        raise ValueError(
            f"`quantize={quantize!r}` needs `calibration` images (e.g. the "
            "tiny set). Received: calibration=None"
        )
    calibration = _images("calibration", calibration, model)
    if sample is not None:
        return _images("sample", sample, model), calibration
    if len(calibration) < 2:
        raise ValueError(
            "Without `sample`, a quarter of `calibration` is held out to check "
            "the int8 file on: pass at least 2 images. Received: "
            f"{len(calibration)} calibration image(s)"
        )
    held_out = max(1, len(calibration) // 4)
    return calibration[-held_out:], calibration[:-held_out]


def export(
    model,
    path,
    format="onnx",
    sample=None,
    tolerance=None,
    quantize=None,
    calibration=None,
    min_agreement=0.9,
):
    """Exports `model` to a deployment format and checks it in its runtime.

    After writing, the file is loaded in its runtime (ONNX Runtime, the LiteRT
    interpreter, TensorFlow, OpenVINO) and its outputs are compared with the
    float Keras model's on check inputs, so a broken export is caught before
    shipping. With `quantize="int8"` the file is quantized by the runtime's
    own post-training quantizer (LiteRT's converter, ONNX Runtime's
    `quantize_static`, NNCF for OpenVINO) calibrated on `calibration`, and
    is accepted if its top-1 class agrees with the float model's on at
    least `min_agreement` of the check inputs.

    Args:
        model: A Functional `keras.Model` with one input.
        path: Where to write: a `.onnx`, `.tflite` or `.xml` (OpenVINO; the
            weights go to the `.bin` beside it) file, or a folder for
            `"saved_model"`. Replaced only after the check passed.
        format: `"onnx"`, `"litert"`, `"saved_model"` or `"openvino"`.
        sample: Inputs to check on (e.g. the tiny set). Defaults to 4 random
            images when the input shape is fixed; with `quantize`, to the
            last quarter of `calibration`, held out from calibrating.
        tolerance: Largest accepted absolute output difference. Defaults to
            `1e-3` for a float file and to no limit for an int8 one.
        quantize: `None` (float32) or `"int8"` (not for `"saved_model"`).
        calibration: Images the quantizer calibrates activation ranges on
            (the tiny set; no labels needed). Only with `quantize`.
        min_agreement: Smallest accepted fraction of check inputs on which
            the int8 file's top-1 class is the float model's.

    Returns:
        An `ExportResult` (path, size, differences, top-1 agreement).

    Raises:
        ValueError: If an argument is invalid, the export fails, or the
            file's outputs differ by more than `tolerance` or agree less
            than `min_agreement`; nothing is written then.
        ImportError: If the runtime, converter or quantizer is missing; the
            message names the extra to install (`pip install
            "keras-practise[onnx]"`).

    Example:

    ```python
    result = keras_practise.export(small, "small.onnx", format="onnx",
                                   sample=images[:8])
    print(result)  # onnx: small.onnx (0.31 MB), max |runtime - keras| = ...
    int8 = keras_practise.export(small, "small_int8.onnx", format="onnx",
                                 quantize="int8", calibration=images)
    print(int8.agreement, int8.size_bytes)
    ```
    """
    runtime = runtimes.get(format)
    sample, calibration = _check_inputs(
        model, runtime, sample, quantize, calibration, min_agreement
    )
    runtime.require(quantize=quantize is not None)
    if tolerance is None and quantize is None:
        tolerance = _FLOAT_TOLERANCE
    expected = keras.ops.convert_to_numpy(model(sample, training=False))
    path = os.path.abspath(os.fspath(path))
    staging = tempfile.mkdtemp(
        prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path)
    )
    try:
        staged = os.path.join(staging, os.path.basename(path))
        if quantize is None:
            writer.write(model, staged, runtime)
        else:
            runtime.quantize(model, staged, calibration)
        actual = runtimes.run_exported(staged, format, sample)
        result = _compare(actual, expected, format)
        kind = f"{format} {quantize}" if quantize else format
        _refuse_if_off(result, kind, tolerance, min_agreement if quantize else None)
        _move(staged, path, runtime)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(
        path=path, format=format, size_bytes=_size(path, runtime),
        tolerance=tolerance, checked_on=len(sample), quantize=quantize,
        min_agreement=min_agreement if quantize else None, **result,
    )


def _compare(actual, expected, format):
    """Differences and top-1 agreement of the runtime's outputs."""
    if actual.shape != expected.shape:
        raise ValueError(
            f"The {format} export outputs shape {actual.shape}; the Keras "
            f"model outputs {expected.shape}."
        )
    diff = np.abs(actual.astype("float64") - expected)
    return {
        "max_abs_diff": float(np.max(diff)),
        "mean_abs_diff": float(np.mean(diff)),
        "agreement": float(
            np.mean(np.argmax(actual, axis=-1) == np.argmax(expected, axis=-1))
        ),
    }


def _refuse_if_off(result, kind, tolerance, min_agreement):
    if tolerance is not None and not result["max_abs_diff"] <= tolerance:
        raise ValueError(
            f"The {kind} export does not match the Keras model: max "
            f"absolute difference {result['max_abs_diff']:.3g} > tolerance "
            f"{tolerance:g}. The file was not written."
        )
    if min_agreement is not None and not result["agreement"] >= min_agreement:
        raise ValueError(
            f"The {kind} export does not match the float Keras model: top-1 "
            f"agreement {100 * result['agreement']:.1f}% < min_agreement "
            f"{100 * min_agreement:g}%. The file was not written."
        )


# File suffix -> format, for targets given as a bare path.
_SUFFIX_FORMATS = {r.suffix: f for f, r in FORMATS.items() if r.suffix}


def resolve_target(target, quantize=None):
    """Reads an export target: a path with a known suffix, or `(format, path)`.

    Checks that the format's runtime (and, with `quantize`, its quantizer)
    is installed, so a missing extra is an error before any training.

    Args:
        target: `"small.onnx"`, `"small.tflite"`, `"small.xml"` (OpenVINO),
            or a `(format, path)` pair (needed for `"saved_model"` folders).
        quantize: `None` or `"int8"` (see `export`).

    Returns:
        A `(path, format)` pair.

    Raises:
        ValueError: If the format is unknown or cannot be told from the
            path, or it has no quantizer for `quantize`.
        ImportError: If the format's runtime or quantizer is not installed.
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
    runtime = runtimes.get(format)
    if quantize is not None:
        _check_quantize(quantize, runtime)
    runtime.require(quantize=quantize is not None)
    return os.fspath(path), format


def path_beside(path, format):
    """The export path that goes with a `.keras` path (`small.keras` ->
    `small.onnx`; a `small_saved_model` folder for SavedModel)."""
    stem = path[: -len(".keras")] if path.endswith(".keras") else path
    return stem + (runtimes.get(format).suffix or "_saved_model")
