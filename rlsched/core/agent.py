"""The one interface every agent answers through: a view of the population in, decisions out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rlsched.core.member import Record
from rlsched.core.probe import ProbeResult
from rlsched.core.space import Hyperparams, HyperparamSpace


@dataclass(frozen=True)
class Decision:
    """What a member does next: optionally copy member ``clone_from`` first, then train at ``hparams``.

    ``reason`` is a short readable account of what changed and why (lineage and TensorBoard show it).
    """

    hparams: Hyperparams
    clone_from: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class MemberView:
    """One member as an agent sees it. ``score`` is higher-is-better: ``-val_loss``, ``-inf`` if diverged."""

    member_id: int
    hparams: Hyperparams
    history: Sequence[Record]
    observation: np.ndarray
    score: float
    probe: ProbeResult | None = None  # the member's LR range probe, for agents that ask for one


@dataclass(frozen=True)
class PopulationView:
    """The population before interval ``decision`` (0-based) of ``decisions`` runs."""

    decision: int
    decisions: int
    space: HyperparamSpace
    members: tuple[MemberView, ...]

    @property
    def progress(self) -> float:
        return self.decision / self.decisions


@runtime_checkable
class Agent(Protocol):
    """Decides every member's hyperparameters. All randomness comes from the ``rng`` passed in."""

    def initial(
        self,
        population: int,
        space: HyperparamSpace,
        initial: Hyperparams,
        decisions: int,
        rng: np.random.Generator,
    ) -> list[Hyperparams]:
        """Each member's hyperparameters for the first interval."""
        ...

    def decide(self, view: PopulationView, rng: np.random.Generator) -> list[Decision]:
        """One decision per member, in member order, before each interval after the first."""
        ...

    def config(self) -> dict[str, Any] | None:
        """The agent as a config table (``{"type": ..., **arguments}``) from which it can be built
        again to resume a run; ``None`` for an agent that cannot be rebuilt from text (then
        ``resume`` needs the same agent passed in)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class Probing(Protocol):
    """An agent that wants an LR range probe of every member's job before training.

    The runner spends ``probe_fraction`` of each member's budget on it (before the first
    interval, then undone; see :mod:`rlsched.core.probe`), shows the result in ``MemberView.probe``
    and asks the agent's ``decide`` at decision 0 too, so the first interval can use it.
    """

    probe_fraction: float


@runtime_checkable
class Explorer(Protocol):
    """How PBT picks a copied member's new hyperparameters, and moves the others between rounds.

    PBT calls ``observe`` once per decision, before anything else; ``explore`` for each member
    that copies a donor; ``adjust`` for each member that does not (return ``member.hparams`` to
    leave it alone). ``explore`` returns the new hyperparameters and readable changes.
    """

    def observe(self, view: PopulationView) -> None: ...

    def explore(
        self, hp: Hyperparams, view: PopulationView, rng: np.random.Generator, donor: MemberView
    ) -> tuple[Hyperparams, list[str]]: ...

    def adjust(self, member: MemberView, view: PopulationView, rng: np.random.Generator) -> Hyperparams: ...

    def config(self) -> str | dict[str, Any] | None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def score(record: Record) -> float:
    """Higher-is-better score of a member's latest record: ``-val_loss``, ``-inf`` when diverged."""
    return -math.inf if record.diverged else -record.val_loss


def ranks(scores: Sequence[float]) -> list[float]:
    """Population rank in [0, 1] per member: 1 for the best score, 0 for the worst, 0.5 when alone.

    Ties share the mean of their ranks; order is by score, then by member index.
    """
    n = len(scores)
    if n == 1:
        return [0.5]
    order = sorted(range(n), key=lambda i: (scores[i], -i))
    position = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            position[order[k]] = (i + j) / 2 / (n - 1)
        i = j + 1
    return position
