"""Check the task zoo (rlsched.envs.zoo): one episode per kind at its good LR, and episode times.

For every kind, at its default settings and its reference LR held constant, runs one full
episode (the whole budget, one evaluation per decision) on one thread and prints the initial,
final and best validation loss and the decision the best came at: under-fitting kinds should
still improve at the end, over-fitting ones bottom out early. Then times whole episodes of
sampled train-family tasks (at their drawn, deliberately poor, initial hyperparameters).

``--sweep`` first re-checks the reference LRs: constant LRs at 1/3, 1/sqrt(3), 1, sqrt(3) and 3
times the reference (final val loss, mean of two job seeds); a best factor other than 1 means
the kind's ``lr`` entry should move.

    OMP_NUM_THREADS=1 python experiments/zoo_check.py [--sampled 20] [--sweep]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from rlsched.envs.tasks import Task
from rlsched.envs.zoo import ZOO_KINDS, good_lr, sample_zoo_task, zoo_task

KEEP = [2, 1]  # LR factor 1, batch size unchanged: a constant-hyperparameter episode


def episode(task: Task, seed: int = 0) -> tuple[list[float], float]:
    """Validation losses after each decision (index 0: untrained) and the episode's wall seconds."""
    env = task.make_env()
    started = time.perf_counter()
    _, info = env.reset(seed=seed)
    losses, done = [info["val_loss"]], False
    while not done:
        _, _, done, _, info = env.step(KEEP)
        losses.append(info["val_loss"] if not info["diverged"] else math.inf)
    return losses, time.perf_counter() - started


def sweep(factors: tuple[float, ...] = (1 / 3, 3**-0.5, 1.0, 3**0.5, 3.0), seeds: int = 2) -> None:
    print("reference LR sweep: final val loss (mean of 2 seeds) at constant LR = factor x reference")
    for kind, spec in ZOO_KINDS.items():
        for optimizer in [o for o in ("sgd", "adam", "adamw") if o in spec.optimizers]:
            lr = good_lr(kind, optimizer)
            finals = []
            for factor in factors:
                task = zoo_task(kind, optimizer=optimizer, lr=lr * factor)
                finals.append(statistics.mean(episode(task, s)[0][-1] for s in range(seeds)))
            best = factors[min(range(len(factors)), key=finals.__getitem__)]
            row = "  ".join(f"x{f:.2f} {v:.4f}" for f, v in zip(factors, finals))
            print(f"  {kind:20s} {optimizer:5s} ref {lr:.3g}:  {row}   best x{best:.2f}", flush=True)


def other_regime(kind: str) -> tuple[str, dict] | None:
    """The regime a kind's defaults are not in, with its middle train size and label noise."""
    spec = ZOO_KINDS[kind]
    others = [r for r in spec.regimes if r != spec.regime]
    if not others:
        return None
    ranges = spec.regimes[others[0]]
    overrides = {"train_size": ranges["train_size"][len(ranges["train_size"]) // 2]}
    if "label_noise" in ranges:
        overrides["label_noise"] = round(sum(ranges["label_noise"]) / 2, 3)
    return others[0], overrides


def check_kinds() -> None:
    """One constant-LR episode per kind at its defaults, then one in its other regime."""
    print(
        f"{'kind':20s} {'family':6s} {'regime':9s} {'opt':5s} {'params':>6s} {'train':>6s} {'noise':>5s} "
        f"{'budget':>7s} {'dec':>3s} {'lr':>7s} {'bs':>3s} {'wall s':>6s} {'val0':>6s} {'end':>6s} "
        f"{'best':>6s} {'at':>5s}"
    )
    runs = [(kind, ZOO_KINDS[kind].regime, {}) for kind in ZOO_KINDS]
    runs += [(kind, *other_regime(kind)) for kind in ZOO_KINDS if other_regime(kind)]
    for i, (kind, regime, overrides) in enumerate(runs):
        if i == len(ZOO_KINDS):
            print("-- the same in the other regime (middle train size and label noise of its ranges)")
        task = zoo_task(kind, **overrides)
        job = task.make_job(0)  # also makes (and caches) the data, outside the timed episode
        params = sum(p.numel() for p in job.model.parameters())
        losses, seconds = episode(task)
        best = min(range(len(losses)), key=losses.__getitem__)
        s, hp = task.settings, task.initial
        row = (
            f"{kind:20s} {s['family']:6s} {regime:9s} {s['optimizer']:5s} {params:6d}",
            f"{len(job.train_data):6d} {s.get('label_noise', 0.0):5.2f} {task.budget_samples:7d}",
            f"{task.decisions:3d} {hp.lr:7.3g}",
            f"{hp.batch_size:3d} {seconds:6.2f} {losses[0]:6.3f} {losses[-1]:6.3f} {losses[best]:6.3f}",
            f"{best:2d}/{task.decisions}",
        )
        print(*row, flush=True)


def time_sampled(family: str, count: int) -> None:
    seconds = []
    for seed in range(count):
        task = sample_zoo_task(seed, family)
        task.make_job(0)  # data outside the timing
        losses, wall = episode(task)
        seconds.append(wall)
        s = task.settings
        print(
            f"  {family}/{seed:<3d} {s['kind']:20s} {s['optimizer']:5s} {s['regime']:9s} {s['budget']:6s} "
            f"budget {task.budget_samples:6d} x{task.decisions:2d}  lr {task.initial.lr:.3g} "
            f"(x{s['lr_factor']:.2f} good) bs {task.initial.batch_size:3d}  {wall:5.2f} s  "
            f"val {losses[0]:.3f} -> {losses[-1]:.3f}",
            flush=True,
        )
    print(
        f"{family} family, {count} sampled episodes: median {statistics.median(seconds):.2f} s, "
        f"max {max(seconds):.2f} s, total {sum(seconds):.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampled", type=int, default=20, help="train-family tasks to time")
    parser.add_argument("--eval-sampled", type=int, default=0, help="eval-family tasks to time")
    parser.add_argument("--sweep", action="store_true", help="re-check the reference LRs first")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.sweep:
        sweep()
    check_kinds()
    if args.sampled:
        time_sampled("train", args.sampled)
    if args.eval_sampled:
        time_sampled("eval", args.eval_sampled)


if __name__ == "__main__":
    main()
