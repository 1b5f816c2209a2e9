"""Hyperparameters and the space they move in.

>>> space = HyperparamSpace(lr=(1e-4, 1.0), batch_size=(32, 64, 128), scale_rule="sqrt")
>>> hp = Hyperparams(lr=0.1, batch_size=64)
>>> space.move(hp, lr_factor=1.0, batch_step=+1)   # bigger batch: LR scaled by sqrt(2) first
Hyperparams(lr=0.14142135623730953, batch_size=128)
>>> space.move(hp, lr_factor=100.0, batch_step=0)  # LR is clipped to its bounds
Hyperparams(lr=1.0, batch_size=64)

Population methods and search also move *extra* named floats that the job reads from
``hp.extra`` (weight decay, momentum, dropout...); each has bounds and a scale. The learned
controller acts on LR and batch size only; every move carries the extras over unchanged.

>>> space = HyperparamSpace(extra={"weight_decay": (1e-5, 1e-1, "log"), "dropout": (0.0, 0.5)})
>>> hp = space.default()
>>> round(hp.extra["weight_decay"], 9), hp.extra["dropout"]   # mid-range on each scale
(0.001, 0.25)
>>> space.move(hp, lr_factor=2.0).extra == hp.extra
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

SCALE_RULES = ("sqrt", "linear", "none")
MAX_LR = 1e6  # a larger learning rate overflows float32 steps; a bound above it is a typo
EXTRA_SCALES = ("log", "linear")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class FrozenDict(Mapping[str, Any]):
    """An immutable, hashable mapping with sorted keys: how ``extra`` is held."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(sorted((data or {}).items()))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)


EMPTY = FrozenDict()


@dataclass(frozen=True, repr=False)
class Hyperparams:
    """The hyperparameters rlsched adapts: learning rate, batch size and any extra named floats.

    ``lr`` is the learning rate of the optimizer's first parameter group; other groups keep
    their ratio to it. ``extra`` maps a name to a float the job applies itself, e.g.
    ``hp.extra["weight_decay"]``; it is empty unless the space has extras.
    """

    lr: float
    batch_size: int
    extra: Mapping[str, float] = EMPTY

    def __post_init__(self) -> None:
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)):
            raise ValueError(f"lr: expected a positive finite number, got {self.lr!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: expected a positive finite number, got {self.lr!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)):
            raise ValueError(f"batch_size: expected a positive integer, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {self.batch_size!r}")
        if not isinstance(self.extra, Mapping):
            raise ValueError(f"extra: expected a table of name = number, got {self.extra!r}")
        for name, value in self.extra.items():
            _check_name(name)
            if not (_is_real(value) and math.isfinite(value)):
                raise ValueError(f"extra.{name}: expected a finite number, got {value!r}")
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "batch_size", int(self.batch_size))
        object.__setattr__(self, "extra", FrozenDict({k: float(v) for k, v in self.extra.items()}))

    def __repr__(self) -> str:
        extra = f", extra={dict(self.extra)!r}" if self.extra else ""
        return f"Hyperparams(lr={self.lr!r}, batch_size={self.batch_size!r}{extra})"

    def to_dict(self) -> dict[str, Any]:
        """``{"lr", "batch_size"}`` and, when there are extras, ``"extra": {name: value}``."""
        return {
            "lr": self.lr,
            "batch_size": self.batch_size,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hyperparams:
        """The hyperparameters from :meth:`to_dict`'s form (files without ``extra`` included)."""
        if not isinstance(data, Mapping) or not {"lr", "batch_size"} <= set(data) <= {
            "lr",
            "batch_size",
            "extra",
        }:
            raise ValueError(
                f"hyperparams: expected a table with lr, batch_size and optionally extra, got {data!r}"
            )
        return cls(data["lr"], data["batch_size"], data.get("extra", EMPTY))


@dataclass(frozen=True)
class ExtraRange:
    """Bounds of one extra hyperparameter and the scale it moves on.

    On the ``"log"`` scale (weight decay, often) it is sampled log-uniformly and perturbed by a
    factor, like the LR; on the ``"linear"`` scale (dropout, momentum) it is sampled uniformly and
    a factor ``f`` moves it by ``(f - 1)`` of the range's width. Moves are clipped into the bounds.
    """

    low: float
    high: float
    scale: str = "linear"

    def __post_init__(self) -> None:
        if self.scale not in EXTRA_SCALES:
            raise ValueError(f"scale: expected one of {', '.join(EXTRA_SCALES)}, got {self.scale!r}")
        if not (_is_real(self.low) and _is_real(self.high)):
            raise ValueError(f"expected numeric bounds [low, high], got [{self.low!r}, {self.high!r}]")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"expected finite bounds with low < high, got [{self.low!r}, {self.high!r}]")
        if self.scale == "log" and self.low <= 0:
            raise ValueError(f"expected 0 < low < high on the log scale, got [{self.low!r}, {self.high!r}]")
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))

    def clip(self, value: float) -> float:
        return float(min(max(value, self.low), self.high))

    def to_unit(self, value: float) -> float:
        """``value``'s position in the range on its scale: 0 at ``low``, 1 at ``high``."""
        if self.scale == "log":
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        if self.scale == "log":
            return self.clip(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        return self.clip(self.low + u * (self.high - self.low))

    def perturb(self, value: float, factor: float) -> float:
        """``value`` times ``factor`` (log scale) or plus ``(factor - 1)`` widths (linear), clipped."""
        if self.scale == "log":
            return self.clip(value * factor)
        return self.clip(value + (factor - 1) * (self.high - self.low))

    def sample(self, rng: np.random.Generator) -> float:
        return self.from_unit(float(rng.uniform()))

    def to_list(self) -> list[float | str]:
        return [self.low, self.high, self.scale]


@dataclass(frozen=True)
class HyperparamSpace:
    """Bounds for the learning rate, the ladder of allowed batch sizes, and any extras.

    Args:
        lr: ``(low, high)`` with ``0 < low < high``; the learning rate is always clipped into it.
        batch_size: strictly increasing positive integers; the batch size moves one rung at a time.
        scale_rule: how the learning rate follows a batch-size change before any correction:
            ``"sqrt"`` (Adam-like optimizers), ``"linear"`` (SGD) or ``"none"``.
        extra: ``name -> (low, high)`` or ``(low, high, scale)`` with scale ``"linear"`` (the
            default) or ``"log"``, or an :class:`ExtraRange`; names are identifiers other than
            ``lr`` and ``batch_size``. Population methods and search explore them.
    """

    lr: tuple[float, float] = (1e-4, 1.0)
    batch_size: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    scale_rule: str = "sqrt"
    extra: Mapping[str, ExtraRange] = EMPTY

    def __post_init__(self) -> None:
        lr = _as_tuple(self.lr, "lr")
        if len(lr) != 2 or not all(_is_real(v) for v in lr):
            raise ValueError(f"lr: expected a pair (low, high) of numbers, got {self.lr!r}")
        low, high = float(lr[0]), float(lr[1])
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise ValueError(f"lr: expected finite bounds with 0 < low < high, got {self.lr!r}")
        if high > MAX_LR:
            raise ValueError(f"lr: expected bounds with high <= {MAX_LR:g}, got {self.lr!r}")
        ladder = _as_tuple(self.batch_size, "batch_size")
        if not ladder or not all(_is_int(v) and v >= 1 for v in ladder):
            raise ValueError(
                f"batch_size: expected a non-empty ladder of positive integers, got {_cut(self.batch_size)}"
            )
        if any(b <= a for a, b in zip(ladder, ladder[1:])):
            raise ValueError(
                "batch_size: expected a strictly increasing ladder without duplicates, "
                f"got {_cut(self.batch_size)}"
            )
        if self.scale_rule not in SCALE_RULES:
            raise ValueError(f"scale_rule: expected one of {', '.join(SCALE_RULES)}, got {self.scale_rule!r}")
        object.__setattr__(self, "lr", (low, high))
        object.__setattr__(self, "batch_size", tuple(int(v) for v in ladder))
        object.__setattr__(self, "extra", _ranges(self.extra))

    # -- queries ---------------------------------------------------------------------------
    def contains(self, hp: Hyperparams) -> bool:
        try:
            self.check(hp)
        except ValueError:
            return False
        return True

    def check(self, hp: Hyperparams, field: str = "hyperparams") -> Hyperparams:
        """Return ``hp`` if it lies in the space, else raise ``ValueError`` naming ``field``."""
        if not self.lr[0] <= hp.lr <= self.lr[1]:
            raise ValueError(f"{field}.lr: {hp.lr!r} is outside the bounds [{self.lr[0]}, {self.lr[1]}]")
        if hp.batch_size not in self.batch_size:
            raise ValueError(
                f"{field}.batch_size: {hp.batch_size!r} is not on the ladder {list(self.batch_size)}"
            )
        names = ", ".join(self.extra) or "none"
        for name in hp.extra:
            if name not in self.extra:
                raise ValueError(f"{field}.extra.{name}: not one of the space's extras ({names})")
        for name, r in self.extra.items():
            if name not in hp.extra:
                raise ValueError(f"{field}.extra.{name}: missing; the space's extras are {names}")
            if not r.low <= hp.extra[name] <= r.high:
                raise ValueError(
                    f"{field}.extra.{name}: {hp.extra[name]!r} is outside the bounds [{r.low}, {r.high}]"
                )
        return hp

    def rung(self, batch_size: int) -> int:
        """Index of ``batch_size`` on the ladder (the nearest rung, in log space, if off it)."""
        ladder = np.log(np.asarray(self.batch_size, dtype=float))
        return int(np.argmin(np.abs(ladder - math.log(batch_size))))

    def default(self) -> Hyperparams:
        """Geometric middle of the LR bounds, the middle rung of the ladder, extras mid-range."""
        return Hyperparams(
            math.sqrt(self.lr[0] * self.lr[1]),
            self.batch_size[len(self.batch_size) // 2],
            {name: r.from_unit(0.5) for name, r in self.extra.items()},
        )

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
        learning rate to its bounds. Extras are carried over unchanged.
        """
        old = self.batch_size[self.rung(hp.batch_size)]
        index = min(max(self.rung(hp.batch_size) + int(batch_step), 0), len(self.batch_size) - 1)
        new = self.batch_size[index]
        lr = self.scale_lr(hp.lr, old, new) * lr_factor
        return replace(hp, lr=self.clip_lr(lr), batch_size=new)

    def sample(self, rng: np.random.Generator) -> Hyperparams:
        """Log-uniform learning rate within bounds, batch size uniform over the ladder, then each
        extra (in name order) log-uniform or uniform by its scale."""
        log_lr = rng.uniform(math.log(self.lr[0]), math.log(self.lr[1]))
        lr, batch_size = (
            self.clip_lr(math.exp(log_lr)),
            self.batch_size[int(rng.integers(len(self.batch_size)))],
        )
        return Hyperparams(lr, batch_size, {name: r.sample(rng) for name, r in self.extra.items()})

    def to_dict(self) -> dict:
        """Plain lists and strings; ``"extra": {name: [low, high, scale]}`` only when there are extras."""
        data: dict[str, Any] = {
            "lr": list(self.lr),
            "batch_size": list(self.batch_size),
            "scale_rule": self.scale_rule,
        }
        if self.extra:
            data["extra"] = {name: r.to_list() for name, r in self.extra.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> HyperparamSpace:
        """The space from :meth:`to_dict`'s form; missing keys take the defaults."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _ranges(extra: Any) -> FrozenDict:
    """``extra`` as name -> :class:`ExtraRange`; one ``ValueError`` naming ``extra.<name>`` otherwise."""
    if not isinstance(extra, Mapping):
        raise ValueError(
            f"extra: expected a table of name = [low, high] or [low, high, scale], got {extra!r}"
        )
    ranges = {}
    for name, value in extra.items():
        _check_name(name)
        if isinstance(value, ExtraRange):
            ranges[name] = value
            continue
        if (
            isinstance(value, (str, bytes))
            or not isinstance(value, (Sequence, np.ndarray))
            or len(value) not in (2, 3)
        ):
            raise ValueError(
                f"extra.{name}: expected [low, high] or [low, high, scale] with scale "
                f"{' or '.join(EXTRA_SCALES)}, got {value!r}"
            )
        try:
            ranges[name] = ExtraRange(*value)
        except ValueError as error:
            raise ValueError(f"extra.{name}: {error}") from None
    return FrozenDict(ranges)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name) or name in ("lr", "batch_size"):
        raise ValueError(
            "extra: expected names of letters, digits and _ (not starting with a digit), other than "
            f"lr and batch_size, got {name!r}"
        )


def _cut(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _as_tuple(value: object, field: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{field}: expected a sequence, got {value!r}")
    return tuple(value)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
