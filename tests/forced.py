"""A controller with a fixed greedy action, shared by tests."""

import torch

from rlsched.agents.controller import Controller


def forced(lr_index, batch_index):
    """A version-1 controller whose greedy action is always [lr_index, batch_index] (4: LR x2)."""
    controller = Controller(version=1)
    last = controller.net.actor[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-5.0)
        last.bias[lr_index] = 5.0
        last.bias[5 + batch_index] = 5.0
    return controller
