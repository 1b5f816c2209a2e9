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
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def integer(value: Any, name: str, low: int = 1, *, what: str | None = None) -> int:
    """``value`` as an ``int`` if it is a whole number (not a bool) ``>= low``, else ``ValueError``.

    ``what`` replaces the default wording ("an integer >= low") of the message.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected {what or f'an integer >= {low}'}, got {value!r}")
    return int(value)


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
