"""Hyperparameters and the space they move in.

>>> space = HyperparamSpace(lr=(1e-4, 1.0), batch_size=(32, 64, 128), scale_rule="sqrt")
>>> hp = Hyperparams(lr=0.1, batch_size=64)
>>> space.move(hp, lr_factor=1.0, batch_step=+1)   # bigger batch: LR scaled by sqrt(2) first
Hyperparams(lr=0.1414213562373095, batch_size=128)
>>> space.move(hp, lr_factor=100.0, batch_step=0)  # LR is clipped to its bounds
Hyperparams(lr=1.0, batch_size=64)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SCALE_RULES = ("sqrt", "linear", "none")


@dataclass(frozen=True)
class Hyperparams:
    """The two hyperparameters rlsched adapts: learning rate and batch size.

    ``lr`` is the learning rate of the optimizer's first parameter group; other groups keep
    their ratio to it.
    """

    lr: float
    batch_size: int

    def __post_init__(self) -> None:
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)):
            raise ValueError(f"lr: expected a positive finite number, got {self.lr!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: expected a positive finite number, got {self.lr!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)):
            raise ValueError(f"batch_size: expected a positive integer, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {self.batch_size!r}")
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "batch_size", int(self.batch_size))

    def to_dict(self) -> dict[str, float | int]:
        return {"lr": self.lr, "batch_size": self.batch_size}


@dataclass(frozen=True)
class HyperparamSpace:
    """Bounds for the learning rate and the ladder of allowed batch sizes.

    Args:
        lr: ``(low, high)`` with ``0 < low < high``; the learning rate is always clipped into it.
        batch_size: strictly increasing positive integers; the batch size moves one rung at a time.
        scale_rule: how the learning rate follows a batch-size change before any correction:
            ``"sqrt"`` (Adam-like optimizers), ``"linear"`` (SGD) or ``"none"``.
    """

    lr: tuple[float, float] = (1e-4, 1.0)
    batch_size: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    scale_rule: str = "sqrt"

    def __post_init__(self) -> None:
        lr = _as_tuple(self.lr, "lr")
        if len(lr) != 2 or not all(_is_real(v) for v in lr):
            raise ValueError(f"lr: expected a pair (low, high) of numbers, got {self.lr!r}")
        low, high = float(lr[0]), float(lr[1])
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise ValueError(f"lr: expected finite bounds with 0 < low < high, got {self.lr!r}")
        ladder = _as_tuple(self.batch_size, "batch_size")
        if not ladder or not all(_is_int(v) and v >= 1 for v in ladder):
            raise ValueError(
                f"batch_size: expected a non-empty ladder of positive integers, got {self.batch_size!r}"
            )
        if any(b <= a for a, b in zip(ladder, ladder[1:])):
            raise ValueError(
                "batch_size: expected a strictly increasing ladder without duplicates, "
                f"got {self.batch_size!r}"
            )
        if self.scale_rule not in SCALE_RULES:
            raise ValueError(f"scale_rule: expected one of {', '.join(SCALE_RULES)}, got {self.scale_rule!r}")
        object.__setattr__(self, "lr", (low, high))
        object.__setattr__(self, "batch_size", tuple(int(v) for v in ladder))

    # -- queries ---------------------------------------------------------------------------
    def contains(self, hp: Hyperparams) -> bool:
        return self.lr[0] <= hp.lr <= self.lr[1] and hp.batch_size in self.batch_size

    def check(self, hp: Hyperparams, field: str = "hyperparams") -> Hyperparams:
        """Return ``hp`` if it lies in the space, else raise ``ValueError`` naming ``field``."""
        if not self.lr[0] <= hp.lr <= self.lr[1]:
            raise ValueError(f"{field}.lr: {hp.lr!r} is outside the bounds [{self.lr[0]}, {self.lr[1]}]")
        if hp.batch_size not in self.batch_size:
            raise ValueError(
                f"{field}.batch_size: {hp.batch_size!r} is not on the ladder {list(self.batch_size)}"
            )
        return hp

    def rung(self, batch_size: int) -> int:
        """Index of ``batch_size`` on the ladder (the nearest rung, in log space, if off it)."""
        ladder = np.log(np.asarray(self.batch_size, dtype=float))
        return int(np.argmin(np.abs(ladder - math.log(batch_size))))

    def default(self) -> Hyperparams:
        """Geometric middle of the LR bounds and the middle rung of the ladder."""
        return Hyperparams(math.sqrt(self.lr[0] * self.lr[1]), self.batch_size[len(self.batch_size) // 2])

    # -- moves -----------------------------------------------------------------------------
    def clip_lr(self, lr: float) -> float:
        return float(min(max(lr, self.lr[0]), self.lr[1]))

    def scale_lr(self, lr: float, old_batch_size: int, new_batch_size: int) -> float:
        """Learning rate after a batch-size change under this space's scale rule (unclipped)."""
        ratio = new_batch_size / old_batch_size
        if self.scale_rule == "sqrt":
            return lr * math.sqrt(ratio)
        if self.scale_rule == "linear":
            return lr * ratio
        return lr

    def move(self, hp: Hyperparams, lr_factor: float = 1.0, batch_step: int = 0) -> Hyperparams:
        """Move ``batch_step`` rungs on the ladder, rescale LR by the rule, then apply ``lr_factor``.

        The result always lies in the space: the rung is clipped to the ladder's ends and the
        learning rate to its bounds.
        """
        old = self.batch_size[self.rung(hp.batch_size)]
        index = min(max(self.rung(hp.batch_size) + int(batch_step), 0), len(self.batch_size) - 1)
        new = self.batch_size[index]
        lr = self.scale_lr(hp.lr, old, new) * lr_factor
        return Hyperparams(self.clip_lr(lr), new)

    def sample(self, rng: np.random.Generator) -> Hyperparams:
        """Log-uniform learning rate within bounds, batch size uniform over the ladder."""
        log_lr = rng.uniform(math.log(self.lr[0]), math.log(self.lr[1]))
        return Hyperparams(
            self.clip_lr(math.exp(log_lr)), self.batch_size[int(rng.integers(len(self.batch_size)))]
        )

    def to_dict(self) -> dict:
        return {"lr": list(self.lr), "batch_size": list(self.batch_size), "scale_rule": self.scale_rule}

    @classmethod
    def from_dict(cls, data: dict) -> HyperparamSpace:
        """The space from :meth:`to_dict`'s form; missing keys take the defaults."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _as_tuple(value: object, field: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{field}: expected a sequence, got {value!r}")
    return tuple(value)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
