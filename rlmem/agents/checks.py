"""Argument checks shared by the algorithms' constructors.

Each raises a `ValueError` naming the argument, the value and what is allowed, so a bad
config fails when the algorithm is built rather than deep inside a jitted update.
"""

from __future__ import annotations


def check_positive_ints(**values: int) -> None:
    """Raise unless every value is a positive int (bools are rejected)."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_unit_interval(**values: float) -> None:
    """Raise unless every value lies in `[0, 1]` (discounts, GAE lambda)."""
    for name, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
