"""Does PBT on mnist1d MLP do better without the LR scale rule on batch-size moves?

Runs rlsched's PBT (population 8, the bench_pbt.py setup) over seeds 0, 1, 2 with the task's
space as is (scale_rule "linear") or with ``--scale-rule none``, and prints the best val losses.

    python experiments/pbt_scale_rule.py --scale-rule none
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch

import rlsched
from rlsched.agents import PBT
from rlsched.envs import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale-rule", default="linear", choices=["sqrt", "linear", "none"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = get_task("mnist1d-mlp")
    space = replace(task.space, scale_rule=args.scale_rule)
    losses = [
        rlsched.run(
            task.build,
            PBT(),
            space=space,
            population=8,
            budget_samples=task.budget_samples,
            decisions=task.decisions,
            initial=task.initial,
            seed=s,
        ).best.val_loss
        for s in args.seeds
    ]
    print(
        f"scale_rule {args.scale_rule}: best val loss {[round(v, 4) for v in losses]}, "
        f"mean {statistics.mean(losses):.4f}"
    )


if __name__ == "__main__":
    main()
