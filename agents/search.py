"""Static search: each member is one trial with fixed base hyperparameters and a hand schedule.

``Fixed`` runs every member at one starting point; ``GridSearch`` takes the product of LR,
batch-size and any extras' lists; ``RandomSearch`` samples log-uniform LRs, batch sizes from the
ladder and each extra on its scale. Only the LR follows the schedule; extras stay fixed per member.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from rlsched.agents.schedules import KINDS, Schedule
from rlsched.core.agent import Decision, PopulationView
from rlsched.core.checks import MAX_POPULATION
from rlsched.core.space import Hyperparams, HyperparamSpace


class ScheduledSearch:
    """Base: member ``i`` trains at ``base[i]`` with its LR multiplied by the schedule."""

    def __init__(self, schedule: Schedule | str = "constant") -> None:
        if not isinstance(schedule, (Schedule, str)):
            raise ValueError(
                f"schedule: expected one of {', '.join(KINDS)} or a table with kind, warmup and final, "
                f"got {schedule!r}"
            )
        self.schedule = Schedule(schedule) if isinstance(schedule, str) else schedule
        self.base: list[Hyperparams] = []

    def bases(
        self, population: int, space: HyperparamSpace, initial: Hyperparams, rng: np.random.Generator
    ) -> list[Hyperparams]:
        raise NotImplementedError

    def _at(self, space: HyperparamSpace, base: Hyperparams, decision: int, decisions: int) -> Hyperparams:
        lr = space.clip_lr(self.schedule.lr(base.lr, decision=decision, decisions=decisions))
        return replace(base, lr=lr)

    def initial(
        self,
        population: int,
        space: HyperparamSpace,
        initial: Hyperparams,
        decisions: int,
        rng: np.random.Generator,
    ) -> list[Hyperparams]:
        self.base = [space.check(b, "search point") for b in self.bases(population, space, initial, rng)]
        return [self._at(space, b, 0, decisions) for b in self.base]

    def decide(self, view: PopulationView, rng: np.random.Generator) -> list[Decision]:
        return [Decision(self._at(view.space, b, view.decision, view.decisions)) for b in self.base]

    def state_dict(self) -> dict[str, Any]:
        return {"base": [b.to_dict() for b in self.base]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base = [Hyperparams.from_dict(b) for b in state["base"]]


class Fixed(ScheduledSearch):
    """A hand schedule: every member starts at the run's initial hyperparameters and follows ``schedule``.

    >>> agent = Fixed(Schedule("cosine", warmup=0.1))
    """

    def bases(self, population, space, initial, rng):
        return [initial] * population

    def config(self) -> dict[str, Any]:
        return {"type": "Fixed", "schedule": self.schedule.config()}


class GridSearch(ScheduledSearch):
    """The product of ``lr``, ``batch_size`` and each ``extra`` list, one member per point
    (population must match). An extra of the space not in the grid stays at the run's initial value.

    >>> grid = GridSearch([0.01, 0.1], [64], extra={"weight_decay": [0.0, 1e-4]})
    >>> len(grid.points)
    4
    """

    def __init__(
        self,
        lr: Sequence[float],
        batch_size: Sequence[int],
        schedule: Schedule | str = "constant",
        extra: Mapping[str, Sequence[float]] | None = None,
    ):
        super().__init__(schedule)
        extra = {} if extra is None else extra
        if not isinstance(extra, Mapping):
            raise ValueError(f"extra: expected a table of name = [values], got {extra!r}")
        _values(lr, "lr", lambda v: _is_number(v) and math.isfinite(v) and v > 0, "positive numbers")
        _values(batch_size, "batch_size", lambda v: _is_int(v) and v >= 1, "positive integers")
        for name, values in extra.items():
            _values(values, f"extra.{name}", lambda v: _is_number(v) and math.isfinite(v), "numbers")
        size = math.prod(len(v) for v in (lr, batch_size, *extra.values()))
        if size > MAX_POPULATION:
            raise ValueError(
                f"lr: the grid of lr x batch_size (x extra) has {size} points, more than the largest "
                f"population ({MAX_POPULATION})"
            )
        self.lr_values, self.batch_values = [float(v) for v in lr], [int(v) for v in batch_size]
        self.extra_values = {str(k): [float(v) for v in values] for k, values in extra.items()}
        names = list(self.extra_values)
        self.points = [
            Hyperparams(a, b, dict(zip(names, rest)))
            for a, b, *rest in itertools.product(
                self.lr_values, self.batch_values, *self.extra_values.values()
            )
        ]

    def bases(self, population, space, initial, rng):
        if population != len(self.points):
            raise ValueError(
                f"population: the grid has {len(self.points)} points, got population {population}"
            )
        self.check_space(space)
        return [replace(p, extra={**initial.extra, **p.extra}) for p in self.points]

    def check_space(self, space: HyperparamSpace) -> None:
        """Every grid value inside ``space``; else one ``ValueError`` naming the grid's field."""
        low, high = space.lr
        for v in self.lr_values:
            if not low <= v <= high:
                raise ValueError(f"lr: {v!r} is outside the space's lr bounds [{low:g}, {high:g}]")
        for b in self.batch_values:
            if b not in space.batch_size:
                raise ValueError(f"batch_size: {b!r} is not on the space's ladder {list(space.batch_size)}")
        names = ", ".join(space.extra) or "none"
        for name, values in self.extra_values.items():
            if name not in space.extra:
                raise ValueError(f"extra.{name}: not one of the space's extras ({names})")
            r = space.extra[name]
            for v in values:
                if not r.low <= v <= r.high:
                    raise ValueError(
                        f"extra.{name}: {v!r} is outside the space's bounds [{r.low:g}, {r.high:g}]"
                    )

    def config(self) -> dict[str, Any]:
        return {
            "type": "GridSearch",
            "lr": self.lr_values,
            "batch_size": self.batch_values,
            **({"extra": self.extra_values} if self.extra_values else {}),
            "schedule": self.schedule.config(),
        }


class RandomSearch(ScheduledSearch):
    """Each member samples its base point: log-uniform LR within bounds, batch size from the ladder,
    each extra on its scale."""

    def bases(self, population, space, initial, rng):
        return [space.sample(rng) for _ in range(population)]

    def config(self) -> dict[str, Any]:
        return {"type": "RandomSearch", "schedule": self.schedule.config()}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _values(values: Any, name: str, ok: Any, what: str) -> None:
    """A grid axis: a non-empty list whose every value passes ``ok``; else one ``ValueError``."""
    listed = isinstance(values, Sequence) and not isinstance(values, (str, bytes))
    if not listed or not values or not all(ok(v) for v in values):
        text = repr(values)
        text = text if len(text) <= 80 else text[:77] + "..."
        raise ValueError(f"{name}: expected a non-empty list of {what}, got {text}")
