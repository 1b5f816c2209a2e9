"""The benchmark that judges the controller: whole kinds of job it never trained on, equal compute.

For every kind in the task zoo's *eval* family (leave-kind-out: meta-training never sees them)
the first ``--draws`` eval-family draws of that kind are tasks (default 1): a random optimizer,
size and regime, and an initial LR deliberately off by 0.1x to 4x. Each task runs with ``--seeds``
seeds; every method's final val loss (its best member's), test metric and wall time are recorded.

One-run methods (1x compute, no tuning):
  controller      the learned controller alone (``--controller``, default: the shipped one)
  constant        the job's initial hyperparameters throughout
  cosine          cosine decay from the job's initial LR
  probe+cosine    LR range probe (5 % of the budget), then warmup + cosine from the probed peak
  schedule-free   Schedule-Free AdamW or SGD (matching the job's optimizer) at the initial LR
  prodigy         Prodigy (lr=1) with a cosine multiplier
Eight-run methods (8x compute):
  constant grid   best of 8 constant LRs, initial LR x 1/10 .. x 10
  cosine grid     best of 8 cosine peaks on the same grid
  PBT, PB2        population 8
  hybrid          PBT with the controller as its explore step and in-between adjustments

Prints per task and method the mean final val loss over seeds, then a table of each method's
geometric-mean val-loss ratio to the best-of-8 cosine grid, its mean rank and the goals.
Needs the ``bench`` extra (``pip install -e ".[bench]"``: schedulefree, prodigyopt) for the two
optimizer baselines.

    python experiments/benchmark.py [--seeds 0 1 2] [--draws 2] [--controller default] [--json results.json]
    python experiments/benchmark.py --methods controller constant ... --json a.json   # a share of it
    python experiments/benchmark.py --combine a.json b.json                          # the shares' table
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

import rlsched
from rlsched import Hyperparams, HyperparamSpace
from rlsched.agents import PB2, PBT, Controller, Fixed, GridSearch, ProbeCosine, Schedule
from rlsched.envs.tasks import Task
from rlsched.envs.zoo import ZOO_FAMILIES, sample_zoo_task

ONE_RUN = ("controller", "constant", "cosine", "probe+cosine", "schedule-free", "prodigy")
EIGHT_RUN = ("constant grid", "cosine grid", "PBT", "PB2", "hybrid")


def eval_tasks(draws: int = 1) -> list[Task]:
    """The first ``draws`` eval-family draws of each eval kind, kind by kind."""
    tasks: dict[str, list[Task]] = {k: [] for k in ZOO_FAMILIES["eval"]}
    seed = 0
    while any(len(found) < draws for found in tasks.values()):
        task = sample_zoo_task(seed, "eval")
        if len(tasks[task.settings["kind"]]) < draws:
            tasks[task.settings["kind"]].append(task)
        seed += 1
    return [task for k in ZOO_FAMILIES["eval"] for task in tasks[k]]


def grid(task: Task) -> list[float]:
    return [task.space.clip_lr(float(v)) for v in np.geomspace(task.initial.lr / 10, task.initial.lr * 10, 8)]


def optimizer_task(task: Task, optimizer: str, lr: float) -> Task:
    """The same job with another optimizer, starting at ``lr`` (the space then allows it)."""
    space = HyperparamSpace(lr=(lr / 1000, lr * 10), batch_size=task.space.batch_size, scale_rule="none")
    build = functools.partial(task.build, optimizer=optimizer, lr=lr)
    return replace(task, build=build, space=space, initial=Hyperparams(lr, task.initial.batch_size))


def methods(controller: Controller) -> dict[str, Callable[[Task], tuple[Task, object, int]]]:
    """name -> task -> (the task as that method runs it, its agent, its population)."""
    sf = {"sgd": "schedulefree-sgd", "adam": "schedulefree-adamw", "adamw": "schedulefree-adamw"}
    return {
        "controller": lambda t: (t, controller, 1),
        "constant": lambda t: (t, Fixed(), 1),
        "cosine": lambda t: (t, Fixed(Schedule("cosine")), 1),
        "probe+cosine": lambda t: (t, ProbeCosine(), 1),
        "schedule-free": lambda t: (optimizer_task(t, sf[t.settings["optimizer"]], t.initial.lr), Fixed(), 1),
        "prodigy": lambda t: (optimizer_task(t, "prodigy", 1.0), Fixed(Schedule("cosine")), 1),
        "constant grid": lambda t: (t, GridSearch(grid(t), [t.initial.batch_size]), 8),
        "cosine grid": lambda t: (t, GridSearch(grid(t), [t.initial.batch_size], Schedule("cosine")), 8),
        "PBT": lambda t: (t, PBT(), 8),
        "PB2": lambda t: (t, PB2(), 8),
        "hybrid": lambda t: (t, PBT(explore=controller), 8),
    }


def run_one(task: Task, agent: object, population: int, seed: int) -> dict:
    started = time.perf_counter()
    result = rlsched.run(
        task.build,
        agent,
        space=task.space,
        population=population,
        budget_samples=task.budget_samples,
        decisions=task.decisions,
        initial=task.initial,
        seed=seed,
    )
    test = result.best.test_metrics or {}
    return {
        "val_loss": math.inf if result.best.diverged else result.best.val_loss,
        "test": test.get("accuracy", test.get("loss", math.nan)),
        "wall": time.perf_counter() - started,
        "examples": result.total_samples,
    }


def geomean(values: list[float]) -> float:
    return math.exp(statistics.mean(math.log(v) for v in values)) if all(v > 0 for v in values) else math.inf


def per_task(
    table: dict[str, dict[str, list[dict]]], names: list[str], key: str, title: str, *, bold=min, digits=4
) -> dict[str, dict[str, float]]:
    """Print one markdown table of ``key``'s mean over seeds, per task and method (``bold``: which
    value to mark, or None); returns the means."""
    mean = {t: {n: statistics.mean(r[key] for r in rows[n]) for n in names} for t, rows in table.items()}
    print(f"\n{title}\n\n| task | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for t, row in mean.items():
        best = bold([v for v in row.values() if not math.isnan(v)], default=math.nan) if bold else math.nan
        cells = [f"**{row[n]:.{digits}f}**" if row[n] == best else f"{row[n]:.{digits}f}" for n in names]
        print(f"| {t} | " + " | ".join(cells) + " |")
    return mean


def report(table: dict[str, dict[str, list[dict]]], names: list[str]) -> None:
    mean = per_task(table, names, "val_loss", "Final val loss of the best member (mean over seeds):")
    per_task(
        table,
        names,
        "test",
        "Test metric of the best member (accuracy where the task classifies, higher is better; "
        "else test loss, lower is better; mean over seeds):",
        bold=None,
    )
    per_task(
        table, names, "wall", "Wall time per run or population, s (mean over seeds):", bold=None, digits=1
    )
    reference = "cosine grid" if "cosine grid" in names else names[0]
    ratio = {n: geomean([mean[t][n] / mean[t][reference] for t in mean]) for n in names}
    ranks = {n: statistics.mean(sorted(mean[t].values()).index(mean[t][n]) + 1 for t in mean) for n in names}
    walls = {n: statistics.mean(r["wall"] for rows in table.values() for r in rows[n]) for n in names}
    print(f"\n| method | runs | geo-mean val-loss ratio to {reference} | mean rank | mean wall s |")
    print("|---|---|---|---|---|")
    for n in names:
        print(f"| {n} | {1 if n in ONE_RUN else 8} | {ratio[n]:.3f} | {ranks[n]:.2f} | {walls[n]:.1f} |")
    if "controller" in names and reference == "cosine grid":
        c = {t: mean[t]["controller"] for t in mean}
        beats = {b: sum(c[t] < mean[t][b] for t in mean) for b in ("prodigy", "schedule-free") if b in names}
        harm = max(c[t] / mean[t]["constant"] - 1 for t in mean) if "constant" in names else math.nan
        print(
            "\ngoal 1: controller alone / best-of-8 cosine grid (geo-mean) = "
            f"{ratio['controller']:.3f} (<= 1.02)"
        )
        print("goal 2: controller beats " + ", ".join(f"{b} on {k} of {len(mean)}" for b, k in beats.items()))
        print(f"goal 3: controller's worst ratio to the job's constant LR = {harm:+.1%} (<= +5 %)")
        eight = [n for n in names if n in EIGHT_RUN]
        if "hybrid" in eight:
            order = sorted(
                eight,
                key=lambda n: statistics.mean(
                    sorted(mean[t][m] for m in eight).index(mean[t][n]) for t in mean
                ),
            )
            print(f"goal 4: best mean rank among 8-run methods: {order[0]} (hybrid wanted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--controller", default="default")
    parser.add_argument("--draws", type=int, default=1, help="eval-family draws per kind (tasks per kind)")
    parser.add_argument("--methods", nargs="+", default=None, help="a subset of the methods, by name")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument("--combine", nargs="+", default=None, help="report the merged results of these files")
    args = parser.parse_args()
    if args.combine:
        table: dict[str, dict[str, list[dict]]] = {}
        for path in args.combine:
            with open(path) as f:
                for label, rows in json.load(f).items():
                    table.setdefault(label, {}).update(rows)
        order = [*ONE_RUN, *EIGHT_RUN]
        report(table, [n for n in order if all(n in rows for rows in table.values())])
        return
    torch.set_num_threads(1)
    controller = Controller.load(args.controller)
    every = methods(controller)
    names = args.methods or list(every)
    for n in names:
        if n not in every:
            raise SystemExit(f"--methods: unknown method {n!r}; expected some of {', '.join(every)}")
    table: dict[str, dict[str, list[dict]]] = {}
    for task in eval_tasks(args.draws):
        settings = task.settings
        label = f"{task.name} ({settings['optimizer']}, {settings['regime']}, lr0 {task.initial.lr:.2g})"
        table[label] = {}
        for name in names:
            runs = [run_one(*every[name](task), seed) for seed in args.seeds]
            table[label][name] = runs
            loss, test = (statistics.mean(r[k] for r in runs) for k in ("val_loss", "test"))
            wall = statistics.mean(r["wall"] for r in runs)
            print(f"{label:<48} {name:<14} val loss {loss:.4f} test {test:.3f} wall {wall:.1f} s", flush=True)
    report(table, names)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
