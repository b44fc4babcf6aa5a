"""Tests of the selection benchmark's criteria and regret definitions."""

import math

import pytest

from benchmarks import selection_criteria as criteria

_BLOCKS = ["a1", "a2", "b1", "b2"]


# Every pair, ranked by their MSE right after dropping; b1+b2 agrees most
# after its brief recovery, a2+b2 ties a1+b1 on agreement with less error.
_AGREEMENT = {"a1+a2": 0.5, "a1+b1": 0.7, "a1+b2": 0.6, "a2+b1": 0.4,
              "a2+b2": 0.7, "b1+b2": 0.9}


def _auditions():
    order = ["b1+b2", "a2+b2", "a1+b1", "a2+b1", "a1+b2", "a1+a2"]
    return [
        {"blocks": key.split("+"), "dropped_mse": float(i), "agreement": _AGREEMENT[key],
         "output_error": 0.1 if key == "a2+b2" else 0.2, "feature_error": 1.0 - i / 10,
         "seconds": 1.0}
        for i, key in enumerate(order)
    ]


def _measurements(**overrides):
    values = dict(
        blocks=list(_BLOCKS),
        stages={"a1": 1, "a2": 1, "b1": 2, "b2": 2},
        score={"a1": 1.0, "a2": 2.0, "b1": 3.0, "b2": 4.0},
        mse={"a1": 1.0, "a2": 2.0, "b1": 3.0, "b2": 4.0},
        initial_mse={"a1": 4.0, "a2": 3.0, "b1": 2.0, "b2": 1.0},
        macs={"a1": 10, "a2": 10, "b1": 30, "b2": 20},
        library={2: ["a1", "b2"]},
        auditions={2: _auditions()},
        finalists=20,
    )
    values.update(overrides)
    return criteria.Measurements(**values)


def test_choices():
    m = _measurements()
    assert criteria.independent(m, 2) == ["a1", "a2"]
    assert criteria.one_per_stage(m, 2) == ["a1", "b1"]
    assert criteria.one_per_stage(m, 3) == ["a1", "b1", "a2"]
    assert criteria.initial_mse(m, 2) == ["b2", "b1"]
    assert criteria.first_k(m, 2) == ["a1", "a2"]
    assert criteria.largest_macs(m, 2) == ["b1", "b2"]
    assert criteria.library(m, 2) == ["a1", "b2"]


def test_shortlist_auditions_the_pairs_of_the_best_singles():
    m = _measurements()
    # Singles by initial MSE per MAC: b1 (2/30), b2 (1/20), a2, a1.
    assert [a["blocks"] for a in criteria.finalists_of(m, 2, 1)] == [["b1", "b2"]]
    # Three sets: the pairs of b1, b2, a2, in the cached (ranked) order.
    assert [a["blocks"] for a in criteria.finalists_of(m, 2, 3)] == [
        ["b1", "b2"], ["a2", "b2"], ["a2", "b1"]]
    assert len(criteria.finalists_of(m, 2, 20)) == 6
    assert criteria.shortlist(m, 2) == ["b1", "b2"]
    # Without b1+b2, agreement ties (0.7) go to the lower output error.
    m.auditions[2] = m.auditions[2][1:]
    assert criteria.shortlist(m, 2) == ["a2", "b2"]
    assert criteria.shortlist(m, 2, "feature_error") == ["a1", "a2"]


def test_one_fold_auditions_are_judged_beside_the_folds_when_measured():
    views = _auditions()
    for audition in views:  # Judged on new views, a2+b1 looked best.
        audition["agreement"] = 1.0 if audition["blocks"] == ["a2", "b1"] else 0.1
    m = _measurements(view_auditions={2: views}, finalist_folds=2, finalist_steps=10)
    name = "shortlist, one fold (trained on all images, judged on new views)"
    assert criteria.CRITERIA[name](m, 2) == ["a2", "b1"]
    assert criteria.shortlist(m, 2) == ["b1", "b2"]
    # Folds cost their steps each; one fold once.
    assert criteria.COSTS[name](m, 2) == (60, None)
    assert criteria.COSTS["shortlist (library default: up to 20 sets)"](m, 2) == (120, None)
    keys = criteria.subsets(_BLOCKS, 2)
    accuracy = {k: 0.5 for k in keys}
    row = criteria.judge(_measurements(), accuracy, accuracy, [2], 0.0)[2]
    assert row[name]["subset"] is None and math.isnan(row[name]["regret_k"])
    assert row["shortlist (library default: up to 20 sets)"]["regret_k"] == 0.0


def test_uninformative_folds_are_judged_as_the_library_falls_back():
    folds, views = _auditions(), _auditions()
    for audition in folds:  # No brief recovery beats a constant there.
        audition["output_error"] = 1.5
    for audition in views:
        audition["agreement"] = 1.0 if audition["blocks"] == ["a2", "b1"] else 0.1
    m = _measurements(auditions={2: folds}, view_auditions={2: views},
                      finalist_folds=2, finalist_steps=10)
    assert criteria.shortlist(m, 2) == ["a2", "b1"]
    default = "shortlist (library default: up to 20 sets)"
    assert criteria.COSTS[default](m, 2) == (6 * 10 * 2 + 6 * 10, None)
    m.view_auditions = {}  # Not measured: the choice cannot be judged.
    assert criteria.shortlist(m, 2) is None
    assert math.isnan(criteria.COSTS[default](m, 2)[0])


def test_non_finite_scores_rank_last():
    m = _measurements(score={"a1": math.nan, "a2": 2.0, "b1": math.inf, "b2": 4.0})
    assert criteria.independent(m, 3) == ["a2", "b2", "a1"]


def test_judge_regrets_and_spearman():
    m = _measurements()
    keys = criteria.subsets(_BLOCKS, 2)
    assert keys[0] == "a1+a2" and len(keys) == 6
    # Accuracy falls with the summed score: recoverability ranks perfectly.
    accuracy = {k: 1.0 - 0.01 * sum(m.score[b] for b in k.split("+")) for k in keys}
    # b1+b2 saves the most latency; everything else saves less.
    saving = {k: 0.5 if k == "b1+b2" else 0.2 for k in keys}
    row = criteria.judge(m, accuracy, saving, [2], tolerance=0.0)[2]
    assert row["best"] == ("a1+a2", accuracy["a1+a2"])
    assert row["recoverability ranked independently"]["regret_k"] == 0.0
    assert row["largest MACs first"]["subset"] == "b1+b2"
    assert row["largest MACs first"]["regret_k"] == pytest.approx(0.04)
    # Nothing saves as much as b1+b2, so its equal-latency regret is zero.
    assert row["largest MACs first"]["regret_latency"] == 0.0
    assert row["initial MSE after dropping"]["subset"] == "b1+b2"
    # a1+b1 saves 0.2, as does the best subset a1+a2 (0.97 against 0.96).
    assert row["one block per stage (lowest score)"]["regret_latency"] == (
        pytest.approx(0.01)
    )
    assert row["random"]["accuracy"] == pytest.approx(sum(accuracy.values()) / 6)
    assert row["spearman"]["recoverability score"] == pytest.approx(1.0)
    assert row["spearman"]["initial MSE after dropping"] == pytest.approx(-1.0)


def test_judge_rejects_missing_ground_truth():
    m = _measurements()
    with pytest.raises(ValueError, match="lacks subsets"):
        criteria.judge(m, {"a1+a2": 0.5}, {"a1+a2": 0.1}, [2], 0.0)


def test_spearman_of_constant_is_nan():
    assert math.isnan(criteria.spearman([1, 1, 1], [0.1, 0.2, 0.3]))


def test_judge_partial_ground_truth():
    m = _measurements()
    accuracy = {"a1+a2": 0.9, "b1+b2": 0.5}
    row = criteria.judge(m, accuracy, dict.fromkeys(accuracy, 0.1), [2], 0.0,
                         partial=True)[2]
    assert row["coverage"] == (2, 6)
    assert row["best"] == ("a1+a2", 0.9)
    assert row["first k"]["regret_k"] == 0.0
    # The library chose a1+b2, which was not recovered.
    assert math.isnan(row["recoverability (library's set choice)"]["regret_k"])
