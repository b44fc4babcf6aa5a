r"""Accuracy at matched latency: block dropping against the layer-wise schemes.

The CVPR paper's Figure 1 on the bundled digits task: the ResNet-20 teacher
(docs/teacher.md) is compressed from a tiny set of training images (labels
unused) by every scheme of `keras_practise.compress`, all recovered by
PRACTISE's feature mimicking:

* `blocks-K`: PRACTISE proper, the K most recoverable blocks dropped
  (recoverability with the MACs saving, greedy set choice);
* `filters-F`: every prunable conv keeps the fraction F of its filters;
* `streams-F`: every residual stream between blocks that can shrink (all
  but the last, which reaches the classifier) keeps the fraction F of its
  channels, with all the convs writing it (Figure 4c/d of the earlier paper);
* `decouple-R`: every KxK conv as a depthwise conv (R filters per channel)
  plus a 1x1;
* `lowrank-E`: every 3x3 conv as a 3x3 conv keeping the principal components
  of its responses that explain a fraction E of their variance, plus a 1x1;
* `sparse-S`: a magnitude mask with the fraction S of zeros per conv.

Each variant can also be recovered by the papers' baselines (`--methods`,
`METHODS`): `bp` (cross-entropy finetuning), `kd` (Hinton's logit
distillation), `fitnet` (feature mimicking without adaptors) and
`practise_ft` (PRACTISE, then cross-entropy + beta * MSE finetuning with
the tiny set's labels); a block variant's baselines drop the blocks that
its PRACTISE run chose, so only the recovery differs. Rows and curves are
named `variant` (PRACTISE) or `variant/method`.

For every tiny set (`--sizes` x `--seeds`), all variants of the run and the
teacher are timed in one interleaved `keras_practise.compare_latency` call,
so that machine load hits them alike; the tables give the measured latency
reduction against the teacher (mean over runs), MACs, parameters, the
test accuracy and the report's label-free estimate of the top-1 agreement
with the teacher (`report.fidelity`; mean +/- std over seeds;
`benchmarks/scheme_defaults.py` sets the estimate against the measured
agreement).

The table and figure in docs/results.md, and the further tables there
(`scheme_baselines`, `scheme_streams`, ...), are rewritten by
`python -m benchmarks.report --tables scheme_accuracy` (its `TABLES` give
each command). A run of the baselines, for example:

    KERAS_BACKEND=tensorflow python -m benchmarks.scheme_accuracy \
        --sizes=50 --seeds=0 --variants=blocks-2,filters-0.75 \
        --methods=practise,bp,kd,fitnet,practise_ft \
        --output=out/scheme_baselines.md --plot=out/scheme_baselines.png
"""

import time

from absl import app
from absl import flags

from benchmarks import harness

# Stands for the teacher's prunable residual streams in a variant's options.
STREAMS = "streams"

# Variant name -> (`compress` scheme, its options).
VARIANTS = {
    "blocks-1": ("blocks", {"drop": 1}),
    "blocks-2": ("blocks", {"drop": 2}),
    "blocks-3": ("blocks", {"drop": 3}),
    "filters-0.75": ("filters", {"keep": 0.75}),
    "filters-0.5": ("filters", {"keep": 0.5}),
    "filters-0.25": ("filters", {"keep": 0.25}),
    "streams-0.75": ("filters", {"keep": 0.75, "layers": STREAMS}),
    "streams-0.5": ("filters", {"keep": 0.5, "layers": STREAMS}),
    "decouple-3": ("decouple", {"rank": 3}),
    "lowrank-0.9": ("lowrank", {"energy": 0.9}),
    "lowrank-0.95": ("lowrank", {"energy": 0.95}),
    "sparse-0.9": ("sparse", {"sparsity": 0.9}),
    # The paper's lowrank setting, and milder sparsities
    # (`benchmarks/scheme_defaults.py`).
    "lowrank-0.4": ("lowrank", {"energy": 0.4}),
    "sparse-0.7": ("sparse", {"sparsity": 0.7}),
    "sparse-0.5": ("sparse", {"sparsity": 0.5}),
}
# What a plain run compares (docs/results.md's table).
DEFAULT_VARIANTS = [
    "blocks-1", "blocks-2", "blocks-3", "filters-0.75", "filters-0.5",
    "filters-0.25", "streams-0.75", "streams-0.5", "decouple-3",
    "lowrank-0.9", "lowrank-0.95", "sparse-0.9",
]

# Recovery -> (`compress` method for blocks, for the layer-wise schemes).
METHODS = {
    "practise": ("mimic", "layerwise"),
    "bp": ("ce", "ce"),
    "kd": ("kd", "kd"),
    "fitnet": ("fitnet", "fitnet"),
    "practise_ft": ("mimic_ce", "mimic_ce"),
}

_TEACHER = flags.DEFINE_string("teacher", None, "A .keras teacher; default: bundled.")
_SIZES = flags.DEFINE_list("sizes", ["50"], "Tiny-set sizes.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Tiny-set draws.")
_VARIANTS = flags.DEFINE_list(
    "variants", DEFAULT_VARIANTS, f"Variants to run, of {list(VARIANTS)}."
)
_METHODS = flags.DEFINE_list(
    "methods", ["practise"], f"Recoveries of every variant, of {list(METHODS)}."
)
_STEPS = flags.DEFINE_integer(
    "steps", 50, "Layer-wise schemes: training steps per compressed layer."
)
_BLOCK_STEPS = flags.DEFINE_integer(
    "block_steps", 100, "Block dropping: adaptor steps per candidate."
)
_FINETUNE_STEPS = flags.DEFINE_integer(
    "finetune_steps", 300,
    "Recovery steps of block dropping and of every whole-network "
    "training (the baselines, PRACTISE + FT's finetuning).",
)
_SCORE_BLOCKS = flags.DEFINE_bool(
    "score_blocks", True,
    "Block dropping: drop the K most recoverable blocks; with "
    "--noscore_blocks the first K candidates, without scoring (smoke runs).",
)
_MAX_LAYERS = flags.DEFINE_integer(
    "max_layers", 0,
    "Layer-wise schemes compress only their first N candidate layers "
    "(0: all of them).",
)
_TEST_IMAGES = flags.DEFINE_integer("test_images", 1000, "Held-out test images.")
_LATENCY_BATCH = flags.DEFINE_integer("latency_batch_size", 64, "Latency batch.")
_LATENCY_RUNS = flags.DEFINE_integer("latency_runs", 20, "Timed latency rounds.")
_LATENCY_WARMUP = flags.DEFINE_integer("latency_warmup", 3, "Untimed rounds.")
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file for the table.")
_PLOT = flags.DEFINE_string("plot", None, "PNG latency-accuracy figure.")
_SMOKE = flags.DEFINE_bool(
    "smoke", False,
    "Tiny everything (one 8-image set, blocks-1 unscored, filters-0.5 "
    "and streams-0.5 on one layer, 1 step, 50 test images, 2 latency "
    "rounds): checks the code path only.",
)


def settings():
    """The flag values, with `--smoke` overriding them."""
    values = dict(
        sizes=[int(n) for n in _SIZES.value],
        seeds=[int(s) for s in _SEEDS.value],
        variants=list(_VARIANTS.value),
        methods=list(_METHODS.value),
        steps=_STEPS.value,
        block_steps=_BLOCK_STEPS.value,
        finetune_steps=_FINETUNE_STEPS.value,
        score_blocks=_SCORE_BLOCKS.value,
        max_layers=_MAX_LAYERS.value,
        test_images=_TEST_IMAGES.value,
        latency_batch_size=_LATENCY_BATCH.value,
        latency_runs=_LATENCY_RUNS.value,
        latency_warmup=_LATENCY_WARMUP.value,
    )
    for name, known in (("variants", VARIANTS), ("methods", METHODS)):
        unknown = [v for v in values[name] if v not in known]
        if unknown:
            raise app.UsageError(
                f"Unknown {name} {unknown}. Expected some of {list(known)}."
            )
    if _SMOKE.value:
        values.update(
            sizes=[8], seeds=[0], variants=["blocks-1", "filters-0.5", "streams-0.5"],
            methods=["practise", "kd"], steps=1,
            block_steps=1, finetune_steps=1, score_blocks=False, max_layers=1, test_images=50,
            latency_batch_size=8, latency_runs=2, latency_warmup=0,
        )
    return values


def run_name(variant, method):
    """The row and curve name of a variant recovered by `method`."""
    return variant if method == "practise" else f"{variant}/{method}"


def candidate_layers(teacher, variant):
    """Names of the layers that a layer-wise `variant` can compress in `teacher`."""
    from keras_practise.schemes import core
    from keras_practise.schemes import decouple
    from keras_practise.schemes import filters
    from keras_practise.schemes import lowrank
    from keras_practise.schemes import sparse

    scheme, options = VARIANTS[variant]
    streams = options.get("layers") == STREAMS
    return {
        "filters": filters.prunable_streams if streams else filters.prunable_maps,
        "decouple": decouple.candidates,
        "lowrank": lowrank.candidates,
        "sparse": sparse.candidates,
    }[scheme](core.flat_copy(teacher))


def compress_variant(teacher, variant, method, data, seed, values, blocks=None):
    """Compresses `teacher` from the tiny set as `variant` and `method` say.

    Args:
        teacher: The trained model.
        variant: A key of `VARIANTS`.
        method: A key of `METHODS`.
        data: The tiny set as `(images, labels)`; labels are used by the
            methods that train on them only.
        seed: Seed of the draw and training order.
        values: The `settings()`.
        blocks: Block variants: the blocks to drop instead of choosing them.

    Returns:
        A tuple `(model, report)`: the compressed model and its report (a
        block variant's `report.blocks` names the dropped blocks; every
        report's `fidelity` is the label-free estimate).
    """
    import keras_practise
    from keras_practise.recovery import recipes

    scheme, options = VARIANTS[variant]
    block_method, layer_method = METHODS[method]
    labelled = (
        block_method if scheme == "blocks" else layer_method
    ) in recipes.LABELLED_METHODS
    common = dict(
        seed=seed, verbose=0, finetune_steps=values["finetune_steps"],
        return_report=True,
    )
    images = data if labelled else data[0]
    if scheme == "blocks":
        if blocks is None and not values["score_blocks"]:
            blocks = [b.name for b in keras_practise.find_blocks(teacher)]
            blocks = blocks[: options["drop"]]
        if blocks is not None:
            options = {"blocks": blocks}
        model, report = keras_practise.compress(
            teacher, images, steps=values["block_steps"], method=block_method,
            latency="macs", latency_batch_size=0, **options, **common,
        )
        return model, report
    if options.get("layers") == STREAMS or values["max_layers"]:
        candidates = candidate_layers(teacher, variant)
        options = dict(options, layers=candidates[: values["max_layers"] or None])
    return keras_practise.compress(
        teacher, images, scheme=scheme, steps=values["steps"],
        method=layer_method, latency_batch_size=0, **options, **common,
    )


def plot(rows, teacher_accuracy, path, title):
    """Latency-accuracy curves, one per scheme and method (the paper's Figure 1).

    Args:
        rows: `(run name, latency reduction %, accuracy %, accuracy std)`
            tuples (`run_name`).
        teacher_accuracy: The teacher's accuracy in percent.
        path: Where to write the PNG.
        title: Title of the figure.
    """
    with harness.figure(
        path, "measured latency reduction vs the teacher (%)",
        "test accuracy (%)", title,
    ) as axis:
        def curve(name):
            variant, _, method = name.partition("/")
            return variant.rsplit("-", 1)[0] + (f" ({method})" if method else "")

        for label in dict.fromkeys(curve(r[0]) for r in rows):
            points = sorted((r for r in rows if curve(r[0]) == label), key=lambda r: r[1])
            x, y, err = ([p[i] for p in points] for i in (1, 2, 3))
            axis.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
            for name, xi, yi, _ in points:
                # The setting (drop count, keep, rank, energy) by its point.
                axis.annotate(
                    name.split("-", 1)[1].split("/")[0], (xi, yi), fontsize=7,
                    xytext=(3, 3), textcoords="offset points",
                )
        axis.axhline(
            teacher_accuracy, color="gray", linestyle="--", label="teacher"
        )


def main(argv):
    del argv
    import keras
    import numpy as np

    import keras_practise
    from keras_practise import backend
    from keras_practise.demo import digits

    values = settings()
    started = time.perf_counter()
    teacher = harness.load_teacher(_TEACHER.value)
    test_x, test_y = digits.load_cluttered_digits(
        "test", num_images=values["test_images"], seed=1
    )
    teacher_accuracy = harness.accuracy(teacher, test_x, test_y)
    # (variant, size) -> per-seed accuracies and latency reductions.
    accuracies, reductions, costs, estimates = {}, {}, {}, {}
    # PRACTISE first: a block variant's baselines drop the blocks it chose.
    methods = sorted(values["methods"], key=lambda m: m != "practise")
    names = [run_name(v, m) for v in values["variants"] for m in methods]
    for size in values["sizes"]:
        for seed in values["seeds"]:
            data = digits.load_cluttered_digits(
                "train", num_images=size, seed=100 + seed
            )
            models = {"teacher": teacher}
            for variant in values["variants"]:
                chosen = None
                for method in methods:
                    name = run_name(variant, method)
                    with harness.quiet():
                        model, report = compress_variant(
                            teacher, variant, method, data, seed, values, chosen
                        )
                    chosen = chosen or getattr(report, "blocks", None)
                    models[name] = model
                    acc = harness.accuracy(model, test_x, test_y)
                    estimates.setdefault((name, size), []).append(
                        report.fidelity.agreement
                    )
                    accuracies.setdefault((name, size), []).append(acc)
                    costs.setdefault((name, size), []).append((
                        keras_practise.count_params(model),
                        keras_practise.count_macs(model),
                    ))
                    print(f"n={size} seed={seed} {name}: {100 * acc:.2f}% "
                          f"({time.perf_counter() - started:.0f}s)", flush=True)
            timing = keras_practise.compare_latency(
                models, batch_size=values["latency_batch_size"],
                runs=values["latency_runs"], warmup=values["latency_warmup"],
            )
            print(timing.table(), flush=True)
            for name in names:
                reductions.setdefault((name, size), []).append(
                    timing.reductions[name]
                )
            keras.utils.clear_session()

    teacher_macs = keras_practise.count_macs(teacher)
    header = ("variant", "params K", "MACs M", "MACs cut", "latency cut",
              "accuracy %", "estimated agreement %")
    sections = [
        f"Teacher: {teacher.name}, {100 * teacher_accuracy:.2f}% on "
        f"{values['test_images']} test images, "
        f"{keras_practise.count_params(teacher) / 1e3:.1f} K params, "
        f"{teacher_macs / 1e6:.2f} M MACs. Layer-wise steps per layer "
        f"{values['steps']}; blocks: {values['block_steps']} steps per "
        f"candidate; {values['finetune_steps']} recovery steps (blocks, "
        f"baselines, finetuning); methods {','.join(methods)}; seeds "
        f"{','.join(map(str, values['seeds']))}; latency batch "
        f"{values['latency_batch_size']}, {values['latency_runs']} interleaved "
        f"rounds per run; backend {keras.backend.backend()}, device "
        f"{backend.device_name()}; wall time "
        f"{time.perf_counter() - started:.0f}s."
    ]
    points = {}
    for size in values["sizes"]:
        rows = []
        for name in names:
            # Chosen blocks and PCA ranks depend on the draw: mean over seeds.
            params, macs = np.mean(costs[(name, size)], axis=0)
            cut = 100 * float(np.mean(reductions[(name, size)]))
            acc = 100 * np.asarray(accuracies[(name, size)])
            points.setdefault(size, []).append((name, cut, acc.mean(), acc.std()))
            rows.append((
                name, f"{params / 1e3:.1f}", f"{macs / 1e6:.2f}",
                f"{100 * (1 - macs / teacher_macs):.1f}%", f"{cut:.1f}%",
                harness.mean_std(accuracies[(name, size)]),
                harness.mean_std(estimates[(name, size)]),
            ))
        sections += [
            f"{size} images (latency cut: mean over seeds; accuracy: mean "
            "+/- std over seeds):",
            harness.markdown_table(header, rows),
        ]
    text = "\n\n".join(sections)
    print(text)
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, text + "\n")
    if _PLOT.value:
        size = values["sizes"][0]
        plot(
            points[size], 100 * teacher_accuracy, _PLOT.value,
            f"{teacher.name}, {size} images, {keras.backend.backend()}",
        )


if __name__ == "__main__":
    app.run(main)
