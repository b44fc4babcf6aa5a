r"""Scheme defaults that do not collapse, and the fidelity estimate against truth.

Issue 25, items 3 and 4. Every layer-wise scheme is run at its default and
at candidate defaults (`--variants`, names of `scheme_accuracy.VARIANTS`) on
several classifiers (`--models`):

* digits classifiers: the bundled ResNet-20 teacher and the networks of
  `benchmarks/architectures.py` (`user_resnet`, `mobilenet`, `vgg`, and
  keras.applications' MobileNet as `keras_mobilenet`), trained by
  `harness.train_classifier` and cached under `--cache_dir` (the selection
  benchmark's cache, so either binary reuses the other's models); the truth
  is measured on the held-out test split of the digits task;
* `lite0`: the pretrained ImageNet EfficientNet-Lite0 at `--image_size`
  (`benchmarks.photographs`, as the quantization and real-network studies
  use it). The tiny set is views of `--train_photographs` of foolbox's
  labelled ImageNet photographs (labels unused); the agreement is measured
  on `--test_images` views of the other photographs, which no training step
  saw, and the accuracy on all labelled photographs (whole image resized).

For every model and variant the table gives how many layers the scheme
compresses (`0`: none applies, and `compress()` refuses the model), the
MACs removed, the report's label-free estimate (`report.fidelity.agreement`:
top-1 agreement with the teacher on held-out views of the tiny set), whether
the guard warned (`FidelityWarning` at `compress()`'s default
`min_agreement`), and the truth on held-out data: top-1 agreement with the
teacher, the mean KL(teacher || compressed) of the outputs, and accuracy.
Below the tables: Spearman's rank correlation of the estimate with the
measured agreement and with the accuracy over all rows, the largest
over-estimate, and how many rows near chance the guard flagged
(`--include_tables` adds rows of earlier runs' tables to these figures).

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
    OMP_NUM_THREADS=1 KERAS_BACKEND=tensorflow python -m benchmarks.scheme_defaults \
        --models=keras_mobilenet --train_epochs=10 \
        --sizes=64 --steps=30 --test_images=500 \
        --rows_dir=out/scheme_defaults --output=out/scheme_defaults_kmn.md
    OMP_NUM_THREADS=1 KERAS_BACKEND=tensorflow python -m benchmarks.scheme_defaults \
        --models=lite0 --image_size=96 --sizes=32 --steps=10 \
        --test_images=200 --rows_dir=out/scheme_defaults \
        --output=out/scheme_defaults_lite0.md
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

# The pretrained ImageNet network of `benchmarks.photographs`.
LITE0 = "lite0"

_MODELS = flags.DEFINE_list(
    "models", ["resnet20", "user_resnet", "mobilenet", "vgg"],
    "Models: resnet20 (the bundled digits teacher), lite0 (ImageNet "
    "EfficientNet-Lite0 on photographs) or keys of architectures.BUILDERS "
    "(mobilenet_v2, keras.applications' MobileNetV2 at width 0.35, did not "
    "learn the digits task in 5 epochs of the harness: 3.8% test accuracy, "
    "chance).",
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 96,
    "lite0: input size in pixels (at 160, sparse's 33 layers took about 70 s "
    "each on the 2-core CPU).", lower_bound=32
)
_TRAIN_PHOTOGRAPHS = flags.DEFINE_integer(
    "train_photographs", 10,
    "lite0: photographs lending the tiny set's views; the others give the "
    "test views.", lower_bound=1,
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
_INCLUDE_TABLES = flags.DEFINE_string(
    "include_tables", None,
    "A markdown file with this binary's tables from earlier runs (e.g. "
    "docs/results_fidelity.md): their rows join the summary statistics, for "
    "models whose row cache is not at hand.",
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
        train_images=_TRAIN_IMAGES.value, image_size=_IMAGE_SIZE.value,
        train_photographs=_TRAIN_PHOTOGRAPHS.value,
    )
    unknown = [
        m for m in values["models"]
        if m not in ("resnet20", LITE0) and m not in architectures.BUILDERS
    ]
    if unknown:
        raise app.UsageError(
            f"Unknown models {unknown}. Expected resnet20, {LITE0} or some of "
            f"{list(architectures.BUILDERS)}."
        )
    if scheme_accuracy._SMOKE.value:
        # A smoke run of lite0 keeps it (its code path differs), at 32 px
        # and 20 test views so that the pretrained network stays cheap.
        lite0 = LITE0 in values["models"]
        values.update(
            models=[LITE0] if lite0 else ["tiny"],
            variants=["filters-0.5", "sparse-0.5"], train_epochs=1,
            train_images=64, image_size=32,
            test_images=20 if lite0 else values["test_images"],
        )
    return values


class Task:
    """A teacher with its tiny set and the held-out data of the truth.

    Attributes:
        teacher: The trained model.
        note: Where the teacher came from, for the table's heading.
        data: The tiny set as `(images, labels)` (labels unused).
        agree_x: Held-out inputs of the measured agreement and KL.
        labelled: `(images, labels)` of the measured accuracy.
        describe: What the held-out data are, for the table's heading.
    """

    def __init__(self, teacher, note, data, agree_x, labelled, describe):
        self.teacher, self.note, self.data = teacher, note, data
        self.agree_x, self.labelled, self.describe = agree_x, labelled, describe


def make_task(name, values):
    """The `Task` of model `name`: digits, or lite0 on photographs."""
    from keras_practise.demo import digits

    if name == LITE0:
        import keras

        from benchmarks import photographs

        keras.utils.set_random_seed(values["seed"])
        teacher = photographs.build_teacher(LITE0, values["image_size"])
        photos = photographs.Data(
            teacher, values["image_size"], values["train_photographs"],
            values["test_images"], values["seed"],
        )
        return Task(
            teacher, f"ImageNet weights at {values['image_size']} px",
            photos.tiny_set("in_domain", values["size"]), photos.test,
            (photos.labelled, photos.photo_labels),
            f"{len(photos.test)} views of the {len(photos.held_out)} "
            f"photographs the tiny set's {len(photos.train)} never showed; "
            f"accuracy on all {len(photos.photo_labels)} labelled photographs",
        )
    teacher, note = architectures.load_or_train(
        name, _CACHE_DIR.value, values["train_epochs"], values["train_images"]
    )
    test = digits.load_cluttered_digits(
        "test", num_images=values["test_images"], seed=1
    )
    return Task(
        teacher, note,
        digits.load_cluttered_digits(
            "train", num_images=values["size"], seed=100 + values["seed"]
        ),
        test[0], test, f"{len(test[0])} test images",
    )


def measure(task, variant, values):
    """One compression of `task.teacher` as `variant`, its estimate and truth.

    Args:
        task: A `Task`.
        variant: A key of `scheme_accuracy.VARIANTS`.
        values: The `settings()`.

    Returns:
        A dict: `layers` (how many the scheme compresses; `{"layers": 0}`
        alone where it applies to none), `macs_cut`, `estimate` (the
        report's agreement), `flagged`
        (the guard warned), `agreement` with the teacher and `kl` (mean
        KL(teacher || compressed), nats) on `task.agree_x`, `accuracy` on
        `task.labelled`, `seconds`.
    """
    import numpy as np

    import keras_practise
    from keras_practise.recovery import fidelity

    teacher = task.teacher
    started = time.perf_counter()
    layers = len(
        scheme_accuracy.candidate_layers(teacher, variant)[: values["max_layers"] or None]
    )
    if not layers:
        # compress() refuses such a model with a ValueError; the table says so.
        return {"layers": 0}
    with warnings.catch_warnings(record=True) as caught, harness.quiet():
        warnings.simplefilter("always", fidelity.FidelityWarning)
        model, report = scheme_accuracy.compress_variant(
            teacher, variant, "practise", task.data, values["seed"], values
        )
    reference = teacher.predict(task.agree_x, batch_size=64, verbose=0)
    predicted = model.predict(task.agree_x, batch_size=64, verbose=0)
    # Softmax outputs; the floor keeps a zero probability finite.
    kl = np.sum(
        reference * (np.log(reference + 1e-12) - np.log(predicted + 1e-12)), -1
    )
    return {
        "layers": layers,
        "macs_cut": 1 - keras_practise.count_macs(model) / keras_practise.count_macs(teacher),
        "estimate": report.fidelity.agreement,
        "flagged": any(
            issubclass(w.category, fidelity.FidelityWarning) for w in caught
        ),
        "agreement": float(np.mean(predicted.argmax(-1) == reference.argmax(-1))),
        "kl": float(np.mean(kl)),
        "accuracy": harness.accuracy(model, *task.labelled),
        "seconds": time.perf_counter() - started,
    }


def run_key(name, variant, values):
    """Cache key of a row: the variant and every setting that shapes it."""
    key = (
        f"{variant}|n{values['size']}|s{values['seed']}|steps{values['steps']}"
        f"|b{values['block_steps']}|f{values['finetune_steps']}"
        f"|m{values['max_layers']}|t{values['test_images']}"
    )
    if name == LITE0:
        key += f"|px{values['image_size']}|p{values['train_photographs']}"
    return key


def model_rows(name, values, started):
    """Every variant's row for model `name`, measured or from the cache."""
    import keras

    path = _ROWS_DIR.value and os.path.join(_ROWS_DIR.value, f"{name}.json")
    cached = {}
    if path and os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
    if _PARTIAL.value and not cached:
        return None, {}
    task = make_task(name, values)
    info = {
        "note": task.note, "describe": task.describe,
        "teacher_accuracy": harness.accuracy(task.teacher, *task.labelled),
    }
    rows = {}
    for variant in values["variants"]:
        key = run_key(name, variant, values)
        if key not in cached and _PARTIAL.value:
            continue
        if key not in cached:
            cached[key] = measure(task, variant, values)
            keras.utils.clear_session()
            if path:
                os.makedirs(_ROWS_DIR.value, exist_ok=True)
                harness.write_atomically(path, json.dumps(cached, indent=1))
        rows[variant] = cached[key]
        row = rows[variant]
        if not row["layers"]:
            print(f"{name} {variant}: no layer to compress", flush=True)
            continue
        print(
            f"{name} {variant}: {row['layers']} layers, estimate {100 * row['estimate']:.1f}%, test "
            f"agreement {100 * row['agreement']:.1f}%, accuracy "
            f"{100 * row['accuracy']:.1f}% ({time.perf_counter() - started:.0f}s)",
            flush=True,
        )
    return info, rows


def parse_tables(text):
    """The rows of this binary's markdown tables in `text`.

    A table belongs to the model named by the first word of the line before
    it (`"vgg (teacher ...):"`); its columns are found by their headers, so
    tables with and without the layers and KL columns both parse; rows of
    schemes that apply to no layer are skipped.

    Args:
        text: Markdown, e.g. docs/results_fidelity.md.

    Returns:
        A list of `(model, variant, row)` triples, rows with the keys that
        `summary` reads.
    """
    columns = {
        "MACs cut": "macs_cut", "estimated agreement": "estimate",
        "test agreement": "agreement", "test accuracy": "accuracy",
    }
    rows, model, header = [], None, None
    for line in text.splitlines():
        if line.startswith("| variant |"):
            header = [c.strip() for c in line.split("|")[1:-1]]
        elif line.startswith("|") and header and not line.startswith("|---"):
            cells = dict(zip(header, (c.strip() for c in line.split("|")[1:-1])))
            if cells["estimated agreement"] == "-":
                continue  # A scheme that applies to no layer of the model.
            row = {
                key: float(cells[column].rstrip("%")) / 100
                for column, key in columns.items()
            }
            row["flagged"] = cells["guard"] == "warns"
            rows.append((model, cells["variant"], row))
        elif line.endswith("):"):
            model, header = line.split()[0], None
        elif not line.startswith("|"):
            header = None
    return rows


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
        "variant", "layers", "MACs cut", "estimated agreement", "guard",
        "test agreement", "test KL", "test accuracy",
    )
    for name in values["models"]:
        info, rows = model_rows(name, values, started)
        if not rows:
            continue
        table = []
        for variant, row in rows.items():
            if not row["layers"]:
                table.append((variant, "0", *["-"] * (len(header) - 2)))
                continue
            every.append((name, variant, row))
            table.append((
                variant, str(row["layers"]), f"{100 * row['macs_cut']:.1f}%",
                f"{100 * row['estimate']:.1f}%",
                "warns" if row["flagged"] else "-",
                f"{100 * row['agreement']:.1f}%",
                # Rows cached before the KL was measured have none.
                f"{row['kl']:.3f}" if "kl" in row else "-",
                f"{100 * row['accuracy']:.1f}%",
            ))
        sections += [
            f"{name} (teacher accuracy {100 * info['teacher_accuracy']:.1f}%; "
            f"truth on {info['describe']}; {info['note']}):",
            harness.markdown_table(header, table),
        ]
    if _INCLUDE_TABLES.value:
        with open(_INCLUDE_TABLES.value) as f:
            included = parse_tables(f.read())
        measured = {(name, variant) for name, variant, _ in every}
        every += [r for r in included if (r[0], r[1]) not in measured]
        sections.append(
            f"The summary includes {len(every) - len(measured)} rows of "
            f"{_INCLUDE_TABLES.value} (models "
            f"{sorted({r[0] for r in included})})."
        )
    result = summary(every, _NEAR_CHANCE.value)
    sections.insert(0, (
        f"Tiny set: {values['size']} images (digits train images, or views "
        f"of photographs for {LITE0}; seed {values['seed']}, labels unused); "
        f"{values['steps']} training steps per compressed layer; "
        f"backend {keras.backend.backend()}, "
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
