"""What the trainer integrations share: the logged names, their arguments' checks and two helpers."""

from __future__ import annotations

import dataclasses

import torch

from rlsched.core.checks import integer
from rlsched.core.space import HyperparamSpace

LR_TAG = "sched/lr"  # the names rlsched's own TensorBoard logs use
BATCH_SIZE_TAG = "sched/batch_size"


def checked(space: HyperparamSpace, budget_samples: int | None) -> int | None:
    """``budget_samples`` checked (a positive integer, or None: the trainer's own length), after
    ``space``."""
    if not isinstance(space, HyperparamSpace):
        raise TypeError(f"space: expected a rlsched.HyperparamSpace, got {type(space).__name__}")
    if budget_samples is None:
        return None
    return integer(budget_samples, "budget_samples", 1, what="a positive integer or None")


def fixed_batch_size(space: HyperparamSpace, batch_size: int) -> HyperparamSpace:
    """``space`` with its ladder cut down to ``batch_size`` alone: the controller adapts the LR only."""
    return dataclasses.replace(space, batch_size=(int(batch_size),))


def weighted_loss(parts: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
    """One step's loss (0-dim, detached) and examples from its micro-batches' ``(mean loss, size)``."""
    size = sum(n for _, n in parts)
    loss = sum(loss.detach().double().reshape(()) * n for loss, n in parts) / size
    return loss, size
