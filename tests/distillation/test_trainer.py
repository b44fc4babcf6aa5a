"""Tests for keras_practise.distillation.trainer: the training engine."""

import gc
import random
import weakref

import keras
import numpy as np
import pytest

from keras_practise.distillation import losses

from keras_practise.distillation import trainer as finetune
from tests import tiny_models


def test_fit_runs_exactly_the_requested_steps():
    model = tiny_models.tiny_resnet()
    x = tiny_models.images(10)
    y = np.zeros((10, 4), "float32")
    curve = finetune.fit(model, x, [y], ["mse"], finetune.TrainConfig(steps=7, batch_size=4))
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 7
    assert curve[-1][0] == 7


def test_fit_traces_its_train_step_once():
    # Keras on TensorFlow builds an unbuilt optimizer inside the first
    # trace, and TensorFlow then traces the step again: twice the fixed cost.
    model = tiny_models.tiny_resnet()
    calls = []
    train_step = model.train_step

    def counted(*args):  # JAX's step also takes the state
        calls.append(1)
        return train_step(*args)

    model.train_step = counted
    x = tiny_models.images(8)
    y = np.zeros((8, 4), "float32")
    finetune.fit(model, x, [y], ["mse"], finetune.TrainConfig(steps=5, batch_size=4))
    # torch runs the step eagerly, once per step; the others trace it.
    assert len(calls) == (5 if keras.backend.backend() == "torch" else 1)


def test_fit_keeps_no_reference_to_its_data():
    # tf.data's generator registry outlives `fit`: a compress() call used
    # to leave about 1 GB of features behind on TensorFlow.
    model = tiny_models.tiny_resnet()
    x = tiny_models.images(10)
    y = np.zeros((10, 4), "float32")
    refs = [weakref.ref(x), weakref.ref(y)]
    finetune.fit(model, x, [y], ["mse"], finetune.TrainConfig(steps=2, batch_size=4))
    del x, y
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_fit_depends_on_its_seed_only():
    # Keras' fit would reorder the batches with Python's global `random`.
    x = tiny_models.images(12)
    y = tiny_models.tiny_resnet().predict(x, verbose=0) + 0.5
    start = tiny_models.tiny_resnet()
    results = []
    for global_seed in (1, 2):
        random.seed(global_seed)
        model = keras.models.clone_model(start)
        model.set_weights(start.get_weights())
        finetune.fit(model, x, [y], ["mse"], finetune.TrainConfig(steps=6, batch_size=4))
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_dropout_masks_follow_the_seed():
    def net():
        inputs = keras.Input((8,))
        x = keras.layers.Dense(16, activation="relu")(inputs)
        x = keras.layers.Dropout(0.5)(x)
        return keras.Model(inputs, keras.layers.Dense(4)(x))

    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    y = np.random.default_rng(1).normal(size=(16, 4)).astype("float32")
    start = net()
    results = []
    for global_seed, seed in ((1, 0), (2, 0), (1, 3)):
        # A new model draws its layers' seeds from Python's global `random`.
        random.seed(global_seed)
        model = net()
        model.set_weights(start.get_weights())
        finetune.fit(model, x, [y], ["mse"], finetune.TrainConfig(steps=4, batch_size=8, seed=seed))
        results.append(model.get_weights())
    for a, b in zip(results[0], results[1]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(results[0], results[2]))


def test_a_retry_is_a_fresh_run_at_a_tenth_of_the_rate(monkeypatch):
    # The retry reuses the compiled step: it must restart steps, momenta and
    # the schedule exactly as a new run at the smaller rate would.
    x = tiny_models.images(12)
    y = tiny_models.tiny_resnet().predict(x, verbose=0) + 0.5
    config = finetune.TrainConfig(steps=6, batch_size=4, learning_rate=0.05)
    start = tiny_models.tiny_resnet()
    fresh = keras.models.clone_model(start)
    fresh.set_weights(start.get_weights())
    finetune.fit(fresh, x, [y], ["mse"], finetune.TrainConfig(
        steps=6, batch_size=4, learning_rate=0.005))
    compiles = []
    original = keras.Model.compile
    monkeypatch.setattr(
        keras.Model, "compile",
        lambda self, *a, **k: compiles.append(1) or original(self, *a, **k),
    )
    answers = iter([False, True])
    with pytest.warns(finetune.RetryWarning, match="retrying at 0.005"):
        finetune.fit(start, x, [y], ["mse"], config, accept=lambda: next(answers))
    assert len(compiles) == 1
    assert int(keras.ops.convert_to_numpy(start.optimizer.iterations)) == 6
    for a, b in zip(start.get_weights(), fresh.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_adaptors_mode_freezes_everything_else():
    model = tiny_models.tiny_resnet()
    finetune.set_trainable(model, "adaptors", ["stem_conv"])
    assert [w.path for w in model.trainable_weights] == ["stem_conv/kernel"]
    finetune.set_trainable(model, "mimic")
    assert len(model.trainable_weights) > 1
    with pytest.raises(ValueError, match="Unknown mode"):
        finetune.set_trainable(model, "everything")


def test_batches_are_deterministic_and_balanced():
    x = np.arange(10).reshape(10, 1).astype("float32")
    a = finetune._RandomBatches(x, [x], steps=5, batch_size=4, seed=1)
    b = finetune._RandomBatches(x, [x], steps=5, batch_size=4, seed=1)
    np.testing.assert_array_equal(a.index, b.index)
    counts = np.bincount(a.index.ravel(), minlength=10)
    assert counts.max() - counts.min() <= 1


def test_mimicking_reduces_loss():
    teacher = tiny_models.tiny_resnet()
    student = tiny_models.tiny_resnet()
    x = tiny_models.images(16)
    y = teacher.predict(x, verbose=0)
    curve = finetune.fit(
        student, x, [y], ["mse"],
        finetune.TrainConfig(steps=30, batch_size=8, learning_rate=0.05),
    )
    # The running mean over all steps ends below the first step's loss.
    assert curve[-1][1] < curve[0][1]


def test_classification_loss_matches_the_head():
    logits = tiny_models.tiny_resnet()
    probs = tiny_models.tiny_resnet(softmax=True)
    assert losses.classification_loss(logits).from_logits
    assert not losses.classification_loss(probs).from_logits


def test_distillation_loss_is_hintons_kd_on_logits_or_probabilities():
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(2, 5, 10)).astype("float32") * 3
    temperature = 4.0
    expected = []
    for t, s in zip(teacher, student):
        p = np.exp(t / temperature) / np.exp(t / temperature).sum()
        q = np.exp(s / temperature) / np.exp(s / temperature).sum()
        expected.append(temperature**2 * np.sum(p * np.log(p / q)))
    on_logits = losses.distillation_loss(tiny_models.tiny_resnet(), temperature)
    got = keras.ops.convert_to_numpy(on_logits(teacher, student))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert np.all(keras.ops.convert_to_numpy(on_logits(teacher, teacher)) < 1e-5)

    def softmax(z):
        return np.exp(z) / np.exp(z).sum(-1, keepdims=True)

    on_probs = losses.distillation_loss(
        tiny_models.tiny_resnet(softmax=True), temperature
    )
    got = keras.ops.convert_to_numpy(on_probs(softmax(teacher), softmax(student)))
    np.testing.assert_allclose(got, expected, rtol=1e-3)


@pytest.mark.parametrize(
    "kwargs",
    [dict(steps=0), dict(steps=3, batch_size=0), dict(learning_rate=0), dict(temperature=0)],
)
def test_config_errors(kwargs):
    with pytest.raises(ValueError):
        finetune.TrainConfig(**kwargs)


class _ValLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.losses = []

    def on_epoch_end(self, epoch, logs=None):
        self.losses.append(float(logs["val_loss"]))


def test_held_out_images_end_the_run_at_its_best_check():
    # Trained towards 2x, judged on x: the held-out error falls while the
    # weight passes 1, then grows; the run stops and keeps the best check.
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(4, use_bias=False, kernel_initializer="zeros"),
    ])
    record = _ValLosses()
    config = finetune.TrainConfig(
        steps=100, batch_size=16, learning_rate=0.01, weight_decay=0.0,
        callbacks=[record],
    )
    start = model.get_weights()
    curve = finetune.fit(model, x, [2 * x], ["mse"], config, held_out=(x, [x]))
    final = float(np.mean((model.predict(x, verbose=0) - x) ** 2))
    ended = model.get_weights()
    model.set_weights(start)
    assert finetune.fit(model, x, [2 * x], ["mse"], config, held_out=(x, [x])) == curve
    np.testing.assert_array_equal(model.get_weights()[0], ended[0])
    assert len(record.losses) < finetune.VALIDATION_CHECKS  # Stopped early.
    assert curve[-1][0] == 10 * len(record.losses)
    assert final == pytest.approx(min(record.losses), rel=1e-4)
    assert final < 0.5 * record.losses[-1]
    assert final < 0.1 * float(np.mean(x**2))  # Near the weight 1, not 2.


@pytest.mark.parametrize(
    "steps, checks", [(7, 7), (12, 6), (11, 1), (30, 10), (500, 10), (1, 1)]
)
def test_held_out_checks_divide_the_steps_exactly(steps, checks):
    # Every check after the same number of steps, all steps run.
    assert finetune._epochs(steps, held_out=True) == checks
    assert finetune._epochs(steps, held_out=None) == 1
