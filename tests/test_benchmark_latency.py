"""Smoke tests of the `benchmarks.latency` and `benchmarks.runtime_ranking`
binaries with tiny flags.

The binaries run in a subprocess, as users run them: their flags live in
absl's global registry (other benchmark binaries define flags of the same
names), and `--device=cpu` must act before keras is imported.
"""

import math
import pathlib
import subprocess
import sys

from tests import script_runs

_REPO = pathlib.Path(__file__).resolve().parents[1]
_TINY = ["--input_size=64", "--batch_size=1", "--runs=2", "--warmup=0"]


pytestmark = script_runs.script


def _run(*args, binary="latency", backend="tensorflow"):
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{binary}", *args],
        cwd=_REPO,
        env=script_runs.env(backend),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _table(markdown, prefix):
    """Rows of the markdown tables whose first cell starts with `prefix`."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(prefix):
            rows[cells[0]] = cells
    return rows


def test_default_schemes_table_and_plot(tmp_path):
    output = tmp_path / "latency.md"
    plot = tmp_path / "latency.png"
    result = _run(
        "--models=resnet34",
        *_TINY,
        "--device=cpu",
        f"--output={output}",
        f"--plot={plot}",
    )
    assert result.returncode == 0, result.stderr[-4000:]

    markdown = output.read_text()
    rows = _table(markdown, "ResNet-34")
    assert list(rows) == [
        "ResNet-34",
        "ResNet-34-A",
        "ResNet-34-B",
        "ResNet-34-C",
    ]
    original, _, _, scheme_c = rows.values()
    assert scheme_c[1] == "1.2, 2.2, 3.2"
    # Trainable parameters do not depend on the input size: the paper's.
    assert original[2] == "21.80" and scheme_c[2] == "20.25"
    macs = [float(cells[3]) for cells in rows.values()]
    assert macs == sorted(macs, reverse=True) and macs[-1] < macs[0]
    for cells in rows.values():
        median, spread = cells[4].split(" ", 1)
        low, high = (float(x) for x in spread.strip("()").split("-"))
        assert 0 < low <= float(median) <= high
    assert original[5] == "0.0%"
    # The paper's columns: its ResNet-34-C cut 17.9% of the GPU latency.
    assert scheme_c[6:8] == ["20.25", "2.97"]
    assert scheme_c[8] == "133 (17.9%)"
    assert "- backend: tensorflow" in markdown
    assert "- device: CPU" in markdown
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Written atomically: no temporary files left beside the outputs.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "latency.md",
        "latency.png",
    ]


def test_custom_scheme_by_block_name():
    result = _run(
        "--models=mobilenet_v2",
        "--schemes=X=block_4,block_14",
        "--input_size=32",
        "--batch_size=1",
        "--runs=1",
        "--warmup=0",
        backend="torch",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = _table(result.stdout, "MobileNetV2")
    assert list(rows) == ["MobileNetV2", "MobileNetV2-X"]
    # Named blocks are reported with their `stage.block` labels; the paper
    # has no such row, so its columns stay empty.
    assert rows["MobileNetV2-X"][1] == "3.2, 6.2"
    assert rows["MobileNetV2-X"][6:] == ["-"] * 4


def test_bad_flags_fail_before_measuring():
    result = _run("--schemes=A")
    assert result.returncode != 0
    assert "NAME=BLOCKS" in result.stderr

    result = _run("--models=resnet34,alexnet")
    assert result.returncode != 0
    assert "alexnet" in result.stderr

    # Keras runs on its backend's threads; a thread count would be a label only.
    result = _run("--threads=1")
    assert result.returncode != 0
    assert "--threads=1 applies to an exported runtime" in result.stderr


def test_runtime_flag_times_exported_variants(tmp_path):
    output = tmp_path / "latency.md"
    result = _run(
        "--models=mobilenet_v2", "--schemes=A=3.2", "--input_size=32",
        "--batch_size=1", "--runs=1", "--warmup=0", "--runtime=onnxruntime",
        "--threads=1", f"--output={output}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert list(_table(result.stdout, "MobileNetV2")) == ["MobileNetV2", "MobileNetV2-A"]
    assert "- runtime: onnxruntime, threads 1" in output.read_text()


def _tables(markdown):
    """Every markdown table as a list of rows of cells, header first."""
    tables = [[]]
    for line in markdown.splitlines():
        if not line.startswith("|"):
            if tables[-1]:
                tables.append([])
            continue
        if not line.startswith("|---"):
            tables[-1].append([c.strip() for c in line.strip("|").split("|")])
    return [t for t in tables if t]


def test_runtime_ranking_tables_and_correlations(tmp_path):
    output = tmp_path / "ranking.md"
    result = _run(
        "--models=mobilenet_v2", "--blocks=2.2,3.2,4.2,4.3",
        "--sources=macs,measured,measured", "--input_size=32", "--runs=4",
        "--warmup=0", "--device=cpu", f"--output={output}",
        binary="runtime_ranking", backend="torch",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    markdown = output.read_text()
    savings, per_source, pairs = _tables(markdown)
    assert savings[0] == [
        "block",
        "macs: saving (rank)",
        "measured: saving (rank)",
        "measured#2: saving (rank)",
    ]
    assert [row[0] for row in savings[1:]] == ["2.2", "3.2", "4.2", "4.3"]
    ranks = {}  # source -> {block: rank}
    for column, source in enumerate(["macs", "measured", "measured#2"], 1):
        ranks[source] = {}
        for row in savings[1:]:
            saving, rank = row[column].split(" ")
            assert saving.endswith("%") and 1 <= float(rank.strip("()")) <= 4
            ranks[source][row[0]] = float(rank.strip("()"))
    # MobileNetV2's block 2.2 has the most MACs, then 3.2, then 4.2 and 4.3
    # (equal: the same layers at the same size, so they share a rank).
    assert [ranks["macs"][b] for b in ("2.2", "3.2", "4.2", "4.3")] == [1, 2, 3.5, 3.5]

    columns = ["macs", "measured", "measured#2"]
    assert [row[0] for row in per_source[1:]] == columns
    assert per_source[1][1] == "-" and float(per_source[2][1]) > 0
    assert [row[:2] for row in pairs[1:]] == [
        ["macs", "measured"],
        ["macs", "measured#2"],
        ["measured", "measured#2"],
    ]
    for a, b, rho, shared in pairs[1:]:
        assert math.isfinite(float(rho)) and -1 <= float(rho) <= 1
        tops = [{k for k, r in ranks[s].items() if r <= 3} for s in (a, b)]
        if all(len(t) == 3 for t in tops):  # No tie across the cut.
            assert shared == f"{len(tops[0] & tops[1])}/3"
        else:
            assert shared == "n/a (tied)"
    assert "- load average (1 min) before / after:" in markdown


def test_runtime_ranking_bad_flags_fail_before_measuring():
    result = _run("--sources=macs,gpu", binary="runtime_ranking")
    assert result.returncode != 0
    assert "--sources must list names" in result.stderr

    result = _run("--runtime=litert", binary="runtime_ranking")
    assert result.returncode != 0
    assert "takes --sources and --blocks" in result.stderr
