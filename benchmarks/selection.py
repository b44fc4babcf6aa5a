"""Which rule chooses the blocks well? Every block subset recovered, as ground truth.

For each model (three small networks of different families trained here,
`benchmarks/architectures.py`, or the bundled ResNet-20 teacher) and each
tiny set (`--runs`, `size:seed` pairs drawn from the digits train split),
every `k`-subset of the six candidate blocks (`--drops`) is dropped and
recovered with the default recipe (`compress(blocks=...)`, feature
mimicking), and its test accuracy recorded; every subset's latency saving is
measured once per model (interleaved) and its MACs counted. That is the
ground truth. The selection criteria (`benchmarks/selection_criteria.py`),
measured on the same tiny set, are then judged by their regret (best
subset's accuracy minus the chosen one's) at equal `k` and at equal saving
(MACs by default: measured latency of these 3-20 ms networks is noise on a
shared CPU; `--saving=measured` uses it), and by the Spearman correlation
of their per-subset prediction with the recovered accuracy.

Everything expensive is cached under `--cache_dir` (the repository holds
the cache of docs/results.md's tables): trained models, ground truth per
subset (written as it is measured, so an interrupted run resumes), latency
per model, and the criteria, keyed by a hash of the library's sources:
after a library change the criteria are measured again and the ground
truth is reused: re-judging costs, per model and tiny set, the scorings
(recoverability, greedy `compress(drop=k)`) and an audition of every set
(`selection="shortlist"`), not a recovery per subset. The shortlist rule
at other budgets is judged from those auditions (`selection_criteria`).

Command (docs/results.md, "Choosing blocks by brief recoveries", gives the
per-model commands that filled the cache and their wall time):

    KERAS_BACKEND=torch python -m benchmarks.selection \
        --models user_resnet,mobilenet,vgg --drops 2 --runs 50:0,50:1,50:2 \
        --finetune_steps 500 --test_images 3000 --train_epochs 15 \
        --train_images 20000 --any_library_hash \
        --output docs/selection_tables.md

Models are independent: one process per model (`--models vgg`, ...) with
the same cache fills it in parallel; `--partial` then judges whatever
ground truth is cached.
"""

import glob
import hashlib
import json
import os
import time

from absl import app
from absl import flags

from benchmarks import architectures
from benchmarks import harness
from benchmarks import selection_criteria as criteria
from benchmarks import selection_tables as tables

_MODELS = flags.DEFINE_list(
    "models", ["resnet20", "user_resnet", "mobilenet", "vgg"],
    "Models: resnet20 (the bundled teacher) or keys of "
    "architectures.BUILDERS.",
)
_DROPS = flags.DEFINE_list("drops", ["2", "3"], "Numbers of blocks to drop.")
_RUNS = flags.DEFINE_list(
    "runs", ["50:0", "50:1", "500:0"], "Tiny sets as size:seed pairs."
)
_STEPS = flags.DEFINE_integer("steps", 200, "Adaptor steps per candidate.")
_FINALIST_STEPS = flags.DEFINE_integer(
    "finalist_steps", 100,
    "Steps of each brief recovery of `selection=\"shortlist\"` (every ranked "
    "set is auditioned, so each shortlist size can be judged).",
)
_FINALIST_FOLDS = flags.DEFINE_integer(
    "finalist_folds", 2,
    "Parts of the tiny set each set is auditioned on (the library's "
    "`finalist_folds`); the one-fold auditions judged on new views, when "
    "cached, are judged beside them.",
)
_FINALISTS = flags.DEFINE_integer(
    "finalists", 20, "Most sets the library's shortlist rule auditions (its default)."
)
_FINETUNE_STEPS = flags.DEFINE_integer(
    "finetune_steps", 40, "Recovery steps per subset (ground truth)."
)
_MODEL_FINETUNE_STEPS = flags.DEFINE_list(
    "model_finetune_steps", [],
    "Per-model recovery steps overriding --finetune_steps, as model:steps "
    "(e.g. vgg:200: a plain net needs more steps to recover at all).",
)
_ANY_HASH = flags.DEFINE_bool(
    "any_library_hash", False,
    "Judge with the newest cached criteria of each model and tiny set, "
    "whatever library hash measured them (the tables name the hashes): for "
    "re-judging after library changes that do not touch scoring.",
)
_SCORE_LATENCY = flags.DEFINE_enum(
    "score_latency", "macs", ["macs", "measured"],
    "Latency saving in the recoverability score (`latency=` of the library).",
)
_TEST_IMAGES = flags.DEFINE_integer("test_images", 500, "Held-out test images.")
_TRAIN_EPOCHS = flags.DEFINE_integer(
    "train_epochs", 5, "Training epochs of the non-bundled models."
)
_TRAIN_IMAGES = flags.DEFINE_integer(
    "train_images", 12000, "Training images of the non-bundled models."
)
_LATENCY_BATCH = flags.DEFINE_integer("latency_batch_size", 8, "Latency batch.")
_LATENCY_RUNS = flags.DEFINE_integer("latency_runs", 10, "Timed latency rounds.")
_SAVING = flags.DEFINE_enum(
    "saving", "macs", ["macs", "measured"],
    "Which saving the equal-latency regret compares: MACs (exact) or the "
    "measured latency (noisy on a shared CPU).",
)
_TOLERANCE = flags.DEFINE_float(
    "latency_tolerance", 0.0,
    "Equal-latency regret: subsets saving at least the chosen one's saving "
    "minus this fraction compete.",
)
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", "benchmarks/selection_cache",
    "Cache of models and measurements (the one in the repository holds the "
    "ground truth of docs/results.md).",
)
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file for the tables.")
_PARTIAL = flags.DEFINE_bool(
    "partial", False,
    "Recover nothing new: judge on the cached ground truth only (best, worst "
    "and random over the recovered subsets; choices without ground truth "
    "show n/a). For interim tables while a full run is under way.",
)
_TRUTH_ONLY = flags.DEFINE_bool(
    "truth_only", False,
    "Recover the ground truth and stop: no criteria measured, no tables (to "
    "fill the cache, one process per model, while the library changes).",
)
_REPLICATES = flags.DEFINE_integer(
    "replicates", 0,
    "Recover every subset this many more times per tiny set, each from "
    "another draw of augmented views and batch order (recovery seed + "
    "1000 r; cached apart): how far the ground truth's ranking is noise.",
)
_SMOKE = flags.DEFINE_bool(
    "smoke", False,
    "Tiny everything (one 8-image set, drop 1, 1 step, 32 test images, "
    "models trained on 64 images for one epoch): checks the code path only.",
)


def settings():
    """The flag values, with `--smoke` overriding them."""
    values = dict(
        models=_MODELS.value,
        drops=[int(k) for k in _DROPS.value],
        runs=[tuple(int(v) for v in r.split(":")) for r in _RUNS.value],
        steps=_STEPS.value,
        finetune_steps=_FINETUNE_STEPS.value,
        finalist_steps=_FINALIST_STEPS.value,
        finalist_folds=_FINALIST_FOLDS.value,
        model_finetune_steps={
            m: int(n) for m, n in (v.split(":") for v in _MODEL_FINETUNE_STEPS.value)
        },
        test_images=_TEST_IMAGES.value,
        replicates=_REPLICATES.value,
        train_epochs=_TRAIN_EPOCHS.value,
        train_images=_TRAIN_IMAGES.value,
        latency_runs=_LATENCY_RUNS.value,
    )
    if any(len(r) != 2 for r in values["runs"]) or min(values["drops"]) < 1:
        raise app.UsageError(
            "--runs takes size:seed pairs and --drops positive integers. "
            f"Received: --runs={_RUNS.value} --drops={_DROPS.value}"
        )
    if _SMOKE.value:
        values.update(
            drops=[1], runs=[(8, 0)], steps=1, finetune_steps=1,
            finalist_steps=1, model_finetune_steps={},
            test_images=32, train_epochs=1, train_images=64, latency_runs=2,
        )
    return values


def library_hash():
    """A short hash of the library's sources: criteria are cached per hash."""
    root = os.path.join(os.path.dirname(os.path.dirname(__file__)), "keras_practise")
    digest = hashlib.sha1()
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        digest.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:10]


class JsonCache:
    """A JSON dict on disk, saved after every update."""

    def __init__(self, path):
        self.path = path
        self.data = {}
        if os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)

    def set(self, key, value):
        self.data[key] = value
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        harness.write_atomically(self.path, json.dumps(self.data, indent=1))


def measure_latency(model, blocks, keys, cache):
    """Latency and MACs saving of every subset, interleaved, cached."""
    import keras_practise

    if all(k in cache.data for k in keys):
        return
    by_name = {b.name: b for b in blocks}
    pruned = {
        key: keras_practise.drop_blocks(model, [by_name[n] for n in key.split("+")])
        for key in keys
    }
    result = keras_practise.compare_latency(
        {"original": model, **pruned},
        batch_size=_LATENCY_BATCH.value, runs=settings()["latency_runs"],
    )
    macs = keras_practise.count_macs(model)
    for key, small in pruned.items():
        cache.set(key, {
            "latency_reduction": result.reductions[key],
            "median_ms": result.results[key].median_ms,
            "original_ms": result.results["original"].median_ms,
            "macs_reduction": 1 - keras_practise.count_macs(small) / macs,
        })


def recover_all(model, blocks, keys, images, seed, test, cache, steps):
    """Recovers every subset in `keys` with the default recipe, cached."""
    import keras

    import keras_practise

    for key in keys:
        if key in cache.data:
            continue
        start = time.perf_counter()
        with harness.quiet():
            small = keras_practise.compress(
                model, images, blocks=key.split("+"),
                finetune_steps=steps, seed=seed,
                latency_batch_size=0, verbose=0,
            )
        cache.set(key, {
            "accuracy": harness.accuracy(small, *test),
            "seconds": time.perf_counter() - start,
        })
        print(f"  recovered {key}: {100 * cache.data[key]['accuracy']:.2f}% "
              f"({cache.data[key]['seconds']:.0f}s)", flush=True)
        keras.utils.clear_session()


def measure_criteria(model, blocks, images, seed, cache):
    """The criteria's inputs: recoverability scores and the library's sets."""
    import keras_practise

    s = settings()
    if "scores" not in cache.data:
        started = time.perf_counter()
        with harness.quiet():
            report = keras_practise.recoverability(
                model, images, steps=s["steps"], seed=seed,
                latency=_SCORE_LATENCY.value, verbose=0,
            )
        cache.set("scores", [
            {"block": r.block, "score": r.score, "mse": r.mse,
             "initial_mse": r.initial_mse} for r in report
        ])
        cache.set("scores_seconds", time.perf_counter() - started)
    auditions = {}
    for k in s["drops"]:
        if str(k) not in cache.data:
            with harness.quiet():
                _, report = keras_practise.compress(
                    model, images, drop=k, steps=s["steps"], finetune_steps=1,
                    seed=seed, latency=_SCORE_LATENCY.value,
                    latency_batch_size=0, verbose=0, return_report=True,
                )
            cache.set(str(k), report.blocks)
            cache.set(f"{k}_seconds", report.phase_seconds["recoverability"])
        key = audition_key(k, s["finalist_steps"], s["finalist_folds"])
        if key not in cache.data:
            cache.set(key, audition_every_set(model, images, seed, k))
        auditions[k] = cache.data[key]
    on_views = {}
    for k in s["drops"] if s["finalist_folds"] > 1 else ():
        one_fold = cache.data.get(audition_key(k, s["finalist_steps"], 1))
        views = auditions[k].get("view_sets") or (one_fold or {}).get("sets")
        if views is not None:
            on_views[k] = views
    full = keras_practise.count_macs(model)
    scores = {r["block"]: r for r in cache.data["scores"]}
    return criteria.Measurements(
        blocks=[b.name for b in blocks],
        stages={b.name: b.stage for b in blocks},
        score={b: scores[b]["score"] for b in scores},
        mse={b: scores[b]["mse"] for b in scores},
        initial_mse={b: scores[b]["initial_mse"] for b in scores},
        macs={
            b.name: full - keras_practise.count_macs(
                keras_practise.drop_blocks(model, [b])
            )
            for b in blocks
        },
        library={k: cache.data[str(k)] for k in s["drops"]},
        auditions={k: a["sets"] for k, a in auditions.items()},
        finalists=_FINALISTS.value,
        steps=s["steps"],
        finalist_steps=s["finalist_steps"],
        finalist_folds=s["finalist_folds"],
        view_auditions=on_views,
        seconds={
            "scores": cache.data.get("scores_seconds"),
            **{("greedy", k): cache.data.get(f"{k}_seconds") for k in s["drops"]},
            **{("shortlist", k): a["shortlist_seconds"] for k, a in auditions.items()},
        },
    )


def audition_key(k, steps, folds):
    """The cache key of the auditions of every k-set (one fold: the key of
    the auditions recorded before folds)."""
    return f"auditions_{k}_st{steps}" + ("" if folds == 1 else f"_f{folds}")


def audition_every_set(model, images, seed, k):
    """Every set `rank_sets` ranks (up to its 20), each recovered briefly:
    `compress(selection="shortlist")` with a shortlist of all of them. The
    record names the library hash that measured it."""
    import keras_practise

    s = settings()
    with harness.quiet():
        _, report = keras_practise.compress(
            model, images, drop=k, selection="shortlist", finalists=10**6,
            finalist_steps=s["finalist_steps"],
            finalist_folds=s["finalist_folds"], finetune_steps=1,
            seed=seed, latency=_SCORE_LATENCY.value, latency_batch_size=0,
            verbose=0, return_report=True,
        )
    def record(auditions):
        return [
            {"blocks": a.blocks, "dropped_mse": a.dropped_mse,
             "reduction": a.reduction, "seconds": a.seconds,
             "feature_error": a.fidelity.feature_error,
             "output_error": a.fidelity.output_error,
             "agreement": a.fidelity.agreement, "trained": a.trained}
            for a in auditions
        ]

    # Folds the library set aside (none informative) are what the folds
    # measured; the one-fold auditions that decided instead are kept too.
    folds = report.auditions.set_aside or report.auditions
    return {
        "library": library_hash(),
        "folds": folds.folds,
        "shortlist_seconds": report.phase_seconds["shortlist"],
        "sets": record(folds),
        **({"view_sets": record(report.auditions)} if folds is not report.auditions else {}),
    }


def evaluate_model(name, test, log):
    """Ground truth and judgement of every criterion for one model."""
    import keras

    import keras_practise
    from keras_practise.demo import digits

    s = settings()
    cache_dir = _CACHE_DIR.value
    model, note = architectures.load_or_train(
        name, os.path.join(cache_dir, "models"), s["train_epochs"],
        s["train_images"],
    )
    tag = name if name == "resnet20" else (
        f"{name}_e{s['train_epochs']}_n{s['train_images']}"
    )
    tag = f"{tag}_{keras.backend.backend()}"
    finetune_steps = s["model_finetune_steps"].get(name, s["finetune_steps"])
    blocks = keras_practise.find_blocks(model)
    keys = [key for k in s["drops"] for key in criteria.subsets(
        [b.name for b in blocks], k)]
    log(f"{name}: {note}; {len(blocks)} candidates, {len(keys)} subsets")
    latency = JsonCache(os.path.join(
        cache_dir, "latency",
        f"{tag}_b{_LATENCY_BATCH.value}_r{s['latency_runs']}.json",
    ))
    measure_latency(model, blocks, keys, latency)
    field = "macs_reduction" if _SAVING.value == "macs" else "latency_reduction"
    saving = {key: latency.data[key][field] for key in keys}
    info = {
        "teacher_accuracy": harness.accuracy(model, *test),
        "macs": keras_practise.count_macs(model),
        "blocks": [(b.name, b.label) for b in blocks],
        "latency": latency.data,
        "runs": {},
        "finetune_steps": finetune_steps,
        "test_images": s["test_images"],
        "criteria_hashes": set(),
        "audition_hashes": set(),
    }
    library = library_hash()
    for size, seed in s["runs"]:
        images, _ = digits.load_cluttered_digits(
            "train", num_images=size, seed=100 + seed
        )
        run = f"n{size}_s{seed}"
        truth = JsonCache(os.path.join(
            cache_dir, "truth",
            f"{tag}_{run}_ft{finetune_steps}_t{s['test_images']}.json",
        ))
        started = time.perf_counter()
        if not _PARTIAL.value:
            recover_all(
                model, blocks, keys, images, seed, test, truth, finetune_steps
            )
        replicates = []
        for r in range(1, s["replicates"] + 1):
            again = JsonCache(f"{truth.path[:-len('.json')]}_rep{r}.json")
            if not _PARTIAL.value:
                recover_all(model, blocks, keys, images, seed + 1000 * r, test,
                            again, finetune_steps)
            if all(key in again.data for key in keys):
                replicates.append({k: again.data[k]["accuracy"] for k in keys})
        log(f"{name} {run}: ground truth of {len(truth.data)}/{len(keys)} "
            f"subsets, {len(replicates)} replicates "
            f"({time.perf_counter() - started:.0f}s)")
        if _TRUTH_ONLY.value:
            continue
        started = time.perf_counter()
        stem = os.path.join(
            cache_dir, "criteria", f"{tag}_{run}_st{s['steps']}_{_SCORE_LATENCY.value}_"
        )
        cached = sorted(glob.glob(stem + "*.json"), key=os.path.getmtime)
        path = cached[-1] if _ANY_HASH.value and cached else f"{stem}{library}.json"
        measured = JsonCache(path)
        info["criteria_hashes"].add(path[len(stem):-len(".json")])
        m = measure_criteria(model, blocks, images, seed, measured)
        info["audition_hashes"] |= {
            measured.data[audition_key(k, s["finalist_steps"], s["finalist_folds"])]
            .get("library", path[len(stem):-len(".json")])
            for k in s["drops"]
        }
        log(f"{name} {run}: criteria ready "
            f"({time.perf_counter() - started:.0f}s)")
        accuracy = {
            key: truth.data[key]["accuracy"] for key in keys if key in truth.data
        }
        info["runs"][run] = {
            "accuracy": accuracy,
            "replicates": replicates,
            "longer": longer_truth(
                os.path.join(cache_dir, "truth", f"{tag}_{run}_ft"),
                finetune_steps, s["test_images"], keys,
            ),
            "judged": criteria.judge(
                m, accuracy, saving, s["drops"], _TOLERANCE.value,
                partial=_PARTIAL.value,
            ),
            "measurements": m,
        }
    return info


def longer_truth(stem, steps, test_images, keys):
    """Cached ground truths of the same subsets recovered for more steps.

    Returns:
        `{steps: {subset: accuracy}}` for every complete cache of more steps.
    """
    found = {}
    for path in glob.glob(f"{stem}*_t{test_images}.json"):
        longer = int(path[len(stem):].split("_t")[0])
        data = JsonCache(path).data
        if longer > steps and all(k in data for k in keys):
            found[longer] = {k: data[k]["accuracy"] for k in keys}
    return found


def main(argv):
    del argv
    import keras

    from keras_practise import backend
    from keras_practise.demo import digits

    s = settings()
    started = time.perf_counter()

    def log(text):
        print(f"[{time.perf_counter() - started:.0f}s] {text}", flush=True)

    test = digits.load_cluttered_digits(
        "test", num_images=s["test_images"], seed=1
    )
    results = {name: evaluate_model(name, test, log) for name in s["models"]}
    if _TRUTH_ONLY.value:
        return
    summary, per_model, correlations = tables.summary_tables(results)
    sections = [
        f"Backend {keras.backend.backend()}, device {backend.device_name()}; "
        f"tiny sets (size:seed) {', '.join(f'{n}:{sd}' for n, sd in s['runs'])}; "
        f"drop k in {s['drops']}; recoverability {s['steps']} adaptor steps "
        f"(latency={_SCORE_LATENCY.value}); recovery `mimic`, "
        + ", ".join(f"{n} {i['finetune_steps']}" for n, i in results.items())
        + f" steps; {s['test_images']} test images; "
        f"latency batch {_LATENCY_BATCH.value}, {s['latency_runs']} rounds, "
        f"equal-latency regret on {_SAVING.value} saving, tolerance "
        f"{100 * _TOLERANCE.value:.1f} pp; library {library_hash()}, "
        "criteria measured at "
        + ", ".join(sorted(set().union(*(i["criteria_hashes"] for i in results.values()))))
        + f", the library's auditions ({s['finalist_folds']} folds, "
        f"{s['finalist_steps']} steps each) at "
        + ", ".join(sorted(set().union(*(i["audition_hashes"] for i in results.values()))))
        + f"; wall time {time.perf_counter() - started:.0f}s.",
        "Models:\n\n" + "\n".join(
            f"- {name}: test accuracy {tables.pp(info['teacher_accuracy'])}%, "
            f"{info['macs'] / 1e6:.1f} M MACs, candidates "
            + ", ".join(f"{n} ({l})" for n, l in info["blocks"])
            for name, info in results.items()
        ),
        "Regret of each criterion (over models, tiny sets and k):",
        summary,
        per_model,
        "Spearman correlation of per-subset predictions with recovered accuracy:",
        correlations,
    ]
    noise = tables.noise_table(results)
    if noise:
        sections += ["How noisy is the ground truth? The same subsets recovered "
                     "again (another draw of views and batch order):", noise]
    settled = tables.settling_table(results)
    if settled:
        sections += ["Has the ranking settled? The same subsets recovered longer:",
                     settled]
    for name, info in results.items():
        chosen, truth, scores = tables.model_tables(name, info)
        sections += [
            f"### {name}",
            "Test accuracy % of the chosen subset (labels):",
            chosen,
            "Single-block recoverability score / initial MSE:",
            scores,
            "Ground truth:",
            truth,
        ]
    text = "\n\n".join(sections)
    print(text)
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, text + "\n")


if __name__ == "__main__":
    app.run(main)
