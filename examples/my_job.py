"""A user's own training job, run from a config: ``rlsched run examples/my_job.toml``.

``make_job(seed)`` is the job factory the config names (``task = "examples/my_job.py:make_job"``).
Besides the learning rate and batch size, the job reads two extra hyperparameters from
``hp.extra``: weight decay (set on the optimizer) and dropout (set on the model). The config's
``[space.extra]`` gives their ranges, and PBT explores them like the LR.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

import rlsched


class MyJob(rlsched.SupervisedJob):
    """A SupervisedJob that applies weight decay and dropout from ``hp.extra`` before each interval."""

    def train(self, hp: rlsched.Hyperparams, samples: int) -> rlsched.TrainStats:
        for group in self.optimizer.param_groups:
            group["weight_decay"] = hp.extra["weight_decay"]
        for module in self.model.modules():
            if isinstance(module, nn.Dropout):
                module.p = hp.extra["dropout"]
        return super().train(hp, samples)


def make_job(seed: int) -> MyJob:
    """A small MLP on a fixed noisy classification problem; the model's initialisation follows ``seed``."""
    data = torch.Generator().manual_seed(0)  # the same data for every member
    x = torch.randn(1200, 16, generator=data)
    y = ((x[:, :4].sum(dim=1) + 0.5 * torch.randn(1200, generator=data)) > 0).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return MyJob(
        model,
        optimizer,
        TensorDataset(x[:1000], y[:1000]),
        TensorDataset(x[1000:], y[1000:]),
        nn.functional.cross_entropy,
        metrics={"accuracy": rlsched.accuracy},
        seed=seed,
    )
