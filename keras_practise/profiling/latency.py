"""Wall-clock inference latency of Keras models.

PRACTISE ranks blocks by how much latency dropping them saves, so the numbers
must be real wall-clock times of compiled inference, not FLOPs. Each timed
run is bracketed by device synchronisation, warm-up runs (compilation,
allocator and cache warm-up) are discarded, and the median with its spread
is reported. `compare_latency` interleaves the models run by run so that
load from other processes hits all of them alike and their ratios hold even
on a busy machine.
"""

import dataclasses
import tempfile
import time

import keras
import numpy as np

from keras_practise import backend
from keras_practise.export import exporter
from keras_practise.export import runtimes
from keras_practise.profiling import runtime_latency
from keras_practise.utils import progress as progress_lib
from keras_practise.utils import text_table
from keras_practise.utils import validation


@dataclasses.dataclass(frozen=True)
class LatencyResult:
    """Latency statistics of one model, in milliseconds per batch.

    Attributes:
        median_ms: Median over the timed runs.
        mean_ms: Mean over the timed runs.
        std_ms: Standard deviation over the timed runs.
        p10_ms: 10th percentile.
        p90_ms: 90th percentile.
        min_ms: Fastest run.
        max_ms: Slowest run.
        runs: Number of timed runs (warm-up runs excluded).
        batch_size: Batch size of the input.
        input_shape: Per-example input shape (a list of shapes for
            multi-input models).
        backend: The Keras backend that ran the model.
        device: Name of the device, from `backend.device_name()`.
        times_ms: Every timed run, in order.
        runtime: Where it ran: `"keras"`, `"onnxruntime"`, `"litert"` or
            `"openvino"`.
        threads: CPU threads given to a non-Keras runtime (`None`: its
            default).
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    runs: int
    batch_size: int
    input_shape: tuple
    backend: str
    device: str
    times_ms: tuple = dataclasses.field(repr=False)
    runtime: str = "keras"
    threads: int = None

    @classmethod
    def from_times(cls, times_ms, batch_size, input_shape, runtime="keras",
                   threads=None):
        """Summarises raw run times measured on the current backend."""
        times = np.asarray(times_ms, dtype="float64")
        p10, median, p90 = np.percentile(times, [10, 50, 90])
        return cls(
            median_ms=float(median),
            mean_ms=float(times.mean()),
            std_ms=float(times.std()),
            p10_ms=float(p10),
            p90_ms=float(p90),
            min_ms=float(times.min()),
            max_ms=float(times.max()),
            runs=len(times),
            batch_size=batch_size,
            input_shape=input_shape,
            backend=keras.backend.backend(),
            device=backend.device_name(),
            times_ms=tuple(float(t) for t in times),
            runtime=runtime,
            threads=threads,
        )


@dataclasses.dataclass(frozen=True)
class LatencyComparison:
    """Latencies of several models measured together.

    Attributes:
        results: Dict mapping each model's name to its `LatencyResult`, in
            the order given; the first is the reference.
    """

    results: dict

    @property
    def reference(self):
        """Name of the model the others are compared with."""
        return next(iter(self.results))

    @property
    def ratios(self):
        """Dict name -> median latency / the reference's median latency."""
        reference_ms = self.results[self.reference].median_ms
        return {
            name: result.median_ms / reference_ms
            for name, result in self.results.items()
        }

    @property
    def reductions(self):
        """Dict name -> fraction of the reference's latency saved.

        `1 - median / reference median`: 0.25 means 25% faster than the
        reference, negative values mean slower; exactly 0 for the reference.
        """
        return {name: 1.0 - ratio for name, ratio in self.ratios.items()}

    def table(self):
        """Formats the comparison as a plain-text table.

        Returns:
            A string with one row per model: median, p10-p90 range, ratio
            to the reference and latency reduction, under a header that
            names the backend (or runtime and threads), device, batch size
            and run count.
        """
        first = self.results[self.reference]
        ratios, reductions = self.ratios, self.reductions
        rows = [("model", "median ms", "p10-p90 ms", "ratio", "reduction")]
        for name, result in self.results.items():
            rows.append((
                name,
                f"{result.median_ms:.2f}",
                f"{result.p10_ms:.2f}-{result.p90_ms:.2f}",
                f"{ratios[name]:.3f}",
                f"{reductions[name]:.1%}",
            ))
        where = f"backend={first.backend}"
        if first.runtime != "keras":
            where = f"runtime={first.runtime}  threads={first.threads or 'default'}"
        header = (
            f"{where}  device={first.device}  "
            f"batch_size={first.batch_size}  input_shape={first.input_shape}  "
            f"runs={first.runs}"
        )
        table = text_table.format_table(rows, right_aligned=(1, 2, 3, 4))
        return header + "\n" + table

    def __str__(self):
        return self.table()


def measure_latency(
    model,
    batch_size=64,
    input_shape=None,
    runs=30,
    warmup=5,
    seed=0,
    progress=False,
    runtime="keras",
    threads=None,
):
    """Measures the inference latency of one model on random input.

    Args:
        model: A `keras.Model`.
        batch_size: Examples per timed call. Defaults to `64`, the batch
            size of the PRACTISE paper's latency numbers.
        input_shape: Per-example input shape, e.g. `(224, 224, 3)`, filling
            the model's `None` dimensions (a list of shapes for multi-input
            models). Required when the model's input shape is not fully
            known. Defaults to `None`.
        runs: Number of timed runs. Defaults to `30`.
        warmup: Number of untimed runs before them. Defaults to `5`.
        seed: Seed of the random input. Defaults to `0`.
        progress: Whether to show a `keras.utils.Progbar`. Defaults to
            `False`.
        runtime: `"keras"`, `"onnxruntime"`, `"litert"` or `"openvino"`
            (see `compare_latency`).
        threads: CPU threads of a non-Keras runtime.

    Returns:
        A `LatencyResult`.

    Raises:
        TypeError: If `model` is not a `keras.Model`.
        ValueError: If an argument is out of range or the input shape is
            unknown or conflicts with the model's.

    Example:

    ```python
    result = measure_latency(model, batch_size=64, runs=50)
    print(f"{result.median_ms:.1f} ms (p10-p90 {result.p10_ms:.1f}-"
          f"{result.p90_ms:.1f})")
    ```
    """
    comparison = compare_latency(
        {"model": model},
        batch_size=batch_size,
        input_shape=input_shape,
        runs=runs,
        warmup=warmup,
        seed=seed,
        progress=progress,
        runtime=runtime,
        threads=threads,
    )
    return comparison.results["model"]


def compare_latency(
    models,
    batch_size=64,
    input_shape=None,
    runs=30,
    warmup=5,
    seed=0,
    progress=False,
    runtime="keras",
    threads=None,
):
    """Measures several models interleaved on the same input.

    Each round times every model once, starting the round at a different
    model each time, so that neither slow drifts in machine load nor
    carry-over from the previous model (caches, clock boost) favour one.

    Args:
        models: A dict mapping names to `keras.Model`s, or a list of models
            (named by `model.name`). The first is the reference for ratios.
            All must take inputs of the same shape.
        batch_size: Examples per timed call. Defaults to `64`.
        input_shape: Per-example input shape filling the models' `None`
            dimensions (a list of shapes for multi-input models). Defaults
            to `None`.
        runs: Number of timed rounds. Defaults to `30`.
        warmup: Number of untimed rounds before them. Defaults to `5`.
        seed: Seed of the random input. Defaults to `0`.
        progress: Whether to show a `keras.utils.Progbar`. Defaults to
            `False`.
        runtime: Where the models run: `"keras"` (the active backend) or
            `"onnxruntime"`, `"litert"`, `"openvino"` (each model exported
            once to a temporary file and timed in that runtime's session).
        threads: CPU threads of a non-Keras runtime (`1` is what a small
            edge device offers). Defaults to the runtime's choice.

    Returns:
        A `LatencyComparison`; `print` it for a table.

    Raises:
        TypeError: If `models` is not a dict or list of `keras.Model`s.
        ValueError: If an argument is out of range, `models` is empty, or
            the input shapes are unknown or differ between models.

    Example:

    ```python
    comparison = compare_latency({"original": model, "pruned": pruned})
    print(comparison)
    saved = comparison.reductions["pruned"]
    ```
    """
    models = _named_models(models)
    runtime_latency.check_runtime(runtime)
    validation.check_int("batch_size", batch_size, 1)
    validation.check_int("runs", runs, 1)
    validation.check_int("warmup", warmup, 0)
    validation.check_int("threads", threads, allow_none=True)

    shapes = {name: _input_shapes(m, input_shape) for name, m in models.items()}
    reference_shapes = next(iter(shapes.values()))
    for name, model_shapes in shapes.items():
        if model_shapes != reference_shapes:
            raise ValueError(
                "All models must take inputs of the same shape. Received: "
                f"{next(iter(shapes))} takes {reference_shapes}, "
                f"{name} takes {model_shapes}"
            )
    x = _random_input(
        next(iter(models.values())), reference_shapes, batch_size, seed
    )
    for model in models.values():
        if not model.built:
            # JAX's stateless call needs the variables to exist already.
            model(x, training=False)
    with tempfile.TemporaryDirectory(prefix="keras_practise_latency_") as folder:
        if runtime != "keras":
            x = np.asarray(keras.ops.convert_to_numpy(x), dtype="float32")
            infers = {
                name: runtime_latency.runtime_inference(m, runtime, x, folder, threads)
                for name, m in models.items()
            }
        else:
            infers = {
                name: backend.compile_inference(m) for name, m in models.items()
            }
        times = _interleaved_times(infers, x, runs, warmup, progress)

    reported_shape = (
        reference_shapes[0] if len(reference_shapes) == 1 else reference_shapes
    )
    return LatencyComparison(
        results={
            name: LatencyResult.from_times(
                times[name], batch_size, reported_shape, runtime, threads
            )
            for name in times
        }
    )


def compare_exported_latency(
    files,
    input_shape,
    batch_size=1,
    runs=30,
    warmup=5,
    seed=0,
    progress=False,
    threads=None,
):
    """Measures exported files in their runtimes, interleaved run by run.

    The way to time an int8 file against its float original (or any
    exported files against each other) where they will run; like
    `compare_latency`, each round times every file once, starting at a
    different file each round.

    Args:
        files: A dict mapping names to `ExportResult`s (from
            `keras_practise.export`) or `(format, path)` pairs. The first is
            the reference for ratios.
        input_shape: Per-example input shape, e.g. `(32, 32, 3)`.
        batch_size: Examples per timed call. Defaults to `1`.
        runs: Number of timed rounds. Defaults to `30`.
        warmup: Number of untimed rounds before them. Defaults to `5`.
        seed: Seed of the random input. Defaults to `0`.
        progress: Whether to show a `keras.utils.Progbar`.
        threads: CPU threads of each runtime (`1` is what a small edge
            device offers). Defaults to the runtime's choice.

    Returns:
        A `LatencyComparison` whose results name the runtime each file ran
        in.

    Raises:
        TypeError: If `files` is not a dict.
        ValueError: If an argument is out of range, `files` is empty, or a
            format is unknown.
        ImportError: If a runtime is not installed (names its extra).

    Example:

    ```python
    fp32 = keras_practise.export(small, "small.onnx")
    int8 = keras_practise.export(small, "small_int8.onnx", quantize="int8",
                                 calibration=tiny_set)
    print(compare_exported_latency({"float": fp32, "int8": int8},
                                   input_shape=(32, 32, 3), threads=1))
    ```
    """
    if not isinstance(files, dict):
        raise TypeError(
            "`files` must be a dict of name -> ExportResult or (format, path). "
            f"Received: files of type {type(files).__name__}"
        )
    if not files:
        raise ValueError(f"`files` must not be empty. Received: files={files}")
    input_shape = _as_shape(input_shape, input_shape)
    validation.check_int("batch_size", batch_size, 1)
    validation.check_int("runs", runs, 1)
    validation.check_int("warmup", warmup, 0)
    validation.check_int("threads", threads, allow_none=True)
    infers, where = {}, {}
    for name, file in files.items():
        format, path = (
            (file.format, file.path)
            if isinstance(file, exporter.ExportResult) else file
        )
        runtime = runtimes.get(format)
        infers[name] = runtime.load(path, threads)
        where[name] = runtime.name or runtime.format
    x = np.random.default_rng(seed).random((batch_size, *input_shape))
    times = _interleaved_times(infers, x.astype("float32"), runs, warmup, progress)
    return LatencyComparison(
        results={
            name: LatencyResult.from_times(
                times[name], batch_size, input_shape, where[name], threads
            )
            for name in files
        }
    )


def _interleaved_times(infers, x, runs, warmup, progress):
    progbar = progress_lib.progbar(warmup + runs) if progress else None
    names = list(infers)
    times = {name: [] for name in names}
    for round_index in range(warmup + runs):
        start = round_index % len(names)
        for name in names[start:] + names[:start]:
            elapsed_ms = _time_call(infers[name], x)
            if round_index >= warmup:
                times[name].append(elapsed_ms)
        if progbar is not None:
            progbar.update(round_index + 1)
    return times


def latency_reductions(models, source, batch_size=8, runs=20):
    """Fraction of latency that each model after the first saves against it.

    Args:
        models: A dict of name -> `keras.Model`; the first is the original.
        source: `"measured"` (Keras), a runtime name (`"onnxruntime"`,
            `"litert"`, `"openvino"`), or a callable `f(model) ->
            milliseconds` for any other device or harness.
        batch_size: Batch size of the measurement (not used by a callable).
        runs: Timed rounds (not used by a callable).

    Returns:
        A dict of name -> reduction for every model but the first.

    Raises:
        ValueError: If a callable returns a non-finite or non-positive time.
    """
    names = list(models)
    if callable(source):
        times = {}
        for name, model in models.items():
            value = source(model)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(
                    "The latency callable must return a positive number of "
                    f"milliseconds. Received: {value!r} for {name}"
                )
            times[name] = float(value)
        return {n: 1 - times[n] / times[names[0]] for n in names[1:]}
    runtime = "keras" if source == "measured" else source
    result = compare_latency(models, batch_size=batch_size, runs=runs, runtime=runtime)
    return {n: result.reductions[n] for n in names[1:]}


def _time_call(infer, x):
    backend.synchronize()
    start = time.perf_counter()
    outputs = infer(x)
    backend.synchronize(outputs)
    return (time.perf_counter() - start) * 1000.0


def _named_models(models):
    if isinstance(models, dict):
        named = dict(models)
    elif isinstance(models, (list, tuple)):
        named = {}
        for index, model in enumerate(models):
            name = getattr(model, "name", None)
            # Two models called "functional" must not overwrite each other.
            named[name if name not in named else f"{name}_{index}"] = model
    else:
        raise TypeError(
            "`models` must be a dict of name -> keras.Model or a list of "
            f"keras.Model. Received: models of type {type(models).__name__}"
        )
    if not named:
        raise ValueError(
            f"`models` must not be empty. Received: models={models}"
        )
    for name, model in named.items():
        if not isinstance(model, keras.Model):
            raise TypeError(
                "Every model must be a keras.Model. Received: "
                f"{name}={model!r} of type {type(model).__name__}"
            )
    return named


def _symbolic_inputs(model):
    try:
        return list(model.inputs)
    except AttributeError:
        # Subclassed models and Sequential models without an Input have none.
        return None


def _input_shapes(model, input_shape):
    """Per-example shapes of every model input, `None`s filled in."""
    inputs = _symbolic_inputs(model)
    model_shapes = None
    if inputs is not None:
        model_shapes = [tuple(t.shape[1:]) for t in inputs]
    if input_shape is None:
        given = model_shapes
    elif model_shapes is not None and len(model_shapes) > 1:
        given = [_as_shape(s, input_shape) for s in input_shape]
    else:
        given = [_as_shape(input_shape, input_shape)]

    if given is None:
        raise ValueError(
            f"The input shape of model {model.name!r} is unknown (it has no "
            "symbolic inputs); pass `input_shape`. Received: input_shape=None"
        )
    if model_shapes is None:
        model_shapes = [(None,) * len(s) for s in given]
    if len(given) != len(model_shapes):
        raise ValueError(
            f"Model {model.name!r} has {len(model_shapes)} inputs; pass one "
            f"shape per input. Received: input_shape={input_shape}"
        )
    for model_shape, shape in zip(model_shapes, given):
        compatible = len(model_shape) == len(shape) and all(
            m is None or m == s for m, s in zip(model_shape, shape)
        )
        if not compatible or None in shape:
            raise ValueError(
                f"Model {model.name!r} takes per-example inputs of shape "
                f"{model_shape}; `input_shape` must match it and fill every "
                f"None. Received: input_shape={input_shape}"
            )
    return given


def _as_shape(shape, input_shape):
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(
            "`input_shape` must be a tuple of ints (a list of them for "
            f"multi-input models). Received: input_shape={input_shape}"
        ) from None


def _random_input(model, shapes, batch_size, seed):
    """One backend tensor per model input, uniform in [0, 1)."""
    inputs = _symbolic_inputs(model)
    if inputs is None:
        dtypes = [keras.config.floatx()] * len(shapes)
    else:
        dtypes = [t.dtype for t in inputs]
    rng = np.random.default_rng(seed)
    # Converted once up front so host-to-device copies stay out of timing.
    tensors = [
        keras.ops.convert_to_tensor(
            rng.random((batch_size,) + shape).astype(dtype)
        )
        for shape, dtype in zip(shapes, dtypes)
    ]
    return tensors[0] if len(tensors) == 1 else tensors
