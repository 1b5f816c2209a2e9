"""The LR range probe inside a user's own loop: the steps run at rising LRs, then the model and
optimizer go back to where they were (see :mod:`rlsched.core.probe` for the job-level probe)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from rlsched.core.probe import POINTS, ProbeResult, probe_batch_size, result
from rlsched.core.space import Hyperparams, HyperparamSpace
from rlsched.train.lr import LRSetter


class LoopProbe:
    """Runs the probe over a loop's next ``samples`` examples, one LR after another.

    At construction it snapshots the optimizer's state and its parameters (and, given ``model``,
    every buffer too, e.g. batch-norm statistics); :meth:`finish` puts them back. Call
    :meth:`record` after each optimizer step. ``lr_setter`` shares the caller's LR setter, so that
    it knows the LRs the probe set. Its state (snapshots included) is a plain
    :meth:`state_dict`, so a run saved during the probe continues exactly.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        space: HyperparamSpace,
        samples: int,
        *,
        initial: Hyperparams,
        model: nn.Module | None = None,
        points: int = POINTS,
        lr_setter: LRSetter | None = None,
    ) -> None:
        self.optimizer, self.model, self.samples, self.initial = optimizer, model, samples, initial
        self.batch_size = probe_batch_size(
            space, initial.batch_size, samples, points
        )  # the loop's, meanwhile
        self.lrs = tuple(float(v) for v in np.geomspace(space.lr[0], space.lr[1], points))
        self.space = space
        self._setter = lr_setter or LRSetter(optimizer)
        self._params = [p for g in optimizer.param_groups for p in g["params"]]
        self._saved_params = [p.detach().clone() for p in self._params]
        self._saved_optimizer = copy.deepcopy(optimizer.state_dict())
        self._saved_model = copy.deepcopy(model.state_dict()) if model is not None else None
        self._ends = [round((k + 1) * samples / points) for k in range(points)]
        self._sums = [0.0] * points
        self._counts = [0] * points
        self.seen = 0
        self._point = 0
        self.diverged = False
        self._setter.set(self.lrs[0])

    @property
    def done(self) -> bool:
        return self.diverged or self.seen >= self.samples

    def record(self, loss: float, size: int) -> None:
        """One step of ``size`` examples whose loss was ``loss``; moves to the next LR when due."""
        if not math.isfinite(loss):
            self.diverged = True
            self._sums[self._point], self._counts[self._point] = math.nan, 1  # it blew up at this LR
            return
        self._sums[self._point] += loss * size
        self._counts[self._point] += size
        self.seen += size
        while self._point < len(self.lrs) - 1 and self.seen >= self._ends[self._point]:
            self._point += 1
        self._setter.set(self.lrs[self._point])

    def state_dict(self) -> dict[str, Any]:
        """The progress and the snapshots to go back to: tensors and Python scalars."""
        return {
            "params": list(self._saved_params),
            "optimizer": self._saved_optimizer,
            "model": self._saved_model,
            "sums": list(self._sums),
            "counts": list(self._counts),
            "seen": self.seen,
            "point": self._point,
            "diverged": self.diverged,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a saved probe: its snapshots, its progress, and the LR of its current point."""
        if len(state["params"]) != len(self._params):
            raise ValueError(
                f"probe.params: the state has {len(state['params'])} parameters, "
                f"the optimizer {len(self._params)}"
            )
        self._saved_params = [p.detach().clone() for p in state["params"]]
        self._saved_optimizer = copy.deepcopy(state["optimizer"])
        self._saved_model = copy.deepcopy(state["model"]) if state["model"] is not None else None
        self._sums = [float(v) for v in state["sums"]]
        self._counts = [int(v) for v in state["counts"]]
        self.seen, self._point, self.diverged = (
            int(state["seen"]),
            int(state["point"]),
            bool(state["diverged"]),
        )
        self._setter.set(self.lrs[self._point])

    def finish(self) -> ProbeResult:
        """Put the model and optimizer back as they were, and the probe's result."""
        with torch.no_grad():
            for p, saved in zip(self._params, self._saved_params):
                p.copy_(saved)
        self.optimizer.load_state_dict(copy.deepcopy(self._saved_optimizer))
        if self.model is not None and self._saved_model is not None:
            self.model.load_state_dict(self._saved_model)
        losses = tuple(s / c if c else math.nan for s, c in zip(self._sums, self._counts))
        return result(self.lrs, losses, self.seen, self.initial, self.batch_size, self.space)
