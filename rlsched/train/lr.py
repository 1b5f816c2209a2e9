"""One way to set an optimizer's learning rate: the first group's LR, the others in ratio to it."""

from __future__ import annotations

import math

import torch


class LRSetter:
    """Sets the LR of every parameter group, keeping each group's ratio to the first group's.

    The ratios are read once, at construction. A group whose LR is a tensor (as for capturable
    or fused optimizers) is filled in place, so the optimizer keeps its own tensor.
    :meth:`changed` tells whether something else has set an LR since.

    >>> opt = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": 0.1},
    ...                        {"params": [torch.zeros(1)], "lr": 0.05}])
    >>> LRSetter(opt).set(0.5); [g["lr"] for g in opt.param_groups]
    [0.5, 0.25]
    """

    def __init__(self, optimizer: torch.optim.Optimizer, owner: str = "the LR setter") -> None:
        base = float(optimizer.param_groups[0]["lr"])
        if not base > 0:
            raise ValueError(
                f"optimizer.param_groups[0]['lr']: expected > 0 (the other groups' LRs are set in ratio "
                f"to the first group's), got {base!r}"
            )
        self.optimizer, self.owner = optimizer, owner
        self.ratios = [float(g["lr"]) / base for g in optimizer.param_groups]
        self.last = [float(g["lr"]) for g in optimizer.param_groups]  # the LRs as last set

    def check_groups(self) -> None:
        """``ValueError`` if the optimizer has gained a parameter group since construction."""
        count = len(self.optimizer.param_groups)
        if count != len(self.ratios):
            raise ValueError(
                f"optimizer.param_groups: {count} groups now, {len(self.ratios)} when {self.owner} was "
                "built; a group added later (add_param_group) has no LR ratio: add every group first"
            )

    def set(self, lr: float) -> None:
        self.check_groups()
        self.last = [lr * ratio for ratio in self.ratios]
        for group, value in zip(self.optimizer.param_groups, self.last):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    def changed(self) -> tuple[int, float, float] | None:
        """``(group, found, set)`` for the first group whose LR is not the one last set, else None."""
        for i, (group, value) in enumerate(zip(self.optimizer.param_groups, self.last)):
            found = float(group["lr"])
            if not math.isclose(found, value, rel_tol=1e-6, abs_tol=1e-12):
                return i, found, value
        return None
