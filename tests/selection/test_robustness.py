"""Recoverability does not depend on feature scale and cannot fail silently."""

import math
import warnings

import pytest

from benchmarks import twin_models
from keras_practise.data import views
from keras_practise.distillation import feature_bank
from keras_practise.distillation import trainer
from keras_practise.graph import blocks as blocks_lib
from keras_practise.selection import block_sets
from keras_practise.selection import recoverability as scoring
from tests import tiny_models

TWINS = {k: v for k, v in twin_models.TWINS.items() if k != "original"}


def _net():
    model = tiny_models.user_resnet(classes=10, size=16, widths=(4, 8, 16))
    tiny_models.randomize_batchnorm(model)
    return model


def _choose(model, images, k=2):
    bank, _ = feature_bank.build_bank(model, views.TinySetSpec(images, augment_views=2))
    candidates = blocks_lib.resolve_blocks(model, ["1.2", "2.3", "3.2", "3.3"])
    config = trainer.TrainConfig(steps=8, batch_size=16)
    return block_sets.choose_blocks(model, bank, candidates, k=k, config=config)


@pytest.fixture(scope="module")
def original():
    model = _net()
    return model, _choose(model, tiny_models.images(16))


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_reparameterised_twin_gets_the_same_ranking_and_blocks(original, twin):
    model, choice = original
    make, input_scale = TWINS[twin]
    twin_choice = _choose(make(model), tiny_models.images(16) * input_scale)
    assert len(choice.blocks) == 2
    assert [b.name for b in twin_choice.blocks] == [b.name for b in choice.blocks]
    for ours, theirs in zip(choice.rounds, twin_choice.rounds):
        _assert_same_order_up_to_ties(ours, theirs)
        for a, b in zip(ours, theirs):
            # Float rounding differs between twins; a few steps amplify it.
            assert b.mse == pytest.approx(a.mse, rel=0.1)
            assert b.initial_mse == pytest.approx(a.initial_mse, rel=1e-3)


def _assert_same_order_up_to_ties(ours, theirs, rel=0.1):
    """The twin ranks the blocks as the original does, except for scores
    the original itself has within `rel` of each other (the tolerance the
    twins' MSEs are held to): such near-ties may come out either way."""
    score = {s.block: s.score for s in ours}
    rank = {s.block: i for i, s in enumerate(ours.best(len(ours)))}
    order = [s.block for s in theirs.best(len(theirs))]
    assert sorted(order) == sorted(rank)
    for i, first in enumerate(order):
        for second in order[i + 1:]:
            if rank[first] > rank[second]:
                assert score[first] == pytest.approx(score[second], rel=rel), (
                    f"{first} and {second} swapped: {score}"
                )


def _score(model, learning_rate, steps, labels=None):
    bank, _ = feature_bank.build_bank(model, views.TinySetSpec(tiny_models.images(16), augment_views=1))
    candidates = blocks_lib.resolve_blocks(model, labels) if labels else (
        blocks_lib.find_blocks(model)
    )
    config = trainer.TrainConfig(steps=steps, learning_rate=learning_rate)
    return scoring.score_blocks(model, candidates, bank, config, "macs", 0)


def test_absurd_step_falls_back_to_identity_adaptors():
    model = _net()
    with pytest.warns(UserWarning, match=r"\(3\.3\).*identity adaptors"):
        report = _score(model, 1e6, 4, ["1.2", "3.3"])
    for score in report:
        assert score.status == "identity"
        assert math.isfinite(score.mse)
        assert score.mse == score.initial_mse


def test_mse_never_worse_than_identity_and_retries_are_noted():
    model = _net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = _score(model, 3.0, 6)
    for score in report:
        assert math.isfinite(score.mse) and math.isfinite(score.score)
        assert score.mse <= score.initial_mse
        assert score.status == "ok" or score.status in report.table()


def test_a_failed_candidate_is_ranked_last_named_and_not_chosen(monkeypatch):
    model = _net()

    # Training is replaced (greedy choice of 5 of 6 would train 20 sets): a
    # set with 3.3 fails, the others get a finite MSE that favours 3.3 if
    # its NaN were ever compared as a number.
    def broken(model, blocks, bank, config, pool=None):
        labels = {b.label for b in blocks}
        if "3.3" in labels:
            return scoring.Trial(float("nan"), 0.1, 0.0, 1, "failed")
        return scoring.Trial(0.5 * len(labels), 1.0, 0.0, 1, "ok")

    monkeypatch.setattr(scoring, "score_block", broken)
    bank, _ = feature_bank.build_bank(model, views.TinySetSpec(tiny_models.images(8), augment_views=1))
    candidates = blocks_lib.find_blocks(model)
    config = trainer.TrainConfig(steps=1)
    with pytest.warns(UserWarning, match=r"block \S+ \(3\.3\) is not a finite"):
        report = scoring.score_blocks(model, candidates, bank, config, "macs", 0)
    assert report.best(len(report))[-1].label == "3.3"
    row = next(line for line in report.table().splitlines() if " 3.3 " in line)
    assert "failed" in row and row.split()[-2] == str(len(report))
    for rule in block_sets.SCORING_RULES:
        choice = block_sets.choose_blocks(
            model, bank, candidates, k=len(candidates) - 1, rule=rule,
            config=config, report=report,
        )
        assert "3.3" not in [b.label for b in choice.blocks]


def _fake_scores(monkeypatch, set_mse):
    """Replaces adaptor training by `set_mse(labels)` of the dropped set."""

    def fake(model, blocks, bank, config, pool=None):
        labels = frozenset(b.label for b in blocks)
        return scoring.Trial(set_mse(labels), 10.0, 0.0, 1, "ok")

    monkeypatch.setattr(scoring, "score_block", fake)


def test_greedy_scores_the_rest_again_with_the_chosen_dropped(monkeypatch):
    # Alone, 3.2, 3.3 and 1.2 are the best; 3.2 compounds badly with both.
    alone = {"1.2": 3.0, "1.3": 4.0, "2.2": 5.0, "2.3": 6.0, "3.2": 1.0, "3.3": 2.0}

    def set_mse(labels):
        value = sum(alone[l] for l in labels)
        bad = {"3.2", "3.3"} <= labels or {"1.2", "3.2"} <= labels
        return value * 10 if bad else value

    _fake_scores(monkeypatch, set_mse)
    model = _net()
    candidates = blocks_lib.find_blocks(model)
    config = trainer.TrainConfig(steps=1)
    picks = {}
    for rule in block_sets.SCORING_RULES:
        choice = block_sets.choose_blocks(
            model, None, candidates, k=2, rule=rule, config=config
        )
        picks[rule] = [b.label for b in choice.blocks]
        assert len(choice.rounds) == (2 if rule == "greedy" else 1)
    assert picks == {
        "independent": ["3.2", "3.3"],
        "one_per_stage": ["1.2", "3.2"],
        "greedy": ["1.3", "3.2"],
    }
    # The second round scores each remaining block dropped with 3.2.
    second = block_sets.choose_blocks(
        model, None, candidates, k=2, config=config
    ).rounds[1]
    assert {s.label: s.mse for s in second}["3.3"] == pytest.approx(30.0)
    assert "3.2" not in [s.label for s in second]


def test_greedy_latency_target(monkeypatch):
    _fake_scores(monkeypatch, lambda labels: float(len(labels)))
    model = _net()
    candidates = blocks_lib.find_blocks(model)
    one = block_sets.combined_reduction(model, candidates[:1], "macs")
    choice = block_sets.choose_blocks(
        model, None, candidates, latency_target=2.5 * one,
        config=trainer.TrainConfig(steps=1),
    )
    assert block_sets.combined_reduction(model, choice.blocks, "macs") >= 2.5 * one
    assert choice.reduction >= 2.5 * one
    with pytest.raises(ValueError, match="rule"):
        block_sets.choose_blocks(model, None, candidates, k=1, rule="best")
