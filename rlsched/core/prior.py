"""The prior schedule a version-2 controller acts on, and its action encoding (pure functions).

The prior: an LR range probe's peak LR (:mod:`rlsched.core.probe`), warmup for one interval, then
cosine to zero, at the job's batch size; the peak follows batch-size moves by the space's scale
rule. :func:`noise_step` is the gradient-noise rule (as Pollux and AdaScale read ``B_simple``: up
one rung when ``B_simple > 4 x batch``, down when ``B_simple < batch / 4``); it is an option of
``ProbeCosine(batch="noise")``, not part of the prior: on the benchmark's held-out jobs it cost 38 %
val loss on one and made an SGD job diverge (the LR follows the batch up by the scale rule).

A version-2 action ``[lr_index, batch_index]`` (``MultiDiscrete([5, 3])``) acts *relative to the
prior*: the LR multiplier over the prior (1 at the start) is multiplied by
``PRIOR_LR_FACTORS[lr_index]``; the batch size goes one rung down, stays, or goes one rung up.
The neutral action ``[2, 1]`` reproduces the prior exactly.

>>> from rlsched.core.space import HyperparamSpace, Hyperparams
>>> prior_lr(0.1, Hyperparams(0.1, 64), 64, HyperparamSpace(), 0, 10)
0.05
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from rlsched.core.job import TrainStats
from rlsched.core.space import Hyperparams, HyperparamSpace

PRIOR_LR_FACTORS = (0.5, 0.7, 1.0, 1.4, 2.0)
PRIOR_BATCH_MOVES = ("down", "keep", "up")
NEUTRAL = (2, 1)
NOISE_RATIO = 4.0
MULTIPLIER_BOUNDS = (1 / 32, 32.0)


def warmup_cosine(p: float, warmup: float = 0.0, final: float = 0.0) -> float:
    """Linear warmup over ``warmup`` of training, then cosine from 1 down to ``final``."""
    if p < warmup:
        return p / warmup
    t = (p - warmup) / (1 - warmup) if warmup < 1 else 1.0
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))


def prior_lr(
    peak: float, base: Hyperparams, batch_size: int, space: HyperparamSpace, decision: int, decisions: int
) -> float:
    """The prior's LR for interval ``decision``: the probed ``peak`` (measured at ``base``'s batch
    size), rescaled to ``batch_size`` by the scale rule, times warmup + cosine at the interval's
    middle (the warmup is one interval: the first interval runs at half the peak)."""
    scaled = space.scale_lr(peak, base.batch_size, batch_size)
    return space.clip_lr(scaled * warmup_cosine((decision + 0.5) / decisions, warmup=1 / decisions))


def noise_step(stats: TrainStats | None, batch_size: int, space: HyperparamSpace) -> int:
    """One rung up (+1), down (-1) or none (0), from an interval's gradient-noise scale."""
    if stats is None or not (math.isfinite(stats.b_simple) and stats.b_simple > 0):
        return 0
    rung = space.rung(batch_size)
    if stats.b_simple > NOISE_RATIO * batch_size and rung < len(space.batch_size) - 1:
        return 1
    if stats.b_simple < batch_size / NOISE_RATIO and rung > 0:
        return -1
    return 0


def multiplier(
    lr: float,
    peak: float,
    base: Hyperparams,
    batch_size: int,
    space: HyperparamSpace,
    decision: int,
    decisions: int,
) -> float:
    """The LR multiplier over the prior that ``lr`` had in interval ``decision``."""
    return lr / prior_lr(peak, base, batch_size, space, decision, decisions)


def act_on_prior(
    action: Any,
    *,
    hp: Hyperparams,
    peak: float,
    base: Hyperparams,
    stats: TrainStats | None,
    space: HyperparamSpace,
    decision: int,
    decisions: int,
) -> Hyperparams:
    """The hyperparameters for interval ``decision`` after a version-2 action, given the ones
    ``hp`` of the interval before (``decision - 1``; at decision 0 the starting point) and that
    interval's ``stats``. The multiplier over the prior carries over from ``hp``."""
    lr_index, batch_index = (int(a) for a in np.asarray(action).reshape(-1))
    if decision == 0:
        m = 1.0
    else:
        m = multiplier(hp.lr, peak, base, hp.batch_size, space, decision - 1, decisions)
    low, high = MULTIPLIER_BOUNDS
    m = min(max(m * PRIOR_LR_FACTORS[lr_index], low), high)
    batch = space.move(hp, batch_step=batch_index - 1).batch_size  # one rung, within the ladder
    lr = space.clip_lr(prior_lr(peak, base, batch, space, decision, decisions) * m)
    return replace(hp, lr=lr, batch_size=batch)  # any extra hyperparameters carry over
