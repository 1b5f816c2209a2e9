"""``run``, ``resume`` and ``replay``: experiments from Python, with a run directory on disk.

A run directory holds ``run.json`` (the settings), ``lineage.jsonl`` (every clone, explore and
training event, appended as it happens), the newest complete generation ``checkpoint-NNNNN/``
(``run.pt`` and one ``member-XX.pt`` per member) and, once finished, ``result.json``.

Under ``torchrun`` the same calls run on every rank (see ``rlsched.dist``), and a worker group
that ``torchrun --max-restarts`` restarts resumes its run from the last complete generation.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlsched import dist
from rlsched.agent import Agent
from rlsched.checkpoint import atomic_write_json
from rlsched.dist import Comm
from rlsched.job import interval_sizes
from rlsched.member import Member
from rlsched.runner import (
    RUN_FORMAT,
    JobFactory,
    Runner,
    RunResult,
    checkpoint_dirs,
    read_lineage,
    schedule_from_lineage,
)
from rlsched.space import Hyperparams, HyperparamSpace

log = logging.getLogger("rlsched")


def _task(name: str):
    from rlsched.envs.tasks import get_task  # the edge: built-in tasks by name

    return get_task(name)


def run(
    job_factory: JobFactory | str,
    agent: Agent,
    *,
    space: HyperparamSpace | None = None,
    population: int = 1,
    budget_samples: int | None = None,
    decisions: int | None = None,
    initial: Hyperparams | None = None,
    logdir: str | Path | None = None,
    name: str = "run",
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
    comm: Comm | None = None,
    checkpoint_every: int = 1,
) -> RunResult:
    """Run ``population`` members of ``job_factory`` for ``decisions`` intervals under ``agent``.

    ``job_factory`` is a callable ``seed -> TrainingJob`` or the name of a built-in task, whose
    space, initial hyperparameters, budget and decisions then fill in what is not given.
    With ``logdir``, the run directory is ``logdir/name`` and can be resumed and replayed; a
    checkpoint is written every ``checkpoint_every`` generations (and after the last one).
    Launched by ``torchrun``, every rank calls ``run`` alike and the members are sharded over the
    ranks (``comm`` defaults to :func:`rlsched.dist.current`); every rank gets the same result.

    >>> from rlsched.agents import PBT
    >>> result = run("synthetic", PBT(), population=4, seed=0)
    >>> result.best.val_loss < 0.2
    True
    """
    task_name = job_factory if isinstance(job_factory, str) else None
    if task_name is not None:
        task = _task(task_name)
        job_factory = task.build
        space = space or task.space
        initial = initial or task.initial
        budget_samples = budget_samples or task.budget_samples
        decisions = decisions or task.decisions
    if space is None or budget_samples is None or decisions is None:
        raise ValueError("space, budget_samples, decisions: required when job_factory is not a task name")
    comm = comm or dist.current()
    run_dir = None
    if logdir is not None:
        run_dir = Path(logdir) / name
        if (run_dir / "run.json").exists():
            if is_restart_of(run_dir):  # torchrun restarted the workers: go on where they stopped
                if comm.rank == 0:
                    log.warning(
                        "rlsched: torchrun restart %d: resuming %s from its last complete generation",
                        dist.restart_count(),
                        run_dir,
                    )
                return resume(run_dir, job_factory, agent, progress, comm=comm)
            raise ValueError(f"logdir: {run_dir} already holds a run; resume it or choose another name")
        comm.barrier()  # every rank has looked before rank 0 writes
    runner = Runner(
        job_factory,
        agent,
        space=space,
        population=population,
        budget_samples=budget_samples,
        decisions=decisions,
        initial=initial or space.default(),
        seed=seed,
        run_dir=run_dir,
        progress=progress,
        comm=comm,
        checkpoint_every=checkpoint_every,
    )
    created = run_dir is not None and not run_dir.exists()
    if run_dir is not None and comm.rank == 0:
        config = getattr(agent, "config", None)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "lineage.jsonl").unlink(missing_ok=True)
        atomic_write_json(
            run_dir / "run.json",
            {
                "format": RUN_FORMAT,
                "task": task_name,
                "agent": config() if config else None,
                "space": space.to_dict(),
                "population": population,
                "budget_samples": budget_samples,
                "decisions": decisions,
                "initial": runner.initial.to_dict(),
                "seed": seed,
                "checkpoint_every": checkpoint_every,
                "launch": dist.launch_id(),
            },
        )
    started = time.perf_counter()
    try:
        state = runner.start()  # its first collective also waits for rank 0's run.json
    except (ValueError, RuntimeError):  # bad input found by the agent (e.g. grid size): leave nothing
        if run_dir is not None and created and comm.rank == 0:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    runner.checkpoint(state)
    return runner.loop(state, started)


def is_restart_of(run_dir: Path) -> bool:
    """True when this process is a ``torchrun`` elastic restart of the launch that made ``run_dir``."""
    if dist.restart_count() == 0 or dist.launch_id() is None:
        return False
    try:
        return json.loads((run_dir / "run.json").read_text()).get("launch") == dist.launch_id()
    except (OSError, json.JSONDecodeError):
        return False


def find_restart(logdir: Path) -> Path | None:
    """The run under ``logdir`` that an earlier attempt of this ``torchrun`` launch made (resuming
    a finished one only rewrites its result)."""
    if dist.restart_count() == 0:
        return None
    return next((p.parent for p in sorted(Path(logdir).glob("*/run.json")) if is_restart_of(p.parent)), None)


def _read_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise ValueError(f"run_dir: {run_dir} is not an rlsched run directory (no run.json)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"run_dir: {path} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise ValueError(f"run_dir: {path} is not an rlsched run file (expected format {RUN_FORMAT!r})")
    return config


def _factory(config: dict[str, Any], job_factory: JobFactory | None) -> JobFactory:
    if job_factory is not None:
        return job_factory
    if config.get("task") is None:
        raise ValueError("job_factory: this run was made with a custom job factory; pass the same one")
    return _task(config["task"]).build


def resume(
    run_dir: str | Path,
    job_factory: JobFactory | None = None,
    agent: Agent | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    comm: Comm | None = None,
) -> RunResult:
    """Continue a killed run from its newest complete checkpoint; the result equals an unbroken
    run's. The number of ``torchrun`` ranks may differ from the run's first attempt."""
    comm = comm or dist.current()
    run_dir = Path(run_dir)
    config = _read_run(run_dir)
    if agent is None:
        if config.get("agent") is None:
            raise ValueError("agent: this run's agent cannot be rebuilt from run.json; pass the same agent")
        from rlsched.agents import build_agent  # the edge: agents by config

        agent = build_agent(config["agent"])
    space = HyperparamSpace(
        lr=tuple(config["space"]["lr"]),
        batch_size=tuple(config["space"]["batch_size"]),
        scale_rule=config["space"]["scale_rule"],
    )
    runner = Runner(
        _factory(config, job_factory),
        agent,
        space=space,
        population=config["population"],
        budget_samples=config["budget_samples"],
        decisions=config["decisions"],
        initial=Hyperparams(**config["initial"]),
        seed=config["seed"],
        run_dir=run_dir,
        progress=progress,
        comm=comm,
        checkpoint_every=int(config.get("checkpoint_every", 1)),
    )
    started = time.perf_counter()
    checkpoints = checkpoint_dirs(run_dir)
    legacy = sorted(run_dir.glob("checkpoint-*.pt"))
    if legacy and not checkpoints:
        raise ValueError(
            f"checkpoint: {legacy[-1]} is a single-file checkpoint of an older rlsched; "
            "this version resumes generation directories (checkpoint-NNNNN/) only"
        )
    comm.barrier()  # every rank has chosen the checkpoint before rank 0 may write a newer one
    if not checkpoints:  # killed before the first checkpoint: start over
        if comm.rank == 0:
            (run_dir / "lineage.jsonl").unlink(missing_ok=True)
        state = runner.start(purge_board=True)
        runner.checkpoint(state)
    else:
        state = runner.restore(checkpoints[-1])
    return runner.loop(state, started)


@dataclass(frozen=True)
class ReplayResult:
    """A fresh member retrained on the best member's reconstructed schedule, beside the run's best."""

    schedule: list[tuple[int, Hyperparams]]
    metrics: dict[str, float]
    run_metrics: dict[str, float]
    job_seed: int


def replay(run_dir: str | Path, job_factory: JobFactory | None = None) -> ReplayResult:
    """Retrain one fresh member, from the best member's original initialisation, on its schedule
    rebuilt from ``lineage.jsonl`` alone, and report it beside the run's result."""
    run_dir = Path(run_dir)
    config = _read_run(run_dir)
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        raise ValueError(f"run_dir: {run_dir} has no result.json; the run has not finished (resume it first)")
    result = json.loads(result_path.read_text())
    schedule = schedule_from_lineage(read_lineage(run_dir), result["best_member"])
    intervals = interval_sizes(config["budget_samples"], config["decisions"])
    member = Member(_factory(config, job_factory)(result["seed_of_best_origin"]), schedule[0][1])
    member.start()
    for (_, hp), samples in zip(schedule, intervals, strict=True):
        member.advance(hp, samples)
    return ReplayResult(
        schedule, dict(member.last.metrics), result["best"]["metrics"], result["seed_of_best_origin"]
    )
