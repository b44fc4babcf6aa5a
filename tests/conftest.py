"""Shared pytest configuration: quiet logs, a fresh Keras session per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def clear_session():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield
