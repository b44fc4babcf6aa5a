"""The package's imports point one way: from later stages to earlier ones."""

import ast
import pathlib

import keras_practise

_ROOT = pathlib.Path(keras_practise.__file__).parent
# Each sub-package (or top-level module) may import only those before it.
_ORDER = (
    "utils", "backend", "graph", "data", "export", "profiling",
    "distillation", "selection", "recovery", "schemes", "pipeline",
    "cli", "demo", "__main__",
)
# Builders of networks: they use nothing of the pipeline.
_SIDE = ("models",)


def _stage(module):
    """`keras_practise.graph.blocks` -> `graph`; the package itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "keras_practise"
        ):
            if node.module == "keras_practise":
                yield from (f"keras_practise.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("keras_practise"))


def test_no_import_points_to_a_later_stage():
    upward = []
    for path in sorted(_ROOT.rglob("*.py")):
        relative = path.relative_to(_ROOT.parent).with_suffix("")
        source = _stage(".".join(relative.parts))
        if source is None or source == "__init__":
            continue  # The package's namespace names the public API lazily.
        for module in _imports(path):
            target = _stage(module)
            if target in (None, source) or target == "__init__":
                continue
            if source in _SIDE or target in _SIDE:
                if source in _SIDE and target not in ("utils", "backend"):
                    upward.append((source, target, str(relative)))
                continue
            if _ORDER.index(target) > _ORDER.index(source):
                upward.append((source, target, str(relative)))
    assert upward == []


def test_help_starts_no_keras_backend():
    import subprocess
    import sys

    code = (
        "import sys; from keras_practise import cli; "
        "sys.argv = ['keras-practise', '--help']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'torch', 'jax') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        cwd=_ROOT.parent, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: keras-practise" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert result.stderr == ""


def test_public_names_are_the_api_whatever_was_imported_first():
    import importlib

    importlib.import_module("keras_practise.export.exporter")
    # The sub-package of the same name does not hide the function.
    assert callable(keras_practise.export)
    assert keras_practise.export.__name__ == "export"
    for name in keras_practise.__all__:
        assert getattr(keras_practise, name) is not None
