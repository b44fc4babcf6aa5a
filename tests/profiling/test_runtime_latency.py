"""Latency in deployment runtimes, and `latency=` runtimes and callables."""

import numpy as np
import pytest

import keras_practise
from keras_practise import cli
from keras_practise.graph import surgery
from keras_practise.profiling import latency as latency_lib
from tests import tiny_models


@pytest.fixture(scope="module")
def model():
    return tiny_models.tiny_resnet()


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "litert"])
def test_measure_latency_in_a_runtime(model, runtime):
    result = keras_practise.measure_latency(
        model, batch_size=2, runs=3, warmup=1, runtime=runtime, threads=1
    )
    assert result.runtime == runtime and result.threads == 1
    assert len(result.times_ms) == 3 and 0 < result.median_ms < 1e4


def test_compare_latency_in_onnxruntime(model):
    pruned = surgery.drop_blocks(model, ["1.2", "1.3"])
    comparison = keras_practise.compare_latency(
        {"original": model, "pruned": pruned}, batch_size=2, runs=3, warmup=1,
        runtime="onnxruntime",
    )
    assert np.isfinite(comparison.reductions["pruned"])


def test_unknown_runtime_is_rejected(model):
    with pytest.raises(ValueError, match="runtime"):
        keras_practise.measure_latency(model, runtime="tensorrt")


def test_callable_latency_gives_its_reductions(model):
    def fake_ms(m):
        return float(keras_practise.count_params(m))

    pruned = surgery.drop_blocks(model, ["2.2"])
    reductions = latency_lib.latency_reductions(
        {"original": model, "pruned": pruned}, fake_ms
    )
    expected = 1 - keras_practise.count_params(pruned) / keras_practise.count_params(model)
    assert reductions["pruned"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="positive"):
        latency_lib.latency_reductions(
            {"original": model, "pruned": pruned}, lambda m: float("nan")
        )


def test_recoverability_with_a_callable_latency(model):
    report = keras_practise.recoverability(
        model, tiny_models.images(8), blocks=["1.2", "2.2"], steps=2,
        verbose=0, latency=lambda m: float(keras_practise.count_params(m)),
    )
    assert [s.latency_source for s in report] == ["<lambda>"] * 2
    # The callable's saving itself, per block (each well above the 1e-4
    # floor recoverability puts under savings too small to measure).
    for score in report:
        pruned = surgery.drop_blocks(model, [score.label])
        expected = 1 - keras_practise.count_params(pruned) / keras_practise.count_params(model)
        assert expected > 1e-3
        assert score.latency_reduction == pytest.approx(expected)


def test_compress_with_onnxruntime_latency(model):
    small, report = keras_practise.compress(
        model, tiny_models.images(8), drop=1, steps=2, finetune_steps=2,
        verbose=0, latency="onnxruntime", latency_batch_size=0, return_report=True,
    )
    assert len(report.blocks) == 1
    assert all(s.latency_source == "onnxruntime" for s in report.scores)
    assert all(np.isfinite(s.latency_reduction) for s in report.scores)


def test_bad_latency_source_fails_before_training(model):
    with pytest.raises(ValueError, match="callable"):
        keras_practise.compress(model, tiny_models.images(8), latency="flops")


def test_cli_latency_in_a_runtime(model, tmp_path, capsys):
    path = str(tmp_path / "model.keras")
    model.save(path)
    status = cli.main([
        "latency", path, "--runtime", "openvino", "--threads", "1",
        "--batch-size", "1", "--runs", "2", "--warmup", "1", "--quiet",
    ])
    assert status == 0
    assert "runtime=openvino  threads=1" in capsys.readouterr().out
