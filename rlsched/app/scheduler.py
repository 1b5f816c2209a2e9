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
            if sched.decision_due:            # optional: the controller then acts on the val loss
                sched.report(val_loss=evaluate(model))
            if sched.done:
                break

At every decision point (``budget_samples / decisions`` examples) the scheduler builds the same
observation as TrainingEnv from the interval's statistics, asks the controller, and sets the LR
of every param group (keeping their ratios) and the sampler's next batch size.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import torch

from rlsched.agents.controller import Controller
from rlsched.core.actions import apply_action
from rlsched.core.agent import MemberView, PopulationView
from rlsched.core.checks import integer
from rlsched.core.features import OBSERVATION_V2, observation
from rlsched.core.job import TrainStats, interval_sizes
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
        optimizer: the loop's optimizer; its first group's LR (> 0) is ``Hyperparams.lr``, the
            other groups keep their ratio to it. Add every param group before building this.
        batch_sampler: the DynamicBatchSampler the DataLoader is built on.
        controller: ``"default"`` (shipped), a path to a saved controller, or a Controller.
        space: bounds and batch-size ladder; the starting point must lie in it.
        budget_samples: training examples in all; decisions: how many times to adapt.
        deterministic: act greedily (default) rather than sampling from the policy.
        wait_for_report: at each decision point wait for ``report(val_loss=...)``, however many
            steps it takes, before acting (one warning if a step passes without it).
        model: the model, so that the probe also restores its buffers (batch-norm statistics);
            without it only the optimizer's parameters and state are restored.

    Decisions: the ``step()`` that completes an interval's examples decides at once on the
    interval's train loss, so the next batch already runs at the new LR and batch size, and
    ``decision_due`` stays True until the next ``step()``. A ``report(val_loss=...)`` in between
    (the loop above) takes that decision again on the val loss, in its place: no step has used
    the first one. A val loss reported earlier in the interval also stands for it.

    A version-2 controller first runs an LR range probe over the loop's first ``probe_fraction``
    of ``budget_samples`` (5 %) at rising LRs, puts the parameters and the optimizer back, and
    then adapts relative to the probe + cosine prior; its examples count against the budget.
    ``probe`` holds the result once it ran.

    Leave ``step``'s ``batch_size`` out: each step then counts the batch the sampler yielded for
    it (an epoch's smaller last batch too). A non-finite loss is left out of its interval's
    statistics (one warning); an interval of only non-finite losses marks the run as diverged.
    Mixed precision: call ``step`` after ``scaler.step(optimizer)``, which unscales the gradients;
    a step GradScaler skips (non-finite gradients, finite loss) is left out of the gradient
    statistics and is not taken for divergence.
    ``state_dict()`` after any step (sampler position, probe and the interval's partial
    statistics included), saved with the model and optimizer, continues the same schedule
    exactly. Another LR scheduler on the same optimizer gets a warning: rlsched owns the LR.

    Under DDP give each rank's sampler ``num_replicas`` and ``rank`` (``batch_size`` is then
    global), and pass the same (all-reduced) loss and val loss on every rank, so that all ranks
    take the same decisions.
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
        if min(space.batch_size) < batch_sampler.num_replicas:
            raise ValueError(
                f"space.batch_size: the smallest rung {min(space.batch_size)} is below the sampler's "
                f"num_replicas = {batch_sampler.num_replicas}; every rank needs an example per batch"
            )
        self.controller = controller if isinstance(controller, Controller) else Controller.load(controller)
        self.optimizer, self.sampler, self.space = optimizer, batch_sampler, space
        self.budget_samples = integer(
            budget_samples, "budget_samples", 1, what="a positive integer (examples)"
        )
        self.decisions = decisions
        self.probe: ProbeResult | None = None
        self._offset = 0  # examples the probe spent before the intervals began
        self._probe_samples = 0
        if self.controller.version == OBSERVATION_V2:
            self._probe_samples = round(self.controller.probe_fraction * self.budget_samples)
        self.intervals = interval_sizes(self.budget_samples - self._probe_samples, decisions)
        self.deterministic, self.stat_pairs, self.wait_for_report = deterministic, stat_pairs, wait_for_report
        self._lr = LRSetter(optimizer, owner="the AdaptiveScheduler")
        self._params = [p for g in optimizer.param_groups for p in g["params"]]
        self._model = model
        self.initial = space.check(Hyperparams(self._lr.last[0], batch_sampler.batch_size), "initial")
        self.hparams = self.initial
        self.history: list[Record] = []
        self.samples = 0
        self._reported: float | None = None  # the val loss reported for the current interval
        self._open = False  # a decision taken at this step, which report() takes again
        self._warned: set[str] = set()
        self._max_step = max(max(self.intervals), max(space.batch_size))  # more in one step is a mistake
        self._prober: LoopProbe | None = None
        if self._probe_samples:
            self._start_probe()
        self._start_interval()

    # -- the loop's calls ----------------------------------------------------------------------
    def step(self, loss: torch.Tensor | float, batch_size: int | None = None) -> None:
        """Record one optimizer step (call after ``optimizer.step()``, before ``zero_grad()``).

        ``batch_size``: the step's examples, all ranks together; left out, the size of the batch
        the sampler yielded for this step. Pass it only when a step is not one sampler batch.
        """
        loss = _scalar(loss)
        size = self._step_size(batch_size)
        self._lr.check_groups()
        self._check_lr()
        self._open = False
        if self._prober is not None:
            self._probe_step(float(loss), size)
            return
        if self.wait_for_report and self._interval_done:
            self._warn_once(
                "wait",
                f"AdaptiveScheduler(wait_for_report=True): the decision due at {self._boundary} examples "
                "still waits for report(val_loss=...), and the LR and batch size stay until it comes; "
                "call report() when decision_due is True after step(), or pass wait_for_report=False "
                "to act on the train loss when no val loss is reported",
            )
        k = len(self._sizes)
        self._gradients.after_step(k - 1)
        measured = k in self._gradients.firsts or k in self._gradients.seconds
        # A non-finite step's gradients are left out too, and so are non-finite gradients of a
        # finite loss: a mixed-precision step that GradScaler skipped (the weights did not move).
        if not measured or math.isfinite(float(loss)):
            self._gradients.before_step(k, size, skip_nonfinite=True)
        self._losses.append(loss)
        self._sizes.append(size)
        self.samples += size
        if self._interval_done and not self.wait_for_report:
            self._decide()
            self._open = True

    def report(self, val_loss: float) -> None:
        """The current validation loss; at a due decision the controller acts on it right away."""
        value = _number(val_loss, "report(val_loss)")
        if not self.history and not self.samples:  # reported before training: the initial loss
            self.history.append(Record(0, 0, self.hparams, None, {"loss": value}))
            return
        self._reported = value
        if self._open:  # decided at this step on the train loss: decide again on the val loss
            self._open = False
            record = self.history.pop()
            self.hparams = record.hparams
            self._decide(record.stats)
        elif self._interval_done:
            self._decide()

    def get_last_lr(self) -> list[float]:
        """The LR of every parameter group, as torch's schedulers report it."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    @property
    def decision_due(self) -> bool:
        """An interval's examples are done and a ``report`` now counts for its decision: from the
        step that completed it until the next step, or (``wait_for_report``) until ``report``."""
        return self._open or self._interval_done

    @property
    def done(self) -> bool:
        """The whole budget of examples has been trained (the probe's included)."""
        return self._prober is None and self.samples >= self._offset + sum(self.intervals)

    # -- inside --------------------------------------------------------------------------------
    @property
    def _interval_done(self) -> bool:
        """The interval has steps, its examples are done, and its decision has not been taken."""
        return (
            self._prober is None
            and bool(self._sizes)
            and len(self.history) <= self.decisions
            and self.samples >= self._boundary
        )

    def _step_size(self, batch_size: int | None) -> int:
        """The examples of this step: ``batch_size`` if given, else the sampler's batch for it."""
        if batch_size is not None:
            if (
                isinstance(batch_size, bool)
                or not isinstance(batch_size, (int, np.integer))
                or not 1 <= batch_size <= self._max_step
            ):
                raise ValueError(
                    f"step(batch_size): expected an integer from 1 to {self._max_step} (the larger of a "
                    f"decision interval and the largest batch size), got {batch_size!r}"
                )
        claimed = self.sampler.claim_batch_size()
        if batch_size is not None:
            return int(batch_size)
        if claimed is None:
            raise ValueError(
                "step(batch_size): not given, and the sampler has yielded no batch since the last step; "
                "iterate a DataLoader built on the sampler, or pass batch_size= (the step's examples)"
            )
        return claimed

    def _check_lr(self) -> None:
        if "lr" in self._warned:
            return
        changed = self._lr.changed()
        if changed is not None:
            group, found, expected = changed
            self._warn_once(
                "lr",
                f"AdaptiveScheduler: param group {group} has LR {found:.6g}, but rlsched set {expected:.6g}; "
                "something else sets the LR, such as a torch.optim.lr_scheduler on the same optimizer. "
                "The two do not combine: rlsched sets the LR again at each decision, and its controller "
                "decides from the LR it set, not the one used. Let rlsched own the LR: remove the other "
                "scheduler, or run it to its end (a warmup, say) before building the AdaptiveScheduler",
                stacklevel=4,
            )

    def _warn_once(self, key: str, message: str, stacklevel: int = 3) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"{message} (warned once)", UserWarning, stacklevel=stacklevel)

    def _start_probe(self) -> None:
        self._prober = LoopProbe(
            self.optimizer,
            self.space,
            self._probe_samples,
            initial=self.initial,
            model=self._model,
            lr_setter=self._lr,
        )
        self.sampler.batch_size = self._prober.batch_size  # the probe's steps, then the first interval's

    def _probe_step(self, loss: float, size: int) -> None:
        """One step of the probe; at its end the model and optimizer go back, and the first
        interval starts at the prior's LR."""
        assert self._prober is not None
        if not self.history and math.isfinite(loss):  # no initial val loss reported: the first loss
            self.history.append(Record(0, 0, self.initial, None, {"loss": loss}))
        self._prober.record(loss, size)
        self.samples += size
        if self._prober.done:
            if not self.history:
                raise ValueError(
                    f"step(loss): the loss is {loss} at the first step, before any update; "
                    "check the model, the loss function and the data"
                )
            self.probe, self._prober = self._prober.finish(), None
            self._offset = self.samples
            self._reported = None  # a val loss of the probe's weights, which are undone
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

    def _interval_stats(self) -> TrainStats:
        """The interval's statistics, its non-finite losses left out (unless all are)."""
        losses = [v.to("cpu", torch.float64) for v in self._losses]  # one device, also after a restore
        finite = torch.isfinite(torch.stack(losses)).tolist()
        if all(finite) or not any(finite):  # all non-finite: the run diverged, and the stats say so
            return summarize(losses, self._sizes, self._gradients)
        self._warn_once(
            "nonfinite",
            f"step(loss): {finite.count(False)} non-finite losses in the interval ending at {self.samples} "
            f"examples (the first at its step {finite.index(False)}); they are left out of its statistics",
            stacklevel=5,
        )
        kept = [i for i, ok in enumerate(finite) if ok]
        stats = summarize([losses[i] for i in kept], [self._sizes[i] for i in kept], self._gradients)
        return dataclasses.replace(stats, samples=sum(self._sizes), steps=len(self._sizes))

    def _decide(self, stats: TrainStats | None = None) -> None:
        """Close the interval with its record and set the next one's hyperparameters."""
        if stats is None:
            stats = self._interval_stats()
        if not self.history:  # no initial val loss reported: the first finite loss stands in for it
            first = next((float(v) for v in self._losses if math.isfinite(float(v))), math.nan)
            self.history.append(Record(0, 0, self.initial, None, {"loss": first}))
        loss = self._reported if self._reported is not None else stats.loss_mean
        self._reported = None
        trained = self.samples - self._offset  # examples the weights have seen (the probe's were undone)
        self.history.append(Record(len(self.history), trained, self.hparams, stats, {"loss": loss}))
        if len(self.history) <= self.decisions:
            self._apply(self._next(decision=len(self.history) - 1))
        self._start_interval()

    def _apply(self, hp: Hyperparams) -> None:
        self._lr.set(hp.lr)
        self.sampler.batch_size = hp.batch_size
        self.hparams = hp

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, after any step: tensors and Python scalars.

        It holds the sampler's state and, mid-interval, the statistics gathered so far (a
        gradient and the weights, while a measured pair or the update size is half done).
        """
        g = self._gradients
        state: dict[str, Any] = {
            "budget_samples": self.budget_samples,
            "decisions": self.decisions,
            "initial": self.initial.to_dict(),
            "hparams": self.hparams.to_dict(),
            "samples": self.samples,
            "history": [r.to_dict() for r in self.history],
            "offset": self._offset,
            "reported": self._reported,
            "open": self._open,
            "sampler": self.sampler.state_dict(),
            "interval": {
                "losses": torch.stack([v.to("cpu", torch.float64) for v in self._losses])
                if self._losses
                else torch.zeros(0, dtype=torch.float64),
                "sizes": list(self._sizes),
                "sq_norms": [[size, value] for size, value in g.sq_norms],
                "dots": list(g.dots),
                "update_ratio": g.update_ratio,
                "nonfinite": g.nonfinite,
                "previous": g._previous,
                "weights": g._weights,
            },
        }
        if self.probe is not None:
            state["probe"] = self.probe.to_dict()
        if self._prober is not None:
            state["prober"] = self._prober.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state_dict()`` was taken (load the model and optimizer too)."""
        for name in ("budget_samples", "decisions"):
            if name in state and state[name] != getattr(self, name):
                raise ValueError(
                    f"{name}: the state is for {state[name]!r}, this scheduler has {getattr(self, name)!r}"
                )
        if "initial" in state:
            self.initial = Hyperparams(**state["initial"])
        self.history = [Record.from_dict(r) for r in state["history"]]
        self.samples = int(state["samples"])
        self._offset = int(state.get("offset", 0))
        self.probe = ProbeResult.from_dict(state["probe"]) if "probe" in state else None
        reported = state.get("reported")
        self._reported = float(reported) if reported is not None else None
        self._open = bool(state.get("open", False))
        if "sampler" in state:
            self.sampler.load_state_dict(state["sampler"])
        self._apply(Hyperparams(**state["hparams"]))
        self._prober = None
        if "prober" in state:
            if not self._probe_samples:
                raise ValueError(
                    "controller: the state was saved during a version-2 controller's LR range probe; "
                    "load it into a scheduler with a version-2 controller"
                )
            self._start_probe()
            assert self._prober is not None
            self._prober.load_state_dict(state["prober"])
        self._start_interval()
        if "interval" in state:
            self._load_interval(state["interval"])

    def _load_interval(self, interval: dict[str, Any]) -> None:
        device = self._params[0].device
        g = self._gradients
        self._losses = list(torch.as_tensor(interval["losses"]).unbind())
        self._sizes = [int(s) for s in interval["sizes"]]
        g.sq_norms = [(int(size), float(value)) for size, value in interval["sq_norms"]]
        g.dots = [float(v) for v in interval["dots"]]
        g.update_ratio, g.nonfinite = float(interval["update_ratio"]), bool(interval["nonfinite"])
        g._previous = interval["previous"].to(device) if interval["previous"] is not None else None
        g._weights = interval["weights"].to(device) if interval["weights"] is not None else None


def _scalar(loss: Any) -> torch.Tensor:
    """The step's loss as a 0-dim tensor, detached; a clear error for anything else."""
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(
                f"step(loss): expected the step's scalar loss, got a tensor of shape {tuple(loss.shape)} "
                "(reduce it first, e.g. loss.mean())"
            )
        return loss.detach().reshape(())
    return torch.tensor(_number(loss, "step(loss)"), dtype=torch.float64)


def _number(value: Any, name: str) -> float:
    """``value`` as a float if it is a real number or a one-element tensor, else ``ValueError``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number or a one-element tensor, got {value!r}")
    return float(value)
