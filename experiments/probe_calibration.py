"""Calibrate the probe's rule on the zoo's *train* family (never on the eval kinds).

For each of ``--tasks`` train-family draws: run the LR range probe at the task's start, then a
cosine schedule at 8 peak LRs (the probe's lowest-loss LR x 1/16 .. x 2). Prints, per task, the
best peak over the probe's lowest-loss LR, and the median of that ratio over tasks, which is the
divisor the probe should use (``rlsched.core.probe.DIVISOR`` is its reciprocal's nearest
round value). Also prints each task's val loss of probe + cosine with the current divisor against
the best peak's.

    python experiments/probe_calibration.py [--tasks 16]
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
import torch

import rlsched
from rlsched import Hyperparams
from rlsched.agents import GridSearch, ProbeCosine, Schedule
from rlsched.core.probe import DIVISOR, lr_range_test, suggest
from rlsched.envs.zoo import sample_zoo_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ratios, gaps = [], []
    for k in range(args.tasks):
        task = sample_zoo_task(1000 + k, "train")
        samples = round(0.05 * task.budget_samples)
        probe = lr_range_test(task.build(0), task.initial, samples, task.space)
        lowest = suggest(probe.lrs, probe.losses, 1.0)  # at the probe's batch size
        lowest = task.space.scale_lr(lowest, probe.batch_size, task.initial.batch_size)
        peaks = [task.space.clip_lr(lowest * f) for f in np.geomspace(1 / 16, 2, 8)]
        kwargs = dict(space=task.space, budget_samples=task.budget_samples, decisions=task.decisions, seed=0)
        grid = rlsched.run(
            task.build,
            GridSearch(peaks, [task.initial.batch_size], Schedule("cosine")),
            population=8,
            initial=Hyperparams(peaks[0], task.initial.batch_size),
            **kwargs,
        )
        losses = [m.val_loss if not m.diverged else math.inf for m in grid.members]
        best = int(np.argmin(losses))
        ours = rlsched.run(task.build, ProbeCosine(), initial=task.initial, **kwargs).best.val_loss
        ratios.append(peaks[best] / lowest)
        gaps.append(ours / losses[best])
        print(
            f"{task.name:<26} {task.settings['optimizer']:<6} bs {task.initial.batch_size:>3}  "
            f"best peak / probe's lowest-loss LR = {ratios[-1]:.3f}   probe+cosine / best = {gaps[-1]:.3f}",
            flush=True,
        )
    print(
        f"\nmedian best-peak ratio {statistics.median(ratios):.3f} "
        f"(divisor {1 / statistics.median(ratios):.2f}); "
        f"current divisor {DIVISOR}: probe+cosine / best peak, geo-mean "
        f"{math.exp(statistics.mean(math.log(g) for g in gaps)):.3f}"
    )


if __name__ == "__main__":
    main()
