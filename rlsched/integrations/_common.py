"""What the trainer integrations share: the logged names and two small helpers."""

from __future__ import annotations

import dataclasses

import torch

from rlsched.core.space import HyperparamSpace

LR_TAG = "sched/lr"  # the names rlsched's own TensorBoard logs use
BATCH_SIZE_TAG = "sched/batch_size"


def fixed_batch_size(space: HyperparamSpace, batch_size: int) -> HyperparamSpace:
    """``space`` with its ladder cut down to ``batch_size`` alone: the controller adapts the LR only."""
    return dataclasses.replace(space, batch_size=(int(batch_size),))


def weighted_loss(parts: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
    """One step's loss (0-dim, detached) and examples from its micro-batches' ``(mean loss, size)``."""
    size = sum(n for _, n in parts)
    loss = sum(loss.detach().double().reshape(()) * n for loss, n in parts) / size
    return loss, size
