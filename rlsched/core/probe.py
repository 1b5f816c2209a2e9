"""The LR range probe: find a job's learning-rate scale in one short run, then undo it.

From a copy of the job's state, the probe trains ``points`` short stretches at learning rates
rising geometrically across the space's bounds, reads the training loss of each stretch, and
restores the job. It runs at the largest rung of the ladder, up to the job's batch size, that
gives every stretch at least ``MIN_STEPS`` steps (more steps, more signal); its suggestion is
rescaled to the job's batch size by the space's scale rule. The LR where the loss was lowest,
before it rose or diverged, divided by ``DIVISOR`` is the suggested peak. When the loss hardly
moved (``MIN_DROP``), the probe has no signal and suggests the job's own LR: it does no harm.
Its examples count against the budget: compute is never free. (The idea is the LR range test of
Smith, 2017; the rule here is ours, see ``experiments/probe_calibration.py``.)

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
POINTS = 12  # LRs tried
MIN_STEPS = 4  # steps per LR the probe's batch size aims for
MIN_DROP = 0.05  # below this relative drop of the (smoothed) loss the probe has no signal


@dataclass(frozen=True)
class ProbeResult:
    """What the probe measured: the LRs tried, the training loss at each, and its suggestion.

    ``peak_lr`` is for the job's own batch size; ``batch_size`` is the one the probe ran at.
    ``informative`` is False when the loss hardly moved and ``peak_lr`` is the job's own LR.
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]  # NaN once the job diverged
    samples: int  # examples the probe trained (and then undid)
    peak_lr: float  # the suggested peak LR at the job's batch size, inside the space
    batch_size: int = 0
    informative: bool = True

    def to_dict(self) -> dict:
        return {
            "lrs": list(self.lrs),
            "losses": list(self.losses),
            "samples": self.samples,
            "peak_lr": self.peak_lr,
            "batch_size": self.batch_size,
            "informative": self.informative,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ProbeResult:
        losses = tuple(math.nan if v is None else float(v) for v in d["losses"])
        lrs = tuple(float(v) for v in d["lrs"])
        informative = bool(d.get("informative", True))
        return cls(
            lrs, losses, int(d["samples"]), float(d["peak_lr"]), int(d.get("batch_size", 0)), informative
        )


def _kept(losses: Sequence[float]) -> list[float]:
    """The curve up to the first point that is non-finite or over 4x its lowest loss so far."""
    kept: list[float] = []
    for loss in losses:
        if not math.isfinite(loss) or (kept and loss > 4 * min(kept)):
            break
        kept.append(loss)
    return kept


def _smooth(kept: list[float]) -> list[float]:
    return [float(np.mean(kept[max(0, k - 1) : k + 2])) for k in range(len(kept))]


def suggest(lrs: Sequence[float], losses: Sequence[float], divisor: float = DIVISOR) -> float:
    """The LR of the lowest (3-point smoothed) loss before the curve blows up, over ``divisor``."""
    kept = _kept(losses)
    if not kept:
        return lrs[0] / divisor
    return lrs[int(np.argmin(_smooth(kept)))] / divisor


def has_signal(losses: Sequence[float]) -> bool:
    """Whether the (smoothed) loss dropped by ``MIN_DROP`` of its first value before blowing up."""
    kept = _kept(losses)
    if len(kept) < 2:
        return len(kept) < len(losses)  # it blew up at once: that says the LR scale too
    smooth = _smooth(kept)
    return min(smooth) < (1 - MIN_DROP) * smooth[0]


def probe_batch_size(space: HyperparamSpace, batch_size: int, samples: int, points: int = POINTS) -> int:
    """The largest rung up to ``batch_size`` giving every LR ``MIN_STEPS`` steps, else the smallest."""
    fitting = [b for b in space.batch_size if b <= batch_size and samples // (points * b) >= MIN_STEPS]
    return max(fitting) if fitting else space.batch_size[0]


def result(
    lrs: Sequence[float], losses: Sequence[float], samples: int, hp: Hyperparams, probe_batch: int,
    space: HyperparamSpace, divisor: float = DIVISOR,
) -> ProbeResult:  # fmt: skip
    """The probe's result for a job starting at ``hp``, from its curve at ``probe_batch``."""
    informative = has_signal(losses)
    if informative:
        peak = space.clip_lr(space.scale_lr(suggest(lrs, losses, divisor), probe_batch, hp.batch_size))
    else:
        peak = hp.lr  # no signal: the job's own LR is the best guess
    return ProbeResult(tuple(lrs), tuple(losses), samples, peak, probe_batch, informative)


def lr_range_test(
    job: TrainingJob,
    hp: Hyperparams,
    samples: int,
    space: HyperparamSpace,
    *,
    points: int = POINTS,
    divisor: float = DIVISOR,
) -> ProbeResult:
    """Probe ``job`` (starting at ``hp``) with ``samples`` examples, then restore it exactly.

    The ``points`` LRs span the space's LR bounds geometrically; each stretch gets an equal share
    of the examples (at least one). The job's state is saved before and loaded after, so the job
    continues as if the probe never ran; only the examples are spent.
    """
    low, high = space.lr
    lrs = tuple(float(v) for v in np.geomspace(low, high, points))
    batch = probe_batch_size(space, hp.batch_size, samples, points)
    share = [samples // points + (k < samples % points) for k in range(points)]
    saved = copy.deepcopy(job.state_dict())  # ours alone, even if the job hands out live tensors
    losses: list[float] = []
    try:
        for lr, n in zip(lrs, share):
            if losses and not math.isfinite(losses[-1]):
                losses.append(math.nan)  # diverged: the rest of the curve is unknown
                continue
            stats = job.train(Hyperparams(lr, batch), max(n, 1))
            losses.append(math.nan if stats.nonfinite else stats.loss_mean)
    finally:
        job.load_state_dict(saved)
    return result(lrs, losses, sum(max(n, 1) for n in share), hp, batch, space, divisor)
