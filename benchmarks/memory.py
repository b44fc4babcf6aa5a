"""Peak resident memory of a whole `compress()` call, with and without a budget.

Each run is a fresh Python process (peak resident memory cannot be reset
within one): it builds the model (random weights: memory does not depend
on their values), draws `--num_samples` random images at `--image_size`,
calls `compress()` with each of `--budgets` (its `memory_budget`) and
prints its peak resident memory (`ru_maxrss`), the resident memory before
the call (framework, model, images) and the wall time. Runs go one after the
other, so nothing else competes for memory. Peaks do not grow with the step
counts beyond the first step, so small `--steps` keep the runs short.

Commands (docs/results.md, "Memory"):

    KERAS_BACKEND=tensorflow python -m benchmarks.memory \
        --models mobilenet_v2,resnet50 --image_size 224 --num_samples 500 \
        --budgets 4 --drop 1 --steps 1 --finetune_steps 2
    KERAS_BACKEND=tensorflow python -m benchmarks.memory \
        --models mobilenet_v2 --image_size 160 --num_samples 50 --drop 2 \
        --steps 5 --finetune_steps 5 --budgets 4,none

On a checkout from before `memory_budget` existed, copy this file there and
pass `--budgets omit`.

`--step_blocks` measures one adaptor training step instead, against the
plan (`memory.activation_bytes` x batch plus the backend's fixed part):
for each named block and `--step_batches` size, a fresh process builds the
student that scores the block dropped and trains it for 2 steps; the peak
resident memory above what it held before (`VmHWM`, reset first) is the
step's, its first trace included:

    KERAS_BACKEND=torch python -m benchmarks.memory --models resnet50 \
        --image_size 128 --step_blocks conv3_block2,conv4_block2 \
        --step_batches 16,64
"""

import json
import os
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags

_MODELS = flags.DEFINE_list(
    "models", ["mobilenet_v2"], "keras.applications models: mobilenet_v2, resnet50."
)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input height and width.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 500, "Images in the tiny set.")
_BUDGETS = flags.DEFINE_list(
    "budgets", ["4", "none"],
    "memory_budget values in GiB ('none': unbounded; 'omit': not passed, "
    "for a checkout older than the argument).",
)
_DROP = flags.DEFINE_integer("drop", 1, "Blocks to drop (greedy choice).")
_STEPS = flags.DEFINE_integer("steps", 1, "Adaptor steps per candidate.")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 2, "Recovery steps.")
_STEP_BLOCKS = flags.DEFINE_list(
    "step_blocks", [],
    "Measure one adaptor training step per block named here (instead of "
    "whole calls).",
)
_STEP_BATCHES = flags.DEFINE_list("step_batches", ["16", "64"], "Batch sizes of --step_blocks.")
_CHILD = flags.DEFINE_string("child", None, "Internal: one run's JSON settings.")
_OUT = flags.DEFINE_string("out", None, "Also write the table to this file.")

_ENVIRONMENT = ("TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
_MODEL_FACTORIES = {"mobilenet_v2": "MobileNetV2", "resnet50": "ResNet50"}


def _rss_gib():
    return _status_bytes("VmRSS") / 2**30


def _model(settings):
    import keras

    size = settings["image_size"]
    factory = getattr(keras.applications, _MODEL_FACTORIES[settings["model"]])
    return factory(weights=None, input_shape=(size, size, 3))


def _step_child(settings):
    """One adaptor training step's memory; prints it as one JSON line."""
    import numpy as np

    import keras_practise
    from keras_practise import backend
    from keras_practise.distillation import memory
    from keras_practise.distillation import trainer
    from keras_practise.graph import taps
    from keras_practise.selection import recoverability

    model = _model(settings)
    block = {b.name: b for b in keras_practise.find_blocks(model)}[settings["block"]]
    # The student scoring builds for the block (`score_block` without a pool).
    student, _, cut = recoverability.adaptor_student(
        model, [block], taps.feature_tap(model)
    )
    batch = settings["batch"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * batch,) + tuple(cut.shape[1:])).astype("float32")
    y = rng.normal(size=(2 * batch,) + tuple(student.output.shape[1:])).astype("float32")
    memory.release_freed()
    before = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # Resets VmHWM to the current resident memory.
    trainer.fit(student, x, [y], ["mse"], trainer.TrainConfig(steps=2, batch_size=batch, retries=0))
    planned = memory.activation_bytes(student) * batch + backend.training_memory()[1]
    print(json.dumps({
        "planned_gib": planned / 2**30,
        "measured_gib": (_status_bytes("VmHWM") - before) / 2**30,
    }))


def _status_bytes(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return float("nan")


def _child(settings):
    """One compress() call; prints its figures as one JSON line."""
    import numpy as np

    import keras_practise

    size = settings["image_size"]
    model = _model(settings)
    images = np.random.default_rng(0).uniform(
        -1, 1, (settings["num_samples"], size, size, 3)
    ).astype("float32")
    before = _rss_gib()
    start = time.perf_counter()
    budget = {}
    if settings["memory_budget"] != "omit":
        value = settings["memory_budget"]
        budget = {"memory_budget": None if value is None else float(value)}
    _, report = keras_practise.compress(
        model, images, drop=settings["drop"], steps=settings["steps"],
        finetune_steps=settings["finetune_steps"], latency="macs",
        latency_batch_size=0, min_agreement=0, verbose=0, return_report=True,
        **budget,
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({
        "before_gib": before, "peak_gib": peak,
        "seconds": time.perf_counter() - start, "blocks": report.labels,
    }))


_WORDS = {"none": None, "omit": "omit"}


def _run(model, budget):
    return _run_child({
        "model": model, "image_size": _IMAGE_SIZE.value,
        "num_samples": _NUM_SAMPLES.value, "drop": _DROP.value,
        "steps": _STEPS.value, "finetune_steps": _FINETUNE_STEPS.value,
        "memory_budget": _WORDS.get(budget.lower(), budget),
    })


def _run_child(settings):
    command = [sys.executable, "-m", "benchmarks.memory", "--child", json.dumps(settings)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"The run {settings} failed (exit code {done.returncode}).")
    return json.loads(lines[-1])


def main(argv):
    del argv
    if _CHILD.value:
        settings = json.loads(_CHILD.value)
        (_step_child if "block" in settings else _child)(settings)
        return
    from benchmarks import harness

    import keras

    if _STEP_BLOCKS.value:
        _steps_table(harness, keras)
        return

    rows = []
    for model in _MODELS.value:
        for budget in _BUDGETS.value:
            result = _run(model, budget)
            rows.append((
                model, f"{_IMAGE_SIZE.value} px", _NUM_SAMPLES.value,
                budget if budget.lower() in _WORDS else f"{budget} GiB",
                f"{result['before_gib']:.2f}", f"{result['peak_gib']:.2f}",
                f"{result['seconds']:.0f}", ",".join(result["blocks"]),
            ))
            print(rows[-1], flush=True)
    table = harness.markdown_table(
        ("model", "input", "images", "memory_budget", "resident before (GiB)",
         "peak resident (GiB)", "seconds", "dropped"),
        rows,
    )
    # Settings that change what the framework keeps (oneDNN's caches on
    # TensorFlow) or how many threads allocate.
    knobs = [f"{name}={os.environ[name]}" for name in _ENVIRONMENT if name in os.environ]
    table += (
        f"\n\nBackend {keras.backend.backend()}; drop={_DROP.value}, "
        f"steps={_STEPS.value}, finetune_steps={_FINETUNE_STEPS.value}"
        + (f"; {', '.join(knobs)}" if knobs else "") + "."
    )
    _emit(harness, table)


def _steps_table(harness, keras):
    rows = []
    for model in _MODELS.value:
        for block in _STEP_BLOCKS.value:
            for batch in _STEP_BATCHES.value:
                result = _run_child({
                    "model": model, "image_size": _IMAGE_SIZE.value,
                    "block": block, "batch": int(batch),
                })
                rows.append((
                    model, f"{_IMAGE_SIZE.value} px", f"{block} dropped", batch,
                    f"{result['planned_gib']:.3f}", f"{result['measured_gib']:.3f}",
                ))
                print(rows[-1], flush=True)
    table = harness.markdown_table(
        ("model", "input", "student", "batch", "planned (GiB)", "measured (GiB)"),
        rows,
    ) + f"\n\nBackend {keras.backend.backend()}; one adaptor training step."
    _emit(harness, table)


def _emit(harness, table):
    print(table)
    if _OUT.value:
        harness.write_atomically(_OUT.value, table + "\n")


if __name__ == "__main__":
    app.run(main)
