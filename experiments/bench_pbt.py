"""PBT and PB2 against a best-of-8 cosine grid on mnist1d MLP, side by side in one run.

Setup (issue 3): population 8, SGD momentum 0.9, 384k training examples per member, batch ladder
32..512, LR in [1e-3, 1], 10 decisions. Prints, per method over the seeds: best final val loss
(mean +- std), test accuracy of the best member, wall time, and wall time / pure training time
(the summed time inside the members' ``train`` calls).

    python experiments/bench_pbt.py [--seeds 0 1 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

import rlsched
from rlsched.agents import PB2, PBT, GridSearch, Schedule

METHODS = {
    "PBT": lambda: PBT(),
    "PB2": lambda: PB2(),
    "cosine grid (bs 128)": lambda: GridSearch(list(np.geomspace(0.01, 0.5, 8)), [128], Schedule("cosine")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import ray.tune  # noqa: F401

        print("Ray Tune is installed, but this script does not drive it yet; see the README.")
    except ImportError:
        print("Ray Tune is not installed: reporting rlsched only (pip install 'ray[tune]' to compare).")
    rows = {}
    for name, make in METHODS.items():
        runs = [rlsched.run("mnist1d-mlp", make(), population=8, seed=s) for s in args.seeds]
        rows[name] = runs
        for s, r in zip(args.seeds, runs):
            print(
                f"{name:<22} seed {s}: best val loss {r.best.val_loss:.4f}, test accuracy "
                f"{r.best.test_metrics['accuracy']:.3f}, wall {r.wall_seconds:.1f} s, "
                f"pure training {r.train_seconds:.1f} s",
                flush=True,
            )
    print(
        f"\nmnist1d-mlp, population 8, 384k examples per member, seeds {args.seeds}, {args.threads} thread(s)"
    )
    print("| method | best val loss | test accuracy | wall s | wall / pure training |")
    print("|---|---|---|---|---|")
    for name, runs in rows.items():
        losses = [r.best.val_loss for r in runs]
        acc = [r.best.test_metrics["accuracy"] for r in runs]
        wall = [r.wall_seconds for r in runs]
        ratio = [r.wall_seconds / r.train_seconds for r in runs]
        print(
            f"| {name} | {statistics.mean(losses):.3f} +- {statistics.pstdev(losses):.3f} | "
            f"{statistics.mean(acc):.3f} | {statistics.mean(wall):.1f} | {statistics.mean(ratio):.2f} |"
        )


if __name__ == "__main__":
    main()
