"""Observations: scale-free features of a member's training history (pure functions), versions 1 and 2."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rlsched.core.member import Record
from rlsched.core.probe import ProbeResult
from rlsched.core.space import Hyperparams

OBSERVATION_VERSION = 1
CLIP = 10.0
FEATURES = (
    "progress",  # examples trained / budget, in [0, 1]
    "log_lr_ratio",  # log(lr / lr0)
    "log2_batch_size_ratio",  # log2(batch_size / batch_size0)
    "train_loss",  # log(train loss / initial val loss)
    "train_loss_slope",  # log(train loss / previous interval's train loss)
    "val_loss",  # log(val loss / initial val loss)
    "val_loss_slope",  # log(val loss / previous val loss)
    "generalization_gap",  # log(val loss / train loss)
    "train_loss_spread",  # std / mean of the per-step train loss
    "grad_norm_trend",  # log(grad norm / previous interval's grad norm)
    "log_noise_scale_ratio",  # log(B_simple / batch_size)
    "log10_update_ratio",  # log10(|step update| / |weights|)
    "population_rank",  # 1 = best of the population, 0 = worst, 0.5 when alone
    "nonfinite",  # 1 once the job has diverged
)


def log_ratio(a: float | None, b: float | None) -> float:
    """``log(a / b)`` for positive finite inputs, ``+inf`` for ``a = +inf``, else ``nan``."""
    if a is None or b is None or math.isnan(a):
        return math.nan
    if a == math.inf:
        return math.inf
    if a > 0 and b > 0 and math.isfinite(b):
        return math.log(a / b)
    return math.nan


def _loss(value: float) -> float:
    """A NaN loss is a diverged one: treat it as infinitely bad."""
    return math.inf if math.isnan(value) else value


def observation(
    history: Sequence[Record],
    *,
    initial: Hyperparams,
    budget_samples: int,
    rank: float = 0.5,
) -> np.ndarray:
    """The version-1 observation of a member from its history (at least the decision-0 record).

    Every feature is clipped to ``[-CLIP, CLIP]``; undefined ones (no previous interval yet,
    an estimate that failed) are 0, and a non-finite loss shows as ``+CLIP``.
    """
    last = history[-1]
    stats = last.stats
    prev = history[-2].stats if len(history) > 1 else None
    l0 = history[0].val_loss
    train = _loss(stats.loss_mean) if stats else None
    features = [
        last.samples / budget_samples,
        log_ratio(last.hparams.lr, initial.lr),
        math.log2(last.hparams.batch_size / initial.batch_size),
        log_ratio(train, l0),
        log_ratio(train, prev.loss_mean if prev else None),
        log_ratio(_loss(last.val_loss), l0),
        log_ratio(_loss(last.val_loss), history[-2].val_loss) if len(history) > 1 else 0.0,
        log_ratio(_loss(last.val_loss), train),
        stats.loss_std / stats.loss_mean if stats and stats.loss_mean > 0 else math.nan,
        log_ratio(stats.grad_norm if stats else None, prev.grad_norm if prev else None),
        log_ratio(stats.b_simple if stats else None, last.hparams.batch_size),
        math.log10(stats.update_ratio) if stats and stats.update_ratio > 0 else math.nan,
        rank,
        float(last.diverged),
    ]
    obs = np.asarray(features, dtype=np.float64)
    obs = np.nan_to_num(obs, nan=0.0, posinf=CLIP, neginf=-CLIP)
    return np.clip(obs, -CLIP, CLIP).astype(np.float32)


# -- version 2: the features of version 1, relative to the prior schedule and its probe ---------------
OBSERVATION_V2 = 2
FEATURES_V2 = (
    "progress",  # decisions taken / decisions, in [0, 1]
    "log_lr_over_prior",  # log(lr / the prior's LR for the interval): the policy's own correction
    "log_peak_over_lr0",  # log(probed peak LR / the job's initial LR): how far the probe moved it
    "log_blowup_over_peak",  # log(LR where the probe's loss blew up / the probed peak)
    *FEATURES[2:],  # version 1's from log2(batch_size / batch_size0) on
)


def blowup_lr(probe: ProbeResult) -> float:
    """The first LR of the probe whose loss was non-finite or over 4x the lowest before it (or the
    last LR tried when the loss never blew up)."""
    lowest = math.inf
    for lr, loss in zip(probe.lrs, probe.losses):
        if not math.isfinite(loss) or loss > 4 * lowest:
            return lr
        lowest = min(lowest, loss)
    return probe.lrs[-1]


def observation_v2(
    history: Sequence[Record],
    *,
    probe: ProbeResult,
    prior: float,
    progress: float,
    rank: float = 0.5,
) -> np.ndarray:
    """The version-2 observation: ``prior`` is the prior's LR for the last interval (before any
    training, for the first), ``progress`` the decisions taken over all of them."""
    v1 = observation(
        history, initial=history[0].hparams, budget_samples=max(history[-1].samples, 1), rank=rank
    )
    named = dict(zip(FEATURES, v1.tolist()))
    lr, lr0 = history[-1].hparams.lr, history[0].hparams.lr
    named |= {
        "progress": progress,
        "log_lr_over_prior": log_ratio(lr, prior),
        "log_peak_over_lr0": log_ratio(probe.peak_lr, lr0),
        "log_blowup_over_peak": log_ratio(blowup_lr(probe), probe.peak_lr),
    }
    obs = np.asarray([named[f] for f in FEATURES_V2], dtype=np.float64)
    obs = np.nan_to_num(obs, nan=0.0, posinf=CLIP, neginf=-CLIP)
    return np.clip(obs, -CLIP, CLIP).astype(np.float32)
