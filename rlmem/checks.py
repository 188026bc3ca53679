"""Argument checks shared across rlmem: one wording per kind of bad value.

Each raises a `ValueError` naming the argument, the value and what is allowed, so a bad
argument fails where it is passed rather than deep inside a jitted function. A value of
the wrong type (`gamma="abc"`), a bool where a number belongs, and NaN or infinity are
refused the same way, never with a `TypeError` from a comparison. (Configs are checked
earlier still, naming the `algo.<key>`: `rlmem.config_ranges`.)
"""

from __future__ import annotations

import math
import numbers


def _finite(value: object) -> float | None:
    """`value` as a finite float, or None if it is not a finite real number."""
    if isinstance(value, bool | str | bytes):
        return None
    try:
        number = float(value)  # ints, floats, numpy and concrete jax scalars
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def positive_int(name: str, value: object) -> int:
    """`value` as a Python int if it is an integer >= 1 (numpy ints too, bools never).

    Raises:
      ValueError: `"{name} must be a positive int, got {value!r}"`.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_positive_ints(**values: int) -> None:
    """Raise unless every value is a positive int (`positive_int`, named by its keyword)."""
    for name, value in values.items():
        positive_int(name, value)


def check_unit_interval(**values: float) -> None:
    """Raise unless every value is a number in `[0, 1]` (discounts, GAE lambda)."""
    for name, value in values.items():
        number = _finite(value)
        if number is None or not 0.0 <= number <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def check_positive_floats(**values: float) -> None:
    """Raise unless every value is a finite number > 0 (rates, thresholds, epsilons)."""
    for name, value in values.items():
        number = _finite(value)
        if number is None or number <= 0.0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
