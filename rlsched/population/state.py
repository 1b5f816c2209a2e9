"""The values a population run is made of: its settings, its live state, and its result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlsched.core.checks import MAX_DECISIONS, MAX_POPULATION, integer
from rlsched.core.job import interval_sizes
from rlsched.core.member import Member, Record
from rlsched.core.probe import ProbeResult
from rlsched.core.space import Hyperparams, HyperparamSpace
from rlsched.population.lineage import Event, Train


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run, as written to ``run.json``; validated on construction.

    ``task`` names the built-in task (``None`` for a user's job factory), ``agent`` is the agent's
    config table (``None`` when it cannot be rebuilt from text), ``launch`` the torchrun launch id.
    ``probe_samples`` of each member's ``budget_samples`` go to an LR range probe before the first
    interval; the intervals share the rest.
    """

    space: HyperparamSpace
    population: int
    budget_samples: int
    decisions: int
    initial: Hyperparams
    seed: int
    checkpoint_every: int = 1
    task: str | None = None
    agent: dict[str, Any] | None = None
    launch: str | None = None
    probe_samples: int = 0

    def __post_init__(self) -> None:
        integer(self.population, "population", 1, MAX_POPULATION)
        integer(self.decisions, "decisions", 1, MAX_DECISIONS)  # before a list of that length is made
        integer(self.seed, "seed", 0)
        integer(self.checkpoint_every, "checkpoint_every", 1)
        integer(self.probe_samples, "probe_samples", 0)
        for name in ("task", "launch"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name}: expected a string or null, got {getattr(self, name)!r}")
        if self.agent is not None and not isinstance(self.agent, dict):
            raise ValueError(f"agent: expected a table with a type, got {self.agent!r}")
        interval_sizes(self.budget_samples, self.decisions)
        if self.probe_samples and self.budget_samples - self.probe_samples < self.decisions:
            raise ValueError(
                f"probe_samples: {self.probe_samples} leaves fewer than one example per decision "
                f"of budget_samples {self.budget_samples}"
            )
        self.space.check(self.initial, "initial")

    @property
    def intervals(self) -> list[int]:
        """Examples in each decision interval; with the probe's they sum to ``budget_samples``."""
        return interval_sizes(self.budget_samples - self.probe_samples, self.decisions)


@dataclass
class RunState:
    """A run between two generations: all a resumed run needs, besides the members' job states.

    Every rank holds every member's history; a member this rank does not train has ``job=None``.
    """

    decision: int
    members: list[Member]
    seeds: list[int]
    origins: list[int]  # the member whose initial job each member's weights descend from
    rng: np.random.Generator
    lineage: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class SavedMember:
    hparams: Hyperparams
    history: list[Record]
    train_seconds: float
    probe: ProbeResult | None = None


@dataclass(frozen=True)
class SavedRun:
    """A generation checkpoint's ``run.pt``: the run's state without the members' jobs."""

    decision: int
    seeds: list[int]
    origins: list[int]
    rng: dict[str, Any]
    agent: dict[str, Any]
    lineage_events: int
    members: list[SavedMember]


@dataclass(frozen=True)
class MemberResult:
    """A member at the end of a run. ``trajectory`` lists ``(samples at start, hparams)`` per
    interval, across the member's ancestors (a copy inherits its donor's past); ``origin`` is the
    member whose initial job its weights descend from."""

    member_id: int
    metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    hparams: Hyperparams
    trajectory: list[tuple[int, Hyperparams]]
    diverged: bool
    train_seconds: float = 0.0
    origin: int = 0

    @property
    def val_loss(self) -> float:
        return self.metrics["loss"]

    @property
    def score(self) -> float:
        return -math.inf if self.diverged else -self.val_loss


@dataclass
class RunResult:
    """Every member's result and the best; ``lineage`` holds every event of the run."""

    best: MemberResult
    members: list[MemberResult]
    lineage: list[Event]
    total_samples: int
    wall_seconds: float
    train_seconds: float
    logdir: Path | None = None
    rank_train_seconds: list[float] = field(default_factory=list)  # per torchrun rank (one in process)
    seed_of_best_origin: int = 0  # the job seed of the best member's origin: ``replay`` starts there

    def failed_intervals(self, member_id: int) -> list[tuple[int, str]]:
        """``(decision, error)`` of each interval in which the member's own job raised.

        Such an interval counts as trained (its examples are spent) but has no record of training
        (its metrics are NaN), so a member may end well after one without being ``diverged``; this
        is how ``result.json`` and the command line report it honestly.
        """
        return [
            (e.decision, e.error)
            for e in self.lineage
            if isinstance(e, Train) and e.member == member_id and e.error is not None
        ]
