"""Tests for keras_practise.recovery.auditions and `selection="shortlist"`."""

import math
import types

import numpy as np
import pytest

import keras_practise
from keras_practise.data import views
from keras_practise.distillation import feature_bank
from keras_practise.distillation import trainer
from keras_practise.graph import blocks as blocks_lib
from keras_practise.recovery import auditions
from keras_practise.recovery import fidelity
from keras_practise.recovery import recipes
from keras_practise.selection import block_sets
from tests import tiny_models


def _audition(name, agreement, output_error=0.5):
    return auditions.Audition(
        blocks=[name], labels=[name], dropped_mse=1.0, reduction=0.1,
        fidelity=fidelity.Fidelity(
            views=8, agreement=agreement, output_error=output_error,
            feature_error=0.1,
        ),
        seconds=0.0,
    )


def test_best_agrees_most_then_errs_least_and_is_never_a_failed_one():
    report = auditions.AuditionReport(
        [_audition("a", math.nan, 0.0), _audition("b", 0.8, 0.3),
         _audition("c", 0.9, 0.4), _audition("d", 0.9, 0.2),
         _audition("e", 0.9, 0.2)]
    )
    assert report.best().blocks == ["d"]
    assert report[0].rank[0] == math.inf
    table = report.table().splitlines()
    assert "chosen" in table[4] and "chosen" not in table[5]
    # Outputs that are not class scores: the output error alone.
    plain = auditions.AuditionReport(
        [_audition("a", None, 0.3), _audition("b", None, math.nan),
         _audition("c", None, 0.2)]
    )
    assert plain.best().blocks == ["c"]


def test_each_audition_measures_its_set_recovered_briefly():
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    before = [w.copy() for w in model.get_weights()]
    images = tiny_models.images(16)
    bank, tiny_set = feature_bank.build_bank(
        model, views.TinySetSpec(images, augment_views=2)
    )
    candidates = blocks_lib.find_blocks(model)
    ranked = block_sets.rank_sets(model, bank, candidates, k=2, latency="macs")
    held, _ = views.held_out_views(tiny_set, (16, 16), seed=1, count=32)
    config = trainer.TrainConfig(steps=5)
    report = auditions.audition(model, bank, ranked[:2], held, config=config)
    assert [a.blocks for a in report] == [[b.name for b in s.blocks] for s in ranked[:2]]
    assert [a.dropped_mse for a in report] == [s.dropped_mse for s in ranked[:2]]
    # The same brief recovery, run again, measures the same closeness.
    recovered, _ = recipes.recover(model, ranked[1].blocks, bank, "mimic", config)
    again = fidelity.estimate(model, recovered, held)
    assert report[1].fidelity.feature_error == pytest.approx(
        again.feature_error, rel=1e-3
    )
    assert report[1].fidelity.agreement == pytest.approx(again.agreement)
    # Brief training brings the set closer than dropping alone did.
    dropped, _ = recipes.recover(model, ranked[1].blocks, bank, "none")
    assert report[1].fidelity.feature_error < fidelity.estimate(
        model, dropped, held
    ).feature_error
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_compress_with_a_shortlist_recovers_the_best_audition():
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    small, report = keras_practise.compress(
        model, tiny_models.images(16), drop=2, selection="shortlist",
        finalists=2, finalist_steps=3, finetune_steps=4, latency="macs",
        augment_views=2, verbose=0, return_report=True, latency_batch_size=0,
    )
    assert len(report.auditions) == 2
    assert report.blocks == report.auditions.best().blocks
    assert len(small.layers) < len(model.layers)
    assert list(report.scores) == []
    assert {"shortlist", "auditions", "recovery"} <= set(report.phase_seconds)
    assert "Shortlisted sets" in str(report) and report.selection == "shortlist"
    assert "chosen by: shortlist" in str(report)
    assert report.to_dict()["auditions"][0]["blocks"] == report.auditions[0].blocks


def test_fidelities_on_disjoint_views_pool_as_one_measurement():
    parts = [
        fidelity.Fidelity(views=8, agreement=0.5, output_error=0.4,
                          feature_error=0.2, accuracy=(1.0, 0.5), unseen_images=True),
        fidelity.Fidelity(views=24, agreement=0.9, output_error=0.0,
                          feature_error=None, accuracy=(0.5, 0.5), unseen_images=True),
    ]
    pooled = fidelity.pool(parts)
    assert pooled.views == 32
    assert pooled.agreement == pytest.approx((8 * 0.5 + 24 * 0.9) / 32)
    assert pooled.output_error == pytest.approx(0.1)
    assert pooled.feature_error is None  # One part could not measure it.
    assert pooled.accuracy == pytest.approx((0.625, 0.5))
    assert pooled.unseen_images
    assert not fidelity.pool([parts[0], fidelity.Fidelity(8, 0.5, 0.4, 0.2)]).unseen_images


def test_folds_combine_into_one_judgement_per_set():
    first = auditions.AuditionReport([_audition("a", 0.9), _audition("b", 0.5)])
    second = auditions.AuditionReport([_audition("a", 0.5), _audition("b", 0.7)])
    second[0].trained = False
    second[1].seconds = 2.0
    combined = auditions.combine([first, second])
    assert combined.folds == 2 and [a.blocks for a in combined] == [["a"], ["b"]]
    # a won one fold by more than b won the other: pooled, b is closer.
    assert [a.fidelity.agreement for a in combined] == pytest.approx([0.7, 0.6])
    assert combined.best().blocks == ["a"]
    assert combined[1].seconds == 2.0 and combined[0].trained
    with pytest.raises(ValueError):
        auditions.combine([first, auditions.AuditionReport([_audition("a", 0.9)])])


def _brief_shortlist(**settings):
    """A `compress` report of two sets, each auditioned for 2 steps."""
    _, report = keras_practise.compress(
        tiny_models.tiny_resnet(), tiny_models.images(16), drop=1,
        selection="shortlist", finalists=2, finalist_steps=2, finetune_steps=2,
        latency="macs", augment_views=2, verbose=0, return_report=True,
        latency_batch_size=0, **settings,
    )
    return report


def test_folds_inform_only_when_some_recovery_beats_a_constant():
    report = auditions.AuditionReport([_audition("a", 0.1, 1.2), _audition("b", 0.2, 1.0)])
    assert not report.informative()
    report.append(_audition("c", 0.1, 0.99))
    assert report.informative()
    assert not auditions.AuditionReport([_audition("a", 0.5, math.nan)]).informative()


@pytest.mark.parametrize(
    "settings, folds, unseen",
    [
        (dict(), 2, True),
        (dict(finalist_folds=1), 1, False),
        (dict(validation_split=0.25), 1, True),  # Images already held out.
        (dict(num_samples=3), 1, False),  # Fewer than two images per part.
    ],
)
def test_shortlisted_sets_are_judged_on_images_their_audition_left_out(
    settings, folds, unseen, monkeypatch
):
    # Whether random tiny nets recover beyond their training images is
    # left to chance otherwise; the fallback is tested below.
    monkeypatch.setattr(auditions.AuditionReport, "informative", lambda self: True)
    report = _brief_shortlist(**settings)
    assert report.auditions.folds == folds
    assert all(a.fidelity.unseen_images == unseen for a in report.auditions)
    assert report.auditions.set_aside is None
    if folds == 2:
        # Every image judged once: 16 images' views over the two parts.
        assert report.auditions[0].fidelity.views == 2 * 8 * math.ceil(256 / 8)
        assert "on each of 2 parts of the images" in str(report)


def test_uninformative_folds_give_way_to_auditions_on_every_image(monkeypatch):
    monkeypatch.setattr(auditions.AuditionReport, "informative", lambda self: False)
    report = _brief_shortlist()
    decided, aside = report.auditions, report.auditions.set_aside
    assert (decided.folds, aside.folds) == (1, 2)
    assert [a.blocks for a in decided] == [a.blocks for a in aside]
    assert not any(a.fidelity.unseen_images for a in decided)
    assert all(a.fidelity.unseen_images for a in aside)
    assert report.blocks == decided.best().blocks
    assert "these did not decide" in str(report)
    assert "judged on new views of the images they trained on" in str(report)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(finalists=0), ValueError, "finalists"),
        (dict(finalist_folds=0), ValueError, "finalist_folds"),
        (dict(finalists=1.5), TypeError, "finalists"),
        (dict(finalist_steps=0), ValueError, "finalist_steps"),
        (dict(selection="best"), ValueError, "shortlist"),
    ],
)
def test_bad_shortlist_settings_fail_before_training(kwargs, error, match):
    with pytest.raises(error, match=match):
        keras_practise.compress(
            tiny_models.tiny_resnet(), tiny_models.images(8), drop=1,
            selection=kwargs.pop("selection", "shortlist"), verbose=0, **kwargs,
        )


@pytest.mark.parametrize(
    "finetune_steps,finalist_steps,selection,rule",
    [
        (500, None, "auto", "shortlist"),  # 100-step auditions
        (499, None, "auto", "greedy"),  # 99 steps: shorter ones misled
        (50, 100, "auto", "shortlist"),
        (500, 10, "auto", "greedy"),
        (50, None, "shortlist", "shortlist"),  # Asked for: honoured.
        (5000, None, "independent", "independent"),
    ],
)
def test_auto_auditions_only_when_they_get_enough_steps(
    finetune_steps, finalist_steps, selection, rule
):
    from keras_practise.schemes import block_dropping

    job = types.SimpleNamespace(
        finetune_steps=finetune_steps,
        options={"selection": selection, "finalist_steps": finalist_steps},
    )
    assert block_dropping.selection_rule(job) == rule
