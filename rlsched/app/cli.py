"""The ``rlsched`` command line.

    rlsched run [CONFIG.toml] [--set key=value ...] [--quiet]   the default experiment without a config
    rlsched compare CONFIG.toml [--set key=value ...] [--quiet]
    rlsched replay RUN_DIR
    rlsched resume RUN_DIR [--quiet]
    rlsched tasks

Bad input (flags, config keys and values, files, run directories) is one line on stderr naming
the field, the value and what is allowed, exit code 2, and nothing created or changed on disk.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rlsched.app.progress import progress_bar

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input found by argparse: reported as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, never the multi-line usage dump
        raise UsageError(f"{self.prog}: {message}")


def _hp_text(hp) -> str:
    """``lr, batch size`` and each extra as ``name value``."""
    return f"{hp.lr:.3g}, {hp.batch_size}" + "".join(f", {n} {v:.3g}" for n, v in hp.extra.items())


def _summary(result, space_note: str = "") -> str:
    rows = sorted(result.members, key=lambda m: (m.diverged, m.val_loss))
    extra = [k for k in rows[0].metrics if k != "loss"]
    names = list(rows[0].hparams.extra)
    header = f"{'rank':>4} {'member':>6} {'val loss':>9} " + " ".join(f"{'val ' + k:>12}" for k in extra)
    header += f" {'test ' + extra[0]:>13}" if extra and rows[0].test_metrics else ""
    header += f" {'lr start -> end':>21} {'batch size':>12}"
    header += "".join(f" {n + ' start -> end':>21}" for n in names)
    lines = [header]
    for rank, m in enumerate(rows, 1):
        first, last = m.trajectory[0][1], m.hparams
        line = f"{rank:>4} {m.member_id:>6} {m.val_loss:>9.4f} " + " ".join(
            f"{m.metrics[k]:>12.4f}" for k in extra
        )
        if extra and m.test_metrics:
            line += f" {m.test_metrics[extra[0]]:>13.4f}"
        line += f" {first.lr:>9.3g} -> {last.lr:<9.3g} {first.batch_size:>4} -> {last.batch_size:<4}"
        line += "".join(f" {first.extra[n]:>9.3g} -> {last.extra[n]:<9.3g}" for n in names)
        lines.append(line + ("  diverged" if m.diverged else ""))
    return "\n".join(lines)


def _report(result, logdir: Path) -> None:
    print(_summary(result))
    best = result.best
    names = "".join(f", {n}" for n in best.hparams.extra)
    print(
        f"\nbest: member {best.member_id}, val loss {best.val_loss:.4f}; "
        f"trajectory (examples: lr, batch size{names}):"
    )
    print("  " + ", ".join(f"{s}: {_hp_text(hp)}" for s, hp in best.trajectory))
    print(
        f"wall {result.wall_seconds:.1f} s, of which training {result.train_seconds:.1f} s; "
        f"{result.total_samples} examples in all"
    )
    print(f"logs: {result.logdir}")
    print(f"view: tensorboard --logdir {logdir}")


def cmd_run(args: argparse.Namespace) -> int:
    from rlsched.app.config import apply_sets, build_agent_checked, read_toml, run_config
    from rlsched.app.experiment import find_restart, run
    from rlsched.population.comm import current_comm, shutdown

    data = read_toml(args.config) if args.config else {}
    data = apply_sets(data, args.set or [])
    resolved = run_config(data)
    config = resolved.config
    agent = build_agent_checked(config.agent, "agent", config.population)
    comm = current_comm()  # under torchrun: this rank's share of the population

    def choose_name() -> str:
        restarted = find_restart(Path(config.logdir))
        if restarted is not None:  # torchrun restarted the workers: the run they had begun
            return restarted.name
        name = config.name
        if "name" not in data:  # the default name steps aside for earlier runs instead of failing
            k = 2
            while (Path(config.logdir) / name / "run.json").exists():
                name, k = f"{config.name}-{k}", k + 1
        elif (Path(config.logdir) / name / "run.json").exists():
            raise ValueError(
                f"name: {Path(config.logdir) / name} already holds a run; resume it or choose another name"
            )
        return name

    name = comm.from_root(choose_name)
    root = comm.rank == 0
    if root:
        ranks = f", {comm.world} ranks" if comm.world > 1 else ""
        print(
            f"rlsched: {config.agent['type']} on {config.task}, population {config.population}, "
            f"{resolved.budget_samples} examples per member, {resolved.decisions} decisions, "
            f"seed {config.seed}{ranks}"
        )
    update, bar = progress_bar(args.quiet or not root, name)
    try:
        result = run(
            config.task,
            agent,
            space=resolved.space,
            population=config.population,
            budget_samples=resolved.budget_samples,
            decisions=resolved.decisions,
            initial=resolved.initial,
            logdir=config.logdir,
            name=name,
            seed=config.seed,
            progress=update,
            comm=comm,
            checkpoint_every=config.checkpoint_every,
        )
    finally:
        if bar is not None:
            bar.close()
        shutdown()
    if root:
        _report(result, Path(config.logdir))
    return 0


def _run_dir(text: str) -> Path:
    path = Path(text)
    if not (path / "run.json").is_file():
        raise ValueError(
            f"RUN_DIR: {text!r} is not an rlsched run directory (no run.json); "
            "pass a directory made by `rlsched run`"
        )
    return path


def cmd_resume(args: argparse.Namespace) -> int:
    from rlsched.app.experiment import resume
    from rlsched.population.comm import current_comm, shutdown
    from rlsched.population.rundir import RunDir

    run_dir = _run_dir(args.run_dir)
    checkpoints = RunDir(run_dir).checkpoints()
    if checkpoints:
        RunDir.check_checkpoint(checkpoints[-1])  # a bad checkpoint fails here, before anything changes
    comm = current_comm()
    update, bar = progress_bar(args.quiet or comm.rank != 0, run_dir.name)
    try:
        result = resume(run_dir, progress=update, comm=comm)
    finally:
        if bar is not None:
            bar.close()
        shutdown()
    if comm.rank == 0:
        _report(result, run_dir.parent)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from rlsched.app.experiment import replay

    run_dir = _run_dir(args.run_dir)
    replayed = replay(run_dir)
    names = "".join(f", {n}" for n in replayed.trajectory[0][1].extra)
    print(f"best member's trajectory, rebuilt from lineage.jsonl (examples: lr, batch size{names}):")
    print("  " + ", ".join(f"{s}: {_hp_text(hp)}" for s, hp in replayed.trajectory))
    print(f"{'':14} {'val loss':>9}")
    print(f"{'run (best)':14} {replayed.run_metrics['loss']:>9.4f}")
    print(f"{'replay':14} {replayed.metrics['loss']:>9.4f}   (one fresh member, seed {replayed.job_seed})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rlsched.app.compare import compare
    from rlsched.app.config import apply_sets, compare_config, read_toml
    from rlsched.population.comm import under_torchrun

    if under_torchrun():
        raise ValueError("compare: runs in one process; under torchrun, launch `rlsched run CONFIG`")

    data = apply_sets(read_toml(args.config), args.set or [])
    config, space, initial, budget, decisions = compare_config(data)
    root = Path(config.logdir) / config.name
    if (root / "results.json").exists() or any(root.glob("*/seed-*/run.json")):
        raise ValueError(f"name: {root} already holds a comparison; choose another name")
    table = compare(config, space, initial, budget, decisions, quiet=args.quiet)
    print(table)
    print(f"\nresults: {root / 'results.json'}, {root / 'results.csv'}, {root / 'comparison.png'}")
    print(f"view: tensorboard --logdir {root}")
    return 0


def cmd_train_controller(args: argparse.Namespace) -> int:
    from rlsched.agents.meta import meta_config, train_controller
    from rlsched.app.config import apply_sets, read_toml

    config = meta_config(apply_sets(read_toml(args.config), args.set or []))
    if Path(config.out).exists():
        raise ValueError(f"out: {config.out} already exists; choose another path")
    _, card = train_controller(config, quiet=args.quiet)
    print(card)
    print(f"controller: {config.out} (model card {Path(config.out).with_suffix('.md')})")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from rlsched.envs.tasks import TASKS

    for task in TASKS.values():
        print(
            f"{task.name:<12} {task.env_id:<26} {task.budget_samples:>7} examples, "
            f"{task.decisions:>2} decisions  {task.description}"
        )
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="rlsched", description="Adapt learning rate and batch size while training.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="run an experiment (the default one without CONFIG)")
    run.add_argument("config", nargs="?", help="TOML config (see experiments/*.toml)")
    run.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. population=4"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=cmd_run)
    compare = sub.add_parser("compare", help="several agents at equal compute, ranked")
    compare.add_argument("config", help="TOML compare config (see experiments/compare*.toml)")
    compare.add_argument("--set", action="append", metavar="KEY=VALUE")
    compare.add_argument("--quiet", action="store_true")
    compare.set_defaults(handler=cmd_compare)
    replay = sub.add_parser("replay", help="retrain a fresh member on a finished run's best schedule")
    replay.add_argument("run_dir")
    replay.set_defaults(handler=cmd_replay)
    resume = sub.add_parser("resume", help="continue a killed run from its last checkpoint")
    resume.add_argument("run_dir")
    resume.add_argument("--quiet", action="store_true")
    resume.set_defaults(handler=cmd_resume)
    train = sub.add_parser("train-controller", help="meta-train a controller with PPO (see experiments/)")
    train.add_argument("config", help="TOML config, e.g. experiments/train-controller.toml")
    train.add_argument("--set", action="append", metavar="KEY=VALUE")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(handler=cmd_train_controller)
    tasks = sub.add_parser("tasks", help="list the built-in tasks and their Gymnasium ids")
    tasks.set_defaults(handler=cmd_tasks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (UsageError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(message if message.startswith("rlsched") else f"rlsched: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
