import io

import keras
import numpy as np

from keras_practise.distillation import trainer
from keras_practise.utils import progress


class _Log(io.StringIO):
    def isatty(self):
        return False


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _train(monkeypatch, stream, steps=40):
    monkeypatch.setattr("sys.stdout", stream)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    x = np.random.default_rng(0).random((16, 3)).astype("float32")
    config = trainer.TrainConfig(steps=steps, batch_size=4, verbose=1)
    trainer.fit(model, x, [np.zeros((16, 2), "float32")], ["mse"], config)
    return stream.getvalue()


def test_log_gets_whole_lines(monkeypatch):
    output = _train(monkeypatch, _Log())
    lines = output.splitlines()
    assert "\r" not in output and "\b" not in output
    assert len(lines) == 10
    assert lines[-1].startswith("step 40/40 - ")
    assert "loss: " in lines[-1]


def test_terminal_gets_keras_bar(monkeypatch):
    output = _train(monkeypatch, _Terminal())
    assert "step 40/40" not in output
    assert "40/40" in output


def test_progbar_in_a_log_writes_one_line(monkeypatch):
    stream = _Log()
    monkeypatch.setattr("sys.stdout", stream)
    bar = progress.progbar(5, verbose=1, unit_name="block")
    for i in range(5):
        bar.update(i + 1, [("mse", 0.5)])
    assert stream.getvalue().count("\n") == 1
    assert "\r" not in stream.getvalue()
