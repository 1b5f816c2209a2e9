"""The ``rlsched`` command line.

``rlsched run`` trains a built-in task in its TrainingEnv twice, at a constant learning rate and
with a fixed step-decay schedule, and prints both runs decision by decision.
``rlsched tasks`` lists the built-in tasks and their Gymnasium ids.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def step_decay_action(decision: int, decisions: int) -> list[int]:
    """Halve the LR at every other decision once 40 % of the decisions have passed, else keep."""
    start = round(0.4 * decisions)
    halve = decision >= start and (decision - start) % 2 == 0
    return [0 if halve else 2, 1]


def _episode(task, schedule: str, seed: int, budget: int, decisions: int, quiet: bool) -> dict:
    env = task.make_env(budget_samples=budget, decisions=decisions)
    _, info = env.reset(seed=seed)
    start, total, done, decision = time.perf_counter(), 0.0, False, 0
    if not quiet:
        print(f"\n{schedule}: decision  samples        lr  batch_size  train_loss  val_loss")
    while not done:
        action = [2, 1] if schedule == "constant" else step_decay_action(decision, decisions)
        _, reward, done, _, info = env.step(action)
        total += reward
        decision += 1
        if not quiet:
            print(
                f"{'':{len(schedule) + 1}} {decision:8d} {info['samples']:8d} {info['lr']:9.4g} "
                f"{info['batch_size']:11d} {info.get('train_loss', float('nan')):11.4f} "
                f"{info['val_loss']:9.4f}"
            )
    return {
        "schedule": schedule,
        "val_loss": info["val_loss"],
        "return": total,
        "accuracy": info.get("val_accuracy"),
        "diverged": info["diverged"],
        "seconds": time.perf_counter() - start,
    }


def cmd_run(args: argparse.Namespace) -> int:
    from rlsched.envs.tasks import get_task

    task = get_task(args.task)
    budget = args.budget_samples or task.budget_samples
    decisions = args.decisions or task.decisions
    task.make_env(budget_samples=budget, decisions=decisions)  # validates before any training
    print(
        f"task {task.name}: {task.description}; {budget} examples, {decisions} decisions, "
        f"start at lr={task.initial.lr:g}, batch_size={task.initial.batch_size}"
    )
    results = [
        _episode(task, s, args.seed, budget, decisions, args.quiet) for s in ("constant", "step-decay")
    ]
    print("\nschedule     final val loss  val accuracy  return log(L0/LT)  wall s")
    for r in results:
        accuracy = f"{r['accuracy']:12.3f}" if r["accuracy"] is not None else f"{'-':>12}"
        print(
            f"{r['schedule']:<12} {r['val_loss']:14.4f} {accuracy} {r['return']:18.3f} {r['seconds']:7.1f}"
            + ("  (diverged)" if r["diverged"] else "")
        )
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from rlsched.envs.tasks import TASKS

    for task in TASKS.values():
        print(f"{task.name:<12} {task.env_id:<26} {task.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlsched", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a built-in task with a constant and a step-decay schedule")
    run.add_argument("--task", default="mnist1d-mlp", help="built-in task name (see `rlsched tasks`)")
    run.add_argument("--seed", type=int, default=0, help="episode seed")
    run.add_argument("--budget-samples", type=_positive_int, help="training examples per run")
    run.add_argument("--decisions", type=_positive_int, help="decision intervals per run")
    run.add_argument("--quiet", action="store_true", help="print only the final table")
    run.set_defaults(handler=cmd_run)
    tasks = sub.add_parser("tasks", help="list the built-in tasks and their Gymnasium ids")
    tasks.set_defaults(handler=cmd_tasks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:  # bad input found past argparse: one line, exit code 2
        print(f"rlsched: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
