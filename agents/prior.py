"""Probe + cosine: a one-run method that finds the LR scale itself, and the controller's prior.

Before the first interval the runner spends ``probe_fraction`` of the budget on an LR range probe
(:mod:`rlsched.core.probe`), then the member follows warmup + cosine from the probed peak LR. The
batch size stays where it started, or, with ``batch="noise"``, moves one rung when the measured
gradient-noise scale ``B_simple`` is far from it (as Pollux and AdaScale use it): up when
``B_simple > 4 x batch`` (larger steps cost almost no examples there), down when
``B_simple < batch / 4``. A batch-size move rescales the LR by the space's scale rule.

>>> from rlsched.core.space import HyperparamSpace, Hyperparams
>>> prior_lr(0.1, Hyperparams(0.1, 64), Hyperparams(0.1, 64), HyperparamSpace(), 5, 10)
0.05
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlsched.agents.schedules import Schedule, midpoint
from rlsched.core.agent import Decision, MemberView, PopulationView
from rlsched.core.space import Hyperparams, HyperparamSpace

BATCH_RULES = ("fixed", "noise")
NOISE_RATIO = 4.0  # move the batch size when B_simple is this far above or below it


def prior_lr(
    peak: float, base: Hyperparams, hp: Hyperparams, space: HyperparamSpace, decision: int, decisions: int
) -> float:
    """The prior's LR for ``decision``: the probed ``peak`` (for the starting batch size of ``base``),
    rescaled to ``hp``'s batch size by the scale rule, times warmup + cosine at the interval's middle.

    The warmup is one interval long: the first interval runs at half the peak.
    """
    schedule = Schedule("cosine", warmup=1 / decisions)
    scaled = space.scale_lr(peak, base.batch_size, hp.batch_size)
    return space.clip_lr(scaled * schedule.multiplier(midpoint(decision, decisions)))


def noise_step(member: MemberView, space: HyperparamSpace) -> int:
    """One rung up, down or none, from the last interval's gradient-noise scale (none if unknown)."""
    stats = member.history[-1].stats
    if stats is None or not (math.isfinite(stats.b_simple) and stats.b_simple > 0):
        return 0
    batch = member.hparams.batch_size
    rung = space.rung(batch)
    if stats.b_simple > NOISE_RATIO * batch and rung < len(space.batch_size) - 1:
        return 1
    if stats.b_simple < batch / NOISE_RATIO and rung > 0:
        return -1
    return 0


class ProbeCosine:
    """One run per member: LR range probe, then warmup + cosine from the probed peak LR.

    Args:
        probe_fraction: share of each member's budget spent on the probe (counted, then undone).
        batch: ``"fixed"`` keeps the starting batch size; ``"noise"`` moves it by ``B_simple``.
    """

    def __init__(self, probe_fraction: float = 0.05, batch: str = "fixed") -> None:
        if not 0 < probe_fraction < 0.5:
            raise ValueError(f"probe_fraction: expected a fraction in (0, 0.5), got {probe_fraction!r}")
        if batch not in BATCH_RULES:
            raise ValueError(f"batch: expected one of {', '.join(BATCH_RULES)}, got {batch!r}")
        self.probe_fraction = float(probe_fraction)
        self.batch = batch
        self.base: list[Hyperparams] = []

    def initial(
        self,
        population: int,
        space: HyperparamSpace,
        initial: Hyperparams,
        decisions: int,
        rng: np.random.Generator,
    ) -> list[Hyperparams]:
        self.base = [initial] * population
        return list(self.base)

    def prior(self, member: MemberView, view: PopulationView) -> Hyperparams:
        """The member's next hyperparameters under the prior alone."""
        if member.probe is None:
            raise ValueError("ProbeCosine: no LR range probe; run it through rlsched.run, which probes first")
        space = view.space
        step = noise_step(member, space) if self.batch == "noise" and view.decision > 0 else 0
        batch = space.batch_size[
            min(max(space.rung(member.hparams.batch_size) + step, 0), len(space.batch_size) - 1)
        ]
        hp = Hyperparams(member.hparams.lr, batch)
        base = self.base[member.member_id]
        return Hyperparams(
            prior_lr(member.probe.peak_lr, base, hp, space, view.decision, view.decisions), batch
        )

    def decide(self, view: PopulationView, rng: np.random.Generator) -> list[Decision]:
        decisions = []
        for m in view.members:
            hp = self.prior(m, view)
            why = (
                f"probe + cosine from peak lr {m.probe.peak_lr:.4g}" if view.decision == 0 and m.probe else ""
            )
            decisions.append(Decision(hp, reason=why))
        return decisions

    def config(self) -> dict[str, Any]:
        return {"type": "ProbeCosine", "probe_fraction": self.probe_fraction, "batch": self.batch}

    def state_dict(self) -> dict[str, Any]:
        return {"base": [b.to_dict() for b in self.base]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base = [Hyperparams(**b) for b in state["base"]]
