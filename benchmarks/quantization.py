r"""Block dropping and int8 quantization, alone and together, per runtime.

A teacher and its compressed copy are each exported float32 and int8 to
every runtime (ONNX Runtime, LiteRT, OpenVINO), the int8 files calibrated
on the tiny set by the runtime's own quantizer. For each of the four files
per runtime the table gives the file size, the latency in that runtime
(batch 1, one thread, the four files timed interleaved run by run), the
top-1 accuracy and the top-1 agreement with the float teacher on held-out
data. A second table asks whether the two compose: is the size (latency)
ratio of the compressed int8 file the product of the two ratios alone, and
is its accuracy (agreement) loss the sum of the two losses?

Teachers (`--model`):

* `digits`: the bundled digits ResNet-20 (docs/teacher.md), `compress(drop=2)`
  from a tiny set of training digits (or `--blocks`); accuracy and agreement
  on held-out test digits.
* `lite0`: EfficientNet-Lite0 with ImageNet weights behind a `Rescaling`
  layer (`benchmarks.photographs.build_teacher`) at `--image_size`; the
  tiny set is views of 10 of foolbox's photographs, agreement is measured
  on views of the other 10, accuracy on all 20 labelled photographs. The
  blocks default to the library's greedy choice on this network
  (docs/results_real_network.md: block5c, block4b) and the recovery to
  `none`, since mimic recovery was rejected there at small budgets.

Commands (docs/results_quantization.md):

    KERAS_BACKEND=tensorflow python -m benchmarks.quantization \
        --output=out/quantization.md
    KERAS_BACKEND=tensorflow python -m benchmarks.quantization --model=lite0 \
        --image_size=128 --output=out/quantization_lite0.md

`--smoke` runs in about a minute with meaningless numbers.
"""

import json
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
from benchmarks import photographs

_MODEL = flags.DEFINE_enum(
    "model", "digits", ["digits", "lite0"],
    "digits: the bundled digits teacher; lite0: ImageNet EfficientNet-Lite0.",
)
_TEACHER = flags.DEFINE_string(
    "teacher", None, "digits: a .keras teacher; default: bundled."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 128, "lite0: input size in pixels.", lower_bound=32
)
_BLOCKS = flags.DEFINE_list(
    "blocks", None,
    "Blocks to drop instead of compress's choice (lite0 default: "
    "block5c,block4b, the library's greedy choice).",
)
_METHOD = flags.DEFINE_string(
    "method", None, "Recovery recipe (default: mimic for digits, none for lite0)."
)
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
    "test_images", None,
    "Held-out test digits (digits, default 2000) or views of the held-out "
    "photographs (lite0, default 300).", lower_bound=1,
)
_RUNS = flags.DEFINE_integer("runs", 200, "Timed rounds per runtime.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 20, "Untimed rounds.", lower_bound=0)
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file for the tables.")
_JSON = flags.DEFINE_string("json", None, "JSON file for the raw figures.")
_SMOKE = flags.DEFINE_bool(
    "smoke", False, "8-image tiny set, 2 steps, 50 test images (views), 5 runs."
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


class Task:
    """A teacher with its tiny set and held-out data.

    Attributes:
        teacher: The float Keras teacher.
        tiny_set: Images `compress` recovers from and int8 calibrates on.
        agree_x: Held-out inputs on which agreement with the teacher is
            measured.
        accuracy_x: Labelled held-out inputs for top-1 accuracy.
        accuracy_y: Their labels.
        describe: What the data are, for the results text.
    """

    def __init__(self, teacher, tiny_set, agree_x, accuracy_x, accuracy_y, describe):
        self.teacher, self.tiny_set, self.agree_x = teacher, tiny_set, agree_x
        self.accuracy_x, self.accuracy_y = accuracy_x, accuracy_y
        self.describe = describe


def digits_task(size, test_images, seed):
    """The bundled digits teacher; agreement and accuracy on test digits."""
    from keras_practise.demo import digits

    tiny_set, _ = digits.load_cluttered_digits("train", num_images=size, seed=100 + seed)
    test_x, test_y = digits.load_cluttered_digits("test", num_images=test_images, seed=1)
    return Task(
        harness.load_teacher(_TEACHER.value), tiny_set, test_x, test_x, test_y,
        f"{size} training images (seed {seed}), which are also the int8 "
        f"calibration set; {test_images} held-out test digits for accuracy and "
        "agreement",
    )


def lite0_task(size, test_views, image_size, seed):
    """ImageNet EfficientNet-Lite0 on views of foolbox's photographs.

    The tiny set is `size` views of 10 photographs (no labels used); the
    agreement is measured on `test_views` views of the other 10 and the
    accuracy on all 20 labelled photographs (whole image resized), as in
    `benchmarks.real_network`.
    """
    import keras

    keras.utils.set_random_seed(seed)
    teacher = photographs.build_teacher("lite0", image_size)
    data = photographs.Data(teacher, image_size, 10, test_views, seed)
    images, _ = data.tiny_set("in_domain", size)
    return Task(
        teacher, images, data.test, data.labelled, data.photo_labels,
        f"{size} views of 10 of foolbox's ImageNet photographs at {image_size} px "
        f"(seed {seed}), which are also the int8 calibration set; agreement on "
        f"{len(data.test)} views of the other 10 photographs, accuracy on all "
        "20 labelled photographs (whole image resized)",
    )


def _measure(files, task, teacher_classes, runs, warmup):
    """One row per file: size, latency, accuracy, agreement."""
    from keras_practise.export import runtimes
    from keras_practise.profiling import latency as latency_lib

    comparison = latency_lib.compare_exported_latency(
        files,
        input_shape=task.agree_x.shape[1:], batch_size=1, runs=runs,
        warmup=warmup, threads=1,
    )
    rows = {}
    for key, result in files.items():
        runner = runtimes.load_runner(result.path, result.format)
        rows[key] = {
            "size": result.size_bytes,
            "latency": comparison.results[key],
            "accuracy": float(np.mean(
                _predict(runner, task.accuracy_x) == task.accuracy_y
            )),
            "agreement": float(np.mean(
                _predict(runner, task.agree_x) == teacher_classes
            )),
        }
    return rows


def _tables(results, keras_metrics):
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
    models = ", ".join(
        f"{k} {100 * v['accuracy']:.2f}% (agreement {100 * v['agreement']:.2f}%)"
        for k, v in keras_metrics.items()
    )
    return (
        f"Keras float accuracy: {models}.\n\n"
        + harness.markdown_table(
            ("runtime", "model", "precision", "size MB", "size ratio",
             "median ms (p10-p90)", "latency ratio", "accuracy %",
             "agreement with teacher %"),
            per_file,
        )
        + "\n\nComposition (ratios to the float teacher; accuracy and "
        "agreement losses in points):\n\n"
        + harness.markdown_table(
            ("runtime", "size: product of ratios alone", "size: both",
             "latency: product", "latency: both", "accuracy loss: sum",
             "accuracy loss: both", "agreement loss: sum",
             "agreement loss: both"),
            composition,
        )
    )


def _composition(rows):
    """Product of the two savings alone against both together."""
    base = rows[("teacher", "float")]
    int8, dropped, both = ("teacher", "int8"), ("compressed", "float"), ("compressed", "int8")

    def ratio(key, field):
        value, reference = rows[key][field], base[field]
        if field == "latency":
            value, reference = value.median_ms, reference.median_ms
        return value / reference

    def loss(key, field):
        return 100 * (base[field] - rows[key][field])

    cells = []
    for field in ("size", "latency"):
        product = ratio(int8, field) * ratio(dropped, field)
        cells += [f"{product:.3f}", f"{ratio(both, field):.3f}"]
    for field in ("accuracy", "agreement"):
        total = loss(int8, field) + loss(dropped, field)
        cells += [f"{total:.2f}", f"{loss(both, field):.2f}"]
    return tuple(cells)


def _raw(results, keras_metrics):
    """The figures as plain JSON values."""
    return {
        "keras": keras_metrics,
        "runtimes": {
            runtime: {
                f"{model}/{precision}": {
                    "size": row["size"], "median_ms": row["latency"].median_ms,
                    "p10_ms": row["latency"].p10_ms, "accuracy": row["accuracy"],
                    "agreement": row["agreement"],
                }
                for (model, precision), row in rows.items()
            }
            for runtime, rows in results.items()
        },
    }


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
    from keras_practise.profiling import runtime_latency

    unknown = set(_RUNTIMES.value) - set(runtime_latency.RUNTIMES)
    if unknown:
        raise app.UsageError(
            f"--runtimes must be from {sorted(runtime_latency.RUNTIMES)}. "
            f"Received: {sorted(unknown)}"
        )
    lite0 = _MODEL.value == "lite0"
    started = time.perf_counter()
    size, steps, finetune_steps, runs, warmup = (
        _SIZE.value, _STEPS.value, _FINETUNE_STEPS.value, _RUNS.value, _WARMUP.value,
    )
    test_images = _TEST_IMAGES.value or (300 if lite0 else 2000)
    if _SMOKE.value:
        size, steps, finetune_steps, test_images, runs, warmup = 8, 2, 2, 50, 5, 1
    if lite0:
        task = lite0_task(size, test_images, _IMAGE_SIZE.value, _SEED.value)
    else:
        task = digits_task(size, test_images, _SEED.value)
    blocks = _BLOCKS.value or (["block5c", "block4b"] if lite0 else None)
    method = _METHOD.value or ("none" if lite0 else "mimic")
    with harness.quiet():
        compressed = keras_practise.compress(
            task.teacher, task.tiny_set, drop=_DROP.value, blocks=blocks,
            method=method, steps=steps, finetune_steps=finetune_steps,
            seed=_SEED.value, latency_batch_size=0, min_agreement=0.0, verbose=0,
        )
    print(f"compressed ({time.perf_counter() - started:.0f}s)", flush=True)
    models = {"teacher": task.teacher, "compressed": compressed}
    teacher_classes = np.argmax(
        task.teacher.predict(task.agree_x, batch_size=64, verbose=0), axis=-1
    )
    keras_metrics = {
        name: {
            "accuracy": harness.accuracy(model, task.accuracy_x, task.accuracy_y),
            "agreement": float(np.mean(np.argmax(
                model.predict(task.agree_x, batch_size=64, verbose=0), axis=-1
            ) == teacher_classes)),
        }
        for name, model in models.items()
    }
    results = {}
    with tempfile.TemporaryDirectory(prefix="quantization_") as folder:
        for runtime in _RUNTIMES.value:
            with harness.quiet():
                files = _export_all(
                    models, runtime, task.tiny_set, task.agree_x[:100], folder
                )
            results[runtime] = _measure(files, task, teacher_classes, runs, warmup)
            print(f"{runtime} ({time.perf_counter() - started:.0f}s)", flush=True)
    what = (
        f"blocks {', '.join(blocks)} dropped" if blocks
        else f"drop={_DROP.value}, steps={steps}"
    )
    recovery = "no recovery" if method == "none" else (
        f"recovery {method}, finetune_steps={finetune_steps}"
    )
    text = (
        f"{_provenance()}\n\nTeacher {task.teacher.name} "
        f"({task.teacher.count_params()} parameters) and `compress` ({what}, "
        f"{recovery}) from {task.describe}; latency at batch 1, one thread, "
        f"{runs} interleaved rounds after {warmup} warm-up rounds; wall time "
        f"{time.perf_counter() - started:.0f}s.\n\n"
        + _tables(results, keras_metrics)
    )
    print(text)
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, text + "\n")
    if _JSON.value:
        harness.write_atomically(
            _JSON.value, json.dumps(_raw(results, keras_metrics), indent=1) + "\n"
        )


if __name__ == "__main__":
    app.run(main)
