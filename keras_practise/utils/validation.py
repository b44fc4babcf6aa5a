"""Argument checks shared by the API and the command line.

The CLI parses numbers as plain integers and leaves range checks to these
functions, called by the API before any work starts, so both accept and
reject the same values with the same message.
"""

import numpy as np


def check_int(name, value, minimum=1, allow_none=False):
    """Returns `value` as an `int` after checking it is an integer >= `minimum`.

    Args:
        name: The argument's name, for the message.
        value: The value received.
        minimum: The smallest value accepted. Defaults to `1`.
        allow_none: Whether `None` is accepted (and returned as is).

    Returns:
        `int(value)`, or `None` when `value` is `None` and `allow_none`.

    Raises:
        TypeError: If `value` is not an integer (`bool` and `float` are not).
        ValueError: If `value` is below `minimum`.

    Example:

    ```python
    steps = check_int("steps", steps)            # a positive integer
    views = check_int("augment_views", views, 0, allow_none=True)
    ```
    """
    if value is None and allow_none:
        return None
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if allow_none:
        expected += " or None"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return int(value)


def check_fraction(name, value, allow_none=False, allow_zero=False):
    """Returns `value` as a `float` after checking `0 < value < 1`.

    Args:
        name: The argument's name, for the message.
        value: The value received.
        allow_none: Whether `None` is accepted (and returned as is).
        allow_zero: Whether `0` is accepted (e.g. "hold out nothing").

    Returns:
        `float(value)`, or `None`.

    Raises:
        TypeError: If `value` is not a real number.
        ValueError: If `value` is out of range.
    """
    if value is None and allow_none:
        return None
    expected = f"a fraction in {'[0' if allow_zero else '(0'}, 1)"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    if not (0 <= value < 1 if allow_zero else 0 < value < 1):
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return float(value)


def as_size(image_size):
    """Returns `image_size` (an int or a pair) as a `(height, width)` tuple.

    Raises:
        ValueError: if `image_size` is not a positive int or pair.
    """
    if isinstance(image_size, (int, np.integer)):
        size = (int(image_size), int(image_size))
    else:
        try:
            size = tuple(int(s) for s in image_size)
        except (TypeError, ValueError):
            size = ()
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(
            "`image_size` must be a positive int or a (height, width) pair. "
            f"Received: image_size={image_size}"
        )
    return size
