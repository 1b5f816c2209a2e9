"""Boundary checks shared by constructors, configs and the command line: one line per bad value.

>>> integer(3, "population", low=1)
3
>>> integer(0, "population", low=1)
Traceback (most recent call last):
...
ValueError: population: expected an integer >= 1, got 0
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

MAX_POPULATION = 4096  # members of one run: more is a typo (a run builds every member's job up front)
MAX_DECISIONS = 10_000  # decision intervals of one run


def integer(value: Any, name: str, low: int = 1, high: int | None = None, *, what: str | None = None) -> int:
    """``value`` as an ``int`` if it is a whole number (not a bool) in ``[low, high]``, else ``ValueError``.

    ``what`` replaces the default wording ("an integer >= low", "an integer in [low, high]").
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name}: expected {what or bounds}, got {_short(value)}")
    return int(value)


def real(
    value: Any,
    name: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """``value`` as a finite ``float`` (not a bool) within its bounds, else one ``ValueError``.

    >>> real(0.5, "gamma", 0, 1)
    0.5
    >>> real("x", "gamma", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: gamma: expected a value in [0, 1], got 'x'
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(value) and (value > low if open_low else value >= low)
        ok = ok and (value < high if open_high else value <= high)
    if not ok:
        raise ValueError(f"{name}: expected {_range(low, high, open_low, open_high)}, got {_short(value)}")
    return float(value)


def _range(low: float, high: float, open_low: bool, open_high: bool) -> str:
    if math.isinf(low) and math.isinf(high):
        return "a finite number"
    if math.isinf(high):
        return f"a number {'>' if open_low else '>='} {low:g}"
    if math.isinf(low):
        return f"a number {'<' if open_high else '<='} {high:g}"
    return f"a value in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def _short(value: Any) -> str:
    """``repr(value)``, cut to 80 characters so a huge value still makes one short line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def unknown_key(key: str, allowed: Iterable[str], where: str = "") -> ValueError:
    """The error for an unknown key, with a "did you mean" suggestion or the allowed keys."""
    allowed = list(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(sorted(allowed))}"
    return ValueError(f"{where}{key}: unknown key{hint}")


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str = "") -> None:
    """Raise :func:`unknown_key`'s error for the first key of ``data`` not in ``allowed``."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise unknown_key(key, allowed, where)
