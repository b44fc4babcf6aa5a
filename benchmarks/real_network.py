"""The paper's protocol on a real pretrained network: ImageNet EfficientNet-Lite.

The teacher is `keras_practise.models.EfficientNetLite0` (or Lite1) with its
ImageNet weights, behind a `Rescaling` layer so that it takes RGB in [0, 1]
like the library's image sources. Everything runs offline from the images
that packages ship:

* in-domain-like tiny sets: random-resized crops ("views") of half of
  foolbox's 20 labelled ImageNet photographs (`--train_photographs`);
* out-of-domain: crops of scikit-image's photographs (`sample_photographs`);
* synthetic: Gaussian noise in the input range (the paper's FakeData);
* data-free: images synthesised from the teacher (DeepInversion).

Metrics, all against the teacher on data the tiny set never saw: top-1
agreement and the mean KL(teacher || student) on `--test_views` views of the
other foolbox photographs, and top-1 accuracy on the 20 labelled photographs
(whole image resized; 10 of them lent crops to the in-domain tiny sets, and
their labels to BP).

Tables:

1. Methods at drop = 1, 2, 3 on an in-domain tiny set of `--method_size`
   views: PRACTISE (the library's greedy choice, feature mimicking) against
   first-k and initial-MSE choices (same recovery) and BP (cross-entropy on
   the photographs' labels) and KD (Hinton) on the library's blocks.
   The library's sets for k < max(drops) are the first k of its greedy
   choice for max(drops), which is what `compress(drop=k)` picks with the
   same seed (greedy rounds do not depend on k).
2. Data sources x tiny-set sizes: PRACTISE end to end (its own choice on
   that set) at drop = `--source_drop`.
3. Selection ground truth: every 2-block subset of the candidates recovered
   on the in-domain tiny set; regret of each criterion in agreement points.
4. Latency saved by the library's blocks, in Keras and ONNX Runtime.

Command of the reduced run in docs/results_real_network.md:

    KERAS_BACKEND=torch python -m benchmarks.real_network --image_size 128 \
        --output docs/results_real_network_tables.md
"""

import json
import time

from absl import app
from absl import flags

from benchmarks import harness
from benchmarks import photographs
from benchmarks import selection_criteria as criteria

_MODEL = flags.DEFINE_enum("model", "lite0", ["lite0", "lite1"], "Teacher.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input size (pixels).")
_SIZES = flags.DEFINE_list("sizes", ["50", "100", "500"], "Tiny-set sizes (views).")
_SOURCES = flags.DEFINE_list(
    "sources", ["in_domain", "out_of_domain", "synthetic", "data_free"],
    "Tiny-set sources of table 2.",
)
_DATA_FREE_SIZES = flags.DEFINE_list(
    "data_free_sizes", None,
    "Sizes at which to run the data-free source (default: --sizes); "
    "synthesis costs synthesis_steps teacher passes per image.",
)
_DROPS = flags.DEFINE_list("drops", ["1", "2", "3"], "Blocks to drop (table 1).")
_METHODS = flags.DEFINE_list(
    "methods", ["dropped", "practise", "first_k", "initial_mse", "bp", "kd"],
    "Methods of table 1.",
)
_METHOD_SIZE = flags.DEFINE_integer("method_size", 100, "Tiny set of tables 1, 3.")
_SOURCE_DROP = flags.DEFINE_integer("source_drop", 2, "Blocks dropped in table 2.")
_SOURCE_BLOCKS = flags.DEFINE_list(
    "source_blocks", None,
    "Blocks table 2 drops on every tiny set (recovery only, isolating the "
    "data); default: the library's choice on each set.",
)
_STEPS = flags.DEFINE_integer("steps", 200, "Adaptor steps per candidate.")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 500, "Recovery steps.")
_GT_STEPS = flags.DEFINE_integer(
    "gt_steps", None,
    "Recovery steps per subset of table 3 (default: --finetune_steps; 0: the "
    "subsets are dropped without recovery).",
)
_GT_SUBSETS = flags.DEFINE_integer(
    "gt_subsets", None, "Recover only this many 2-subsets (seeded draw); default all."
)
_AUGMENT_VIEWS = flags.DEFINE_integer(
    "augment_views", None, "Augmented views per tiny-set image (library default if unset)."
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Training batch size (library default if unset)."
)
_SYNTHESIS_STEPS = flags.DEFINE_integer("synthesis_steps", 1000, "Data-free steps per batch.")
_TEST_VIEWS = flags.DEFINE_integer("test_views", 500, "Held-out test views.")
_TRAIN_PHOTOGRAPHS = flags.DEFINE_integer(
    "train_photographs", 10, "foolbox photographs lending in-domain views."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the tiny sets and training.")
_LATENCY_RUNS = flags.DEFINE_integer("latency_runs", 20, "Timed rounds (table 4).")
_LATENCY_BATCH = flags.DEFINE_integer("latency_batch", 8, "Batch size (table 4).")
_LATENCY_BLOCKS = flags.DEFINE_list(
    "latency_blocks", None,
    "Blocks in choice order for table 4 when table 1 is not run (default: "
    "the library's greedy order from table 1, else the first candidates).",
)
_TABLES = flags.DEFINE_list(
    "tables", ["methods", "sources", "ground_truth", "latency"], "Tables to run."
)
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file for the tables.")
_JSON = flags.DEFINE_string("json", None, "JSON file for the raw figures.")

_NAMES = {
    "dropped": "dropped, no recovery (library's blocks)",
    "practise": "PRACTISE (library's choice + mimic)",
    "first_k": "first k + mimic",
    "initial_mse": "initial-MSE choice + mimic",
    "bp": "BP: cross-entropy on labels (library's blocks)",
    "kd": "KD (library's blocks)",
}
_SOURCE_NAMES = photographs.SOURCE_NAMES


def evaluate(model, data, teacher_test):
    """Agreement and KL with the teacher on test views; top-1 on 20 photos.

    Args:
        model: A model ending in a softmax.
        data: The `Data`.
        teacher_test: The teacher's probabilities on `data.test`.

    Returns:
        A dict: `agreement` (top-1 agreement, fraction), `kl` (mean
        KL(teacher || model) in nats) and `top1` (on the 20 photographs).
    """
    import numpy as np

    probs = model.predict(data.test, batch_size=64, verbose=0).astype("float64")
    agreement = float(np.mean(probs.argmax(-1) == teacher_test.argmax(-1)))
    eps = 1e-12
    kl = float(np.mean(np.sum(
        teacher_test * (np.log(teacher_test + eps) - np.log(probs + eps)), axis=-1
    )))
    photo = model.predict(data.labelled, batch_size=64, verbose=0)
    top1 = float(np.mean(photo.argmax(-1) == data.photo_labels))
    return {"agreement": agreement, "kl": kl, "top1": top1}


def greedy_order(report):
    """The library's blocks in the order its greedy rounds chose them."""
    rounds = [report.scores] + list(report.rounds)
    return [r.best(1)[0].block for r in rounds]


class Runner:
    """Runs `compress` with the benchmark's settings; caches by set and recipe."""

    def __init__(self, teacher, data, teacher_test):
        self.teacher, self.data, self.teacher_test = teacher, data, teacher_test
        self._cache = {}

    def common(self, finetune_steps=None):
        return dict(
            finetune_steps=finetune_steps or _FINETUNE_STEPS.value, seed=_SEED.value,
            augment_views=_AUGMENT_VIEWS.value, batch_size=_BATCH_SIZE.value,
            latency_batch_size=0, verbose=0,
        )

    def choose(self, images, k):
        """Runs the library's selection; returns (greedy order, report, metrics)."""
        import keras_practise

        with harness.quiet():
            model, report = keras_practise.compress(
                self.teacher, images, drop=k, steps=_STEPS.value, latency="macs",
                return_report=True, **self.common(),
            )
        return greedy_order(report), report, evaluate(model, self.data, self.teacher_test)

    def recover(self, key, images, blocks, method="mimic", labels=None, steps=None):
        """Metrics of `blocks` recovered with `method`, cached under `key`."""
        import keras

        import keras_practise

        cache_key = (key, tuple(sorted(blocks)), method, steps)
        if cache_key not in self._cache:
            if method == "none":
                model = keras_practise.drop_blocks(self.teacher, list(blocks))
            else:
                data = images if labels is None else (images, labels)
                with harness.quiet():
                    model = keras_practise.compress(
                        self.teacher, data, blocks=list(blocks), method=method,
                        **self.common(steps),
                    )
            self._cache[cache_key] = evaluate(model, self.data, self.teacher_test)
            keras.utils.clear_session(free_memory=False)
        return self._cache[cache_key]


def _fmt(metrics):
    return (f"{100 * metrics['agreement']:.1f}", f"{metrics['kl']:.3f}",
            f"{100 * metrics['top1']:.0f}")


def methods_table(runner, images, labels, candidates, log):
    """Table 1: methods x drop on the in-domain tiny set."""
    drops = sorted(map(int, _DROPS.value))
    order, report, _ = runner.choose(images, max(drops))
    log(f"library's greedy order: {order}")
    initial_mse = {s.block: s.initial_mse for s in report.scores}
    initial = sorted(candidates, key=lambda b: (initial_mse[b], candidates.index(b)))
    rows, raw = [], {"greedy_order": order, "scores": [
        {"block": s.block, "mse": s.mse, "initial_mse": s.initial_mse, "score": s.score}
        for s in report.scores
    ]}
    for k in drops:
        blocks = {
            "dropped": (order[:k], "none"), "practise": (order[:k], "mimic"),
            "first_k": (candidates[:k], "mimic"), "initial_mse": (initial[:k], "mimic"),
            "bp": (order[:k], "ce"), "kd": (order[:k], "kd"),
        }
        for method in _METHODS.value:
            chosen, recipe = blocks[method]
            metrics = runner.recover(
                "methods", images, chosen, recipe, labels if method == "bp" else None
            )
            raw[f"{method}/{k}"] = {"blocks": list(chosen), **metrics}
            rows.append((k, _NAMES[method], ", ".join(chosen), *_fmt(metrics)))
            log(f"drop {k} {method}: {chosen} {metrics}")
    header = ("drop", "method", "blocks", "agreement %", "KL", "top-1 on 20 %")
    return harness.markdown_table(header, rows), raw, order


def sources_table(runner, data, log):
    """Table 2: PRACTISE end to end per source and size."""
    sizes = list(map(int, _SIZES.value))
    rows, raw = [], {}
    for source in _SOURCES.value:
        cells = []
        for n in sizes:
            if source == "data_free" and str(n) not in (_DATA_FREE_SIZES.value or _SIZES.value):
                cells.append("not run")
                continue
            started = time.perf_counter()
            images, _ = data.tiny_set(source, n, _SYNTHESIS_STEPS.value)
            if _SOURCE_BLOCKS.value:
                order = list(_SOURCE_BLOCKS.value)
                metrics = runner.recover(f"{source}/{n}", images, order)
            else:
                order, _, metrics = runner.choose(images, _SOURCE_DROP.value)
            raw[f"{source}/{n}"] = {"blocks": order, **metrics}
            cells.append(f"{100 * metrics['agreement']:.1f} / {metrics['kl']:.3f} "
                         f"/ {100 * metrics['top1']:.0f} ({', '.join(sorted(order))})")
            log(f"source {source} n={n}: {order} {metrics} "
                f"({time.perf_counter() - started:.0f}s)")
        rows.append((_SOURCE_NAMES[source], *cells))
    header = ("tiny set",) + tuple(f"{n} views" for n in sizes)
    return harness.markdown_table(header, rows), raw


def ground_truth_table(runner, images, candidates, stages, raw_methods, log):
    """Table 3: every 2-subset recovered; criteria judged by regret."""
    import keras_practise
    import numpy as np

    steps = _FINETUNE_STEPS.value if _GT_STEPS.value is None else _GT_STEPS.value
    keys = criteria.subsets(candidates, 2)
    if _GT_SUBSETS.value is not None:
        pick = np.random.default_rng(_SEED.value).permutation(len(keys))[: _GT_SUBSETS.value]
        keys = [keys[i] for i in sorted(pick)]
    accuracy, raw = {}, {}
    for key in keys:
        metrics = runner.recover("ground_truth", images, key.split("+"),
                                 method="mimic" if steps else "none", steps=steps)
        accuracy[key], raw[key] = metrics["agreement"], metrics
        log(f"subset {key}: {metrics}")
    full = keras_practise.count_macs(runner.teacher)
    saving = {
        key: 1 - keras_practise.count_macs(
            keras_practise.drop_blocks(runner.teacher, key.split("+"))) / full
        for key in keys
    }
    scores = {s["block"]: s for s in raw_methods["scores"]}
    measurements = criteria.Measurements(
        blocks=candidates, stages=stages,
        score={b: scores[b]["score"] for b in candidates},
        mse={b: scores[b]["mse"] for b in candidates},
        initial_mse={b: scores[b]["initial_mse"] for b in candidates},
        macs={b: full - keras_practise.count_macs(
            keras_practise.drop_blocks(runner.teacher, [b])) for b in candidates},
        library={2: raw_methods["greedy_order"][:2]},
    )
    judged = criteria.judge(measurements, accuracy, saving, [2], tolerance=0.005,
                            partial=_GT_SUBSETS.value is not None)[2]
    rows = [("best subset", judged["best"][0], f"{100 * judged['best'][1]:.1f}", "0.0", ""),
            ("worst subset", judged["worst"][0], f"{100 * judged['worst'][1]:.1f}", "", ""),
            ("random subset (mean)", "", f"{100 * judged['random']['accuracy']:.1f}",
             f"{100 * judged['random']['regret_k']:.1f}",
             f"{100 * judged['random']['regret_latency']:.1f}")]
    for name in criteria.CRITERIA:
        row = judged[name]
        rows.append((name, row["subset"], f"{100 * row['accuracy']:.1f}",
                     f"{100 * row['regret_k']:.1f}", f"{100 * row['regret_latency']:.1f}"))
    rho = ", ".join(f"{k}: {v:.2f}" for k, v in judged["spearman"].items())
    header = ("criterion", "subset", "agreement %", "regret (pts, k=2)",
              "regret (pts, equal MACs)")
    text = (harness.markdown_table(header, rows)
            + f"\n\nSubsets recovered: {judged['coverage'][0]} of "
              f"{judged['coverage'][1]}, {steps} recovery steps each. Spearman rho "
              f"(prediction vs agreement): {rho}.")
    return text, {"subsets": raw, "judged": judged}


def latency_table(teacher, order, log):
    """Table 4: latency saved by the library's first k blocks, two runtimes."""
    import keras_practise

    drops = sorted(map(int, _DROPS.value))
    models = {"teacher": teacher}
    models.update({
        f"drop {k}": keras_practise.drop_blocks(teacher, order[:k]) for k in drops
    })
    full = keras_practise.count_macs(teacher)
    results = {}
    for runtime in ("keras", "onnxruntime"):
        result = keras_practise.compare_latency(
            models, batch_size=_LATENCY_BATCH.value, runs=_LATENCY_RUNS.value,
            runtime=runtime,
        )
        results[runtime] = result
        log(result.table())
    rows = []
    for k in drops:
        name = f"drop {k}"
        macs = 1 - keras_practise.count_macs(models[name]) / full
        rows.append((k, ", ".join(order[:k]), f"{100 * macs:.1f}", *(
            f"{results[r].results[name].median_ms:.2f} "
            f"({100 * results[r].reductions[name]:+.1f}%)" for r in results
        )))
    rows.insert(0, (0, "(teacher)", "0.0", *(
        f"{results[r].results['teacher'].median_ms:.2f}" for r in results)))
    header = ("drop", "blocks", "MACs saved %", "Keras ms (saved)", "ONNX Runtime ms (saved)")
    raw = {r: {n: results[r].results[n].median_ms for n in models} for r in results}
    return harness.markdown_table(header, rows), raw


def main(argv):
    del argv
    import keras

    import keras_practise
    from keras_practise import backend

    started = time.perf_counter()

    def log(text):
        print(f"[{time.perf_counter() - started:6.0f}s] {text}", flush=True)

    unknown = sorted(set(_TABLES.value) - {"methods", "sources", "ground_truth", "latency"})
    if unknown or ("ground_truth" in _TABLES.value and "methods" not in _TABLES.value):
        raise app.UsageError(
            f"--tables takes methods, sources, ground_truth, latency (ground_truth "
            f"needs methods). Received: {_TABLES.value}"
        )
    keras.utils.set_random_seed(_SEED.value)
    teacher = photographs.build_teacher(_MODEL.value, _IMAGE_SIZE.value)
    data = photographs.Data(teacher, _IMAGE_SIZE.value, _TRAIN_PHOTOGRAPHS.value,
                _TEST_VIEWS.value, _SEED.value)
    teacher_test = teacher.predict(data.test, batch_size=64, verbose=0)
    runner = Runner(teacher, data, teacher_test)
    teacher_metrics = evaluate(teacher, data, teacher_test)
    blocks = keras_practise.find_blocks(teacher)
    candidates = [b.name for b in blocks]
    log(f"teacher {teacher.name}: {teacher_metrics}; candidates {candidates}")
    sections = [
        f"Teacher: {teacher.name} (ImageNet weights) at {_IMAGE_SIZE.value} px, "
        f"top-1 on foolbox's 20 photographs {100 * teacher_metrics['top1']:.0f}%; "
        f"{len(candidates)} candidate blocks; test views {len(data.test)} from the "
        f"{len(data.held_out)} held-out photographs; recoverability steps "
        f"{_STEPS.value}, recovery steps {_FINETUNE_STEPS.value}, augment views "
        f"{_AUGMENT_VIEWS.value or 'library default'}, seed {_SEED.value}, backend "
        f"{keras.backend.backend()}, device {backend.device_name()}.",
    ]
    raw = {"teacher": teacher_metrics, "candidates": candidates}
    images, labels = data.tiny_set("in_domain", _METHOD_SIZE.value)
    order = None
    if "methods" in _TABLES.value:
        table, raw["methods"], order = methods_table(runner, images, labels, candidates, log)
        sections += [f"Table 1. Methods, in-domain tiny set of {_METHOD_SIZE.value} "
                     "views (agreement with the teacher and KL on held-out views; "
                     "top-1 on the 20 labelled photographs):", table]
    if "sources" in _TABLES.value:
        table, raw["sources"] = sources_table(runner, data, log)
        what = (f"blocks {', '.join(_SOURCE_BLOCKS.value)} dropped on every set, "
                "mimic recovery" if _SOURCE_BLOCKS.value else
                f"PRACTISE (its own choice) at drop {_SOURCE_DROP.value}")
        sections += [f"Table 2. Tiny-set sources, {what} (agreement % / KL / "
                     "top-1 on 20 %, blocks):", table]
    if "ground_truth" in _TABLES.value:
        table, raw["ground_truth"] = ground_truth_table(
            runner, images, candidates, {b.name: b.stage for b in blocks},
            raw["methods"], log)
        sections += ["Table 3. Selection ground truth, drop 2 (agreement points):", table]
    if "latency" in _TABLES.value:
        order = order or _LATENCY_BLOCKS.value or candidates
        table, raw["latency"] = latency_table(teacher, order, log)
        sections += [f"Table 4. Latency, batch {_LATENCY_BATCH.value}, "
                     f"{_LATENCY_RUNS.value} interleaved rounds (median):", table]
    sections.append(f"Wall time {time.perf_counter() - started:.0f}s.")
    text = "\n\n".join(sections)
    print(text)
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, text + "\n")
    if _JSON.value:
        harness.write_atomically(_JSON.value, json.dumps(raw, indent=1, default=str) + "\n")


if __name__ == "__main__":
    app.run(main)
