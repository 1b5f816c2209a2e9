"""Should PBT's explore rescale the LR when it moves the batch size? Both ways, same seeds.

Runs rlsched's PBT (population 8, the bench_pbt.py setup: mnist1d MLP, whose space has the
linear scale rule) with ``scale_lr=False`` (the default: each hyperparameter moves on its own, as
in Ray Tune) and ``scale_lr=True`` (a batch-size move first rescales the LR), and prints the best
val losses per seed and their means.

    python experiments/pbt_scale_rule.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics

import torch

import rlsched
from rlsched.agents import PBT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for scale_lr in (False, True):
        losses = [
            rlsched.run("mnist1d-mlp", PBT(scale_lr=scale_lr), population=8, seed=s).best.val_loss
            for s in args.seeds
        ]
        print(
            f"scale_lr={scale_lr}: best val loss {[round(v, 4) for v in losses]}, "
            f"mean {statistics.mean(losses):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
