"""The action encoding shared by the environment, the controller and the user-loop scheduler.

An action is ``[lr_index, batch_index]`` (Gymnasium ``MultiDiscrete([5, 3])``): the LR is
multiplied by ``LR_FACTORS[lr_index]`` and the batch size moves ``BATCH_STEPS[batch_index]`` rungs
on the space's ladder (the scale rule first rescales the LR; the factor is a correction on top).

>>> from rlsched.core.space import HyperparamSpace, Hyperparams
>>> apply_action(HyperparamSpace(), Hyperparams(0.01, 64), [4, 1])
Hyperparams(lr=0.02, batch_size=64)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlsched.core.space import Hyperparams, HyperparamSpace

LR_FACTORS = (0.5, 0.8, 1.0, 1.25, 2.0)
BATCH_STEPS = (-1, 0, 1)


def apply_action(space: HyperparamSpace, hp: Hyperparams, action: Any) -> Hyperparams:
    """Hyperparameters after a MultiDiscrete ``[lr_index, batch_index]`` action (pure)."""
    lr_index, batch_index = (int(a) for a in np.asarray(action).reshape(-1))
    return space.move(hp, lr_factor=LR_FACTORS[lr_index], batch_step=BATCH_STEPS[batch_index])
