"""The training-job contract that every part of rlsched builds on."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from rlsched.core.checks import integer
from rlsched.core.space import Hyperparams


@dataclass(frozen=True)
class TrainStats:
    """What one call to :meth:`TrainingJob.train` measured.

    Attributes:
        samples: training examples consumed (exactly the number asked for).
        steps: optimizer steps taken.
        loss_mean: mean training loss over the steps.
        loss_std: standard deviation of the per-step training loss.
        grad_norm: mean L2 norm of the full gradient on the probed steps.
        b_simple: gradient-noise scale ``tr(Sigma) / |G|^2`` (McCandlish et al. 2018), the batch
            size at which noise and signal are about equal; ``nan`` when it cannot be estimated
            (fewer than two full steps, or a noise-dominated estimate of ``|G|^2 <= 0``).
        update_ratio: ``|w_after - w_before| / |w_before|`` of one optimizer step.
        nonfinite: a loss or gradient was NaN or infinite; the job has diverged.
    """

    samples: int
    steps: int
    loss_mean: float
    loss_std: float
    grad_norm: float
    b_simple: float
    update_ratio: float
    nonfinite: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


@runtime_checkable
class TrainingJob(Protocol):
    """A training run that can be advanced, evaluated, saved and restored.

    - ``train(hp, samples)`` trains on ``samples`` examples at ``hp`` and returns the
      :class:`TrainStats` of those steps (:func:`rlsched.summarize` makes them from per-step losses
      and a :class:`rlsched.GradientProbe`). Budgets count examples, never steps, so a larger
      batch is not free.
    - ``evaluate()`` returns the validation metrics as ``{name: float}``, always with ``"loss"``
      (lower is better; the runner ranks and decides on it).
    - ``state_dict()``/``load_state_dict()`` cover model, optimizer, data order and RNG, so a
      restored copy continues exactly as the original would. The state may share tensors with
      the live job (``model.state_dict()`` does): the runner copies it when it takes it. After
      loading, the hyperparameters given to the next ``train`` call win over restored ones.
    - A job with a held-out test split also implements :class:`WithTestSplit`: ``splits`` names
      its evaluation splits, one of them ``"test"``, and ``evaluate(split)`` evaluates any of
      them. The runner evaluates ``"test"`` once, at the end, and never decides on it.

    Every method may raise: a member whose job raises is recorded as diverged and replaced like
    one, unless every member fails alike, which stops the run (:class:`JobFailed`).
    """

    def train(self, hp: Hyperparams, samples: int) -> TrainStats: ...

    def evaluate(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class WithTestSplit(TrainingJob, Protocol):
    """A :class:`TrainingJob` with named evaluation splits, one of them ``"test"``.

    ``evaluate(split)`` evaluates any name in ``splits``; ``evaluate()`` stays the validation
    split. The runner evaluates ``"test"`` once, at the end of a run, and never decides on it.
    """

    splits: Collection[str]

    def evaluate(self, split: str = "val") -> dict[str, float]: ...


METHODS = ("train", "evaluate", "state_dict", "load_state_dict")


class JobContractError(ValueError):
    """A job broke the :class:`TrainingJob` contract: a missing method, a ``train`` that returns
    no ``TrainStats``, or an ``evaluate`` without a float ``"loss"``."""


class JobFailed(RuntimeError):
    """Every member's job raised in one generation (alike, or at the first interval): a bug in the
    job's code, not a diverged run. Raised from the first member's own exception."""


def check_job(job: Any, where: str = "job_factory") -> None:
    """Raise :class:`JobContractError` when ``job`` lacks a method of the contract."""
    missing = [name for name in METHODS if not callable(getattr(job, name, None))]
    if missing:
        raise JobContractError(
            f"{where}: built a {type(job).__name__} without {', '.join(missing)}; "
            f"a TrainingJob needs {', '.join(METHODS)}"
        )


def checked_stats(stats: Any) -> TrainStats:
    if not isinstance(stats, TrainStats):
        raise JobContractError(
            f"job.train: returned {type(stats).__name__}, expected rlsched.TrainStats "
            "(rlsched.summarize makes one from per-step losses)"
        )
    return stats


def checked_metrics(metrics: Any) -> dict[str, float]:
    """``evaluate()``'s metrics as a dict of floats with ``"loss"``."""
    if not isinstance(metrics, Mapping) or "loss" not in metrics:
        found = sorted(map(str, metrics)) if isinstance(metrics, Mapping) else type(metrics).__name__
        raise JobContractError(f"job.evaluate: returned {found}, expected a dict with a float 'loss'")
    try:
        return {str(k): float(v) for k, v in metrics.items()}
    except (TypeError, ValueError):
        bad = next(k for k, v in metrics.items() if not _is_number(v))
        raise JobContractError(
            f"job.evaluate: metric {bad!r} is {type(metrics[bad]).__name__}, expected a float"
        ) from None


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def evaluate_test(job: TrainingJob) -> dict[str, float] | None:
    """The job's test-split metrics, or ``None`` when it has no test split."""
    if isinstance(job, WithTestSplit) and "test" in job.splits:
        return checked_metrics(job.evaluate("test"))
    return None


def interval_sizes(budget_samples: int, decisions: int) -> list[int]:
    """Split a budget of examples into ``decisions`` near-equal intervals that sum exactly to it.

    >>> interval_sizes(10, 3)
    [3, 3, 4]
    """
    decisions = integer(decisions, "decisions", 1)
    budget_samples = integer(
        budget_samples,
        "budget_samples",
        decisions,
        what=f"at least one example per decision (>= {decisions})",
    )
    bounds = [(i * budget_samples) // decisions for i in range(decisions + 1)]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def is_diverged(stats: TrainStats | None, metrics: dict[str, float]) -> bool:
    """A job has diverged when training saw a non-finite value or the validation loss is not finite."""
    return bool((stats is not None and stats.nonfinite) or not math.isfinite(metrics["loss"]))
