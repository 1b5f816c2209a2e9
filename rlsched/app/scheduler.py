"""AdaptiveScheduler: the learned controller inside your own training loop.

    sampler = DynamicBatchSampler(len(train_set), batch_size=64)
    loader = DataLoader(train_set, batch_sampler=sampler)
    sched = AdaptiveScheduler(optimizer, sampler, space=space, budget_samples=200_000, decisions=10)
    while not sched.done:
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            sched.step(loss)                  # after optimizer.step(), before zero_grad()
            optimizer.zero_grad()
            if sched.decision_due:            # optional: the controller then sees the val loss
                sched.report(val_loss=evaluate(model))
            if sched.done:
                break

At every decision point (``budget_samples / decisions`` examples) the scheduler builds the same
observation as TrainingEnv from the interval's statistics, asks the controller, and sets the LR
of every param group (keeping their ratios) and the sampler's next batch size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlsched.agents.controller import Controller
from rlsched.core.actions import apply_action
from rlsched.core.agent import MemberView, PopulationView
from rlsched.core.features import OBSERVATION_V2, observation
from rlsched.core.job import interval_sizes
from rlsched.core.member import Record
from rlsched.core.probe import ProbeResult
from rlsched.core.space import Hyperparams, HyperparamSpace
from rlsched.train.loop_probe import LoopProbe
from rlsched.train.lr import LRSetter
from rlsched.train.probe import GradientProbe, summarize
from rlsched.train.sampler import DynamicBatchSampler


class AdaptiveScheduler:
    """Adapts LR and batch size of a user's loop with a controller (``"default"``, a path, or one).

    Args:
        optimizer: the loop's optimizer; its first group's LR is ``Hyperparams.lr``.
        batch_sampler: the DynamicBatchSampler the DataLoader is built on.
        controller: ``"default"`` (shipped), a path to a saved controller, or a Controller.
        space: bounds and batch-size ladder; the starting point must lie in it.
        budget_samples: training examples in all; decisions: how many times to adapt.
        deterministic: act greedily (default) rather than sampling from the policy.
        wait_for_report: at each decision point wait for ``report(val_loss=...)`` before acting;
            otherwise act at once on the latest reported val loss, or the train loss if none.
        model: the model, so that the probe also restores its buffers (batch-norm statistics);
            without it only the optimizer's parameters and state are restored.

    A version-2 controller (the default) first runs an LR range probe over the loop's first
    ``probe_fraction`` of ``budget_samples`` (5 %) at rising LRs, puts the parameters and the
    optimizer back, and then adapts relative to the probe + cosine prior; its examples count
    against the budget. ``probe`` holds the result once it ran.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        batch_sampler: DynamicBatchSampler,
        *,
        controller: Any = "default",
        space: HyperparamSpace,
        budget_samples: int,
        decisions: int,
        deterministic: bool = True,
        wait_for_report: bool = False,
        stat_pairs: int = 8,
        model: torch.nn.Module | None = None,
    ) -> None:
        if not isinstance(batch_sampler, DynamicBatchSampler):
            raise TypeError(
                "batch_sampler: expected a rlsched.DynamicBatchSampler (build the DataLoader on it)"
            )
        self.controller = controller if isinstance(controller, Controller) else Controller.load(controller)
        self.optimizer, self.sampler, self.space = optimizer, batch_sampler, space
        self.budget_samples, self.decisions = budget_samples, decisions
        self.probe: ProbeResult | None = None
        self._offset = 0  # examples the probe spent before the intervals began
        probe_samples = 0
        if self.controller.version == OBSERVATION_V2:
            probe_samples = round(self.controller.probe_fraction * budget_samples)
        self.intervals = interval_sizes(budget_samples - probe_samples, decisions)
        self.deterministic, self.stat_pairs, self.wait_for_report = deterministic, stat_pairs, wait_for_report
        base = float(optimizer.param_groups[0]["lr"])
        self._lr = LRSetter(optimizer)
        self._params = [p for g in optimizer.param_groups for p in g["params"]]
        self.initial = space.check(Hyperparams(base, batch_sampler.batch_size), "initial")
        self.hparams = self.initial
        self.history: list[Record] = []
        self.samples = 0
        self._reported: float | None = None
        self._prober = None
        if probe_samples:
            self._prober = LoopProbe(optimizer, space, probe_samples, initial=self.initial, model=model)
            self.sampler.batch_size = self._prober.batch_size  # the probe's steps, then the first interval's
        self._start_interval()

    # -- the loop's calls ----------------------------------------------------------------------
    def step(self, loss: torch.Tensor | float, batch_size: int | None = None) -> None:
        """Record one optimizer step (call after ``optimizer.step()``, before ``zero_grad()``)."""
        size = int(batch_size if batch_size is not None else self.hparams.batch_size)
        if self._prober is not None:
            self._probe_step(loss, size)
            return
        k = len(self._sizes)
        self._gradients.after_step(k - 1)
        self._gradients.before_step(k, size)
        self._losses.append(
            loss.detach().reshape(()) if isinstance(loss, torch.Tensor) else torch.tensor(loss)
        )
        self._sizes.append(size)
        self.samples += size
        if self.decision_due and not self.wait_for_report:
            self._decide()

    def report(self, val_loss: float) -> None:
        """The current validation loss; at a due decision the controller acts on it right away."""
        if not self.history:  # reported before training: the initial loss
            self.history.append(Record(0, 0, self.hparams, None, {"loss": float(val_loss)}))
            return
        self._reported = float(val_loss)
        if self.decision_due:
            self._decide()

    def get_last_lr(self) -> list[float]:
        """The LR of every parameter group, as torch's schedulers report it."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    @property
    def decision_due(self) -> bool:
        """The current interval's examples are done and its decision has not been taken yet."""
        return len(self.history) <= self.decisions and self.samples >= self._boundary

    @property
    def done(self) -> bool:
        """The whole budget of examples has been trained (the probe's included)."""
        return self._prober is None and self.samples >= self._offset + sum(self.intervals)

    # -- inside --------------------------------------------------------------------------------
    def _probe_step(self, loss: torch.Tensor | float, size: int) -> None:
        """One step of the probe; at its end the model and optimizer go back, and the first
        interval starts at the prior's LR."""
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if not self.history:  # no initial val loss reported: the first step's loss stands in for it
            self.history.append(Record(0, 0, self.initial, None, {"loss": value}))
        self._prober.record(value, size)
        self.samples += size
        if self._prober.done:
            self.probe, self._prober = self._prober.finish(), None
            self._offset = self.samples
            self._apply(self._next(decision=0))
            self._start_interval()

    def _next(self, decision: int) -> Hyperparams:
        """The controller's hyperparameters for interval ``decision`` from the history so far."""
        rng = np.random.default_rng(self.samples)
        obs = observation(self.history, initial=self.initial, budget_samples=self.budget_samples)
        if self.controller.version != OBSERVATION_V2:
            action = self.controller.act(obs, deterministic=self.deterministic, rng=rng)
            return apply_action(self.space, self.hparams, action)
        member = MemberView(0, self.hparams, tuple(self.history), obs, -self.history[-1].val_loss, self.probe)
        view = PopulationView(decision, self.decisions, self.space, (member,))
        return self.controller.adjust(member, view, rng, deterministic=self.deterministic)

    def _start_interval(self) -> None:
        self._losses: list[torch.Tensor] = []
        self._sizes: list[int] = []
        d = max(len(self.history) - 1, 0)
        expected = self.intervals[min(d, len(self.intervals) - 1)] // self.hparams.batch_size
        self._gradients = GradientProbe(self._params, expected, self.stat_pairs)
        self._boundary = self._offset + sum(self.intervals[: d + 1])

    def _decide(self) -> None:
        stats = summarize(self._losses, self._sizes, self._gradients)
        if not self.history:  # no initial val loss reported: the first steps' loss stands in for it
            self.history.append(Record(0, 0, self.initial, None, {"loss": float(self._losses[0])}))
        loss = self._reported if self._reported is not None else stats.loss_mean
        trained = self.samples - self._offset  # examples the weights have seen (the probe's were undone)
        self.history.append(Record(len(self.history), trained, self.hparams, stats, {"loss": loss}))
        if len(self.history) <= self.decisions:
            self._apply(self._next(decision=len(self.history) - 1))
        self._start_interval()

    def _apply(self, hp: Hyperparams) -> None:
        self._lr.set(hp.lr)
        self.sampler.batch_size = hp.batch_size
        self.hparams = hp

    def state_dict(self) -> dict[str, Any]:
        if self._prober is not None:
            raise RuntimeError(
                f"AdaptiveScheduler.state_dict: the LR range probe is still running (it ends after "
                f"{self._prober.samples} examples); save at a decision boundary after it"
            )
        return {
            "hparams": self.hparams.to_dict(),
            "samples": self.samples,
            "history": [r.to_dict() for r in self.history],
            "offset": self._offset,
            **({"probe": self.probe.to_dict()} if self.probe is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore at a decision boundary (save right after one, e.g. after ``report``)."""
        self.history = [Record.from_dict(r) for r in state["history"]]
        self.samples = int(state["samples"])
        self._offset = int(state.get("offset", 0))
        self.probe = ProbeResult.from_dict(state["probe"]) if "probe" in state else None
        self._prober = None
        self._apply(Hyperparams(**state["hparams"]))
        self._start_interval()
