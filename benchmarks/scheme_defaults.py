r"""Scheme defaults that do not collapse, and the fidelity estimate against truth.

Issue 25, items 3 and 4. Every layer-wise scheme is run at its default and
at candidate defaults (`--variants`, names of `scheme_accuracy.VARIANTS`) on
several digits classifiers (`--models`): the bundled ResNet-20 teacher and
the networks of `benchmarks/architectures.py` (`user_resnet`, `mobilenet`,
`vgg`; `mobilenet_v2`, keras.applications' MobileNetV2, on request), trained by
`harness.train_classifier` and cached under `--cache_dir` (the selection
benchmark's cache, so either binary reuses the other's models).

For every model and variant the table gives the MACs removed, the report's
label-free estimate (`report.fidelity.agreement`: top-1 agreement with the
teacher on held-out views of the tiny set), whether the guard warned
(`FidelityWarning` at `compress()`'s default `min_agreement`), and the
truth on the held-out test split: top-1 agreement with the teacher and
accuracy. Below the tables: Spearman's rank correlation of the estimate
with the measured agreement and with the accuracy over all rows, the
largest over-estimate, and how many rows near chance the guard flagged.

The compression and training flags are `benchmarks.scheme_accuracy`'s (one
absl registry: `--variants`, `--steps`, `--block_steps`,
`--finetune_steps`, `--test_images`, `--output`, `--smoke`); these
defaults suit this study. The first of `--sizes` and `--seeds` is the tiny
set. Rows are cached per model under `--rows_dir` as they are measured: an
interrupted run resumes, and one process per model (`--models vgg`, ...)
can fill the cache in parallel before one run with every model writes the
tables (`--partial` tabulates what is cached).

Command (docs/results_fidelity.md):

    OMP_NUM_THREADS=1 KERAS_BACKEND=tensorflow python -m benchmarks.scheme_defaults \
        --models=resnet20,user_resnet,mobilenet,vgg \
        --sizes=64 --steps=30 --test_images=500 \
        --rows_dir=out/scheme_defaults --output=out/scheme_defaults.md
"""

import json
import os
import time
import warnings

from absl import app
from absl import flags

from benchmarks import architectures
from benchmarks import harness
from benchmarks import scheme_accuracy
from benchmarks import selection_criteria

# Each layer-wise scheme at its former default (the papers' settings:
# filters keep 0.5, decouple rank 3, lowrank energy 0.4, sparse 0.9) and at
# milder candidates; the ones that decide the new defaults first, since a
# run on a shared CPU may only get through the head of the list.
STUDY_VARIANTS = [
    "sparse-0.9", "sparse-0.5", "lowrank-0.4", "lowrank-0.9", "decouple-3",
    "filters-0.5", "filters-0.75", "sparse-0.7", "lowrank-0.95",
]
flags.set_default(scheme_accuracy._VARIANTS, STUDY_VARIANTS)
flags.set_default(scheme_accuracy._SIZES, ["64"])
flags.set_default(scheme_accuracy._STEPS, 30)
flags.set_default(scheme_accuracy._TEST_IMAGES, 500)

_MODELS = flags.DEFINE_list(
    "models", ["resnet20", "user_resnet", "mobilenet", "vgg"],
    "Models: resnet20 (the bundled teacher) or keys of architectures.BUILDERS "
    "(mobilenet_v2, keras.applications' MobileNetV2, did not learn the task "
    "in 5 epochs of the harness: 3.8% test accuracy, chance).",
)
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", "out/selection_cache", "Cache of the trained models."
)
_TRAIN_EPOCHS = flags.DEFINE_integer(
    "train_epochs", 5, "Training epochs of the non-bundled models."
)
_TRAIN_IMAGES = flags.DEFINE_integer(
    "train_images", 12000, "Training images of the non-bundled models."
)
_ROWS_DIR = flags.DEFINE_string(
    "rows_dir", None, "Folder caching each model's measured rows (JSON)."
)
_PARTIAL = flags.DEFINE_bool(
    "partial", False,
    "Measure nothing new: tabulate the rows cached under --rows_dir (for "
    "tables while, or after, a run that did not finish every variant).",
)
_NEAR_CHANCE = flags.DEFINE_float(
    "near_chance", 0.1,
    "Rows with a test accuracy below this count as near chance (30 classes: "
    "chance is 0.033).",
)


def settings():
    """`scheme_accuracy.settings()` plus this binary's flags; `--smoke` shrinks all."""
    values = scheme_accuracy.settings()
    values.update(
        models=list(_MODELS.value), size=values["sizes"][0],
        seed=values["seeds"][0], train_epochs=_TRAIN_EPOCHS.value,
        train_images=_TRAIN_IMAGES.value,
    )
    unknown = [
        m for m in values["models"]
        if m != "resnet20" and m not in architectures.BUILDERS
    ]
    if unknown:
        raise app.UsageError(
            f"Unknown models {unknown}. Expected resnet20 or some of "
            f"{list(architectures.BUILDERS)}."
        )
    if scheme_accuracy._SMOKE.value:
        values.update(
            models=["tiny"], variants=["filters-0.5", "sparse-0.5"],
            train_epochs=1, train_images=64,
        )
    return values


def measure(teacher, variant, data, test, values):
    """One compression of `teacher` as `variant`, its estimate and its truth.

    Args:
        teacher: The trained model.
        variant: A key of `scheme_accuracy.VARIANTS`.
        data: The tiny set as `(images, labels)` (labels unused).
        test: `(images, labels)` of the held-out test split.
        values: The `settings()`.

    Returns:
        A dict: `macs_cut`, `estimate` (the report's agreement), `flagged`
        (the guard warned), `agreement` and `accuracy` on the test split,
        `seconds`.
    """
    import numpy as np

    import keras_practise
    from keras_practise.recovery import fidelity

    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, harness.quiet():
        warnings.simplefilter("always", fidelity.FidelityWarning)
        model, report = scheme_accuracy.compress_variant(
            teacher, variant, "practise", data, values["seed"], values
        )
    reference = teacher.predict(test[0], batch_size=256, verbose=0).argmax(-1)
    predicted = model.predict(test[0], batch_size=256, verbose=0).argmax(-1)
    return {
        "macs_cut": 1 - keras_practise.count_macs(model) / keras_practise.count_macs(teacher),
        "estimate": report.fidelity.agreement,
        "flagged": any(
            issubclass(w.category, fidelity.FidelityWarning) for w in caught
        ),
        "agreement": float(np.mean(predicted == reference)),
        "accuracy": float(np.mean(predicted == test[1])),
        "seconds": time.perf_counter() - started,
    }


def run_key(variant, values):
    """Cache key of a row: the variant and every setting that shapes it."""
    return (
        f"{variant}|n{values['size']}|s{values['seed']}|steps{values['steps']}"
        f"|b{values['block_steps']}|f{values['finetune_steps']}"
        f"|m{values['max_layers']}|t{values['test_images']}"
    )


def model_rows(name, values, started):
    """Every variant's row for model `name`, measured or from the cache."""
    import keras

    from keras_practise.demo import digits

    path = _ROWS_DIR.value and os.path.join(_ROWS_DIR.value, f"{name}.json")
    cached = {}
    if path and os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
    if _PARTIAL.value and not cached:
        return None, {}
    teacher, note = architectures.load_or_train(
        name, _CACHE_DIR.value, values["train_epochs"], values["train_images"]
    )
    test = digits.load_cluttered_digits(
        "test", num_images=values["test_images"], seed=1
    )
    info = {
        "note": note, "teacher_accuracy": harness.accuracy(teacher, *test),
        "macs": None,
    }
    data = digits.load_cluttered_digits(
        "train", num_images=values["size"], seed=100 + values["seed"]
    )
    rows = {}
    for variant in values["variants"]:
        key = run_key(variant, values)
        if key not in cached and _PARTIAL.value:
            continue
        if key not in cached:
            cached[key] = measure(teacher, variant, data, test, values)
            keras.utils.clear_session()
            if path:
                os.makedirs(_ROWS_DIR.value, exist_ok=True)
                harness.write_atomically(path, json.dumps(cached, indent=1))
        rows[variant] = cached[key]
        row = rows[variant]
        print(
            f"{name} {variant}: estimate {100 * row['estimate']:.1f}%, test "
            f"agreement {100 * row['agreement']:.1f}%, accuracy "
            f"{100 * row['accuracy']:.1f}% ({time.perf_counter() - started:.0f}s)",
            flush=True,
        )
    return info, rows


def summary(rows, near_chance):
    """How the estimate ranks and misses, and what the guard caught.

    Args:
        rows: `(model, variant, row)` triples (rows as `measure` returns).
        near_chance: Accuracy below which a row counts as near chance.

    Returns:
        A dict: `spearman_agreement`, `spearman_accuracy`, `over` (largest
        estimate minus test agreement, with its model and variant),
        `mean_abs_error`, `near_chance` and `near_chance_flagged` (counts),
        `below_guard`, `below_guard_flagged` and `flagged` (counts of rows
        whose test agreement is below the guard's default, of those the
        guard flagged, and of all flagged rows).
    """
    import inspect

    import numpy as np

    import keras_practise

    estimate = np.array([r["estimate"] for _, _, r in rows])
    agreement = np.array([r["agreement"] for _, _, r in rows])
    accuracy = np.array([r["accuracy"] for _, _, r in rows])
    flagged = np.array([r["flagged"] for _, _, r in rows])
    over = int(np.argmax(estimate - agreement))
    guard = inspect.signature(keras_practise.compress).parameters[
        "min_agreement"
    ].default
    low = accuracy < near_chance
    below = agreement < guard
    return {
        "spearman_agreement": selection_criteria.spearman(estimate, agreement),
        "spearman_accuracy": selection_criteria.spearman(estimate, accuracy),
        "over": (float(estimate[over] - agreement[over]), rows[over][0], rows[over][1]),
        "mean_abs_error": float(np.mean(np.abs(estimate - agreement))),
        "near_chance": int(low.sum()),
        "near_chance_flagged": int((low & flagged).sum()),
        "below_guard": int(below.sum()),
        "below_guard_flagged": int((below & flagged).sum()),
        "flagged": int(flagged.sum()),
        "guard": guard,
    }


def main(argv):
    del argv
    import keras

    from keras_practise import backend

    values = settings()
    started = time.perf_counter()
    sections, every = [], []
    header = (
        "variant", "MACs cut", "estimated agreement", "guard",
        "test agreement", "test accuracy",
    )
    for name in values["models"]:
        info, rows = model_rows(name, values, started)
        if not rows:
            continue
        table = []
        for variant, row in rows.items():
            every.append((name, variant, row))
            table.append((
                variant, f"{100 * row['macs_cut']:.1f}%",
                f"{100 * row['estimate']:.1f}%",
                "warns" if row["flagged"] else "-",
                f"{100 * row['agreement']:.1f}%", f"{100 * row['accuracy']:.1f}%",
            ))
        sections += [
            f"{name} (teacher {100 * info['teacher_accuracy']:.1f}% on "
            f"{values['test_images']} test images; {info['note']}):",
            harness.markdown_table(header, table),
        ]
    result = summary(every, _NEAR_CHANCE.value)
    sections.insert(0, (
        f"Tiny set: {values['size']} digits train images (seed "
        f"{values['seed']}, labels unused); {values['steps']} training steps "
        f"per compressed layer; held-out test split of "
        f"{values['test_images']} images; backend {keras.backend.backend()}, "
        f"device {backend.device_name()}; wall time "
        f"{time.perf_counter() - started:.0f}s (cached rows cost nothing)."
    ))
    over, over_model, over_variant = result["over"]
    sections.append(
        f"Over all {len(every)} rows: Spearman's rho of the estimate with the "
        f"test agreement {result['spearman_agreement']:.2f}, with the test "
        f"accuracy {result['spearman_accuracy']:.2f}; mean |estimate - test "
        f"agreement| {100 * result['mean_abs_error']:.1f} points; largest "
        f"over-estimate {100 * over:+.1f} points ({over_model} {over_variant}). "
        f"Rows near chance (test accuracy < {100 * _NEAR_CHANCE.value:.0f}%): "
        f"{result['near_chance']}, flagged by the guard: "
        f"{result['near_chance_flagged']}. Rows whose test agreement is below "
        f"the guard's {result['guard']}: {result['below_guard']}, flagged: "
        f"{result['below_guard_flagged']}; rows flagged in all: "
        f"{result['flagged']}."
    )
    text = "\n\n".join(sections)
    print(text)
    if scheme_accuracy._OUTPUT.value:
        harness.write_atomically(scheme_accuracy._OUTPUT.value, text + "\n")


if __name__ == "__main__":
    app.run(main)
