"""Tests for keras_practise.distillation.feature_bank: the teacher's features."""

import keras
import numpy as np
import pytest

from keras_practise import models
from keras_practise.distillation import feature_bank
from keras_practise.distillation import inference
from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import flat_graph
from keras_practise.graph import surgery
from keras_practise.selection import recoverability
from tests import tiny_models


def _model_and_cuts():
    model = models.ResNet20(weights=None, input_shape=(16, 16, 3), classes=4)
    graph_input = flat_graph.FlatGraph(model).inputs[0]
    cuts = recoverability.candidate_cuts(model, blocks_lib.find_blocks(model))
    return model, [c for c in cuts if c is not graph_input]


def _bank_and_cuts(monkeypatch, cache_bytes=None):
    model, cuts = _model_and_cuts()
    passes = []
    run = feature_bank.FeatureBank._run
    monkeypatch.setattr(
        feature_bank.FeatureBank, "_run",
        lambda self, tensors, split: passes.append(len(tensors)) or run(self, tensors, split),
    )
    bank = feature_bank.FeatureBank(
        model, tiny_models.images(12), tiny_models.images(6, seed=1),
        cuts=cuts, cache_bytes=cache_bytes,
    )
    return model, bank, cuts, passes


def _expected(model, cut, views):
    return surgery.rewrite(model, outputs=[cut]).predict(views, verbose=0)


def test_planned_cuts_come_with_the_targets_in_one_pass(monkeypatch):
    model, bank, cuts, passes = _bank_and_cuts(monkeypatch)
    distinct = len({id(c) for c in cuts})
    assert distinct >= 2
    # One teacher pass per split: the tap and every distinct cut together.
    assert passes == [distinct + 1] * 2
    for cut in cuts:
        for split in ("train", "eval"):
            np.testing.assert_allclose(
                bank.prefix(cut, split), _expected(model, cut, bank.views[split]),
                rtol=1e-5, atol=1e-5,
            )
    assert passes == [distinct + 1] * 2
    np.testing.assert_allclose(
        bank.targets["eval"],
        surgery.rewrite(model, outputs=[bank.tap]).predict(bank.views["eval"], verbose=0),
        rtol=1e-5, atol=1e-5,
    )


def test_cached_activations_stay_within_the_budget(monkeypatch):
    _, probe_cuts = _model_and_cuts()
    largest = max(12 * np.prod(c.shape[1:]) * 4 for c in probe_cuts)
    # Room for the largest cut of the training views, not for two of them.
    model, bank, cuts, passes = _bank_and_cuts(monkeypatch, cache_bytes=int(largest * 1.25))
    for cut in cuts + cuts:
        values = bank.prefix(cut, "train")
        assert bank._cached_bytes() <= bank.cache_bytes
        np.testing.assert_allclose(
            values, _expected(model, cut, bank.views["train"]), rtol=1e-5, atol=1e-5
        )
    # Never all at once (the targets' passes carry what fits), and computed
    # again after eviction.
    distinct = len({id(c) for c in cuts})
    assert max(passes) < distinct + 1
    assert sum(passes) > 2 + distinct


def test_a_cut_outside_the_plan_and_the_input(monkeypatch):
    model, bank, cuts, _ = _bank_and_cuts(monkeypatch)
    bank = feature_bank.FeatureBank(model, tiny_models.images(4), tiny_models.images(2))
    np.testing.assert_allclose(
        bank.prefix(cuts[1], "eval"), _expected(model, cuts[1], bank.views["eval"]),
        rtol=1e-5, atol=1e-5,
    )
    assert bank.prefix(flat_graph.FlatGraph(model).inputs[0], "train") is bank.views["train"]


@pytest.mark.parametrize("cache_bytes", [0, 2**40])
def test_scores_do_not_depend_on_the_cache(cache_bytes, monkeypatch):
    model = tiny_models.tiny_resnet()
    images = tiny_models.images(8)
    monkeypatch.setattr(feature_bank, "CACHE_BYTES", cache_bytes)
    report = recoverability.recoverability(
        model, images, steps=3, latency="macs", augment_views=1, verbose=0
    )
    monkeypatch.setattr(feature_bank, "CACHE_BYTES", 2**30)
    again = recoverability.recoverability(
        model, images, steps=3, latency="macs", augment_views=1, verbose=0
    )
    np.testing.assert_allclose([s.mse for s in report], [s.mse for s in again], rtol=1e-4)


def test_teacher_features_that_are_not_finite_are_rejected():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1e30)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", kernel_initializer="ones")(x)
    x = keras.layers.Rescaling(1e30)(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(ValueError, match="features on the tiny set must be finite"):
        feature_bank.FeatureBank(model, tiny_models.images(4, size=8), tiny_models.images(2, size=8))


@pytest.mark.parametrize("batch_size, chunks", [(64, 1), (2, 1), (2, 2)])
def test_eager_and_traced_passes_give_the_same_activations(monkeypatch, batch_size, chunks):
    # 11 training views: eager at batch 64; at batch 2 more than
    # `inference._EAGER_BATCHES` batches, traced, the last one padded and
    # trimmed, in one call or in chunks of 8 views.
    if chunks > 1:
        monkeypatch.setattr(inference, "_CHUNK_BYTES", 0)
    model, cuts = _model_and_cuts()
    assert 11 > inference._EAGER_BATCHES * 2
    bank = feature_bank.FeatureBank(
        model, tiny_models.images(11), tiny_models.images(6, seed=1),
        cuts=cuts[:1], batch_size=batch_size,
    )
    for split in ("train", "eval"):
        views = bank.views[split]
        assert bank.prefix(cuts[0], split).shape[0] == len(views)
        np.testing.assert_allclose(
            bank.prefix(cuts[0], split), _expected(model, cuts[0], views),
            rtol=1e-5, atol=1e-5,
        )
        np.testing.assert_allclose(
            bank.targets[split], _expected(model, bank.tap, views),
            rtol=1e-5, atol=1e-5,
        )
