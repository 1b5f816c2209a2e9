"""TrainingEnv: one training job as a Gymnasium environment."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlsched.core.actions import BATCH_STEPS, LR_FACTORS, apply_action
from rlsched.core.features import CLIP, FEATURES, OBSERVATION_VERSION, observation
from rlsched.core.job import TrainingJob, interval_sizes
from rlsched.core.member import Member, Record
from rlsched.core.reward import DIVERGENCE_RETURN, reward
from rlsched.core.space import Hyperparams, HyperparamSpace


class TrainingEnv(gym.Env):
    """Adapt the learning rate and batch size of a training job while it trains.

    Each episode builds a fresh job with ``job_factory(seed)`` (the seed drawn from
    ``self.np_random``) and trains it on ``budget_samples`` examples split into ``decisions``
    near-equal intervals. Before each interval the agent may change the hyperparameters.

    ## Action Space

    ``MultiDiscrete([5, 3])``: ``action[0]`` multiplies the LR by ``(0.5, 0.8, 1, 1.25, 2)[a]``;
    ``action[1]`` moves the batch size one rung down, keeps it, or moves it one rung up the
    space's ladder. A batch-size change first rescales the LR by the space's ``scale_rule``; the
    LR factor is a correction on top. The LR is clipped to the space's bounds.

    ## Observation Space

    ``Box(-10, 10, (14,), float32)``, version 1, scale-free features (see
    ``rlsched.core.features.FEATURES``): progress; log(lr/lr0); log2(batch_size/batch_size0);
    train and val loss relative to the initial val loss, and their slopes over the last interval;
    generalization gap log(val/train); train-loss spread; gradient-norm trend;
    log(B_simple/batch_size); log10 update-to-weight ratio; population rank (0.5 alone);
    non-finite flag. Undefined features are 0.

    ## Rewards

    ``-(log val_loss_t - log val_loss_{t-1})``, so an episode's return is ``log(L0 / LT)`` and
    comparable across tasks. When the job diverges (a non-finite loss or gradient), the reward
    makes the episode's return exactly ``DIVERGENCE_RETURN`` (-1), worse than not training.

    ## Starting State

    A freshly initialised job at ``initial`` hyperparameters (the space's default if ``None``),
    evaluated once so the initial val loss is known.

    ## Episode End

    Terminates after ``decisions`` steps (progress is part of the observation), or at once on
    divergence with ``info["diverged"] = True``. There is no truncation.

    ## Info

    ``lr``, ``batch_size``, ``samples`` (trained so far), ``val_loss``, ``val_<metric>`` for the
    job's other metrics, ``train_loss`` (after a step) and ``diverged``. No wall-clock values, so
    equal seeds give equal infos.

    ## Version History

    * v0: observation version 1, action and reward as above.
    """

    metadata = {"render_modes": []}
    observation_version = OBSERVATION_VERSION

    def __init__(
        self,
        job_factory: Callable[[int], TrainingJob],
        *,
        space: HyperparamSpace,
        budget_samples: int,
        decisions: int,
        initial: Hyperparams | None = None,
    ) -> None:
        if not callable(job_factory):
            raise TypeError(f"job_factory: expected a callable seed -> TrainingJob, got {job_factory!r}")
        if not isinstance(space, HyperparamSpace):
            raise TypeError(f"space: expected a HyperparamSpace, got {type(space).__name__}")
        self.job_factory = job_factory
        self.space = space
        self.intervals = interval_sizes(budget_samples, decisions)
        self.budget_samples = budget_samples
        self.decisions = decisions
        self.initial = space.check(initial, "initial") if initial is not None else space.default()
        self.action_space = spaces.MultiDiscrete([len(LR_FACTORS), len(BATCH_STEPS)])
        self.observation_space = spaces.Box(-CLIP, CLIP, shape=(len(FEATURES),), dtype=np.float32)
        self.member: Member | None = None
        self._done = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        job_seed = int(self.np_random.integers(2**31 - 1))
        self.member = Member(self.job_factory(job_seed), self.initial)
        record = self.member.start()
        self._done = record.diverged
        return self._observation(), self._info(record)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.member is None:
            raise RuntimeError("TrainingEnv.step: call reset() before step()")
        if self._done:
            raise RuntimeError("TrainingEnv.step: the episode has ended; call reset() to start a new one")
        if not self.action_space.contains(np.asarray(action, dtype=self.action_space.dtype)):
            raise ValueError(
                f"action: expected two integers [lr_index in 0..{len(LR_FACTORS) - 1}, "
                f"batch_index in 0..{len(BATCH_STEPS) - 1}], got {action!r}"
            )
        previous = self.member.last
        hp = apply_action(self.space, previous.hparams, action)
        record = self.member.advance(hp, self.intervals[previous.decision])
        diverged = record.diverged
        loss = math.inf if diverged else record.val_loss
        r = reward(previous.val_loss, loss, initial_loss=self.member.history[0].val_loss)
        self._done = diverged or record.decision == self.decisions
        return self._observation(), float(r), self._done, False, self._info(record)

    def _observation(self) -> np.ndarray:
        assert self.member is not None
        return observation(self.member.history, initial=self.initial, budget_samples=self.budget_samples)

    @staticmethod
    def _info(record: Record) -> dict[str, Any]:
        info: dict[str, Any] = {
            "lr": record.hparams.lr,
            "batch_size": record.hparams.batch_size,
            "samples": record.samples,
            "val_loss": record.val_loss,
            "diverged": record.diverged,
        }
        info.update({f"val_{k}": v for k, v in record.metrics.items() if k != "loss"})
        if record.stats is not None:
            info["train_loss"] = record.stats.loss_mean
        return info


__all__ = ["TrainingEnv", "LR_FACTORS", "BATCH_STEPS", "apply_action", "DIVERGENCE_RETURN"]
