"""Tutorials and benchmark binaries, run as users run them: in a subprocess.

Each of these tests names the backend its script runs on, so the run is the
same whichever backend pytest itself uses, and across the scripts
TensorFlow and PyTorch are covered (and JAX by `benchmarks.backends`),
each script once. The tests carry the
`script` marker: `.ci/run` runs them in its TensorFlow leg only, where
before every script ran once per leg (about half of the PyTorch leg's time,
for runs whose backend-dependent code the library's own tests cover on
every backend).
"""

import os

import pytest

# The marker of the tests that run a script in a subprocess.
script = pytest.mark.script


def env(backend, **extra):
    """The environment of a script run on `backend` (`KERAS_BACKEND`)."""
    if backend not in ("tensorflow", "torch", "jax"):
        raise ValueError(f"Unknown backend {backend!r}")
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}
