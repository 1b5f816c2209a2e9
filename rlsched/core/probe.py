"""The LR range probe: find a job's learning-rate scale in one short run, then undo it.

From a copy of the job's state, the probe trains ``points`` short stretches at learning rates
rising geometrically across the space's bounds, reads the training loss of each stretch, and
restores the job. The LR where the loss was lowest, before it rose or diverged, divided by
``divisor`` is the suggested peak LR. Its examples count against the budget: compute is never
free. (The idea is the LR range test of Smith, 2017; the rule here is ours.)

>>> curve = [2.0, 1.9, 1.5, 1.0, 0.8, 0.9, 3.0, float("nan")]
>>> suggest([1e-4 * 4**k for k in range(8)], curve, divisor=4.0) == 1e-4 * 4**4 / 4
True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlsched.core.job import TrainingJob
from rlsched.core.space import Hyperparams, HyperparamSpace

# The suggested peak is the LR of the lowest loss divided by this (see experiments/probe_calibration.py).
DIVISOR = 2.0
PROBE_FRACTION = 0.05  # the share of a budget a controller spends on the probe by default


@dataclass(frozen=True)
class ProbeResult:
    """What the probe measured: the LRs tried, the training loss at each, and its suggestion."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]  # NaN once the job diverged
    samples: int  # examples the probe trained (and then undid)
    peak_lr: float  # the suggested peak LR, inside the space

    def to_dict(self) -> dict:
        return {
            "lrs": list(self.lrs),
            "losses": list(self.losses),
            "samples": self.samples,
            "peak_lr": self.peak_lr,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ProbeResult:
        losses = tuple(math.nan if v is None else float(v) for v in d["losses"])
        return cls(tuple(float(v) for v in d["lrs"]), losses, int(d["samples"]), float(d["peak_lr"]))


def suggest(lrs: Sequence[float], losses: Sequence[float], divisor: float = DIVISOR) -> float:
    """The LR of the lowest (3-point smoothed) loss before the curve blows up, over ``divisor``.

    The curve is cut at the first point that is non-finite or more than 4x its lowest loss so far.
    """
    kept: list[float] = []
    for loss in losses:
        if not math.isfinite(loss) or (kept and loss > 4 * min(kept)):
            break
        kept.append(loss)
    if not kept:
        return lrs[0] / divisor
    smooth = [float(np.mean(kept[max(0, k - 1) : k + 2])) for k in range(len(kept))]
    return lrs[int(np.argmin(smooth))] / divisor


def lr_range_test(
    job: TrainingJob,
    batch_size: int,
    samples: int,
    space: HyperparamSpace,
    *,
    points: int = 12,
    divisor: float = DIVISOR,
) -> ProbeResult:
    """Probe ``job`` with ``samples`` examples at ``batch_size``, then restore it exactly.

    The ``points`` LRs span the space's LR bounds geometrically; each stretch gets an equal share
    of the examples (at least one). The job's state is saved before and loaded after, so the job
    continues as if the probe never ran; only the examples are spent.
    """
    low, high = space.lr
    lrs = tuple(float(v) for v in np.geomspace(low, high, points))
    share = [samples // points + (k < samples % points) for k in range(points)]
    saved = copy.deepcopy(job.state_dict())  # ours alone, even if the job hands out live tensors
    losses: list[float] = []
    try:
        for lr, n in zip(lrs, share):
            if losses and not math.isfinite(losses[-1]):
                losses.append(math.nan)  # diverged: the rest of the curve is unknown
                continue
            stats = job.train(Hyperparams(lr, batch_size), max(n, 1))
            losses.append(math.nan if stats.nonfinite else stats.loss_mean)
    finally:
        job.load_state_dict(saved)
    peak = space.clip_lr(suggest(lrs, losses, divisor))
    return ProbeResult(lrs, tuple(losses), sum(max(n, 1) for n in share), peak)
