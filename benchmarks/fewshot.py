"""Few-shot recovery: PRACTISE against baselines, on the bundled digits task.

For tiny sets of `--sizes` images x `--seeds` draws from the training split
of the cluttered-digits task, reports the held-out test accuracy (mean +/-
std over seeds) of:

* the teacher (the bundled CIFAR ResNet-20);
* "dropped": the first `--drop` droppable blocks removed, no recovery;
* "BP (blocks)": the same drop, cross-entropy finetuning on the labels;
* "MiR (blocks)": the same drop, label-free feature mimicking;
* optionally (`--methods`) the other recipes on the same drop:
  "CE + 100 x MSE" (`mimic_ce`) and "stage-wise + finetune" (`stagewise`);
* "PRACTISE": blocks chosen by recoverability, feature-mimicking recovery
  (no labels).

All of ResNet-20's candidate blocks cost the same MACs, so every variant
removes the same computation and the comparison is at equal latency cut.

Command (the figures in docs/results.md):

    KERAS_BACKEND=tensorflow python -m benchmarks.fewshot \
        --sizes 50,100,500 --seeds 0,1,2 --drop 3 --output out/fewshot.md \
        --plot docs/figures/latency_accuracy.png
"""

import time

from absl import app
from absl import flags

from benchmarks import harness

_TEACHER = flags.DEFINE_string("teacher", None, "A .keras teacher; default: bundled.")
_SIZES = flags.DEFINE_list("sizes", ["50", "100", "500"], "Tiny-set sizes.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Tiny-set draws.")
_DROP = flags.DEFINE_integer("drop", 3, "Blocks to drop.")
_STEPS = flags.DEFINE_integer("steps", 100, "Adaptor steps per candidate.")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 300, "Recovery steps.")
_TEST_IMAGES = flags.DEFINE_integer("test_images", 2000, "Held-out test images.")
_METHODS = flags.DEFINE_list(
    "methods", ["dropped", "bp", "mir", "practise"], "Methods to run."
)
_VALIDATION_SPLIT = flags.DEFINE_float(
    "validation_split", 0.0,
    "Fraction of each tiny set held out whole (compress(validation_split=)).",
)
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file for the tables.")
_PLOT = flags.DEFINE_string("plot", None, "PNG latency-accuracy figure.")

_NAMES = {
    "dropped": "dropped, no recovery",
    "bp": "BP (blocks)",
    "mir": "MiR (blocks)",
    "mimic_ce": "CE + 100 x MSE (blocks)",
    "stagewise": "stage-wise + finetune (blocks)",
    "practise": "PRACTISE",
}
# Recipes run on the first `--drop` blocks, by method flag.
_FIXED_BLOCK_RECIPES = {"bp": "ce", "mir": "mimic", "mimic_ce": "mimic_ce", "stagewise": "stagewise"}


def run_one(teacher, method, images, labels, drop, steps, finetune_steps, seed,
            validation_split=0.0):
    """Compresses `teacher` with one method; returns (model, blocks)."""
    import keras_practise

    candidates = keras_practise.find_blocks(teacher)
    first = [b.name for b in candidates[:drop]]
    common = dict(
        finetune_steps=finetune_steps, seed=seed, verbose=0,
        return_report=True, latency_batch_size=0,
        validation_split=validation_split,
    )
    if method == "dropped":
        return keras_practise.drop_blocks(teacher, first), first
    if method in _FIXED_BLOCK_RECIPES:
        model, report = keras_practise.compress(
            teacher, (images, labels), blocks=first,
            method=_FIXED_BLOCK_RECIPES[method], **common
        )
    elif method == "practise":
        model, report = keras_practise.compress(
            teacher, images, drop=drop, steps=steps, method="mimic",
            latency="macs", **common
        )
    else:
        raise app.UsageError(f"Unknown method {method!r}: {sorted(_NAMES)}")
    return model, report.blocks


def plot(points, path, size):
    """Latency-accuracy scatter with error bars (the paper's Figure 1 style)."""
    with harness.figure(
        path, "latency (ms, batch 64, this CPU)", "test accuracy (%)",
        f"Latency vs accuracy, {size} images (mean +/- std over seeds)",
    ) as axis:
        for name, latency_ms, mean, std in points:
            axis.errorbar(
                latency_ms, mean, yerr=std, fmt="o", capsize=4, label=name
            )


def main(argv):
    del argv
    import keras
    import numpy as np

    import keras_practise
    from keras_practise import backend
    from keras_practise.demo import digits

    teacher = harness.load_teacher(_TEACHER.value)
    test_x, test_y = digits.load_cluttered_digits(
        "test", num_images=_TEST_IMAGES.value, seed=1
    )
    teacher_acc = harness.accuracy(teacher, test_x, test_y)
    results = {}  # (method, size) -> list of accuracies
    chosen = {}
    models = {}
    started = time.perf_counter()
    for size in map(int, _SIZES.value):
        for seed in map(int, _SEEDS.value):
            images, labels = digits.load_cluttered_digits(
                "train", num_images=size, seed=100 + seed
            )
            for method in _METHODS.value:
                with harness.quiet():
                    model, blocks = run_one(
                        teacher, method, images, labels, _DROP.value,
                        _STEPS.value, _FINETUNE_STEPS.value, seed,
                        _VALIDATION_SPLIT.value,
                    )
                acc = harness.accuracy(model, test_x, test_y)
                results.setdefault((method, size), []).append(acc)
                chosen.setdefault((method, size), []).append(",".join(blocks))
                models.setdefault(method, model)
                print(f"n={size} seed={seed} {_NAMES[method]}: {100 * acc:.2f}% "
                      f"blocks={blocks} ({time.perf_counter() - started:.0f}s)",
                      flush=True)
                keras.utils.clear_session()

    sizes = list(map(int, _SIZES.value))
    header = ("method",) + tuple(f"{n} images" for n in sizes)
    rows = [("teacher",) + (f"{100 * teacher_acc:.2f}",) * len(sizes)]
    for method in _METHODS.value:
        rows.append((_NAMES[method],) + tuple(
            harness.mean_std(results[(method, n)]) for n in sizes
        ))
    timing = keras_practise.compare_latency(
        {"teacher": teacher, **{m: models[m] for m in _METHODS.value}},
        batch_size=64, runs=20,
    )
    blocks_rows = [
        (_NAMES[m], n, "; ".join(sorted(set(chosen[(m, n)]))))
        for m in _METHODS.value for n in sizes
    ]
    text = "\n\n".join([
        f"Teacher: {teacher.name}, test images: {_TEST_IMAGES.value}, drop "
        f"{_DROP.value}, recoverability steps {_STEPS.value}, recovery steps "
        f"{_FINETUNE_STEPS.value}, seeds {','.join(_SEEDS.value)}, backend "
        f"{keras.backend.backend()}, device {backend.device_name()}, "
        f"wall time {time.perf_counter() - started:.0f}s.",
        "Test accuracy (%), mean +/- std over seeds:",
        harness.markdown_table(header, rows),
        "Blocks dropped (per size, distinct choices over seeds):",
        harness.markdown_table(("method", "images", "blocks"), blocks_rows),
        "Latency (batch 64, interleaved):",
        "```\n" + timing.table() + "\n```",
    ])
    print(text)
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, text + "\n")
    if _PLOT.value:
        smallest = sizes[0]
        points = [("teacher", timing.results["teacher"].median_ms, 100 * teacher_acc, 0.0)]
        for method in _METHODS.value:
            values = 100 * np.asarray(results[(method, smallest)])
            points.append((_NAMES[method], timing.results[method].median_ms,
                           values.mean(), values.std()))
        plot(points, _PLOT.value, smallest)


if __name__ == "__main__":
    app.run(main)
