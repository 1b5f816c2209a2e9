"""PBT and PB2 against a best-of-8 cosine grid on mnist1d MLP, side by side in one run.

Setup (issue 3): population 8, SGD momentum 0.9, 384k training examples per member, batch ladder
32..512, LR in [1e-3, 1], 10 decisions; since issue 10 the task has 40,000 training examples,
enough that its val loss still falls at the end of the budget (under-fitting). Prints, per method
over the seeds: best final val loss (mean +- std), test accuracy of the best member, wall time, and
wall time / pure training time (the summed time inside the members' ``train`` calls), and per run
the best val loss of the population after each decision.

    python experiments/bench_pbt.py [--seeds 0 1 2] [--threads 1] [--quantile-fraction 0.25] [--no-ray]
    python experiments/bench_pbt.py --regime [--seeds 0 1 2]

``--quantile-fraction`` sets PBT's, PB2's and Ray Tune's alike (0.25: the issue's setup).
``--regime`` checks the regime only: one member at the task's constant initial hyperparameters
(LR 0.05, batch 128) and the default experiment (PBT, population 8), val loss after each decision.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

import rlsched
from rlsched.agents import PB2, PBT, Fixed, GridSearch, Schedule
from rlsched.population.lineage import Train

METHODS = {
    "PBT": lambda q: PBT(quantile_fraction=q),
    "PB2": lambda q: PB2(quantile_fraction=q),
    "cosine grid (bs 128)": lambda q: GridSearch(list(np.geomspace(0.01, 0.5, 8)), [128], Schedule("cosine")),
}


@dataclass
class RayResult:
    """The fields of rlsched.RunResult that the table reads, for a Ray Tune run."""

    best: Any
    wall_seconds: float
    train_seconds: float
    intervals_trained: int  # member-intervals Ray Tune trained in all
    intervals_budget: int  # what equal compute allows: population x decisions
    curve: list[float]  # the best val loss reported after each decision


def best_per_decision(result: Any) -> list[float]:
    """The population's best val loss after each decision interval, first to last."""
    if isinstance(result, RayResult):
        return result.curve
    best: dict[int, float] = {}
    for event in result.lineage:
        if isinstance(event, Train) and np.isfinite(event.val_loss):
            best[event.decision] = min(best.get(event.decision, np.inf), event.val_loss)
    return [best[d] for d in sorted(best)]


def curve_text(losses: list[float]) -> str:
    return " ".join(f"{loss:.3f}" for loss in losses)


def ray_pbt(seed: int, threads: int, budget_samples: int, quantile_fraction: float = 0.25) -> RayResult:
    """Ray Tune's PopulationBasedTraining on the same job: same space, mutations, interval, budget.

    Each trial trains the rlsched job through ``train``/``evaluate`` (so the training code is the
    same), reports once per decision interval with a checkpoint, and Ray Tune copies and explores.
    Two trials run at a time (one per core); ``train_seconds`` sums the time inside ``train``.
    """
    import os
    import random
    import tempfile
    import time

    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    from rlsched import Hyperparams
    from rlsched.core.job import interval_sizes
    from rlsched.envs.tasks import get_task

    task = get_task("mnist1d-mlp")
    intervals = interval_sizes(budget_samples, task.decisions)

    def trainable(config: dict) -> None:
        torch.set_num_threads(threads)
        job = task.build(int(config["seed"]))
        done = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint:
            with checkpoint.as_directory() as directory:
                state = torch.load(os.path.join(directory, "state.pt"), weights_only=True)
            job.load_state_dict(state["job"])
            done = int(state["done"])
        while done < len(intervals):
            started = time.perf_counter()
            job.train(Hyperparams(config["lr"], config["batch_size"]), intervals[done])
            spent = time.perf_counter() - started
            done += 1
            metrics = {
                "val_loss": job.evaluate()["loss"],
                "decisions_done": done,
                "interval_train_seconds": spent,
            }
            if done == len(intervals):
                metrics["test_accuracy"] = job.evaluate("test")["accuracy"]
            with tempfile.TemporaryDirectory() as directory:
                torch.save(
                    {"job": job.state_dict(), "done": done},
                    os.path.join(directory, "state.pt"),
                )
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    random.seed(seed)
    np.random.seed(seed)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    space = task.space
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        metric="val_loss",
        mode="min",
        perturbation_interval=1,
        quantile_fraction=quantile_fraction,
        resample_probability=0.25,
        perturbation_factors=(1.25, 0.8),
        hyperparam_mutations={"lr": tune.loguniform(*space.lr), "batch_size": list(space.batch_size)},
    )
    param_space = {
        "lr": tune.loguniform(*space.lr),
        "batch_size": tune.choice(list(space.batch_size)),
        "seed": tune.randint(0, 2**31 - 1),
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space=param_space,
            tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=8, reuse_actors=False),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        grid = tuner.fit()
        wall = time.perf_counter() - started
        finals = [r.metrics for r in grid if r.metrics and r.metrics.get("decisions_done") == len(intervals)]
        train_seconds = sum(float(r.metrics_dataframe["interval_train_seconds"].sum()) for r in grid)
        intervals_trained = sum(len(r.metrics_dataframe) for r in grid)  # one report per interval
        reports = [r.metrics_dataframe for r in grid]
        curve = [
            float(np.nanmin([df.loc[df["decisions_done"] == d, "val_loss"].min() for df in reports]))
            for d in range(1, len(intervals) + 1)
        ]
    ray.shutdown()
    best = min(finals, key=lambda m: m["val_loss"] if np.isfinite(m["val_loss"]) else np.inf)
    best_view = SimpleNamespace(val_loss=best["val_loss"], test_metrics={"accuracy": best["test_accuracy"]})
    return RayResult(best_view, wall, train_seconds, intervals_trained, 8 * len(intervals), curve)


def regime(seeds: list[int]) -> None:
    """Val loss after each decision: one member at the task's constant initial hyperparameters,
    and the best of the default experiment (PBT, population 8)."""
    for s in seeds:
        for name, agent, population in (("constant", Fixed(Schedule("constant")), 1), ("PBT", PBT(), 8)):
            result = rlsched.run("mnist1d-mlp", agent, population=population, seed=s)
            curve = best_per_decision(result)
            print(f"{name:<9} seed {s}: val loss by decision {curve_text(curve)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget-samples", type=int, default=384_000, help="examples per member")
    parser.add_argument("--quantile-fraction", type=float, default=0.25, help="PBT's, PB2's and Ray's")
    parser.add_argument("--regime", action="store_true", help="only the val loss by decision, no comparison")
    parser.add_argument("--no-ray", action="store_true", help="leave Ray Tune out even when installed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.regime:
        regime(args.seeds)
        return
    try:
        import ray.tune  # noqa: F401

        methods = METHODS if args.no_ray else {**METHODS, "Ray Tune PBT": None}
    except ImportError:
        print("Ray Tune is not installed: reporting rlsched only (pip install 'ray[tune]' to compare).")
        methods = METHODS
    rows = {}
    for name, make in methods.items():
        if make is None:
            runs = [ray_pbt(s, args.threads, args.budget_samples, args.quantile_fraction) for s in args.seeds]
        else:
            runs = [
                rlsched.run(
                    "mnist1d-mlp",
                    make(args.quantile_fraction),
                    population=8,
                    seed=s,
                    budget_samples=args.budget_samples,
                )
                for s in args.seeds
            ]
        rows[name] = runs
        for s, r in zip(args.seeds, runs):
            print(
                f"{name:<22} seed {s}: best val loss {r.best.val_loss:.4f}, test accuracy "
                f"{r.best.test_metrics['accuracy']:.3f}, wall {r.wall_seconds:.1f} s, "
                f"pure training {r.train_seconds:.1f} s"
                + (
                    f", {r.intervals_trained} member-intervals trained (budget {r.intervals_budget})"
                    if isinstance(r, RayResult)
                    else ""
                )
                + f"\n{'':<22} best val loss by decision: {curve_text(best_per_decision(r))}",
                flush=True,
            )
    print(
        f"\nmnist1d-mlp, population 8, {args.budget_samples} examples per member, "
        f"seeds {args.seeds}, {args.threads} thread(s), quantile fraction {args.quantile_fraction}"
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
