"""Tests for keras_practise.distillation.memory: the memory budget."""

import math
import os

import keras
import numpy as np
import pytest

import keras_practise
from keras_practise import backend
from keras_practise.data import views
from keras_practise.distillation import feature_bank
from keras_practise.distillation import inference
from keras_practise.distillation import memory
from keras_practise.distillation import trainer
from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import flat_graph
from keras_practise.graph import taps
from keras_practise.selection import recoverability as scoring
from tests import tiny_models


def _plain_net(seed=0):
    """Convs without BatchNorm: micro-batches then train exactly like batches."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="frozen")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(x)
    outputs = keras.layers.Conv2D(5, 1, name="head")(x)
    return keras.Model(inputs, outputs)


def _fixed(model):
    return backend.training_memory()[1] + 16 * sum(
        math.prod(w.shape) for w in model.trainable_weights
    )


def test_activation_bytes_count_outputs_from_the_first_trainable_layer():
    model = _plain_net()
    factor, _ = backend.training_memory()
    assert memory.activation_bytes(model) == int((8 * 8 * (4 + 6 + 5)) * 4 * factor)
    model.get_layer("frozen").trainable = False
    assert memory.activation_bytes(model) == int((8 * 8 * (6 + 5)) * 4 * factor)
    model.trainable = False
    assert memory.activation_bytes(model) == 0


def test_accumulation_steps_is_the_smallest_divisor_that_fits():
    model = _plain_net()
    per_sample, fixed = memory.activation_bytes(model), _fixed(model)
    assert memory.accumulation_steps(model, 12, None) == 1
    assert memory.accumulation_steps(model, 12, fixed + 12 * per_sample) == 1
    # Room for 5 samples: micro-batches of 4 (12 = 3 x 4), not of 5.
    assert memory.accumulation_steps(model, 12, fixed + 5 * per_sample) == 3
    assert memory.accumulation_steps(model, 12, fixed + 2 * per_sample) == 6
    assert memory.accumulation_steps(model, 12, 0) == 12


@pytest.mark.parametrize("accumulation, scaled", [(2, False), (4, True)])
def test_micro_batches_train_like_whole_batches(accumulation, scaled):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    target = rng.normal(size=(32, 8, 8, 5)).astype("float32")
    results = []
    for micro in (8, 8 // accumulation):
        model = _plain_net()
        model.get_layer("frozen").trainable = False
        budget = _fixed(model) + micro * memory.activation_bytes(model)
        config = trainer.TrainConfig(
            steps=6, batch_size=8, decay_at=0.5, activation_memory=budget
        )
        assert trainer.batching(model, config, len(x)) == (8, 8 // micro)
        # The recovery's optimizer scales some variables' gradients.
        rates = {model.get_layer("conv").kernel.path: 0.5} if scaled else None
        curve = trainer.fit(model, x, [target], ["mse"], config, rates=rates)
        results.append((model.get_weights(), [step for step, _ in curve]))
    (whole, whole_steps), (split, split_steps) = results
    assert split_steps == whole_steps == list(range(1, 7))
    np.testing.assert_array_equal(whole[0], _plain_net().get_weights()[0])  # Frozen.
    assert not np.allclose(whole[2], _plain_net().get_weights()[2])
    for a, b in zip(whole, split):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_views_per_image_fit_the_views_share():
    plan = memory.MemoryPlan(1.0)
    share = memory.VIEW_SHARE * memory.GIB
    view = 2**20
    assert plan.views_per_image(10, view, 32) == 32
    # 100 evaluation views leave room for floor((share - 100) / 100) each.
    assert plan.views_per_image(100, view, 32) == math.floor((share - 100 * view) / (100 * view))
    assert plan.views_per_image(300, view, 32) == 0  # The evaluation views only.
    # Held-out images' views cannot stand in for training views.
    assert plan.views_per_image(300, view, 32, held_images=100) == 1
    with pytest.raises(ValueError, match=r"memory_budget=1.0 GiB .*400 training and 100"):
        plan.views_per_image(400, view, 32, held_images=100)
    with pytest.raises(ValueError, match="memory_budget=3 or more"):
        plan.views_per_image(500, view, 32)
    assert memory.MemoryPlan(None).views_per_image(10**6, view, 32) == 32


def test_a_second_bank_plans_within_what_the_first_leaves():
    plan = memory.MemoryPlan(2.0)
    beside = plan.beside(memory.GIB // 2)
    assert beside.budget == int(1.5 * memory.GIB)
    assert beside.training_bytes(memory.GIB) == memory.GIB // 2
    assert plan.beside(3 * memory.GIB).budget == 1  # Nothing left, still a plan.
    assert memory.MemoryPlan(None).beside(memory.GIB).budget is None


@pytest.mark.parametrize(
    "budget, error", [("4GB", TypeError), (True, TypeError), (0, ValueError),
                      (-1.0, ValueError), (math.nan, ValueError)],
)
def test_bad_budgets_are_named(budget, error):
    with pytest.raises(error, match="memory_budget"):
        memory.MemoryPlan(budget)
    with pytest.raises(error, match="memory_budget"):
        keras_practise.compress(tiny_models.tiny_resnet(), tiny_models.images(8),
                                memory_budget=budget)


def test_a_small_budget_makes_fewer_views():
    model = tiny_models.tiny_resnet()
    images = tiny_models.images(16)
    tap = math.prod(taps.feature_tap(model).shape[1:])
    view = 4 * (16 * 16 * 3 + tap)
    # Room for the 16 evaluation views and 3 training views per image.
    budget = (16 + 3 * 16 + 0.5) * view / memory.VIEW_SHARE / memory.GIB
    bank, _ = feature_bank.build_bank(model, images, memory=memory.MemoryPlan(budget))
    assert len(bank.views["train"]) == 3 * 16
    assert views.default_augment_views(16) == 32
    bank, _ = feature_bank.build_bank(
        model, views.TinySetSpec(images, augment_views=5), memory=memory.MemoryPlan(budget)
    )
    assert len(bank.views["train"]) == 5 * 16  # An explicit count is kept.


def test_a_cut_that_does_not_fit_starts_the_student_at_the_images():
    model = tiny_models.tiny_resnet()
    candidates = blocks_lib.find_blocks(model)
    block = candidates[-1]
    cut = scoring.student_cut(model, [block])[1]
    graph_input = flat_graph.FlatGraph(model).inputs[0]
    assert cut is not graph_input
    config = trainer.TrainConfig(steps=4)
    trials = []
    for cache_bytes in (None, 0):
        bank = feature_bank.FeatureBank(
            model, tiny_models.images(24), tiny_models.images(8, seed=1),
            cuts=[cut], cache_bytes=cache_bytes,
        )
        assert (bank.start_of(cut) is cut) == (cache_bytes is None)
        assert bank._prefix == {} or cache_bytes is None  # Nothing cached at 0.
        trials.append(scoring.score_block(model, [block], bank, config))
    cached, from_images = trials
    # The frozen prefix computes what the cache held: the same scores.
    np.testing.assert_allclose(from_images.initial_mse, cached.initial_mse, rtol=1e-5)
    np.testing.assert_allclose(from_images.mse, cached.mse, rtol=1e-3)
    assert cached.mse < cached.initial_mse


def test_compress_within_a_budget_reports_it():
    model = tiny_models.tiny_resnet()
    images = tiny_models.images(16)
    small, report = keras_practise.compress(
        model, images, drop=1, steps=2, finetune_steps=2, latency="macs",
        latency_batch_size=0, verbose=0, min_agreement=0, return_report=True,
        memory_budget=0.001, batch_size=8,
    )
    assert report.settings["memory_budget"] == 0.001
    assert len(small.layers) < len(model.layers)


def test_inference_passes_use_batches_whose_outputs_fit(monkeypatch):
    model = _plain_net()
    per_sample = 4 * 8 * 8 * (4 + 6 + 5)  # Every layer's output, float32.
    monkeypatch.setattr(memory, "INFERENCE_BYTES", 5 * per_sample + 1)
    assert memory.inference_batch(model, 64) == 5
    assert memory.inference_batch(model, 3) == 3
    x = np.random.default_rng(0).normal(size=(12, 8, 8, 3)).astype("float32")
    sizes = []
    call = backend.compile_inference(model, jit=False)

    def infer(batch):
        sizes.append(len(batch))
        return call(batch)

    values = inference.predict(model, x, batch_size=64, infer=infer)
    assert sizes == [5, 5, 2]
    np.testing.assert_allclose(values, backend.to_numpy(model(x)), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(memory, "INFERENCE_BYTES", 0)
    assert memory.inference_batch(model, 64) == 1


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(
    memory._malloc_trim() is None or not os.path.exists("/proc/self/statm"),
    reason="needs glibc's malloc_trim and /proc (Linux)",
)
def test_release_freed_returns_freed_heap_pages():
    # Chunks under glibc's mmap threshold live in the heap; the one made
    # last keeps the heap's top, so freeing the rest returns nothing by
    # itself.
    chunks = [bytearray(64 * 1024) for _ in range(4096)]
    top = bytearray(64 * 1024)
    del chunks
    before = _resident_bytes()
    memory.release_freed()
    after = _resident_bytes()
    assert before - after > 128 * 2**20, (before, after)
    assert len(top) == 64 * 1024


def test_a_training_returns_what_it_freed(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release_freed", lambda: calls.append(1))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x = np.ones((8, 4), "float32")
    trainer.fit(
        model, x, [np.zeros((8, 2), "float32")], ["mse"],
        trainer.TrainConfig(steps=2, batch_size=4),
    )
    assert calls == [1]


class _Cycle:
    def __init__(self):
        self.me = self


@pytest.mark.parametrize("large", [False, True])
def test_large_trainings_collect_unreachable_models_first(monkeypatch, large):
    import gc
    import weakref

    model = tiny_models.tiny_resnet()
    per_sample = memory.activation_bytes(model)
    # The threshold sits just above or at one batch of 8 of this model.
    threshold = 8 * per_sample + (0 if large else 1)
    monkeypatch.setattr(memory, "LARGE_STEP_BYTES", threshold)
    gc.collect()
    gc.disable()
    try:
        garbage = _Cycle()
        alive = weakref.ref(garbage)
        del garbage
        memory.collect_before_training(model, 8)
        assert (alive() is None) == large
    finally:
        gc.enable()


def test_scoring_a_set_collects_the_last_students_when_large(monkeypatch):
    sizes = []
    monkeypatch.setattr(
        memory, "collect_before_training",
        lambda model, batch_size: sizes.append(batch_size),
    )
    # A student per set (torch's way; switched students are never discarded).
    monkeypatch.setattr(scoring.switched, "pays_off", lambda config: False)
    model = tiny_models.tiny_resnet()
    bank, _ = feature_bank.build_bank(
        model, views.TinySetSpec(tiny_models.images(8), augment_views=2)
    )
    candidates = blocks_lib.find_blocks(model)[:2]
    scoring.score_blocks(
        model, candidates, bank, trainer.TrainConfig(steps=1, batch_size=4),
        latency="macs", verbose=0,
    )
    assert sizes == [4, 4]
