r"""Block dropping and int8 quantization, alone and together, per runtime.

The bundled digits teacher (a ResNet-20, docs/teacher.md) and its
compressed copy (`compress(drop=2)` from a tiny set of training images) are
each exported float32 and int8 to every runtime (ONNX Runtime, LiteRT,
OpenVINO), the int8 files calibrated on the same tiny set by the runtime's
own quantizer. For each of the four files per runtime the table gives the
file size, the latency in that runtime (batch 1, one thread, the four files
timed interleaved run by run) and, on held-out test digits, the top-1
accuracy and the top-1 agreement with the float teacher. A second table
asks whether the two compose: is the size (latency) ratio of the
compressed int8 file the product of the two ratios alone, and is its
accuracy loss the sum of the two losses?

Command (docs/results.md, "Block dropping and int8"):

    KERAS_BACKEND=tensorflow python -m benchmarks.quantization \
        --output=out/quantization.md

`--smoke` runs in about a minute with meaningless numbers.
"""

import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

from benchmarks import harness

_TEACHER = flags.DEFINE_string("teacher", None, "A .keras teacher; default: bundled.")
_SIZE = flags.DEFINE_integer(
    "size", 50, "Tiny-set size: recovery data and int8 calibration data.",
    lower_bound=2,
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the tiny set and of compress.")
_DROP = flags.DEFINE_integer("drop", 2, "Blocks compress drops.", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 60, "Adaptor steps per candidate block.")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 200, "Recovery steps.")
_RUNTIMES = flags.DEFINE_list(
    "runtimes", ["onnxruntime", "litert", "openvino"], "Runtimes to export to."
)
_TEST_IMAGES = flags.DEFINE_integer(
    "test_images", 2000, "Held-out test digits for accuracy.", lower_bound=1
)
_RUNS = flags.DEFINE_integer("runs", 200, "Timed rounds per runtime.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 20, "Untimed rounds.", lower_bound=0)
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file for the tables.")
_SMOKE = flags.DEFINE_bool(
    "smoke", False, "8-image tiny set, 2 steps, 50 test images, 5 runs."
)

_VARIANTS = (
    ("teacher", "float"), ("teacher", "int8"),
    ("compressed", "float"), ("compressed", "int8"),
)


def _predict(runner, images, batch_size=100):
    """Top-1 classes of an exported file's runner on `images`."""
    return np.concatenate([
        np.argmax(runner(images[i:i + batch_size]), axis=-1)
        for i in range(0, len(images), batch_size)
    ])


def _export_all(models, runtime, tiny_set, check_x, folder):
    """Float and int8 files of every model in `runtime`: name -> result.

    The int8 files are calibrated on the whole tiny set and checked (like
    the float ones) on held-out `check_x`, refusing nothing: the table
    reports the agreement.
    """
    import keras_practise
    from keras_practise.profiling import runtime_latency

    record = runtime_latency.RUNTIMES[runtime]
    files = {}
    for model_name, precision in _VARIANTS:
        path = os.path.join(folder, f"{model_name}_{precision}{record.suffix}")
        quantize = None if precision == "float" else "int8"
        files[(model_name, precision)] = keras_practise.export(
            models[model_name], path, format=record.format, sample=check_x,
            quantize=quantize, calibration=tiny_set if quantize else None,
            min_agreement=0.0,
        )
    return files


def _measure(files, test_x, test_y, teacher_classes, runs, warmup):
    """One row per file: size, latency, accuracy, agreement."""
    from keras_practise.export import runtimes
    from keras_practise.profiling import latency as latency_lib

    comparison = latency_lib.compare_exported_latency(
        files,
        input_shape=test_x.shape[1:], batch_size=1, runs=runs, warmup=warmup,
        threads=1,
    )
    rows = {}
    for key, result in files.items():
        classes = _predict(runtimes.load_runner(result.path, result.format), test_x)
        rows[key] = {
            "size": result.size_bytes,
            "latency": comparison.results[key],
            "accuracy": float(np.mean(classes == test_y)),
            "agreement": float(np.mean(classes == teacher_classes)),
        }
    return rows


def _tables(results, keras_accuracy):
    """The per-file table and the composition table, in markdown."""
    per_file, composition = [], []
    for runtime, rows in results.items():
        base = rows[("teacher", "float")]
        for key in _VARIANTS:
            row = rows[key]
            lat = row["latency"]
            per_file.append((
                runtime, *key, f"{row['size'] / 1e6:.3f}",
                f"{row['size'] / base['size']:.3f}",
                f"{lat.median_ms:.3f} ({lat.p10_ms:.3f}-{lat.p90_ms:.3f})",
                f"{lat.median_ms / base['latency'].median_ms:.3f}",
                f"{100 * row['accuracy']:.2f}", f"{100 * row['agreement']:.2f}",
            ))
        composition.append((runtime, *_composition(rows)))
    models = ", ".join(f"{k} {100 * v:.2f}%" for k, v in keras_accuracy.items())
    return (
        f"Keras float accuracy: {models}.\n\n"
        + harness.markdown_table(
            ("runtime", "model", "precision", "size MB", "size ratio",
             "median ms (p10-p90)", "latency ratio", "accuracy %",
             "agreement with teacher %"),
            per_file,
        )
        + "\n\nComposition (ratios to the float teacher; accuracy in points):"
        "\n\n"
        + harness.markdown_table(
            ("runtime", "size: product of ratios alone", "size: both",
             "latency: product", "latency: both", "accuracy loss: sum",
             "accuracy loss: both"),
            composition,
        )
    )


def _composition(rows):
    """Product of the two savings alone against both together."""
    base = rows[("teacher", "float")]

    def ratio(key, field):
        value, reference = rows[key][field], base[field]
        if field == "latency":
            value, reference = value.median_ms, reference.median_ms
        return value / reference

    def loss(key):
        return 100 * (base["accuracy"] - rows[key]["accuracy"])

    cells = []
    for field in ("size", "latency"):
        product = ratio(("teacher", "int8"), field) * ratio(("compressed", "float"), field)
        cells += [f"{product:.3f}", f"{ratio(('compressed', 'int8'), field):.3f}"]
    total = loss(("teacher", "int8")) + loss(("compressed", "float"))
    return (*cells, f"{total:.2f}", f"{loss(('compressed', 'int8')):.2f}")


def _provenance():
    """Command, commit, date and machine, for the results file."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        if subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip():
            commit += " with uncommitted changes"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    import keras

    command = "python -m benchmarks.quantization " + shlex.join(sys.argv[1:])
    return (
        f"Command: `KERAS_BACKEND={keras.backend.backend()} {command}`; commit "
        f"{commit}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU used."
    )


def main(argv):
    del argv
    import keras_practise
    from keras_practise.demo import digits
    from keras_practise.profiling import runtime_latency

    unknown = set(_RUNTIMES.value) - set(runtime_latency.RUNTIMES)
    if unknown:
        raise app.UsageError(
            f"--runtimes must be from {sorted(runtime_latency.RUNTIMES)}. "
            f"Received: {sorted(unknown)}"
        )
    started = time.perf_counter()
    size, steps, finetune_steps, test_images, runs, warmup = (
        _SIZE.value, _STEPS.value, _FINETUNE_STEPS.value, _TEST_IMAGES.value,
        _RUNS.value, _WARMUP.value,
    )
    if _SMOKE.value:
        size, steps, finetune_steps, test_images, runs, warmup = 8, 2, 2, 50, 5, 1
    teacher = harness.load_teacher(_TEACHER.value)
    tiny_set, _ = digits.load_cluttered_digits(
        "train", num_images=size, seed=100 + _SEED.value
    )
    test_x, test_y = digits.load_cluttered_digits(
        "test", num_images=test_images, seed=1
    )
    with harness.quiet():
        compressed = keras_practise.compress(
            teacher, tiny_set, drop=_DROP.value, steps=steps,
            finetune_steps=finetune_steps, seed=_SEED.value,
            latency_batch_size=0, verbose=0,
        )
    print(f"compressed ({time.perf_counter() - started:.0f}s)", flush=True)
    models = {"teacher": teacher, "compressed": compressed}
    keras_accuracy = {
        name: harness.accuracy(model, test_x, test_y) for name, model in models.items()
    }
    teacher_classes = np.argmax(teacher.predict(test_x, verbose=0), axis=-1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="quantization_") as folder:
        for runtime in _RUNTIMES.value:
            with harness.quiet():
                files = _export_all(
                    models, runtime, tiny_set, test_x[:100], folder
                )
            results[runtime] = _measure(
                files, test_x, test_y, teacher_classes, runs, warmup
            )
            print(f"{runtime} ({time.perf_counter() - started:.0f}s)", flush=True)
    text = (
        f"{_provenance()}\n\nTeacher {teacher.name} ({teacher.count_params()} "
        f"parameters) and `compress(drop={_DROP.value}, steps={steps}, "
        f"finetune_steps={finetune_steps})` from {size} training images "
        f"(seed {_SEED.value}), which are also the int8 calibration set; "
        f"{test_images} held-out test digits; latency at batch 1, one thread, "
        f"{runs} interleaved rounds after {warmup} warm-up rounds; wall time "
        f"{time.perf_counter() - started:.0f}s.\n\n"
        + _tables(results, keras_accuracy)
    )
    print(text)
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, text + "\n")


if __name__ == "__main__":
    app.run(main)
