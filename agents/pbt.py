"""Population-based training (Jaderberg et al. 2017), synchronous rounds, and PB2's explore.

A round, at every ``perturbation_interval``-th decision once ``burn_in`` decisions have passed::

    rank members by score (-val loss; a diverged member scores -inf)
    bottom = the worst ceil(quantile_fraction * N) members, plus every diverged member
    top    = the best ceil(quantile_fraction * N) finite members
    for each member in bottom: donor = a random member of top
        copy the donor (weights, optimizer state, data order, RNG, history), then explore:
        each hyperparameter is resampled with probability resample_probability, else perturbed
        (LR x one of perturbation_factors; batch size one rung up or down its ladder; an extra
        by the factor on the log scale, by (factor - 1) of its range on the linear one), each on
        its own as in Ray Tune; with scale_lr=True a batch-size move first rescales the LR by
        the space's scale rule

A diverged member is replaced at the very next decision, whatever the interval.
Pure parts (`exploit`, `explore`) take an explicit generator and are tested exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlsched.core.agent import Decision, Explorer, MemberView, PopulationView, Probing
from rlsched.core.checks import integer, real
from rlsched.core.space import ExtraRange, Hyperparams, HyperparamSpace


def exploit(scores: Sequence[float], quantile_fraction: float, rng: np.random.Generator) -> dict[int, int]:
    """``{recipient: donor}``: the bottom quantile (and every ``-inf`` score) copies a random top member."""
    n = len(scores)
    k = min(math.ceil(n * quantile_fraction), n // 2)
    order = sorted(range(n), key=lambda i: (scores[i], i))  # worst first
    finite = [i for i in order if math.isfinite(scores[i])]
    bottom = sorted(set(order[:k]) | {i for i in order if not math.isfinite(scores[i])})
    top = [i for i in finite[::-1][: max(k, 1)] if i not in bottom]
    if not top:
        return {}
    return {i: int(top[rng.integers(len(top))]) for i in bottom}


def explore(
    hp: Hyperparams,
    space: HyperparamSpace,
    rng: np.random.Generator,
    *,
    resample_probability: float = 0.25,
    perturbation_factors: tuple[float, float] = (0.8, 1.25),
    scale_lr: bool = False,
) -> tuple[Hyperparams, list[str]]:
    """New hyperparameters near ``hp`` and a readable list of what changed. Always inside ``space``.

    The batch size moves first (one rung, or resampled from the ladder); with ``scale_lr`` the LR
    follows it by the space's scale rule. Then the LR is perturbed by a factor or resampled
    log-uniformly, then each extra in name order (see :meth:`ExtraRange.perturb`).
    """
    changes: list[str] = []
    batch_size = _explore_batch_size(hp, space, rng, resample_probability, scale_lr, changes)
    lr = space.clip_lr(space.scale_lr(hp.lr, hp.batch_size, batch_size)) if scale_lr else hp.lr
    if rng.random() < resample_probability:
        new_lr = space.sample(rng).lr
        changes.append(f"lr {lr:.4g} -> {new_lr:.4g} (resampled)")
    else:
        f = float(rng.choice(perturbation_factors))
        new_lr = space.clip_lr(lr * f)
        changes.append(f"lr {lr:.4g} -> {new_lr:.4g} (x{f:g}{', clipped' if new_lr != lr * f else ''})")
    extra = {
        name: _explore_extra(
            name, r, hp.extra[name], rng, resample_probability, perturbation_factors, changes
        )
        for name, r in space.extra.items()
    }
    return Hyperparams(new_lr, batch_size, extra), changes


def _explore_batch_size(
    hp: Hyperparams,
    space: HyperparamSpace,
    rng: np.random.Generator,
    resample_probability: float,
    scale_lr: bool,
    changes: list[str],
) -> int:
    """One rung up or down the ladder, or resampled from it."""
    if rng.random() < resample_probability:
        batch_size = space.batch_size[int(rng.integers(len(space.batch_size)))]
        how = "resampled"
    else:
        step = int(rng.choice([-1, 1]))
        index = min(max(space.rung(hp.batch_size) + step, 0), len(space.batch_size) - 1)
        batch_size = space.batch_size[index]
        how = (
            f"one rung {'up' if step > 0 else 'down'}"
            if batch_size != hp.batch_size
            else "kept at the ladder's end"
        )
    if batch_size != hp.batch_size:
        rescaled = f"; lr rescaled by {space.scale_rule} rule" if scale_lr else ""
        changes.append(f"batch_size {hp.batch_size} -> {batch_size} ({how}{rescaled})")
    return batch_size


def _explore_extra(
    name: str,
    r: ExtraRange,
    value: float,
    rng: np.random.Generator,
    resample_probability: float,
    perturbation_factors: Sequence[float],
    changes: list[str],
) -> float:
    """An extra resampled on its scale, or perturbed by a factor (log) or a step (linear)."""
    if rng.random() < resample_probability:
        new = r.sample(rng)
        changes.append(f"{name} {value:.4g} -> {new:.4g} (resampled)")
        return new
    f = float(rng.choice(perturbation_factors))
    new = r.perturb(value, f)
    how = f"x{f:g}" if r.scale == "log" else f"{(f - 1) * (r.high - r.low):+.3g}"
    clipped = ", clipped" if new in (r.low, r.high) else ""
    changes.append(f"{name} {value:.4g} -> {new:.4g} ({how}{clipped})")
    return new


class Perturb:
    """PBT's own explorer: :func:`explore`'s random walk (Ray Tune's mutations), no state."""

    def __init__(
        self,
        resample_probability: float = 0.25,
        perturbation_factors: tuple[float, float] = (0.8, 1.25),
        scale_lr: bool = False,
    ) -> None:
        self.resample_probability = resample_probability
        self.perturbation_factors = perturbation_factors
        self.scale_lr = scale_lr

    def observe(self, view: PopulationView) -> None:
        pass

    def explore(
        self, hp: Hyperparams, view: PopulationView, rng: np.random.Generator, donor: MemberView
    ) -> tuple[Hyperparams, list[str]]:
        return explore(
            hp,
            view.space,
            rng,
            resample_probability=self.resample_probability,
            perturbation_factors=self.perturbation_factors,
            scale_lr=self.scale_lr,
        )

    def adjust(self, member: MemberView, view: PopulationView, rng: np.random.Generator) -> Hyperparams:
        return member.hparams

    def config(self) -> str:
        return "perturb"

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


class PBT:
    """Population-based training with Ray Tune's knobs and its known failures fixed.

    Args:
        quantile_fraction: fraction of the population copied from / copied over each round.
        perturbation_interval: decisions between rounds.
        burn_in: decisions before the first round.
        resample_probability: chance each hyperparameter is resampled instead of perturbed.
        perturbation_factors: LR multipliers to choose from when perturbing.
        explore: ``"perturb"`` (:class:`Perturb` with the three arguments above) or any
            :class:`~rlsched.core.agent.Explorer` (PB2's GP-UCB, or a learned controller).
        init: ``"sample"`` draws each member's start from the space; ``"fixed"`` starts all at ``initial``.
        scale_lr: when explore moves the batch size, rescale the LR by the space's scale rule first.
            Off by default: PBT's random walk moves each hyperparameter on its own, as Ray Tune's
            does. Coupled moves are bigger LR steps, and on mnist1d-mlp they measured no better
            (mean best val loss 0.335 against 0.327 over 6 seeds; ``experiments/pbt_scale_rule.py``).
    """

    def __init__(
        self,
        quantile_fraction: float = 0.25,
        perturbation_interval: int = 1,
        burn_in: int = 0,
        resample_probability: float = 0.25,
        perturbation_factors: tuple[float, float] = (0.8, 1.25),
        explore: str | Explorer = "perturb",
        init: str = "sample",
        scale_lr: bool = False,
    ) -> None:
        real(quantile_fraction, "quantile_fraction", 0, 0.5, open_low=True)
        integer(perturbation_interval, "perturbation_interval", 1)
        integer(burn_in, "burn_in", 0)
        real(resample_probability, "resample_probability", 0, 1)
        factors = perturbation_factors
        if (
            isinstance(factors, (str, bytes))
            or not isinstance(factors, Sequence)
            or len(factors) != 2
            or not all(_positive(f) for f in factors)
        ):
            raise ValueError(f"perturbation_factors: expected two positive finite factors, got {factors!r}")
        if explore != "perturb" and not isinstance(explore, Explorer):
            raise ValueError(
                f"explore: expected 'perturb' or an Explorer (observe, explore, adjust, config, "
                f"state_dict, load_state_dict), got {explore!r}"
            )
        if init not in ("sample", "fixed"):
            raise ValueError(f"init: expected 'sample' or 'fixed', got {init!r}")
        if not isinstance(scale_lr, bool):
            raise ValueError(f"scale_lr: expected true or false, got {scale_lr!r}")
        self.quantile_fraction = float(quantile_fraction)
        self.perturbation_interval = perturbation_interval
        self.burn_in = burn_in
        self.resample_probability = float(resample_probability)
        self.perturbation_factors = tuple(float(f) for f in perturbation_factors)
        self.init = init
        self.scale_lr = scale_lr
        self.explorer: Explorer = (
            Perturb(self.resample_probability, self.perturbation_factors, scale_lr)  # type: ignore[arg-type]
            if explore == "perturb"
            else explore  # type: ignore[assignment]
        )

    def __getattr__(self, name: str) -> Any:
        explorer = self.__dict__.get("explorer")
        if name == "probe_fraction" and isinstance(explorer, Probing):
            return explorer.probe_fraction  # the hybrid probes when its controller needs it
        raise AttributeError(name)

    def initial(
        self,
        population: int,
        space: HyperparamSpace,
        initial: Hyperparams,
        decisions: int,
        rng: np.random.Generator,
    ) -> list[Hyperparams]:
        if self.init == "fixed" or population == 1:
            return [initial] * population
        return [initial] + [space.sample(rng) for _ in range(population - 1)]

    def is_round(self, decision: int) -> bool:
        return (
            decision >= max(self.burn_in, 1) and (decision - self.burn_in) % self.perturbation_interval == 0
        )

    def decide(self, view: PopulationView, rng: np.random.Generator) -> list[Decision]:
        scores = [m.score for m in view.members]
        pairs = exploit(scores, self.quantile_fraction, rng)
        if not self.is_round(view.decision):  # between rounds only diverged members are replaced
            pairs = {i: j for i, j in pairs.items() if not math.isfinite(scores[i])}
        self.explorer.observe(view)
        decisions = []
        for i, member in enumerate(view.members):
            if i not in pairs:
                decisions.append(Decision(self.explorer.adjust(member, view, rng)))
                continue
            donor = view.members[pairs[i]]
            hp, changes = self.explorer.explore(donor.hparams, view, rng, donor)
            why = (
                "diverged"
                if not math.isfinite(scores[i])
                else f"val loss {-scores[i]:.4g} in the bottom quantile"
            )
            decisions.append(
                Decision(
                    hp,
                    clone_from=pairs[i],
                    reason=(
                        f"{why}; copied member {pairs[i]} (val loss {-donor.score:.4g}); "
                        + "; ".join(changes)
                    ),
                )
            )
        return decisions

    def config(self) -> dict[str, Any]:
        explorer = self.explorer.config()
        return {
            "type": type(self).__name__,
            **({"explore": explorer} if explorer else {}),
            "quantile_fraction": self.quantile_fraction,
            "perturbation_interval": self.perturbation_interval,
            "burn_in": self.burn_in,
            "resample_probability": self.resample_probability,
            "perturbation_factors": list(self.perturbation_factors),
            "init": self.init,
            "scale_lr": self.scale_lr,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"explorer": self.explorer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.explorer.load_state_dict(state["explorer"])
