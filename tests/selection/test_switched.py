import itertools

import keras
import numpy as np
import pytest

from keras_practise.data import views
from keras_practise.distillation import feature_bank
from keras_practise.distillation import inference
from keras_practise.distillation import trainer
from keras_practise.graph import blocks as blocks_lib
from keras_practise.selection import block_sets
from keras_practise.selection import recoverability as scoring
from keras_practise.selection import switched
from tests import tiny_models


def _setup(factory):
    model = factory()
    tiny_models.randomize_batchnorm(model)
    candidates = blocks_lib.find_blocks(model)
    bank, _ = feature_bank.build_bank(
        model, views.TinySetSpec(tiny_models.images(16), augment_views=2),
        cuts=scoring.candidate_cuts(model, candidates),
    )
    return model, candidates, bank


@pytest.mark.parametrize("factory", [tiny_models.tiny_resnet, tiny_models.tiny_se_net])
def test_switched_students_score_every_set_as_a_student_of_its_own(factory):
    model, candidates, bank = _setup(factory)
    config = trainer.TrainConfig(steps=6)
    pool = scoring.student_pool(model, candidates, bank, config)
    sets = [[b] for b in candidates] + [list(p) for p in itertools.combinations(candidates, 2)]
    for blocks in sets:
        own = scoring.score_block(model, blocks, bank, config)
        switched = scoring.score_block(model, blocks, bank, config, pool)
        assert switched.initial_mse == pytest.approx(own.initial_mse, rel=1e-5)
        assert switched.mse == pytest.approx(own.mse, rel=1e-4)
        assert switched.mse < switched.initial_mse
        assert (switched.adaptors, switched.status) == (own.adaptors, own.status)


@pytest.mark.parametrize("steps", [2, switched.MAX_STEPS + 1])
def test_one_compile_per_stage_for_a_whole_greedy_choice(monkeypatch, steps):
    model, candidates, bank = _setup(tiny_models.tiny_resnet)
    compiles = []
    original = keras.Model.compile

    def counting(self, *args, **kwargs):
        compiles.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "compile", counting)
    config = trainer.TrainConfig(steps=steps)
    choice = block_sets.choose_blocks(model, bank, candidates, k=2, config=config)
    trained = sum(len(r) for r in choice.rounds)
    assert trained == len(candidates) + len(candidates) - 1
    # Candidates in two stages: two students, each compiled once; longer
    # runs, and torch (no trace to share), train a student of its own per set.
    assert len({b.stage for b in candidates}) == 2
    shared = steps <= switched.MAX_STEPS and keras.backend.backend() != "torch"
    assert switched.pays_off(config) == shared
    assert len(compiles) == (2 if shared else trained)


def test_all_switches_on_is_the_teacher_up_to_its_tap():
    model, candidates, bank = _setup(tiny_models.tiny_resnet)
    pool = scoring.student_pool(model, candidates, bank, trainer.TrainConfig(steps=1))
    sites, _ = scoring.student_cut(model, candidates[:1])
    student = pool.student(candidates[:1], sites)
    student.switch([], [])
    x = bank.prefix(student.start, "eval")
    np.testing.assert_allclose(
        inference.predict(student.model, x), bank.targets["eval"], rtol=1e-5, atol=1e-5
    )


def test_a_set_outside_the_pool_gets_no_student():
    model, candidates, bank = _setup(tiny_models.tiny_resnet)
    pool = scoring.student_pool(
        model, candidates[1:], bank, trainer.TrainConfig(steps=1)
    )
    sites, _ = scoring.student_cut(model, candidates[:1])
    assert pool.student(candidates[:1], sites) is None
    assert pool.students == {}


def test_fit_with_a_compiled_step_checks_it_matches():
    model, candidates, bank = _setup(tiny_models.tiny_resnet)
    config = trainer.TrainConfig(steps=2)
    pool = scoring.student_pool(model, candidates, bank, config)
    sites, _ = scoring.student_cut(model, candidates[:1])
    student = pool.student(candidates[:1], sites)
    x = bank.prefix(student.start, "train")
    with pytest.raises(ValueError, match="CompiledStep` of this model, config.*steps=3"):
        trainer.fit(
            student.model, x, [bank.targets["train"]], ["mse"],
            trainer.TrainConfig(steps=3), compiled=student.compiled,
        )
    # A step compiled for whole batches cannot train micro-batches.
    with pytest.raises(ValueError, match=rf"batching \({min(64, len(x))}, 1\).*on 3 samples"):
        trainer.fit(
            student.model, x[:3], [bank.targets["train"][:3]], ["mse"],
            config, compiled=student.compiled,
        )


def test_pool_students_share_adaptors_and_reserve_their_state():
    model, candidates, bank = _setup(tiny_models.tiny_resnet)
    budget = 2**30
    config = trainer.TrainConfig(steps=2, activation_memory=budget)
    pool = scoring.student_pool(model, candidates, bank, config)
    stages = {}
    for block in candidates:
        sites, _ = scoring.student_cut(model, [block])
        stages.setdefault(block.stage, pool.student([block], sites))
    assert len(stages) == 2
    first, second = (s.model for s in stages.values())
    later = {w.path: w for w in second.trainable_weights}
    shared = [w for w in first.trainable_weights if w.path in later]
    # The later stage's adaptors are the very same variables in both.
    assert shared and all(later[w.path] is w for w in shared)
    unique = {id(w): int(np.prod(w.shape)) for w in first.trainable_weights + second.trainable_weights}
    state = sum(int(np.prod(w.shape)) for s in (first, second) for w in s.trainable_weights)
    assert pool.held_bytes == 4 * sum(unique.values()) + 8 * state
    assert pool.config.activation_memory == budget - pool.held_bytes
    unbounded = scoring.student_pool(model, candidates, bank, trainer.TrainConfig(steps=2))
    assert unbounded.config.activation_memory is None
