"""Probe + cosine: a one-run method that finds the LR scale itself; the controller's prior.

Before the first interval the runner spends ``probe_fraction`` of the budget on an LR range probe
(:mod:`rlsched.core.probe`), then the member follows warmup + cosine from the probed peak LR
(:func:`rlsched.core.prior.prior_lr`). The batch size stays where it started, or, with
``batch="noise"``, moves one rung when the gradient-noise scale ``B_simple`` is far from it
(:func:`rlsched.core.prior.noise_step`); a batch-size move rescales the LR by the scale rule.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from rlsched.core.agent import Decision, MemberView, PopulationView
from rlsched.core.prior import noise_step, prior_lr
from rlsched.core.space import Hyperparams, HyperparamSpace

BATCH_RULES = ("fixed", "noise")


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
        space, last = view.space, member.history[-1]
        step = noise_step(last.stats, member.hparams.batch_size, space) if self.batch == "noise" else 0
        batch = space.move(member.hparams, batch_step=step).batch_size  # one rung, within the ladder
        base = self.base[member.member_id]
        lr = prior_lr(member.probe.peak_lr, base, batch, space, view.decision, view.decisions)
        return replace(member.hparams, lr=lr, batch_size=batch)  # any extra hyperparameters carry over

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
        self.base = [Hyperparams.from_dict(b) for b in state["base"]]
