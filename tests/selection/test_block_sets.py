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
