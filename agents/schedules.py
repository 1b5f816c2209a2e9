"""Hand-made learning-rate schedules, and the agents that follow them.

A schedule is a pure function of training progress ``p`` in [0, 1] to a multiplier of the base
learning rate. Agents evaluate it at the middle of each decision interval, so a schedule is
followed piecewise-constantly, one value per interval. The batch size stays at its base value.

>>> round(factor("cosine", 0.5), 3), factor("step", 0.8), factor("wsd", 0.5)
(0.5, 0.010000000000000002, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from rlsched.core.prior import warmup_cosine


def cosine(p: float, warmup: float = 0.0, final: float = 0.0) -> float:
    """Linear warmup over ``warmup`` of training, then cosine from 1 down to ``final``."""
    return warmup_cosine(p, warmup, final)


def step(p: float, gamma: float = 0.1, milestones: tuple[float, ...] = (0.5, 0.75)) -> float:
    """Multiply by ``gamma`` at each milestone passed."""
    return gamma ** sum(p >= m for m in milestones)


def onecycle(p: float, peak: float = 0.3, start: float = 1 / 25, final: float = 1e-4) -> float:
    """Cosine rise from ``start`` to 1 at ``peak``, then cosine fall to ``final`` (as torch's OneCycleLR)."""
    if p < peak:
        return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * p / peak))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * (p - peak) / (1 - peak)))


def wsd(p: float, warmup: float = 0.1, decay: float = 0.2, final: float = 0.0) -> float:
    """Warmup-stable-decay: linear warmup, flat, then linear decay to ``final`` over the last ``decay``."""
    if p < warmup:
        return p / warmup
    if p <= 1 - decay:
        return 1.0
    return 1 - (1 - final) * (p - (1 - decay)) / decay


_FUNCTIONS = {"constant": lambda p: 1.0, "cosine": cosine, "step": step, "onecycle": onecycle, "wsd": wsd}
KINDS = tuple(_FUNCTIONS)


def check_kind(kind: str) -> str:
    if kind not in _FUNCTIONS:
        raise ValueError(f"schedule: expected one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def factor(kind: str, p: float, **params: Any) -> float:
    """The LR multiplier of schedule ``kind`` at progress ``p``."""
    return _FUNCTIONS[check_kind(kind)](p, **params)


def midpoint(decision: int, decisions: int) -> float:
    return (decision + 0.5) / decisions


@dataclass(frozen=True)
class Schedule:
    """A hand schedule: the LR multiplier over training (see :class:`rlsched.agents.Fixed`).

    >>> Schedule("cosine", warmup=0.1).lr(0.1, decision=0, decisions=10)
    0.05
    """

    kind: str = "constant"
    warmup: float = 0.0
    final: float = 0.0

    def __post_init__(self) -> None:
        check_kind(self.kind)
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup: expected a fraction in [0, 1), got {self.warmup!r}")
        if not 0 <= self.final <= 1:
            raise ValueError(f"final: expected a fraction in [0, 1], got {self.final!r}")

    def multiplier(self, p: float) -> float:
        if self.kind in ("cosine", "wsd"):
            return factor(self.kind, p, warmup=self.warmup, final=self.final)
        return factor(self.kind, p)

    def lr(self, base_lr: float, *, decision: int, decisions: int) -> float:
        return base_lr * self.multiplier(midpoint(decision, decisions))

    def config(self) -> dict[str, Any]:
        return asdict(self)
