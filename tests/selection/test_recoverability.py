"""Tests for keras_practise.selection.recoverability."""

import keras
import numpy as np
import pytest

from keras_practise.data import views
from keras_practise.distillation import feature_bank
from keras_practise.distillation import trainer as finetune
from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import surgery
from keras_practise.graph import taps
from keras_practise.profiling import macs
from keras_practise.selection import block_sets as selection_lib
from keras_practise.selection import recoverability as scoring
from tests import tiny_models


def _bank(model, n=24):
    bank, _ = feature_bank.build_bank(model, views.TinySetSpec(tiny_models.images(n), augment_views=2))
    return bank


def test_scores_every_candidate_and_training_lowers_mse():
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    before = [w.copy() for w in model.get_weights()]
    report = scoring.recoverability(
        model, tiny_models.images(24), steps=30, latency="macs", verbose=0,
        augment_views=2,
    )
    assert [s.block for s in report] == ["s1_block2", "s1_block3", "s2_block2"]
    assert [s.label for s in report] == ["1.2", "1.3", "2.2"]
    for score in report:
        assert score.adaptors > 0
        assert score.mse < score.initial_mse
        assert score.score == pytest.approx(score.mse / score.latency_reduction)
        assert 0 < score.latency_reduction < 1
    assert "s2_block2" in report.table()
    assert len(report.best(2)) == 2
    assert report.best(1)[0].score == min(s.score for s in report)
    for new, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(new, old)


def test_same_seed_same_scores():
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    kwargs = dict(steps=5, latency="macs", verbose=0, augment_views=2, blocks=["1.2"])
    first = scoring.recoverability(model, tiny_models.images(24), seed=3, **kwargs)
    second = scoring.recoverability(model, tiny_models.images(24), seed=3, **kwargs)
    assert first[0].mse == pytest.approx(second[0].mse, rel=1e-4)


def test_prefix_cut_precedes_changed_layers():
    model = tiny_models.tiny_resnet()
    block = blocks_lib.resolve_blocks(model, ["2.2"])[0]
    cut = taps.frozen_prefix_cut(model, ["s2_block1_2_conv"] + block.layer_names)
    # s2_block1's own convs change (after-adaptors), so the cut is its input.
    assert cut is model.get_layer("s1_block3_out").output


def test_student_suffix_reproduces_teacher_when_nothing_is_trained():
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    bank = _bank(model)
    block = blocks_lib.resolve_blocks(model, ["1.3"])[0]
    trial = scoring.score_block(
        model, block, bank, finetune.TrainConfig(steps=1, learning_rate=1e-9)
    )
    assert trial.adaptors > 0
    assert trial.mse == pytest.approx(trial.initial_mse, rel=1e-3)


def test_latency_reductions_are_each_blocks_saving_with_a_floor():
    model = tiny_models.tiny_resnet()
    found = blocks_lib.find_blocks(model)

    def layer_count(m):  # A deterministic stand-in for a latency in ms.
        return float(len(m.layers))

    expected = [
        1 - len(surgery.drop_blocks(model, [b]).layers) / len(model.layers)
        for b in found
    ]
    assert min(expected) > 0.05
    reductions = scoring.latency_reductions(model, found, layer_count)
    assert reductions == pytest.approx(expected)
    # A block whose saving is not measurable gets the floor (its score is
    # then very high), not a division by zero or a negative score.
    flat = scoring.latency_reductions(model, found, lambda m: 1.0)
    assert flat == [1e-4] * len(found)


def test_errors():
    model = tiny_models.tiny_resnet()
    with pytest.raises(ValueError, match="latency"):
        scoring.latency_reductions(model, blocks_lib.find_blocks(model), "flops")
    with pytest.raises(ValueError, match="Droppable blocks"):
        scoring.recoverability(model, tiny_models.images(8), blocks=["9.9"], verbose=0)
    with pytest.raises(ValueError, match="steps"):
        scoring.recoverability(model, tiny_models.images(8), steps=0, verbose=0)


@pytest.mark.parametrize(
    "factory",
    [
        tiny_models.tiny_resnet,
        tiny_models.tiny_se_net,
        lambda: keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3), classes=4),
    ],
)
def test_macs_reduction_equals_that_of_the_dropped_model(factory):
    model = factory()
    candidates = blocks_lib.find_blocks(model)
    reductions = scoring.latency_reductions(model, candidates, source="macs")
    base = macs.count_macs(model)
    for block, reduction in zip(candidates, reductions):
        dropped = surgery.drop_blocks(model, [block])
        assert reduction == pytest.approx(1 - macs.count_macs(dropped) / base, rel=1e-9)


def test_recoverability_of_a_size_agnostic_model():
    model = tiny_models.tiny_resnet(size=None)
    report = scoring.recoverability(
        model, tiny_models.images(16), steps=2, latency="macs", verbose=0,
        augment_views=1, image_size=(16, 16),
    )
    assert [s.block for s in report] == [b.name for b in blocks_lib.find_blocks(model)]


def test_macs_saving_of_a_set_equals_that_of_the_dropped_model():
    model = tiny_models.tiny_resnet()
    candidates = blocks_lib.find_blocks(model)
    together = selection_lib.combined_reduction(model, candidates[:2], source="macs")
    dropped = surgery.drop_blocks(model, candidates[:2])
    expected = 1 - macs.count_macs(dropped) / macs.count_macs(model)
    assert together == pytest.approx(expected, rel=1e-9)
