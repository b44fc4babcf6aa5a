"""`compress(scheme=...)` and the CLI's `--scheme` reach the layer-wise schemes."""

import keras
import numpy as np
import pytest

import keras_practise
from keras_practise import cli
from tests import tiny_models


def test_compress_dispatches_to_a_scheme():
    model = tiny_models.tiny_resnet()
    small, report = keras_practise.compress(
        model, tiny_models.images(8), scheme="filters", keep=0.5,
        layers=["s2_block2_1_conv"], steps=1, verbose=0, return_report=True,
    )
    assert report.scheme == "filters" and report.layers == ["s2_block2_1_conv"]
    assert small.get_layer("s2_block2_1_conv").filters == 8
    with pytest.raises(TypeError, match="keep"):
        keras_practise.compress(model, tiny_models.images(8), keep=0.5)


def test_cli_scheme(tmp_path):
    model_path = tmp_path / "tiny.keras"
    tiny_models.tiny_resnet().save(model_path)
    data = tmp_path / "images.npy"
    np.save(data, tiny_models.images(8))
    out = tmp_path / "small.keras"
    code = cli.main([
        "compress", str(model_path), "--out", str(out), "--data", str(data),
        "--scheme", "filters", "--keep", "0.25", "--steps", "1", "-q",
    ])
    assert code == 0
    small = keras.saving.load_model(out)
    assert small.get_layer("s1_block1_1_conv").filters == 2
