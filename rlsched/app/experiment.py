"""``run``, ``resume`` and ``replay``: experiments from Python, with a run directory on disk.

A run directory (:class:`~rlsched.population.rundir.RunDir`) holds ``run.json`` (the settings),
``lineage.jsonl`` (every copy, change and training event, appended as it happens), the newest
complete generation ``checkpoint-NNNNN/`` and, once finished, ``result.json``.

Under ``torchrun`` the same calls run on every rank (see :mod:`rlsched.population.comm`), and a
worker group that ``torchrun --max-restarts`` restarts resumes its run from the last complete
generation.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rlsched.agents import build_agent
from rlsched.app.config import is_user_task, load_factory, task_factory
from rlsched.app.progress import Progress, ProgressObserver
from rlsched.core.agent import Agent, Probing
from rlsched.core.job import JobContractError, JobFailed
from rlsched.core.member import Member
from rlsched.core.space import Hyperparams, HyperparamSpace
from rlsched.envs.tasks import Task, get_task
from rlsched.population.comm import Comm, Local, current_comm, launch_id, restart_count
from rlsched.population.lineage import trajectory_from_lineage
from rlsched.population.lock import hold
from rlsched.population.observer import RunObserver
from rlsched.population.persistence import Persistence
from rlsched.population.rundir import RunDir
from rlsched.population.runner import JobFactory, Runner
from rlsched.population.state import RunResult, RunSpec
from rlsched.report.tensorboard import TensorBoardObserver

log = logging.getLogger("rlsched")


def task_defaults(
    task: Task,
    space: HyperparamSpace | None = None,
    initial: Hyperparams | None = None,
    budget_samples: int | None = None,
    decisions: int | None = None,
) -> tuple[HyperparamSpace, Hyperparams, int, int]:
    """What is not given, from the task: its space, its start (or the space's default when the
    given space does not contain it), its budget and its decisions."""
    space = space or task.space
    if initial is None:
        initial = task.initial if space.contains(task.initial) else space.default()
    return space, initial, budget_samples or task.budget_samples, decisions or task.decisions


def _observers(
    run_dir: RunDir | None, spec: RunSpec, agent: Agent, comm: Comm, progress: Progress | None, resumed: bool
) -> list[RunObserver]:
    """TensorBoard first (it flushes before a checkpoint), persistence next, progress last."""
    observers: list[RunObserver] = []
    if run_dir is not None:
        observers += [
            TensorBoardObserver(run_dir, spec, comm, resumed=resumed),
            Persistence(run_dir, agent, comm),
        ]
    if progress is not None:
        observers.append(ProgressObserver(progress, comm.world, spec.decisions))
    return observers


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
    progress: Progress | None = None,
    comm: Comm | None = None,
    checkpoint_every: int = 1,
) -> RunResult:
    """Run ``population`` members of ``job_factory`` for ``decisions`` intervals under ``agent``.

    ``job_factory`` is a callable ``seed -> TrainingJob`` or the name of a built-in task, whose
    space, initial hyperparameters, budget and decisions then fill in what is not given.
    With ``logdir``, the run directory is ``logdir/name`` and can be resumed and replayed; a
    checkpoint is written every ``checkpoint_every`` generations (and after the last one).
    Launched by ``torchrun``, every rank calls ``run`` alike and the members are sharded over the
    ranks (``comm`` defaults to :func:`rlsched.population.comm.current`); every rank gets the
    same result.

    >>> from rlsched.agents import PBT
    >>> result = run("synthetic", PBT(), population=4, seed=0)
    >>> result.best.val_loss < 0.2
    True
    """
    task_name = job_factory if isinstance(job_factory, str) else None
    if task_name is not None and is_user_task(task_name):  # "module:attr" or "file.py:attr"
        job_factory = load_factory(task_name)
    elif task_name is not None:
        task = get_task(task_name)
        job_factory = task.build
        space, initial, budget_samples, decisions = task_defaults(
            task, space, initial, budget_samples, decisions
        )
    if space is None or budget_samples is None or decisions is None:
        raise ValueError("space, budget_samples, decisions: required when job_factory is not a task name")
    spec = RunSpec(
        space, population, budget_samples, decisions, initial or space.default(), int(seed), checkpoint_every
    )
    probe = round(agent.probe_fraction * budget_samples) if isinstance(agent, Probing) else 0
    spec = replace(spec, task=task_name, agent=agent.config(), launch=launch_id(), probe_samples=probe)
    comm = comm or current_comm()
    run_dir = RunDir(Path(logdir) / name) if logdir is not None else None
    if run_dir is not None and run_dir.exists():
        if not is_restart_of(run_dir):
            raise ValueError(f"logdir: {run_dir.path} already holds a run; resume it or choose another name")
        if comm.rank == 0:  # torchrun restarted the workers: go on where they stopped
            log.warning(
                "rlsched: torchrun restart %d: resuming %s from its last complete generation",
                restart_count(),
                run_dir.path,
            )
        return resume(run_dir.path, job_factory, agent, progress, comm=comm)
    observers = _observers(run_dir, spec, agent, comm, progress, False)
    runner = Runner(job_factory, agent, spec, comm=comm, observers=observers)
    started = time.perf_counter()
    if run_dir is None:
        return runner.run(runner.start(), started)
    comm.barrier()  # every rank has looked before rank 0 writes
    created = not run_dir.path.exists()
    with hold(run_dir, comm, new=True):
        if comm.rank == 0:
            run_dir.create(spec)
        state = None
        try:
            state = runner.start()  # its first collective also waits for rank 0's run.json
            return runner.run(state, started)
        except (ValueError, RuntimeError) as error:
            if state is None or (isinstance(error, JOB_ERRORS) and state.decision == 0):
                # bad input (the agent's, e.g. a grid size) or a job that fails before its first
                # generation is complete: leave nothing, the name stays free
                if created and comm.rank == 0:
                    shutil.rmtree(run_dir.path, ignore_errors=True)
            elif isinstance(error, JOB_ERRORS):
                _resumable(error, run_dir, state.decision)
            raise


JOB_ERRORS = (JobFailed, JobContractError)


def _resumable(error: Exception, run_dir: RunDir, decision: int) -> None:
    error.add_note(
        f"rlsched: {run_dir.path} stopped during decision {decision}; its last complete generation is "
        f"saved. Fix the job, then `rlsched resume {run_dir.path}` (or rlsched.resume with the job "
        "factory) goes on from there; or delete the directory."
    )


def is_restart_of(run_dir: RunDir) -> bool:
    """True when this process is a ``torchrun`` elastic restart of the launch that made ``run_dir``."""
    if restart_count() == 0 or launch_id() is None:
        return False
    try:
        return run_dir.read_json().get("launch") == launch_id()
    except ValueError:
        return False


def find_restart(logdir: Path) -> Path | None:
    """The run under ``logdir`` that an earlier attempt of this ``torchrun`` launch made (resuming
    a finished one only rewrites its result)."""
    if restart_count() == 0:
        return None
    runs = (RunDir(p.parent) for p in sorted(Path(logdir).glob("*/run.json")))
    return next((r.path for r in runs if is_restart_of(r)), None)


def _factory(spec: RunSpec, job_factory: JobFactory | None) -> JobFactory:
    if job_factory is not None:
        return job_factory
    if spec.task is None:
        raise ValueError("job_factory: this run was made with a custom job factory; pass the same one")
    return task_factory(spec.task)


def resume(
    run_dir: str | Path,
    job_factory: JobFactory | None = None,
    agent: Agent | None = None,
    progress: Progress | None = None,
    comm: Comm | None = None,
) -> RunResult:
    """Continue a killed run from its newest complete checkpoint; the result equals an unbroken
    run's. The number of ``torchrun`` ranks may differ from the run's first attempt.

    A finished run (``result.json`` written) is not run again: its result is rebuilt from its
    final checkpoint and nothing in the directory changes."""
    comm = comm or current_comm()
    directory = RunDir(run_dir)
    spec = directory.spec()
    if agent is None:
        if spec.agent is None:
            raise ValueError("agent: this run's agent cannot be rebuilt from run.json; pass the same agent")
        agent = build_agent(spec.agent)
    finished = directory.result_file.is_file()
    observers = _observers(None if finished else directory, spec, agent, comm, progress, True)
    runner = Runner(_factory(spec, job_factory), agent, spec, comm=comm, observers=observers)
    started = time.perf_counter()
    with hold(directory, comm, read_only=finished):
        checkpoints = directory.checkpoints()
        directory.refuse_legacy()
        if finished and not checkpoints:
            raise ValueError(f"run_dir: {directory.path} is finished but holds no checkpoint to read")
        comm.barrier()  # every rank has chosen the checkpoint before rank 0 may write a newer one
        if not checkpoints:  # killed before the first checkpoint: start over
            if comm.rank == 0:
                directory.remove_lineage()
            state = runner.start()
        else:
            saved = directory.load_run(checkpoints[-1])
            if finished:
                lineage = directory.covered_lineage(saved.lineage_events)
            else:
                persistence = next(o for o in observers if isinstance(o, Persistence))
                lineage = persistence.restore_lineage(saved)
            state = runner.restore(saved, lambda i: directory.load_member(checkpoints[-1], i), lineage)
        if finished:
            if state.decision != spec.decisions:
                raise ValueError(
                    f"run_dir: {directory.path} has result.json but its newest checkpoint is decision "
                    f"{state.decision} of {spec.decisions}; remove result.json to resume it"
                )
            result = runner.finish(state, time.perf_counter() - started)
            result.logdir = directory.path
            return result
        try:
            return runner.run(state, started)
        except JOB_ERRORS as error:
            _resumable(error, directory, state.decision)
            raise


@dataclass(frozen=True)
class ReplayResult:
    """A fresh member retrained on the best member's reconstructed trajectory, beside the run's best."""

    trajectory: list[tuple[int, Hyperparams]]
    metrics: dict[str, float]
    run_metrics: dict[str, float]
    job_seed: int


def replay(run_dir: str | Path, job_factory: JobFactory | None = None) -> ReplayResult:
    """Retrain one fresh member, from the best member's original initialisation, on its trajectory
    rebuilt from ``lineage.jsonl`` alone, and report it beside the run's result."""
    directory = RunDir(run_dir)
    spec = directory.spec()
    result = directory.read_result()
    with hold(directory, Local(), read_only=True):
        trajectory = trajectory_from_lineage(directory.lineage(), result["best_member"])
        member = Member(_factory(spec, job_factory)(result["seed_of_best_origin"]), trajectory[0][1])
        member.start()
        for (_, hp), samples in zip(trajectory, spec.intervals, strict=True):
            member.advance(hp, samples)
    return ReplayResult(
        trajectory, dict(member.last.metrics), result["best"]["metrics"], result["seed_of_best_origin"]
    )
