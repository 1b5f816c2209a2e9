"""The benchmark that judges the controller: held-out evaluation-family tasks, equal compute.

For each task drawn from the task distribution's *eval* family (never used in meta-training) and
each seed, every method gets 8 runs' worth of training examples (the controller alone gets one
run: 1/8 of the compute):
  constant grid  best of 8 constant LRs (the task's initial LR x 1/8 .. x8, its initial batch size)
  cosine grid    best of 8 peak LRs of a cosine decay (same grid)
  random search  8 trials, log-uniform LR, batch size from the ladder, constant
  PBT, PB2       population 8
  controller     the shipped default controller alone, one run
  hybrid         PBT with the controller as explore step and in-between adjustments, population 8
Prints per task the best val loss (mean over seeds), test metric and wall time, then each
method's mean rank over tasks and the two goals.

    python experiments/benchmark.py [--tasks 0 1 3 5] [--seeds 0 1 2] [--controller default]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

import rlsched
from rlsched.agents import PB2, PBT, Controller, GridSearch, RandomSearch, Schedule
from rlsched.envs import sample_task


def grid(task) -> list[float]:
    lrs = np.geomspace(task.initial.lr / 8, task.initial.lr * 8, 8)
    return [task.space.clip_lr(float(v)) for v in lrs]


def methods(controller: Controller) -> dict:
    return {
        "constant grid": (lambda t: GridSearch(grid(t), [t.initial.batch_size]), 8),
        "cosine grid": (lambda t: GridSearch(grid(t), [t.initial.batch_size], Schedule("cosine")), 8),
        "random search": (lambda t: RandomSearch(), 8),
        "PBT": (lambda t: PBT(), 8),
        "PB2": (lambda t: PB2(), 8),
        "controller": (lambda t: controller, 1),
        "hybrid": (lambda t: PBT(explore=controller), 8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[0, 1, 3, 5], help="eval-family task seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--controller", default="default")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    controller = Controller.load(args.controller)
    table: dict[str, dict[str, dict]] = {}
    for t in args.tasks:
        task = sample_task(t, "eval")
        table[task.name] = {}
        for name, (make, population) in methods(controller).items():
            losses, tests, walls = [], [], []
            for seed in args.seeds:
                started = time.perf_counter()
                result = rlsched.run(
                    task.build,
                    make(task),
                    space=task.space,
                    population=population,
                    budget_samples=task.budget_samples,
                    decisions=task.decisions,
                    initial=task.initial,
                    seed=seed,
                )
                walls.append(time.perf_counter() - started)
                losses.append(result.best.val_loss if not result.best.diverged else float("inf"))
                test = result.best.test_metrics or {}
                tests.append(test.get("accuracy", test.get("loss", float("nan"))))
            table[task.name][name] = {
                "val_loss": losses,
                "test": tests,
                "wall": walls,
                "total_samples": result.total_samples,
            }
            print(
                f"{task.name:<26} {name:<14} val loss {statistics.mean(losses):.4f} "
                f"(seeds {', '.join(f'{v:.4f}' for v in losses)}), test {statistics.mean(tests):.3f}, "
                f"wall {statistics.mean(walls):.1f} s",
                flush=True,
            )
    names = list(methods(controller))
    print("\n| task | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    ranks = {n: [] for n in names}
    for task_name, rows in table.items():
        means = {n: statistics.mean(rows[n]["val_loss"]) for n in names}
        order = sorted(names, key=lambda n: means[n])
        for r, n in enumerate(order, 1):
            ranks[n].append(r)
        cells = [f"**{means[n]:.4f}**" if n == order[0] else f"{means[n]:.4f}" for n in names]
        print(f"| {task_name} | " + " | ".join(cells) + " |")
    print("| mean rank | " + " | ".join(f"{statistics.mean(ranks[n]):.2f}" for n in names) + " |")
    hybrid_best = sum(r == 1 for r in ranks["hybrid"])
    gaps = [
        statistics.mean(rows["hybrid"]["val_loss"]) / statistics.mean(rows["PBT"]["val_loss"]) - 1
        for rows in table.values()
    ]
    alone = [
        statistics.mean(rows["controller"]["val_loss"]) / statistics.mean(rows["cosine grid"]["val_loss"]) - 1
        for rows in table.values()
    ]
    print(
        f"\nhybrid best on {hybrid_best} of {len(table)} tasks; hybrid vs PBT val loss: "
        f"{statistics.mean(gaps):+.1%} on average"
    )
    print(
        f"controller alone (1/8 compute) vs best-of-8 cosine grid: {statistics.mean(alone):+.1%} on average "
        f"(per task: {', '.join(f'{g:+.1%}' for g in alone)})"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
