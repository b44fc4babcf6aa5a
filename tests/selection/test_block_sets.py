"""Tests for keras_practise.selection.block_sets."""

import pytest

from keras_practise.graph import blocks as blocks_lib
from keras_practise.selection import block_sets as selection
from keras_practise.selection import recoverability as scoring
from tests import tiny_models


def _report(candidates, scores, reductions):
    report = scoring.RecoverabilityReport()
    for block, score, reduction in zip(candidates, scores, reductions):
        report.append(
            scoring.BlockScore(
                block=block.name, label=block.label, mse=score * reduction,
                initial_mse=1.0, latency_reduction=reduction,
                latency_source="macs", score=score, params=block.param_count,
                seconds=0.0, adaptors=1,
            )
        )
    return report


def test_drop_takes_lowest_scores_in_network_order():
    model = tiny_models.tiny_resnet()
    candidates = blocks_lib.find_blocks(model)
    report = _report(candidates, [3.0, 1.0, 2.0], [0.1, 0.1, 0.1])
    chosen, reduction = selection.select_blocks(model, candidates, report, drop=2)
    assert [b.name for b in chosen] == ["s1_block3", "s2_block2"]
    assert reduction is None


def test_latency_target_adds_blocks_until_reached():
    model = tiny_models.tiny_resnet()
    candidates = blocks_lib.find_blocks(model)
    report = _report(candidates, [1.0, 2.0, 3.0], [0.1, 0.1, 0.1])
    one = selection.combined_reduction(model, candidates[:1], "macs")
    chosen, reached = selection.select_blocks(
        model, candidates, report, latency_target=one * 1.5, latency="macs"
    )
    assert [b.name for b in chosen] == ["s1_block2", "s1_block3"]
    assert reached >= one * 1.5
    with pytest.warns(UserWarning, match="short of"):
        chosen, _ = selection.select_blocks(
            model, candidates, report, latency_target=0.99, latency="macs"
        )
    assert len(chosen) == 3


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(drop=4), ValueError, "larger than the number"),
        (dict(drop=0), ValueError, "positive integer"),
        (dict(drop=1.5), TypeError, "positive integer"),
        (dict(drop=None), ValueError, "exactly one"),
        (dict(drop=1, latency_target=0.2), ValueError, "exactly one"),
        (dict(latency_target=1.5), ValueError, "in \\(0, 1\\)"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    model = tiny_models.tiny_resnet()
    candidates = blocks_lib.find_blocks(model)
    report = _report(candidates, [1.0, 2.0, 3.0], [0.1, 0.1, 0.1])
    kwargs.setdefault("drop", None)
    with pytest.raises(error, match=match):
        selection.select_blocks(model, candidates, report, **kwargs)


def _bank(model, n=16):
    from keras_practise.data import views
    from keras_practise.distillation import feature_bank

    bank, _ = feature_bank.build_bank(
        model, views.TinySetSpec(tiny_models.images(n), augment_views=1)
    )
    return bank


def _ranked_model():
    """A tiny ResNet with random BatchNorm statistics, its candidates and bank."""
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    return model, blocks_lib.find_blocks(model), _bank(model)


def test_rank_sets_scores_every_pair_by_its_mse_after_dropping():
    import numpy as np

    from keras_practise.distillation import inference
    from keras_practise.graph import surgery
    from keras_practise.graph import taps

    model, candidates, bank = _ranked_model()
    ranked = selection.rank_sets(model, bank, candidates, k=2, latency="macs")
    assert sorted(tuple(b.name for b in s.blocks) for s in ranked) == [
        ("s1_block2", "s1_block3"), ("s1_block2", "s2_block2"),
        ("s1_block3", "s2_block2"),
    ]
    scores = [s.score for s in ranked]
    assert scores == sorted(scores) and len(set(scores)) == 3
    for s in ranked:
        # The MSE of the network with the set dropped, run whole.
        dropped = surgery.drop_blocks(model, s.blocks)
        view = taps.tap_model(dropped, [taps.feature_tap(dropped)])
        mse = inference.feature_mse(
            view, bank.views["eval"], bank.targets["eval"], scale=bank.scale
        )
        assert s.dropped_mse == pytest.approx(mse, rel=1e-4)
        assert s.reduction == pytest.approx(
            selection.combined_reduction(model, s.blocks, "macs")
        )
        assert s.score == pytest.approx(s.dropped_mse / s.reduction)
    assert np.isfinite(scores).all()


def test_rank_sets_pools_the_best_singles_and_meets_a_latency_target():
    model, candidates, bank = _ranked_model()
    singles = selection.rank_sets(model, bank, candidates, k=1, latency="macs")
    assert len(singles) == 3
    # One set: the pair of the two best singles, the only pair among them.
    (only,) = selection.rank_sets(
        model, bank, candidates, k=2, latency="macs", max_sets=1
    )
    assert {b.name for b in only.blocks} == {s.blocks[0].name for s in singles[:2]}
    every = selection.rank_sets(model, bank, candidates, k=2, latency="macs")
    two = selection.rank_sets(model, bank, candidates, k=2, latency="macs", max_sets=2)
    assert [s.score for s in two] == [s.score for s in every[:2]]
    # A target above any single block's saving takes pairs.
    one = max(s.reduction for s in singles)
    pairs = selection.rank_sets(
        model, bank, candidates, latency_target=1.5 * one, latency="macs"
    )
    assert len(pairs) == 3 and all(len(s.blocks) == 2 for s in pairs)
    assert all(s.reduction >= 1.5 * one for s in pairs)
    with pytest.warns(UserWarning, match="short of"):
        (every,) = selection.rank_sets(
            model, bank, candidates, latency_target=0.99, latency="macs"
        )
    assert len(every.blocks) == 3
    with pytest.raises(ValueError, match="max_sets"):
        selection.rank_sets(model, bank, candidates, k=2, max_sets=0)
