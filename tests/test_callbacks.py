"""Keras callbacks in `compress()`/`recoverability()`, and interrupted runs."""

import csv
import os

import keras
import numpy as np
import pytest

import keras_practise
from keras_practise import cli
from keras_practise.distillation import trainer
from tests import tiny_models


class _Recorder(keras.callbacks.Callback):
    """Records the `fit` runs and steps it sees."""

    def __init__(self, interrupt_at=None):
        super().__init__()
        self.runs, self.batches, self.steps_per_run = 0, 0, []
        self.interrupt_at = interrupt_at

    def on_train_begin(self, logs=None):
        self.runs += 1
        self.steps_per_run.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        self.steps_per_run[-1] += 1
        assert np.isfinite(logs["loss"])
        if self.interrupt_at is not None and self.batches >= self.interrupt_at:
            raise KeyboardInterrupt


def _model():
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    return model


def test_compress_calls_callbacks_in_every_fit(tmp_path):
    recorder = _Recorder()
    log = os.path.join(tmp_path, "log.csv")
    keras_practise.compress(
        _model(), tiny_models.images(8), drop=1, steps=2, finetune_steps=4,
        latency="macs", verbose=0, latency_batch_size=0,
        callbacks=[recorder, keras.callbacks.CSVLogger(log)],
    )
    # Three candidates' adaptor trainings, then the recovery; a run that
    # ends worse than it started is retried, and the callbacks see that too.
    assert recorder.steps_per_run.count(2) >= 3
    assert recorder.steps_per_run[-1] == 4
    assert set(recorder.steps_per_run) == {2, 4}
    assert recorder.batches == sum(recorder.steps_per_run)
    with open(log) as f:
        rows = list(csv.DictReader(f))
    assert rows and np.isfinite(float(rows[-1]["loss"]))


def test_recoverability_calls_callbacks():
    recorder = _Recorder()
    keras_practise.recoverability(
        _model(), tiny_models.images(8), blocks=["1.2", "2.2"], steps=2,
        latency="macs", verbose=0, callbacks=recorder,
    )
    assert (recorder.runs, recorder.batches) == (2, 4)


def test_callbacks_must_be_keras_callbacks():
    with pytest.raises(TypeError, match="keras.callbacks.Callback"):
        trainer.TrainConfig(steps=1, callbacks=[print])


def test_interrupted_compress_leaves_the_model_intact():
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    x = tiny_models.images(4)
    expected = model.predict(x, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        keras_practise.compress(
            model, tiny_models.images(8), blocks=["1.2"], finetune_steps=10,
            verbose=0, latency_batch_size=0,
            callbacks=[_Recorder(interrupt_at=3)],
        )
    for new, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(new, old)
    assert model.trainable and all(layer.trainable for layer in model.layers)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)


def test_interrupted_cli_run_writes_no_output(tmp_path, monkeypatch):
    model_path = os.path.join(tmp_path, "model.keras")
    _model().save(model_path)
    data = os.path.join(tmp_path, "tiny.npy")
    np.save(data, tiny_models.images(6))
    out = os.path.join(tmp_path, "small.keras")

    def interrupted_fit(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "fit", interrupted_fit)
    status = cli.main([
        "compress", model_path, "--out", out, "--data", data, "--blocks", "1.2",
        "--finetune-steps", "2", "--latency-batch-size", "0",
    ])
    assert status == 130
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "tiny.npy"]
    keras.saving.load_model(model_path)
