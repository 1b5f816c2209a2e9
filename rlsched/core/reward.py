"""Reward: improvement of the log validation loss; an episode's return is ``log(L0 / LT)``."""

from __future__ import annotations

import math

DIVERGENCE_RETURN = -1.0
"""The whole return of an episode that diverges: worse than not training at all (return 0)."""

_FLOOR = 1e-12  # losses are floored here so that a perfect fit does not give an infinite reward


def reward(previous_loss: float, loss: float, *, initial_loss: float) -> float:
    """``-(log loss - log previous_loss)``; on divergence, the reward that makes the return -1.

    A non-finite ``loss`` means divergence: the reward then takes back everything gained so far
    (``log(initial_loss / previous_loss)``) and adds :data:`DIVERGENCE_RETURN`, so every diverged
    episode returns exactly ``DIVERGENCE_RETURN`` whenever it happens.
    """
    gained = math.log(max(initial_loss, _FLOOR) / max(previous_loss, _FLOOR))
    if not math.isfinite(loss):
        return DIVERGENCE_RETURN - gained
    return math.log(max(previous_loss, _FLOOR) / max(loss, _FLOOR))
