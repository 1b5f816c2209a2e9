"""Where members train under ``torchrun``: predicted interval times and a balanced placement.

Pure functions of measured times and batch sizes; rank 0 calls them between generations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def predicted_costs(
    seconds: Sequence[float], batch_sizes: Sequence[int], next_batch_sizes: Sequence[int]
) -> list[float]:
    """Each member's predicted training time for the next interval, from the last interval's times.

    Time per example is modelled as ``a + b / batch_size`` (a per-example cost plus a per-step
    cost spread over the batch), fitted by least squares to the last interval's members; with a
    single batch size in use, the mean time per member is the prediction for all of them.
    """
    x = np.array([1.0 / b for b in batch_sizes])
    y = np.asarray(seconds, dtype=float)
    if len(set(batch_sizes)) < 2 or not np.all(np.isfinite(y)):
        mean = float(np.mean(y)) if len(y) and np.all(np.isfinite(y)) else 1.0
        return [mean] * len(next_batch_sizes)
    b, a = np.polyfit(x, y, 1)
    a, b = max(float(a), 0.0), max(float(b), 0.0)
    return [a + b / n for n in next_batch_sizes]


def balance(costs: Sequence[float], current: Sequence[int], world: int, *, slack: float = 0.03) -> list[int]:
    """Member -> rank for the next generation, given each member's predicted ``costs``.

    From ``current``, repeatedly take the move of one member off the busiest rank, or the swap of
    two members, that most lowers the busier of the two ranks involved, while one helps. The result
    is kept only if it lowers the predicted slowest rank by more than ``slack``, so members move
    (their states cross the network) only for a real gain.
    """
    placement, loads = list(current), [0.0] * world
    for cost, rank in zip(costs, placement):
        loads[rank] += cost
    before = max(loads)
    for _ in range(len(costs)):
        busiest = max(range(world), key=lambda r: (loads[r], -r))
        best: tuple[float, int, int, int | None] | None = None  # (new peak, leaving, to rank, arriving)
        for i in (i for i in range(len(costs)) if placement[i] == busiest):
            for r in (r for r in range(world) if r != busiest):
                for k in [None] + [k for k in range(len(costs)) if placement[k] == r]:
                    back = costs[k] if k is not None else 0.0
                    peak = max(loads[busiest] - costs[i] + back, loads[r] + costs[i] - back)
                    if peak < (best[0] if best else loads[busiest]) - 1e-12:
                        best = (peak, i, r, k)
        if best is None:
            break
        _, i, r, k = best
        back = costs[k] if k is not None else 0.0
        loads[busiest] += back - costs[i]
        loads[r] += costs[i] - back
        placement[i] = r
        if k is not None:
            placement[k] = busiest
    return placement if max(loads) < before * (1 - slack) else list(current)
