"""SupervisedJob: the TrainingJob contract for an ordinary supervised PyTorch loop."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset, default_collate

from rlsched.core.job import TrainStats
from rlsched.core.space import Hyperparams
from rlsched.train.lr import LRSetter
from rlsched.train.probe import GradientProbe, summarize
from rlsched.train.sampler import DynamicBatchSampler

Metric = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | float"]
STATE_FORMAT = "rlsched.SupervisedJob/1"


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max matches the target class (any leading shape)."""
    return (outputs.argmax(dim=-1) == targets).float().mean()


class SupervisedJob:
    """Trains ``model`` with ``optimizer`` on ``train_data``; implements :class:`TrainingJob`.

    Args:
        model: any ``nn.Module``; it is called as ``model(inputs)``.
        optimizer: any ``torch.optim.Optimizer`` over the model's parameters. With several
            parameter groups, ``Hyperparams.lr`` sets the first group's LR and the others keep
            the ratio to it they had at construction.
        train_data, val_data: map-style datasets whose items are ``(inputs, target)``.
            ``TensorDataset`` is indexed in one slice per batch; others are collated item by item.
        loss_fn: ``loss_fn(outputs, targets)`` returning the *mean* loss over the batch.
        metrics: extra validation metrics, ``name -> fn(outputs, targets)`` returning a batch mean.
        seed: seeds the data order and the job's own torch RNG (dropout and the like).
        test_data: optional held-out split, evaluated only with ``evaluate("test")``.
        eval_batch_size: examples per forward pass in :meth:`evaluate`.
        stat_pairs: pairs of consecutive steps probed per ``train`` call for the gradient
            statistics; the other steps run untouched, which keeps the statistics cheap.

    ``train(hp, samples)`` trains on exactly ``samples`` examples: ``samples // batch_size`` full
    steps and, if there is a remainder, one final smaller step (nothing is carried over).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_data: Dataset,
        val_data: Dataset,
        loss_fn: Callable[[Any, Any], torch.Tensor],
        *,
        metrics: Mapping[str, Metric] | None = None,
        seed: int = 0,
        test_data: Dataset | None = None,
        eval_batch_size: int = 1024,
        stat_pairs: int = 8,
    ) -> None:
        base = optimizer.param_groups[0]["lr"]
        if not float(base) > 0:
            raise ValueError(f"optimizer.param_groups[0]['lr']: expected > 0, got {float(base)!r}")
        if "loss" in (metrics or {}):
            raise ValueError("metrics: the name 'loss' is reserved for loss_fn")
        for name, data in (("train_data", train_data), ("val_data", val_data)):
            if len(data) == 0:
                raise ValueError(f"{name}: expected a non-empty dataset")
        self.model = model
        self.optimizer = optimizer
        self.train_data = train_data
        self.loss_fn = loss_fn
        self.metrics = dict(metrics or {})
        self.splits = {"val": val_data} | ({"test": test_data} if test_data is not None else {})
        self.eval_batch_size = int(eval_batch_size)
        self.stat_pairs = int(stat_pairs)
        self.sampler = DynamicBatchSampler(len(train_data), 1, shuffle=True, seed=seed)
        self._lr = LRSetter(optimizer)
        self._params = [p for g in optimizer.param_groups for p in g["params"]]
        self._device = self._params[0].device if self._params else torch.device("cpu")
        self._rng_state = torch.Generator().manual_seed(seed).get_state()
        self._cuda_rng_state = self._fresh_cuda_rng(seed)

    # -- the contract ----------------------------------------------------------------------
    def train(self, hp: Hyperparams, samples: int) -> TrainStats:
        """Train on exactly ``samples`` examples at ``hp``; see the class docstring."""
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples: expected a positive integer, got {samples!r}")
        self.set_lr(hp.lr)
        self.sampler.batch_size = hp.batch_size
        full, rest = divmod(samples, hp.batch_size)
        probe = GradientProbe(self._params, full, self.stat_pairs)
        losses: list[torch.Tensor] = []
        sizes: list[int] = []
        self.model.train()
        self._optimizer_mode(training=True)
        with self._own_rng():
            for step in range(full + (rest > 0)):
                size = hp.batch_size if step < full else rest
                inputs, targets = self._batch(self.train_data, self.sampler.take(size))
                loss = self.loss_fn(self.model(inputs), targets)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                probe.before_step(step, size)
                self.optimizer.step()
                probe.after_step(step)
                losses.append(loss.detach())
                sizes.append(size)
        return summarize(losses, sizes, probe)

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> dict[str, float]:
        """Mean loss and metrics over a whole split, in eval mode; ``{"loss": ..., **metrics}``."""
        if split not in self.splits:
            raise ValueError(f"split: expected one of {sorted(self.splits)}, got {split!r}")
        data = self.splits[split]
        was_training = self.model.training
        self.model.eval()
        self._optimizer_mode(training=False)
        totals = dict.fromkeys(["loss", *self.metrics], 0.0)
        try:
            for start in range(0, len(data), self.eval_batch_size):
                index = torch.arange(start, min(start + self.eval_batch_size, len(data)))
                inputs, targets = self._batch(data, index)
                outputs = self.model(inputs)
                totals["loss"] += float(self.loss_fn(outputs, targets)) * len(index)
                for name, fn in self.metrics.items():
                    totals[name] += float(fn(outputs, targets)) * len(index)
        finally:
            self.model.train(was_training)
        return {name: total / len(data) for name, total in totals.items()}

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (deep copy) of model, optimizer, data order and RNG; plain tensors and scalars."""
        state = {
            "format": STATE_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": {"cpu": self._rng_state.clone()},
        }
        if self._cuda_rng_state is not None:
            state["rng"]["cuda"] = self._cuda_rng_state.clone()
        return copy.deepcopy(state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a snapshot from :meth:`state_dict`; the next ``train`` call's LR wins."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"state.format: expected {STATE_FORMAT!r}, got {found!r}")
        state = copy.deepcopy(dict(state))  # never share tensors with the caller or other jobs
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self._rng_state = state["rng"]["cpu"]
        if self._cuda_rng_state is not None and "cuda" in state["rng"]:
            self._cuda_rng_state = state["rng"]["cuda"]

    # -- helpers ---------------------------------------------------------------------------
    def _optimizer_mode(self, training: bool) -> None:
        """Schedule-Free optimizers (``schedulefree``) keep two weight sequences and must be told
        which one the model uses: ``optimizer.train()`` to train, ``optimizer.eval()`` to evaluate."""
        switch = getattr(self.optimizer, "train" if training else "eval", None)
        if callable(switch):
            switch()

    def set_lr(self, lr: float) -> None:
        """Set the first group's LR to ``lr`` and every other group's to its kept ratio of it."""
        self._lr.set(lr)

    def _batch(self, data: Dataset, index: torch.Tensor) -> tuple[Any, Any]:
        if isinstance(data, TensorDataset):
            batch = tuple(t[index] for t in data.tensors)
        else:
            batch = default_collate([data[i] for i in index.tolist()])
        if len(batch) != 2:
            raise ValueError(f"dataset items must be (inputs, target) pairs, got {len(batch)} fields")
        return _to(batch[0], self._device), _to(batch[1], self._device)

    def _fresh_cuda_rng(self, seed: int) -> torch.Tensor | None:
        if self._device.type != "cuda":
            return None
        with torch.random.fork_rng(devices=[self._device]):
            torch.cuda.manual_seed(seed)
            return torch.cuda.get_rng_state(self._device)

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run with this job's RNG state, so jobs sharing a process never disturb each other."""
        outer = torch.get_rng_state()
        torch.set_rng_state(self._rng_state)
        if self._cuda_rng_state is not None:
            outer_cuda = torch.cuda.get_rng_state(self._device)
            torch.cuda.set_rng_state(self._cuda_rng_state, self._device)
        try:
            yield
        finally:
            self._rng_state = torch.get_rng_state()
            torch.set_rng_state(outer)
            if self._cuda_rng_state is not None:
                self._cuda_rng_state = torch.cuda.get_rng_state(self._device)
                torch.cuda.set_rng_state(outer_cuda, self._device)


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value
