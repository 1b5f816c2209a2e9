"""PriorEnv: the environment version-2 controllers are meta-trained on.

Each task (a fresh draw from the zoo's ``family``) is probed once, its prior schedule (probe +
warmup + cosine at the job's batch size) is run once as the reference, and then
``episodes_per_task`` episodes act on the same job from the same start. The reward measures the
policy against the prior on the same job, so the neutral action scores exactly 0 and a policy
can only earn by improving on the prior.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlsched.core.features import CLIP, FEATURES_V2, observation_v2
from rlsched.core.job import interval_sizes
from rlsched.core.member import Member
from rlsched.core.prior import NEUTRAL, PRIOR_BATCH_MOVES, PRIOR_LR_FACTORS, act_on_prior, prior_lr
from rlsched.core.probe import PROBE_FRACTION, ProbeResult, lr_range_test
from rlsched.core.reward import DIVERGENCE_RETURN
from rlsched.envs.tasks import Task
from rlsched.envs.zoo import FAMILIES, sample_zoo_task


class PriorEnv(gym.Env):
    """Adapt a job's LR and batch size relative to its prior schedule, one zoo task at a time.

    ## Action Space

    ``MultiDiscrete([5, 3])`` (see :mod:`rlsched.core.prior`): ``action[0]`` multiplies the LR's
    multiplier over the prior by ``(0.5, 0.7, 1, 1.4, 2)[a]``; ``action[1]`` moves the batch size
    one rung down, keeps it, or one rung up. ``[2, 1]`` is the prior itself.

    ## Observation Space

    ``Box(-10, 10, (16,), float32)``, version 2 (``rlsched.core.features.FEATURES_V2``).

    ## Rewards

    ``log(L^prior_t / L_t) - log(L^prior_{t-1} / L_{t-1})`` in validation loss, so an episode's
    return is ``log(L^prior_T / L_T)``: how much better than the prior it ended. Divergence ends the
    episode with a return of exactly ``DIVERGENCE_RETURN`` (-1).

    ## Episode End

    After the task's ``decisions`` steps, or at divergence. ``info["task"]`` names the task.

    ## Version History

    * v0: observation version 2, actions relative to the prior, reward relative to the prior.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        family: str = "train",
        *,
        episodes_per_task: int = 2,
        tasks: int = 1_000_000,
        sample: Callable[[int, str], Task] = sample_zoo_task,
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}")
        self.family, self.episodes_per_task, self.tasks, self.sample = (
            family,
            episodes_per_task,
            tasks,
            sample,
        )
        self.observation_space = spaces.Box(-CLIP, CLIP, shape=(len(FEATURES_V2),), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([len(PRIOR_LR_FACTORS), len(PRIOR_BATCH_MOVES)])
        self.task: Task | None = None
        self.member: Member | None = None
        self._episodes = 0
        self._done = True

    # -- a task: probed once, its prior run once ------------------------------------------------
    def _new_task(self) -> None:
        self.task = self.sample(int(self.np_random.integers(self.tasks)), self.family)
        self.job_seed = int(self.np_random.integers(2**31 - 1))
        job = self.task.build(self.job_seed)
        self.probe_samples = round(PROBE_FRACTION * self.task.budget_samples)
        self.probe: ProbeResult = lr_range_test(job, self.task.initial, self.probe_samples, self.task.space)
        self.start_state = copy.deepcopy(job.state_dict())
        self.intervals = interval_sizes(self.task.budget_samples - self.probe_samples, self.task.decisions)
        prior = self._member(job)
        for _ in range(self.task.decisions):
            prior.advance(self._next(prior, NEUTRAL), self.intervals[prior.last.decision])
            if prior.diverged:
                break
        self.prior_losses = [r.val_loss for r in prior.history]

    def _member(self, job: Any) -> Member:
        member = Member(job, self.task.initial)
        member.start()
        return member

    def _next(self, member: Member, action: Any):
        last, task = member.last, self.task
        return act_on_prior(
            action,
            hp=last.hparams,
            peak=self.probe.peak_lr,
            base=task.initial,
            stats=last.stats,
            space=task.space,
            decision=last.decision,
            decisions=task.decisions,
        )

    # -- the episode ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self.task is None or seed is not None or self._episodes % self.episodes_per_task == 0:
            self._new_task()
        self._episodes += 1
        job = self.task.build(self.job_seed)
        job.load_state_dict(copy.deepcopy(self.start_state))
        self.member = self._member(job)
        self._done = False
        return self._observation(), self._info()

    def step(self, action: Any):
        if self.member is None or self._done:
            raise RuntimeError("PriorEnv.step: call reset() first (or again after the episode ended)")
        if not self.action_space.contains(np.asarray(action, dtype=self.action_space.dtype)):
            raise ValueError(f"action: expected two integers [0..4, 0..2], got {action!r}")
        member = self.member
        before = self.relative_gain(member.last.decision, member.last.val_loss)
        record = member.advance(self._next(member, action), self.intervals[member.last.decision])
        if record.diverged:
            reward = DIVERGENCE_RETURN - self.relative_gain(record.decision - 1, member.history[-2].val_loss)
        else:
            reward = self.relative_gain(record.decision, record.val_loss) - before
        self._done = record.diverged or record.decision == self.task.decisions
        return self._observation(), float(reward), self._done, False, self._info()

    def relative_gain(self, decision: int, loss: float) -> float:
        """log(L^prior / L) at ``decision`` (a diverged prior counts as an infinite loss: gain 1)."""
        if decision >= len(self.prior_losses) or not math.isfinite(self.prior_losses[decision]):
            return 1.0
        return math.log(max(self.prior_losses[decision], 1e-12) / max(loss, 1e-12))

    def _observation(self) -> np.ndarray:
        member, task = self.member, self.task
        last = member.last
        d = max(last.decision - 1, 0)  # the interval the last hyperparameters were in effect for
        prior = prior_lr(
            self.probe.peak_lr, task.initial, last.hparams.batch_size, task.space, d, task.decisions
        )
        progress = last.decision / task.decisions
        return observation_v2(member.history, probe=self.probe, prior=prior, progress=progress)

    def _info(self) -> dict[str, Any]:
        last = self.member.last
        return {
            "task": self.task.name,
            "lr": last.hparams.lr,
            "batch_size": last.hparams.batch_size,
            "val_loss": last.val_loss,
            "prior_val_loss": self.prior_losses[min(last.decision, len(self.prior_losses) - 1)],
            "diverged": last.diverged,
        }
