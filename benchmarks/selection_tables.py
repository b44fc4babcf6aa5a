"""The selection benchmark's tables, from what `benchmarks/selection.py`
measured: regret per criterion (with its cost and standard error), the
Spearman correlations, how noisy the ground truth is, whether the ranking
settled, and per model the chosen subsets, scores and ground truth
(markdown).
"""

import math

from benchmarks import harness
from benchmarks import selection_criteria as criteria


def noise_table(results):
    """How far the ground truth is noise: each subset recovered again from
    another draw of views and batch order, against the first recovery
    (Spearman, the regret under the first truth of the replicate's best
    subset, the mean absolute difference), beside the binomial standard
    error of one subset's accuracy on the test images."""
    rows = []
    for name, info in results.items():
        n = info["test_images"]
        for run, r in info["runs"].items():
            first = r["accuracy"]
            for i, again in enumerate(r["replicates"], 1):
                keys = [k for k in again if k in first]
                if len(keys) < 2:
                    continue
                best = max(keys, key=lambda k: again[k])
                mean = sum(first[k] for k in keys) / len(keys)
                rows.append((
                    f"{name} {run}", str(i),
                    f"{criteria.spearman([first[k] for k in keys], [again[k] for k in keys]):+.2f}",
                    pp(max(first[k] for k in keys) - first[best]),
                    pp(sum(abs(first[k] - again[k]) for k in keys) / len(keys)),
                    pp(math.sqrt(mean * (1 - mean) / n)),
                ))
    return harness.markdown_table(
        ("model, tiny set", "replicate", "Spearman rho of the subsets",
         "regret of the replicate's best (pp)", "mean abs. difference (pp)",
         "binomial s.e. of one accuracy (pp)"),
        rows,
    ) if rows else ""


def settling_table(results):
    """Whether the ranking of subsets has settled at the ground truth's
    recovery length: Spearman against longer recoveries, and the regret
    (under the longer truth) of the subset that was best at the ground
    truth's length."""
    rows = []
    for name, info in results.items():
        steps = info["finetune_steps"]
        for run, r in info["runs"].items():
            for longer, truth in sorted(r["longer"].items()):
                keys = list(truth)
                best = max(keys, key=lambda k: r["accuracy"][k])
                rows.append((
                    f"{name} {run}", f"{steps} -> {longer}",
                    f"{criteria.spearman([r['accuracy'][k] for k in keys], [truth[k] for k in keys]):+.2f}",
                    pp(max(truth.values()) - truth[best]),
                    pp(sum(truth.values()) / len(keys)
                        - sum(r["accuracy"][k] for k in keys) / len(keys)),
                ))
    return harness.markdown_table(
        ("model, tiny set", "recovery steps", "Spearman rho of the subsets",
         "regret of the shorter run's best (pp)", "mean accuracy gain (pp)"),
        rows,
    ) if rows else ""


_RANDOM = "random (expected value)"


def pp(value):
    return "n/a" if value != value else f"{100 * value:.2f}"


def _labels(key, labels):
    if key is None:
        return "not measured"
    return "+".join(labels[n] for n in key.split("+"))


def _rows(results, field):
    """criterion -> list of `field` over models, runs and ks."""
    values = {}
    for info in results.values():
        for run in info["runs"].values():
            for row in run["judged"].values():
                for name in list(criteria.CRITERIA) + ["random"]:
                    values.setdefault(name, []).append(
                        row[name].get(field, float("nan"))
                    )
    return values


def summary_tables(results):
    """The summary (regret per criterion) and Spearman tables."""
    import numpy as np

    regret_k, regret_latency = _rows(results, "regret_k"), _rows(results, "regret_latency")
    accuracy = _rows(results, "accuracy")
    best = [row["best"][1] for info in results.values()
            for run in info["runs"].values() for row in run["judged"].values()]
    steps, seconds = _rows(results, "steps"), _rows(results, "seconds")
    rows = []
    for name in regret_k:
        hits = sum(a >= b - 1e-9 for a, b in zip(accuracy[name], best))
        finite = [v for v in regret_k[name] if np.isfinite(v)]
        error = np.std(finite, ddof=1) / np.sqrt(len(finite)) if len(finite) > 1 else np.nan
        cost = "-" if name == "random" else (
            f"{_nanmean(steps[name]):.0f} / {_nanmean(seconds[name]):.1f}"
        )
        rows.append((
            _RANDOM if name == "random" else name,
            f"{pp(_nanmean(regret_k[name]))} ± {pp(error)}",
            pp(np.nanmax(regret_k[name])),
            pp(_nanmean(regret_latency[name])),
            "-" if name == "random" else f"{hits}/{len(best)}",
            cost,
        ))
    summary = harness.markdown_table(
        ("criterion", "mean regret, equal k (pp, ± s.e. over runs)",
         "max regret, equal k", "mean regret, equal latency (pp)",
         "chose the best subset", "cost: training steps / wall s (mean)"),
        rows,
    )
    per_model = []
    for name in regret_k:
        cells = [_RANDOM if name == "random" else name]
        for info in results.values():
            values = [row[name]["regret_k"] for run in info["runs"].values()
                      for row in run["judged"].values()]
            cells.append(pp(_nanmean(values)))
        per_model.append(cells)
    per_model = harness.markdown_table(
        ("mean regret, equal k (pp)",) + tuple(results), per_model
    )
    correlations = []
    for predictor in [*criteria.PREDICTORS, *criteria.SET_PREDICTORS]:
        cells, every = [predictor], []
        for info in results.values():
            values = [row["spearman"][predictor] for run in info["runs"].values()
                      for row in run["judged"].values()]
            every += values
            cells.append(_mean_finite(values))
        correlations.append(cells + [_mean_finite(every)])
    correlations = harness.markdown_table(
        ("Spearman rho (mean over runs and k)",) + tuple(results) + ("all",),
        correlations,
    )
    return summary, per_model, correlations


def _nanmean(values):
    """Mean of the finite values (NaN: a choice without ground truth)."""
    import numpy as np

    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _mean_finite(values):
    import numpy as np

    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return "n/a"
    text = f"{np.mean(finite):+.2f}"
    return text if len(finite) == len(values) else f"{text} ({len(finite)}/{len(values)})"


def _coverage(row):
    recovered, every = row["coverage"]
    return "" if recovered == every else f" ({recovered}/{every} subsets)"


def model_tables(name, info):
    """Chosen subsets per criterion, and the whole ground truth, of one model."""
    labels = dict(info["blocks"])
    columns = [(run, k) for run, r in info["runs"].items() for k in r["judged"]]
    judged = {(run, k): info["runs"][run]["judged"][k] for run, k in columns}
    header = ("criterion",) + tuple(
        f"{run}, k={k}" + _coverage(judged[(run, k)]) for run, k in columns
    )
    rows = [("best (oracle)",) + tuple(
        f"{pp(judged[c]['best'][1])} ({_labels(judged[c]['best'][0], labels)})"
        for c in columns)]
    for criterion in criteria.CRITERIA:
        rows.append((criterion,) + tuple(
            f"{pp(judged[c][criterion]['accuracy'])} "
            f"({_labels(judged[c][criterion]['subset'], labels)})"
            for c in columns))
    rows.append((_RANDOM,) + tuple(pp(judged[c]["random"]["accuracy"]) for c in columns))
    rows.append(("worst",) + tuple(
        f"{pp(judged[c]['worst'][1])} ({_labels(judged[c]['worst'][0], labels)})"
        for c in columns))
    chosen = harness.markdown_table(header, rows)
    runs = list(info["runs"])
    truth_rows = []
    for key, latency in info["latency"].items():
        truth_rows.append(
            (_labels(key, labels), pp(latency["latency_reduction"]),
             pp(latency["macs_reduction"]))
            + tuple(
                pp(info["runs"][r]["accuracy"].get(key, float("nan")))
                for r in runs
            )
        )
    truth = harness.markdown_table(
        ("dropped", "latency saved %", "MACs saved %")
        + tuple(f"accuracy % {r}" for r in runs),
        truth_rows,
    )
    scores = []
    for run in runs:
        m = info["runs"][run]["measurements"]
        scores.append((run,) + tuple(
            f"{m.score[b]:.3g} / {m.initial_mse[b]:.3g}" for b in m.blocks))
    scores = harness.markdown_table(
        ("score / initial MSE",) + tuple(labels.values()), scores
    )
    return chosen, truth, scores
