"""Selection criteria and how they are judged against the ground truth.

A *criterion* chooses `k` blocks to drop from what a user could measure
before any recovery: the library's set choice, single-block recoverability
scores, the output difference right after dropping, block order or MACs.
The *ground truth* is the test accuracy (and measured latency saving) of
every `k`-subset of the candidates after recovery with the default recipe.

Definitions (all accuracies and regrets in percentage points):

* regret at equal k: the best accuracy over all `k`-subsets minus the
  chosen subset's accuracy.
* regret at equal latency: the best accuracy over every recovered subset
  (of any size) whose saving (MACs, or measured latency) is at least the
  chosen subset's minus `tolerance`, minus the chosen subset's accuracy.
  The chosen subset is one of them, so the regret is never negative.
* random: the expectation over a uniform draw of a `k`-subset.
* Spearman: rank correlation, over all `k`-subsets, between a per-subset
  prediction (higher = predicted to recover better: minus the sum of the
  members' single-block values) and the recovered accuracy; positive is
  good, 1 is a perfect ranking.
"""

import dataclasses
import itertools
import math

import numpy as np
from scipy import stats


@dataclasses.dataclass
class Measurements:
    """What the criteria may use, for one model and one tiny set.

    Attributes:
        blocks: Candidate block names, in network order.
        stages: Block name -> stage index.
        score: Block name -> recoverability score (`mse / latency saved`).
        mse: Block name -> feature MSE after adaptor training.
        initial_mse: Block name -> feature MSE right after dropping.
        macs: Block name -> MACs saved by dropping the block alone.
        library: k -> the blocks `compress(drop=k)` chose (greedy).
        auditions: k -> the sets `block_sets.rank_sets` ranks, best first,
            each a dict with `"blocks"` (names), `"dropped_mse"` and, after a
            brief recovery (`recovery/auditions.py`), `"feature_error"`,
            `"output_error"` and `"agreement"` on held-out views, as the
            library auditions them (`finalist_folds` folds).
        view_auditions: k -> the same sets auditioned in one fold (trained
            on every image, judged on new views of them: the default before
            folds), when measured; else empty.
        finalists: How many of the ranked sets `"shortlist"` selection
            auditions (its default).
        steps: Adaptor steps per scored set (recoverability).
        finalist_steps: Recovery steps per audition.
        seconds: Measured wall times: `"scores"` (every single block
            scored), `("greedy", k)` (`compress(drop=k)`'s selection) and
            `("shortlist", k)` (`rank_sets`); auditions carry their own.
    """

    blocks: list
    stages: dict
    score: dict
    mse: dict
    initial_mse: dict
    macs: dict
    library: dict
    auditions: dict = dataclasses.field(default_factory=dict)
    finalists: int = 4
    steps: int = 0
    finalist_steps: int = 0
    finalist_folds: int = 1
    view_auditions: dict = dataclasses.field(default_factory=dict)
    seconds: dict = dataclasses.field(default_factory=dict)


def _lowest(values, blocks, k):
    """The `k` blocks with the lowest values; ties in network order.

    A non-finite value ranks last, as the library is meant to do.
    """
    def key(name):
        value = values[name]
        return (not math.isfinite(value), value, blocks.index(name))

    return sorted(blocks, key=key)[:k]


def library(m, k):
    """The set `keras_practise.compress(drop=k)` chose."""
    return list(m.library[k])


def independent(m, k):
    """The k lowest single-block recoverability scores."""
    return _lowest(m.score, m.blocks, k)


def initial_mse(m, k):
    """The k smallest output changes right after dropping (no training)."""
    return _lowest(m.initial_mse, m.blocks, k)


def first_k(m, k):
    """The first k candidates in network order."""
    return m.blocks[:k]


def largest_macs(m, k):
    """The k candidates that save the most MACs."""
    return _lowest({b: -v for b, v in m.macs.items()}, m.blocks, k)


def one_per_stage(m, k):
    """Lowest score per stage, best stages first (the earlier paper's rule).

    If `k` exceeds the number of stages, the remaining blocks follow in
    score order.
    """
    ranked = _lowest(m.score, m.blocks, len(m.blocks))
    chosen, stages = [], set()
    for name in ranked:
        if m.stages[name] not in stages:
            chosen.append(name)
            stages.add(m.stages[name])
    chosen += [name for name in ranked if name not in chosen]
    return chosen[:k]


def set_mse(m, k):
    """The set with the lowest MSE right after dropping it together, per
    MAC saved (no training; the head of the shortlist)."""
    return list(m.auditions[k][0]["blocks"])


def _finite(value, worst=math.inf):
    return value if value is not None and math.isfinite(value) else worst


def _judge_key(audition, signal):
    """The library's `auditions.rank_key` for `"agreement"` (agreement,
    then output error), else the one signal, lower is better."""
    from keras_practise.recovery import auditions

    if signal == "agreement":
        return auditions.rank_key(audition["agreement"], audition["output_error"])
    return (_finite(audition[signal]),)


def finalists_of(m, k, finalists, auditions=None):
    """The sets `block_sets.rank_sets(max_sets=finalists)` returns: the
    k-combinations of the fewest best single blocks (MSE right after
    dropping per MAC saved) that give at least `finalists` sets, the best
    `finalists` of them by their own score. Needs `auditions` (default
    `m.auditions`) to hold every k-subset, ranked."""
    singles = sorted(m.blocks, key=lambda b: (
        _finite(m.initial_mse[b] / m.macs[b] if m.macs[b] else math.inf),
        m.blocks.index(b)))
    from keras_practise.selection import block_sets

    pool = set(singles[: block_sets.pool_size(len(singles), k, finalists)])
    sets = (m.auditions if auditions is None else auditions)[k]
    return [a for a in sets if set(a["blocks"]) <= pool][:finalists]


def _audition_runs(m, k, finalists, on_views=False):
    """The auditions `"shortlist"` selection runs, as `(folds, sets)` in
    order, the last one deciding: the library's (`m.auditions`, in
    `m.finalist_folds` folds), followed by the one-fold auditions when the
    folds are not informative (`AuditionReport.informative`), or the
    one-fold auditions alone (`on_views`). `None` when one-fold auditions
    are needed and were not measured."""
    if on_views:
        if k not in m.view_auditions:
            return None
        return [(1, finalists_of(m, k, finalists, m.view_auditions))]
    from keras_practise.recovery import auditions

    sets = finalists_of(m, k, finalists)
    runs = [(m.finalist_folds, sets)]
    if m.finalist_folds > 1 and not any(
        auditions.beats_a_constant(a["output_error"]) for a in sets
    ):
        more = _audition_runs(m, k, finalists, on_views=True)
        if more is None:
            return None
        runs += more
    return runs


def shortlist(m, k, signal="agreement", finalists=None, on_views=False):
    """`"shortlist"` selection: up to `finalists` sets (`finalists_of`),
    each recovered briefly, the one closest to the teacher on held-out
    views (earliest of equals, as the library breaks ties), judged by the
    auditions that decide (`_audition_runs`); `None` when not measured."""
    runs = _audition_runs(m, k, finalists or m.finalists, on_views)
    if runs is None:
        return None
    sets = runs[-1][1]
    return list(min(sets, key=lambda a: _judge_key(a, signal))["blocks"])


CRITERIA = {
    "shortlist (library default: up to 20 sets)": shortlist,
    "shortlist, judged by feature error": lambda m, k: shortlist(
        m, k, "feature_error"),
    "shortlist, judged by output error": lambda m, k: shortlist(
        m, k, "output_error"),
    "shortlist of 6 sets": lambda m, k: shortlist(m, k, finalists=6),
    "shortlist of 3 sets": lambda m, k: shortlist(m, k, finalists=3),
    "shortlist, one fold (trained on all images, judged on new views)": lambda m, k: (
        shortlist(m, k, on_views=True)),
    "set MSE after dropping (no training)": set_mse,
    "recoverability (library's set choice)": library,
    "recoverability ranked independently": independent,
    "one block per stage (lowest score)": one_per_stage,
    "initial MSE after dropping": initial_mse,
    "first k": first_k,
    "largest MACs first": largest_macs,
}

def _greedy_cost(m, k):
    n = len(m.blocks)
    return m.steps * sum(n - i for i in range(k)), m.seconds.get(("greedy", k))


def _scores_cost(m, k):
    return m.steps * len(m.blocks), m.seconds.get("scores")


def _audition_cost(finalists, on_views=False):
    def cost(m, k):
        runs = _audition_runs(m, k, finalists or m.finalists, on_views)
        if runs is None:
            return float("nan"), None
        seconds = m.seconds.get(("shortlist", k))
        if seconds is not None:
            seconds += sum(a["seconds"] for _, sets in runs for a in sets)
        return sum(m.finalist_steps * f * len(sets) for f, sets in runs), seconds
    return cost


def _free(m, k):
    return 0, 0.0


# What each criterion costs: (training steps, wall seconds or None when not
# measured). Adaptor steps (recoverability) train the part after the hole
# with everything but the adaptors frozen; recovery steps (auditions) train
# the whole network, about as dear as a step of the final recovery.
COSTS = {
    "shortlist (library default: up to 20 sets)": _audition_cost(None),
    "shortlist, judged by feature error": _audition_cost(None),
    "shortlist, judged by output error": _audition_cost(None),
    "shortlist of 6 sets": _audition_cost(6),
    "shortlist of 3 sets": _audition_cost(3),
    "shortlist, one fold (trained on all images, judged on new views)": _audition_cost(
        None, on_views=True),
    "set MSE after dropping (no training)": lambda m, k: (
        0, m.seconds.get(("shortlist", k))),
    "recoverability (library's set choice)": _greedy_cost,
    "recoverability ranked independently": _scores_cost,
    "one block per stage (lowest score)": _scores_cost,
    "initial MSE after dropping": _free,
    "first k": _free,
    "largest MACs first": _free,
}

# Per-subset predictions for the Spearman correlation: the sum of the
# members' single-block values (lower = predicted better).
PREDICTORS = {
    "recoverability score": "score",
    "recoverability MSE (adaptors trained)": "mse",
    "initial MSE after dropping": "initial_mse",
}


# Per-set measurements (sets ranked by `block_sets.rank_sets`), predicting
# directly: lower predicts better, agreement the other way round.
SET_PREDICTORS = {
    "set MSE after dropping": "dropped_mse",
    "brief recovery: feature error": "feature_error",
    "brief recovery: agreement": "agreement",
}


def subset_key(blocks, order):
    """A canonical key of a set of blocks: names in network order, '+'-joined."""
    return "+".join(sorted(blocks, key=order.index))


def subsets(blocks, k):
    """Every `k`-subset of `blocks`, as keys, in lexicographic order."""
    return ["+".join(c) for c in itertools.combinations(blocks, k)]


def best_at_latency(accuracy, saving, key, tolerance):
    """Best accuracy among subsets saving at least `key`'s saving - tolerance."""
    floor = saving[key] - tolerance
    return max(a for s, a in accuracy.items() if s in saving and saving[s] >= floor)


def judge(m, accuracy, saving, ks, tolerance, partial=False):
    """Chosen subsets, regrets and correlations of every criterion.

    Args:
        m: `Measurements` for one model and tiny set.
        accuracy: Subset key -> recovered test accuracy (fraction), for every
            k-subset of every k in `ks`.
        saving: Subset key -> MACs or measured latency saving (fraction).
        ks: The numbers of dropped blocks.
        tolerance: Latency-saving tolerance of the equal-latency regret.
        partial: Judge on the subsets that have ground truth only: best,
            worst and random are over those, and a criterion whose choice
            has none gets NaN accuracy and regrets.

    Returns:
        A dict `k -> {"best": (key, acc), "worst": (key, acc), "coverage":
        (recovered, all), "random": {...}, criterion: {"subset",
        "accuracy", "regret_k", "regret_latency", "steps", "seconds"},
        "spearman": {predictor: rho}}` with accuracies and regrets as
        fractions, `steps` and `seconds` the criterion's cost (`COSTS`).

    Raises:
        ValueError: If a subset lacks ground truth and `partial` is false.
    """
    result = {}
    for k in ks:
        every = subsets(m.blocks, k)
        keys = [s for s in every if s in accuracy]
        if len(keys) < len(every) and not partial:
            raise ValueError(
                f"Ground truth lacks subsets {sorted(set(every) - set(keys))}"
            )
        if not keys:
            continue
        accs = np.array([accuracy[s] for s in keys])
        best = keys[int(accs.argmax())]
        row = {
            "best": (best, accuracy[best]),
            "worst": (keys[int(accs.argmin())], float(accs.min())),
            "coverage": (len(keys), len(every)),
            "random": {
                "subset": None,
                "accuracy": float(accs.mean()),
                "regret_k": float(accs.max() - accs.mean()),
                "regret_latency": float(np.mean([
                    best_at_latency(accuracy, saving, s, tolerance) - accuracy[s]
                    for s in keys
                ])),
            },
        }
        for name, choose in CRITERIA.items():
            choice = choose(m, k)
            if choice is None:  # Not measured for this run.
                row[name] = {"subset": None, "steps": float("nan"),
                             "seconds": float("nan"), "accuracy": float("nan"),
                             "regret_k": float("nan"), "regret_latency": float("nan")}
                continue
            key = subset_key(choice, m.blocks)
            chosen = accuracy.get(key, float("nan"))
            steps, seconds = COSTS[name](m, k)
            row[name] = {
                "subset": key,
                "steps": steps,
                "seconds": float("nan") if seconds is None else seconds,
                "accuracy": chosen,
                "regret_k": float(accs.max() - chosen),
                "regret_latency": (
                    best_at_latency(accuracy, saving, key, tolerance) - chosen
                    if key in accuracy else float("nan")
                ),
            }
        row["spearman"] = {}
        for name, field in PREDICTORS.items():
            values = getattr(m, field)
            predicted = [-sum(values[b] for b in s.split("+")) for s in keys]
            row["spearman"][name] = spearman(predicted, accs)
        sets = {subset_key(a["blocks"], m.blocks): a for a in m.auditions.get(k, [])}
        for name, field in SET_PREDICTORS.items():
            sign = 1.0 if field == "agreement" else -1.0
            row["spearman"][name] = (
                spearman([sign * sets[s][field] for s in keys], accs)
                if all(s in sets for s in keys) else float("nan")
            )
        result[k] = row
    return result


def spearman(x, y):
    """Spearman's rho, or NaN when either side is constant or not finite."""
    x, y = np.asarray(x, "float64"), np.asarray(y, "float64")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("nan")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)
