"""Member: one training job with its hyperparameters and history.

The Gymnasium environment and the population runner both drive training through a Member,
so they share one mechanism for advancing, evaluating and recording a job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rlsched.core.job import TrainingJob, TrainStats, checked_metrics, checked_stats, is_diverged
from rlsched.core.probe import ProbeResult
from rlsched.core.space import Hyperparams


@dataclass(frozen=True)
class Record:
    """The state of a member after a decision interval (decision 0: before any training).

    ``hparams`` were in effect during the interval (for decision 0: the initial ones);
    ``samples`` counts every example the member's weights have seen, inherited ones included.
    """

    decision: int
    samples: int
    hparams: Hyperparams
    stats: TrainStats | None
    metrics: dict[str, float]

    @property
    def val_loss(self) -> float:
        return self.metrics["loss"]

    @property
    def diverged(self) -> bool:
        return is_diverged(self.stats, self.metrics)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python scalars, for checkpoints."""
        return {
            "decision": self.decision,
            "samples": self.samples,
            "hparams": self.hparams.to_dict(),
            "stats": self.stats.to_dict() if self.stats else None,
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        stats = TrainStats(**d["stats"]) if d["stats"] is not None else None
        return cls(d["decision"], d["samples"], Hyperparams(**d["hparams"]), stats, dict(d["metrics"]))


@dataclass
class Member:
    """A job plus the hyperparameters it runs at and the record of every interval so far."""

    job: TrainingJob
    hparams: Hyperparams
    member_id: int = 0
    history: list[Record] = field(default_factory=list)
    train_seconds: float = 0.0  # wall time spent in job.train (never part of a record)
    probe: ProbeResult | None = None  # the LR range probe of this member's job, if one ran

    def start(self) -> Record:
        """Evaluate the untrained job: decision 0 of the history."""
        if self.history:
            raise RuntimeError("Member.start: already started; build a new Member to start over")
        record = Record(0, 0, self.hparams, None, checked_metrics(self.job.evaluate()))
        self.history.append(record)
        return record

    def fail_start(self) -> Record:
        """Record a decision 0 whose evaluation raised: val loss NaN (diverged)."""
        record = Record(0, 0, self.hparams, None, {"loss": math.nan})
        self.history = [record]
        return record

    def advance(self, hp: Hyperparams, samples: int) -> Record:
        """Train ``samples`` examples at ``hp``, evaluate, and append the resulting record."""
        if not self.history:
            raise RuntimeError("Member.advance: call start() first")
        self.hparams = hp
        started = time.perf_counter()
        stats = checked_stats(self.job.train(hp, samples))
        self.train_seconds += time.perf_counter() - started
        metrics = checked_metrics(self.job.evaluate())
        last = self.history[-1]
        record = Record(last.decision + 1, last.samples + stats.samples, hp, stats, metrics)
        self.history.append(record)
        return record

    def fail(self, hp: Hyperparams, samples: int) -> Record:
        """Record an interval whose job raised: counted as trained, every metric NaN (diverged)."""
        self.hparams = hp
        last = self.history[-1]
        record = Record(
            last.decision + 1, last.samples + samples, hp, None, dict.fromkeys(last.metrics, math.nan)
        )
        self.history.append(record)
        return record

    @property
    def trajectory(self) -> list[tuple[int, Hyperparams]]:
        """See :func:`trajectory`."""
        return trajectory(self.history)

    @property
    def last(self) -> Record:
        return self.history[-1]

    @property
    def diverged(self) -> bool:
        return bool(self.history) and self.last.diverged


def trajectory(history: Sequence[Record]) -> list[tuple[int, Hyperparams]]:
    """A member's trajectory: ``(samples at the interval's start, hparams)`` for every trained
    interval of ``history``, its ancestors' included (a copy inherits its donor's history).

    Not to be confused with a ``Schedule`` (an LR multiplier over progress, a hand-made rule).
    """
    return [(r.samples - r.stats.samples, r.hparams) for r in history[1:] if r.stats is not None]
