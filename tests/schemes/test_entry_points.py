"""`compress(scheme=...)` and the CLI's `--scheme` reach the layer-wise schemes."""

import keras
import numpy as np
import pytest

import keras_practise
from keras_practise import cli
from keras_practise.schemes import core
from keras_practise.schemes import layerwise
from keras_practise.schemes import registry
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
    code = cli.main([
        "compress", str(model_path), "--out", str(tmp_path / "kd.keras"),
        "--data", str(data), "--scheme", "filters", "--keep", "0.25",
        "--layers", "stem_conv,s2_block2_1_conv", "--steps", "1",
        "--method", "kd", "--finetune-steps", "1", "-q",
    ])
    assert code == 0
    small = keras.saving.load_model(tmp_path / "kd.keras")
    # The stage-1 stream: every conv writing it shrank together.
    for name in ("stem_conv", "s1_block1_2_conv", "s1_block3_2_conv"):
        assert small.get_layer(name).filters == 2
    assert small.get_layer("s1_block1_1_conv").filters == 8
    assert small.get_layer("s2_block2_1_conv").filters == 4
    with pytest.raises(ValueError, match="layerwise"):
        keras_practise.compress(
            tiny_models.tiny_resnet(), tiny_models.images(8), method="layerwise"
        )


def test_scheme_refuses_block_options_and_passes_callbacks_and_export(tmp_path):
    model = tiny_models.tiny_resnet()
    x = tiny_models.images(8)
    for extra in ({"selection": "independent"}, {"blocks": ["1.2"]}, {"synthesis_steps": 5}):
        with pytest.raises(ValueError, match="scheme='blocks' only"):
            keras_practise.compress(model, x, scheme="filters", **extra)
    with pytest.raises(ValueError, match="data=None"):
        keras_practise.compress(model, None, scheme="filters")
    logged = []
    callback = keras.callbacks.LambdaCallback(
        on_train_end=lambda logs: logged.append(logs)
    )
    path = tmp_path / "small.onnx"
    small, report = keras_practise.compress(
        model, x, scheme="filters", keep=0.5, layers=["s2_block2_1_conv"],
        steps=1, verbose=0, return_report=True, callbacks=[callback],
        export=str(path),
    )
    assert logged  # One fit, or two when the BatchNorm retry runs.
    assert path.exists() and report.exported["format"] == "onnx"
    assert report.exported["max_abs_diff"] < 1e-3
    assert "exported onnx" in report.table()


def test_cli_refuses_scheme_options_without_a_scheme(tmp_path, capsys):
    model_path = tmp_path / "tiny.keras"
    tiny_models.tiny_resnet().save(model_path)
    code = cli.main([
        "compress", str(model_path), "--out", str(tmp_path / "small.keras"),
        "--keep", "0.5",
    ])
    assert code == 2
    assert "go with a layer-wise --scheme" in capsys.readouterr().err


@pytest.mark.parametrize("scheme, knob", [
    ("filters", "keep"), ("decouple", "rank"), ("lowrank", "rank"),
])
def test_layerwise_scheme_meets_a_latency_target_with_its_knob(scheme, knob):
    model = tiny_models.tiny_resnet()
    _, report = keras_practise.compress(
        model, tiny_models.images(8), scheme=scheme, latency_target=0.3,
        latency="macs", steps=0, verbose=0, return_report=True,
        latency_batch_size=0, augment_views=1, min_agreement=0.0,
    )
    saved = 1 - report.macs[1] / report.macs[0]
    assert saved >= 0.3
    chosen = report.settings[knob]
    values = {"filters": layerwise.FRACTIONS, "lowrank": layerwise.FRACTIONS,
              "decouple": tuple(range(8, 0, -1))}[scheme]
    index = values.index(chosen)
    if index:  # The value before compresses less and misses the target.
        options = {**registry.entry(scheme).defaults, knob: values[index - 1]}
        teacher = core.flat_copy(model)
        preview = registry.load(scheme).knob.preview(teacher, options)
        assert layerwise.saving(teacher, preview, "macs") < 0.3


def test_latency_target_errors_name_the_reason():
    model = tiny_models.tiny_resnet()
    with pytest.raises(ValueError, match="does not make dense networks faster"):
        keras_practise.compress(
            model, tiny_models.images(8), scheme="sparse", latency_target=0.3
        )
    with pytest.raises(ValueError, match="cannot be met"):
        keras_practise.compress(
            model, tiny_models.images(8), scheme="filters", latency_target=0.99,
            latency="macs", verbose=0,
        )


def test_help_gives_every_scheme_option_with_its_default(capsys):
    # The help text is built from the registry (no backend started).
    try:
        code = cli.main(["compress", "--help"])
    except SystemExit as exit:
        code = exit.code
    assert code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in registry.cli_options():
        assert f"--{option.name.replace('_', '-')}" in text
        if option.default is not None:
            assert f"({option.default}" in text, option.name
