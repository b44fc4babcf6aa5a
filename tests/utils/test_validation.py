import numpy as np
import pytest

from keras_practise.utils import validation


def test_check_int_accepts_and_converts():
    assert validation.check_int("steps", np.int64(3)) == 3
    assert type(validation.check_int("steps", np.int64(3))) is int
    assert validation.check_int("views", 0, minimum=0) == 0
    assert validation.check_int("batch_size", None, allow_none=True) is None


@pytest.mark.parametrize(
    "value, minimum, allow_none, error, message",
    [
        (0, 1, False, ValueError, "`n` must be a positive integer. Received: n=0"),
        (-1, 0, False, ValueError, "`n` must be an integer >= 0. Received: n=-1"),
        (1.5, 1, False, TypeError, "Received: n=1.5"),
        (True, 1, False, TypeError, "Received: n=True"),
        ("3", 1, False, TypeError, "Received: n='3'"),
        (None, 1, False, TypeError, "Received: n=None"),
        (0, 1, True, ValueError, "a positive integer or None"),
    ],
)
def test_check_int_rejects(value, minimum, allow_none, error, message):
    with pytest.raises(error) as caught:
        validation.check_int("n", value, minimum, allow_none)
    assert message in str(caught.value)


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.2])
def test_check_fraction_rejects_out_of_range(value):
    with pytest.raises(ValueError, match=f"Received: t={value!r}"):
        validation.check_fraction("t", value)


def test_check_fraction():
    assert validation.check_fraction("t", 0.25) == 0.25
    assert validation.check_fraction("t", None, allow_none=True) is None
    with pytest.raises(TypeError):
        validation.check_fraction("t", "0.2")
