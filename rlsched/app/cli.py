"""The ``rlsched`` command line.

    rlsched run [CONFIG.toml] [--set key=value ...] [--quiet]   the default experiment without a config
    rlsched compare CONFIG.toml [--set key=value ...] [--quiet]
    rlsched replay RUN_DIR
    rlsched resume RUN_DIR [--quiet]
    rlsched train-controller CONFIG.toml [--set key=value ...] [--quiet]
    rlsched tasks
    rlsched init [PATH]                                         a commented example config
    rlsched --version

``run``, ``compare``, ``replay``, ``resume`` and ``train-controller`` take ``--threads N``: torch's
threads per process, by default 1 (or ``$OMP_NUM_THREADS`` when set). One thread is the default
because a population trains many small models side by side: on a busy 2-core machine torch's own
default (one thread per core) ran about 10x slower. ``run``, ``replay`` and ``resume`` take
``--device cpu|cuda|cuda:N`` for the built-in tasks; under ``torchrun``, ``cuda`` is each
process's ``cuda:$LOCAL_RANK``.

Bad input (flags, config keys and values, files, run directories) is one line on stderr naming
the field, the value and what is allowed, exit code 2, and nothing created or changed on disk:
everything is checked before the first file is written.

This module imports only the standard library at the top, and each command imports what it
needs when it runs: ``rlsched --help`` and ``--version`` answer without loading torch.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_USAGE = 2
EXIT_FAILED = 1
MAX_THREADS = 1024
EXAMPLE = "example.toml"  # shipped in this package; `rlsched init` writes it


class UsageError(Exception):
    """Bad input found by argparse: reported as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, never the multi-line usage dump
        raise UsageError(f"{self.prog}: {message}")


# -- threads and device ----------------------------------------------------------------------------
def _thread_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, {MAX_THREADS}], got {text!r}")
    return value


def _device_name(text: str) -> str:
    if not re.fullmatch(r"cpu|cuda|cuda:\d{1,4}", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


def _setup(args: argparse.Namespace) -> str | None:
    """Apply ``--threads`` (default 1, or ``$OMP_NUM_THREADS``) and check ``--device``; the device
    the members train on (``cuda`` resolved to an index), or None when not given."""
    import torch

    threads = args.threads if args.threads is not None else None
    if threads is None and not os.environ.get("OMP_NUM_THREADS"):
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)
    device = getattr(args, "device", None)
    if device is None or device == "cpu":
        return device
    if not torch.cuda.is_available():
        raise ValueError(
            f"--device: {device} is not available (torch {torch.__version__} sees no CUDA device); "
            "expected cpu"
        )
    count = torch.cuda.device_count()
    if device == "cuda":  # under torchrun each process takes its own GPU
        index = int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))
    else:
        index = int(device.partition(":")[2])
    if index >= count:
        raise ValueError(
            f"--device: cuda:{index} is not available; expected cpu or cuda:0 to cuda:{count - 1}"
        )
    return f"cuda:{index}"


def _check_device_task(device: str | None, task: str) -> None:
    from rlsched.app.config import is_user_task

    if device not in (None, "cpu") and is_user_task(task):
        raise ValueError(f"--device: applies to the built-in tasks; task {task!r} places its own model")


# -- reports ------------------------------------------------------------------------------------
def _hp_text(hp) -> str:
    """``lr, batch size`` and each extra as ``name value``."""
    return f"{hp.lr:.3g}, {hp.batch_size}" + "".join(f", {n} {v:.3g}" for n, v in hp.extra.items())


def _value(metrics: dict[str, float] | None, key: str) -> float:
    value = (metrics or {}).get(key)
    return math.nan if value is None else value


def _summary(result) -> str:
    """One row per member, best first; a member whose job raised says in which intervals."""
    rows = sorted(result.members, key=lambda m: (m.diverged, _value(m.metrics, "loss"), m.member_id))
    extra = [k for k in rows[0].metrics if k != "loss"]
    names = list(rows[0].hparams.extra)
    tests = extra and any(m.test_metrics for m in rows)
    header = f"{'rank':>4} {'member':>6} {'val loss':>9} " + " ".join(f"{'val ' + k:>12}" for k in extra)
    header += f" {'test ' + extra[0]:>13}" if tests else ""
    header += f" {'lr start -> end':>21} {'batch size':>12}"
    header += "".join(f" {n + ' start -> end':>21}" for n in names)
    lines = [header]
    for rank, m in enumerate(rows, 1):
        first, last = (m.trajectory[0][1] if m.trajectory else m.hparams), m.hparams
        line = f"{rank:>4} {m.member_id:>6} {_value(m.metrics, 'loss'):>9.4f} " + " ".join(
            f"{_value(m.metrics, k):>12.4f}" for k in extra
        )
        if tests:
            line += f" {_value(m.test_metrics, extra[0]):>13.4f}"
        line += f" {first.lr:>9.3g} -> {last.lr:<9.3g} {first.batch_size:>4} -> {last.batch_size:<4}"
        line += "".join(f" {first.extra.get(n, math.nan):>9.3g} -> {last.extra[n]:<9.3g}" for n in names)
        failed = [d for d, _ in result.failed_intervals(m.member_id)]
        notes = (["diverged"] if m.diverged else []) + (
            [f"job raised in interval{'s' if len(failed) > 1 else ''} {', '.join(map(str, failed))}"]
            if failed
            else []
        )
        lines.append(line + ("  " + "; ".join(notes) if notes else ""))
    return "\n".join(lines)


def _report(result, logdir: Path) -> None:
    print(_summary(result))
    best = result.best
    names = "".join(f", {n}" for n in best.hparams.extra)
    print(
        f"\nbest: member {best.member_id}, val loss {_value(best.metrics, 'loss'):.4f}; "
        f"trajectory (examples: lr, batch size{names}):"
    )
    print(
        "  "
        + (", ".join(f"{s}: {_hp_text(hp)}" for s, hp in best.trajectory) or "none (no interval trained)")
    )
    print(
        f"wall {result.wall_seconds:.1f} s, of which training {result.train_seconds:.1f} s; "
        f"{result.total_samples} examples in all"
    )
    print(f"logs: {result.logdir}")
    print(f"view: tensorboard --logdir {logdir}")


# -- commands -----------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from rlsched.app.config import (
        apply_sets,
        build_agent_checked,
        check_output_dir,
        read_toml,
        run_config,
    )
    from rlsched.app.experiment import find_restart, run
    from rlsched.app.progress import progress_bar
    from rlsched.population.comm import current_comm, shutdown

    device = _setup(args)
    data = read_toml(args.config) if args.config else {}
    data = apply_sets(data, args.set or [])
    resolved = run_config(data)
    config = resolved.config
    _check_device_task(device, config.task)
    agent = build_agent_checked(config.agent, "agent", config.population)
    comm = current_comm()  # under torchrun: this rank's share of the population

    def choose_name() -> str:
        check_output_dir(config.logdir, "logdir")
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
        check_output_dir(Path(config.logdir) / name, "name")
        return name

    name = comm.from_root(choose_name)
    root = comm.rank == 0
    update, bar = progress_bar(args.quiet or not root, name)
    failed = True
    try:
        if root:
            ranks = f", {comm.world} ranks" if comm.world > 1 else ""
            print(
                f"rlsched: {config.agent['type']} on {config.task}, population {config.population}, "
                f"{resolved.budget_samples} examples per member, {resolved.decisions} decisions, "
                f"seed {config.seed}{ranks}" + (f", on {device}" if device else "")
            )
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
            device=device,
        )
        failed = False
    finally:
        if bar is not None:
            bar.close(failed=failed)
        shutdown()
    if root:
        _report(result, Path(config.logdir))
    return 0


def _run_dir(text: str) -> Path:
    refusal = ValueError(
        f"RUN_DIR: {text[:200]!r} is not an rlsched run directory (no run.json); "
        "pass a directory made by `rlsched run`"
    )
    if not text or "\0" in text:
        raise refusal
    path = Path(text)
    try:
        if not (path / "run.json").is_file():
            raise refusal
    except OSError:  # a name too long, a loop of links...
        raise refusal from None
    return path


def cmd_resume(args: argparse.Namespace) -> int:
    from rlsched.app.config import check_output_dir
    from rlsched.app.experiment import check_resume, resume
    from rlsched.app.progress import progress_bar
    from rlsched.population.comm import current_comm, shutdown

    device = _setup(args)
    run_dir = _run_dir(args.run_dir)
    check_resume(run_dir, device=device)  # every file read and checked before anything changes
    if not (run_dir / "result.json").is_file():  # a finished run is only read
        check_output_dir(run_dir, "RUN_DIR")
    comm = current_comm()
    update, bar = progress_bar(args.quiet or comm.rank != 0, run_dir.name)
    failed = True
    try:
        result = resume(run_dir, progress=update, comm=comm, device=device)
        failed = False
    finally:
        if bar is not None:
            bar.close(failed=failed)
        shutdown()
    if comm.rank == 0:
        _report(result, run_dir.parent)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from rlsched.app.experiment import replay
    from rlsched.population.comm import under_torchrun

    if under_torchrun():  # one member: each rank would retrain it and take the run's lock
        raise ValueError("replay: retrains one member in one process; run it without torchrun")
    device = _setup(args)
    run_dir = _run_dir(args.run_dir)
    replayed = replay(run_dir, device=device)
    names = "".join(f", {n}" for n in replayed.trajectory[0][1].extra)
    print(f"best member's trajectory, rebuilt from lineage.jsonl (examples: lr, batch size{names}):")
    print("  " + ", ".join(f"{s}: {_hp_text(hp)}" for s, hp in replayed.trajectory))
    print(f"{'':14} {'val loss':>9}")
    print(f"{'run (best)':14} {_value(replayed.run_metrics, 'loss'):>9.4f}")
    print(f"{'replay':14} {replayed.metrics['loss']:>9.4f}   (one fresh member, seed {replayed.job_seed})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rlsched.app.compare import SUMMARY, compare, slug
    from rlsched.app.config import apply_sets, check_output_dir, compare_config, read_toml
    from rlsched.population.comm import under_torchrun

    if under_torchrun():
        raise ValueError("compare: runs in one process; under torchrun, launch `rlsched run CONFIG`")
    device = _setup(args)
    data = apply_sets(read_toml(args.config), args.set or [])
    config, space, initial, budget, decisions = compare_config(data)
    _check_device_task(device, config.task)
    root = Path(config.logdir) / config.name
    check_output_dir(config.logdir, "logdir")
    check_output_dir(root, "name")
    labels: dict[str, str] = {}
    for label in config.agents:
        if slug(label) in labels:
            raise ValueError(
                f"agents.{label}: its directory {slug(label)!r} is also agents.{labels[slug(label)]}'s; "
                "choose labels that differ in letters or digits"
            )
        labels[slug(label)] = label
    if (root / "results.json").exists() or any(root.glob("*/seed-*/run.json")):
        raise ValueError(f"name: {root} already holds a comparison; choose another name")
    table = compare(config, space, initial, budget, decisions, quiet=args.quiet, device=device)
    print(table)
    print(f"\nresults: {root / 'results.json'}, {root / 'results.csv'}, {root / 'comparison.png'}")
    print(f"view: tensorboard --logdir {root / SUMMARY}   (every agent's and seed's runs: --logdir {root})")
    return 0


def cmd_train_controller(args: argparse.Namespace) -> int:
    from rlsched.agents.meta import meta_config, train_controller
    from rlsched.app.config import apply_sets, check_output_dir, read_toml

    _setup(args)
    config = meta_config(apply_sets(read_toml(args.config), args.set or []))
    out = Path(config.out)
    for path in (out, out.with_suffix(".md")):
        if os.path.lexists(path):
            raise ValueError(f"out: {path} already exists; choose another path")
    check_output_dir(out, "out")
    check_output_dir(config.logdir, "logdir")
    _, card = train_controller(config, quiet=args.quiet)
    print(card)
    print(f"controller: {config.out} (model card {out.with_suffix('.md')})")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from rlsched.envs.tasks import TASKS

    for task in TASKS.values():
        print(
            f"{task.name:<12} {task.env_id:<26} {task.budget_samples:>7} examples, "
            f"{task.decisions:>2} decisions  {task.description}"
        )
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Write the shipped example config (PBT on mnist1d-mlp, every key explained) to ``PATH``."""
    from importlib.resources import files

    from rlsched.app.config import check_output_dir

    path = Path(args.path)
    if not args.path or "\0" in args.path:
        raise ValueError(f"PATH: expected a file name, got {args.path!r}")
    if os.path.lexists(path):
        raise ValueError(f"PATH: {path} already exists; choose another path or remove it")
    check_output_dir(path, "PATH")
    text = files("rlsched.app").joinpath(EXAMPLE).read_text()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x") as file:  # never over a file that appeared meanwhile
            file.write(text)
    except OSError as error:  # a place no check foresaw (/proc, say): nothing was written
        raise ValueError(f"PATH: cannot write {path} ({error.strerror or error})") from None
    print(f"wrote {path}: PBT on the built-in task mnist1d-mlp, every key explained")
    print(f"run it:  rlsched run {path}   (or: rlsched run {path} --set population=4)")
    return 0


# -- the parser ---------------------------------------------------------------------------------
def _version() -> str:
    import rlsched  # the package's __init__ imports nothing heavy

    return rlsched.__version__


def _common(parser: argparse.ArgumentParser, *, device: bool = False) -> None:
    parser.add_argument(
        "--threads",
        type=_thread_count,
        metavar="N",
        help="torch threads per process (default: 1, or $OMP_NUM_THREADS when set)",
    )
    if device:
        parser.add_argument(
            "--device",
            type=_device_name,
            metavar="DEVICE",
            help="cpu (default), cuda or cuda:N: where a built-in task's members train "
            "(under torchrun, cuda is cuda:$LOCAL_RANK)",
        )


def _with_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. population=4"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> Parser:
    parser = Parser(prog="rlsched", description="Adapt learning rate and batch size while training.")
    parser.add_argument("--version", action="version", version=f"rlsched {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="run an experiment (the default one without CONFIG)")
    run.add_argument("config", nargs="?", help="TOML config (`rlsched init` writes one)")
    _with_config(run)
    _common(run, device=True)
    run.set_defaults(handler=cmd_run)
    compare = sub.add_parser("compare", help="several agents at equal compute, ranked")
    compare.add_argument("config", help="TOML compare config (see experiments/compare*.toml)")
    _with_config(compare)
    _common(compare, device=True)
    compare.set_defaults(handler=cmd_compare)
    replay = sub.add_parser("replay", help="retrain a fresh member on a finished run's best schedule")
    replay.add_argument("run_dir")
    _common(replay, device=True)
    replay.set_defaults(handler=cmd_replay)
    resume = sub.add_parser("resume", help="continue a killed run from its last checkpoint")
    resume.add_argument("run_dir")
    resume.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(resume, device=True)
    resume.set_defaults(handler=cmd_resume)
    train = sub.add_parser("train-controller", help="meta-train a controller with PPO (see experiments/)")
    train.add_argument("config", help="TOML config, e.g. experiments/train-controller.toml")
    _with_config(train)
    _common(train)
    train.set_defaults(handler=cmd_train_controller)
    tasks = sub.add_parser("tasks", help="list the built-in tasks and their Gymnasium ids")
    tasks.set_defaults(handler=cmd_tasks)
    init = sub.add_parser("init", help="write a commented example config (PBT on a built-in task)")
    init.add_argument("path", nargs="?", default="rlsched.toml", help="where (default: rlsched.toml)")
    init.set_defaults(handler=cmd_init)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input is one line on stderr and exit code 2 (see the module docstring)."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (UsageError, ValueError) as error:
        print(_one_line(error, "rlsched: error: "), file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # the machine, not the input: a disk that filled up mid-run, say
        message = _one_line(error, "rlsched: failed: ")
        if error.errno == errno.ENOSPC:
            where = getattr(args, "run_dir", None) or _run_dir_of(error.filename) or "RUN_DIR"
            message = (
                f"rlsched: failed: {_one_line(error, '')}; free some space, then `rlsched resume {where}` "
                "goes on from the last complete generation"
            )
        print(message, file=sys.stderr)
        return EXIT_FAILED


def _run_dir_of(filename: object) -> str | None:
    """The run directory holding ``filename`` (the nearest folder above it with a run.json)."""
    if not isinstance(filename, str):
        return None
    return next((str(p) for p in Path(filename).parents if (p / "run.json").is_file()), None)


def _one_line(error: BaseException, prefix: str) -> str:
    text = str(error).strip()
    message = text.splitlines()[0] if text else type(error).__name__
    return message if message.startswith("rlsched") else prefix + message


if __name__ == "__main__":
    sys.exit(main())
