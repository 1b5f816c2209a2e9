"""One way to set an optimizer's learning rate: the first group's LR, the others in ratio to it."""

from __future__ import annotations

import torch


class LRSetter:
    """Sets the LR of every parameter group, keeping each group's ratio to the first group's.

    The ratios are read once, at construction. A group whose LR is a tensor (as for capturable
    or fused optimizers) is filled in place, so the optimizer keeps its own tensor.

    >>> opt = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": 0.1},
    ...                        {"params": [torch.zeros(1)], "lr": 0.01}])
    >>> LRSetter(opt).set(0.5); [g["lr"] for g in opt.param_groups]
    [0.5, 0.05]
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        base = float(optimizer.param_groups[0]["lr"])
        if not base > 0:
            raise ValueError(f"optimizer.param_groups[0]['lr']: expected > 0, got {base!r}")
        self.optimizer = optimizer
        self.ratios = [float(g["lr"]) / base for g in optimizer.param_groups]

    def set(self, lr: float) -> None:
        for group, ratio in zip(self.optimizer.param_groups, self.ratios):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr * ratio)
            else:
                group["lr"] = lr * ratio
