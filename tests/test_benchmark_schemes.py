"""Smoke test of the `benchmarks.schemes` binary with tiny flags (subprocess,
as `tests/test_benchmark_latency.py` explains)."""

import pathlib
import subprocess
import sys

from tests import script_runs

_REPO = pathlib.Path(__file__).resolve().parents[1]


@script_runs.script
def test_schemes_table_has_block_and_layerwise_rows(tmp_path):
    output = tmp_path / "schemes.md"
    result = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.schemes", "--device=cpu",
            "--models=resnet50", "--input_size=64", "--batch_size=1",
            "--runs=1", "--warmup=0", f"--output={output}",
        ],
        cwd=_REPO,
        env=script_runs.env("torch"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
        for line in output.read_text().splitlines()
        if line.startswith("| ResNet-50")
    }
    assert set(rows) == {
        "ResNet-50", "ResNet-50-A", "ResNet-50-B", "ResNet-50-C",
        "ResNet-50-DW-PW", "ResNet-50-LRD",
    }
    # Rank-3 decoupling of every 3x3 conv: the paper's 18.11 M parameters.
    assert abs(float(rows["ResNet-50-DW-PW"][2]) / 18.11 - 1) < 0.005
    assert rows["ResNet-50-DW-PW"][6] == "18.11"
    assert float(rows["ResNet-50-LRD"][2]) < float(rows["ResNet-50"][2])
