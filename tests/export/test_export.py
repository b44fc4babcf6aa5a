"""Export to ONNX, LiteRT, SavedModel and OpenVINO, checked in each runtime."""

import dataclasses
import json
import os

import numpy as np
import pytest

import keras_practise
from keras_practise import cli
from keras_practise.export import exporter
from keras_practise.export import runtimes
from tests import tiny_models


@pytest.fixture(scope="module")
def model():
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    return model


@pytest.mark.parametrize(
    "format,name",
    [("onnx", "m.onnx"), ("litert", "m.tflite"), ("saved_model", "m_saved"),
     ("openvino", "m.xml")],
)
def test_export_runs_in_its_runtime(model, format, name, tmp_path):
    path = os.path.join(tmp_path, name)
    x = tiny_models.images(4)
    result = keras_practise.export(model, path, format=format, sample=x)
    assert result.path == path and result.format == format
    assert os.path.exists(path) and result.size_bytes > 1000
    assert 0 <= result.max_abs_diff < 1e-4 and result.checked_on == 4
    # The written file, reloaded in its runtime, gives the model's outputs on
    # inputs the check did not use.
    other = tiny_models.images(3, seed=1)
    np.testing.assert_allclose(
        runtimes.run_exported(path, format, other),
        model.predict(other, verbose=0), atol=1e-4,
    )
    expected = {name, "m.bin"} if format == "openvino" else {name}
    assert set(os.listdir(tmp_path)) == expected  # No staging folder left.


def test_mismatch_is_an_error_and_writes_nothing(model, tmp_path, monkeypatch):
    monkeypatch.setattr(
        runtimes, "run_exported", lambda path, format, x: model.predict(x, verbose=0) + 0.1
    )
    with pytest.raises(ValueError, match="does not match"):
        keras_practise.export(model, os.path.join(tmp_path, "m.onnx"), "onnx")
    assert os.listdir(tmp_path) == []


def test_missing_runtime_names_the_extra(monkeypatch):
    missing = dataclasses.replace(
        runtimes.RUNTIMES["openvino"], module="no_such_runtime_module"
    )
    monkeypatch.setitem(runtimes.RUNTIMES, "openvino", missing)
    with pytest.raises(ImportError, match=r"keras-practise\[openvino\]"):
        exporter.resolve_target("m.xml")


@pytest.mark.parametrize(
    "target,error",
    [("m.pt", ValueError), (("tensorrt", "m.plan"), ValueError), (3, TypeError)],
)
def test_bad_targets(target, error):
    with pytest.raises(error):
        exporter.resolve_target(target)


def test_compress_exports_and_reports(model, tmp_path):
    path = os.path.join(tmp_path, "small.onnx")
    small, report = keras_practise.compress(
        model, tiny_models.images(8), blocks=["1.2"], finetune_steps=2,
        verbose=0, latency_batch_size=0, return_report=True, export=path,
    )
    assert report.exported["path"] == path and report.exported["format"] == "onnx"
    assert report.exported["max_abs_diff"] < 1e-4
    assert "exported onnx" in report.table()
    x = tiny_models.images(2, seed=2)
    np.testing.assert_allclose(
        runtimes.run_exported(path, "onnx", x), small.predict(x, verbose=0), atol=1e-4
    )


def test_cli_export(model, tmp_path):
    model_path = os.path.join(tmp_path, "model.keras")
    model.save(model_path)
    data = os.path.join(tmp_path, "tiny.npy")
    np.save(data, tiny_models.images(6))
    out = os.path.join(tmp_path, "small.keras")
    report = os.path.join(tmp_path, "report.json")
    status = cli.main([
        "compress", model_path, "--out", out, "--data", data, "--blocks", "1.2",
        "--finetune-steps", "2", "--latency-batch-size", "0", "--quiet",
        "--export", "openvino", "--report", report,
    ])
    assert status == 0
    assert os.path.exists(os.path.join(tmp_path, "small.xml"))
    with open(report) as f:
        assert json.load(f)["exported"]["format"] == "openvino"


def test_cli_export_is_written_with_the_model_or_not_at_all(model, tmp_path, monkeypatch):
    model_path = os.path.join(tmp_path, "model.keras")
    model.save(model_path)
    data = os.path.join(tmp_path, "tiny.npy")
    np.save(data, tiny_models.images(6))
    out = os.path.join(tmp_path, "small.keras")
    args = [
        "compress", model_path, "--out", out, "--data", data, "--blocks", "1.2",
        "--finetune-steps", "2", "--latency-batch-size", "0", "--quiet",
        "--export", "openvino",
    ]
    # The export passes its check, then saving the model fails: neither the
    # .xml, its .bin nor the .keras may be left behind.
    def full_disk(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(type(model), "save", full_disk)
    assert cli.main(args) == 1
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "tiny.npy"]


def test_cli_export_may_not_clobber_the_report(model, tmp_path, capsys):
    model_path = os.path.join(tmp_path, "model.keras")
    model.save(model_path)
    status = cli.main([
        "compress", model_path, "--out", os.path.join(tmp_path, "small.keras"),
        "--report", os.path.join(tmp_path, "small.onnx"), "--export", "onnx",
    ])
    assert status == 2
    assert "--export must differ from --report" in capsys.readouterr().err
