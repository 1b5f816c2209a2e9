"""``run``, ``resume`` and ``replay``: experiments from Python, with a run directory on disk.

A run directory (:class:`~rlsched.population.rundir.RunDir`) holds ``run.json`` (the settings),
``lineage.jsonl`` (every copy, change and training event, appended as it happens), the newest
complete generation ``checkpoint-NNNNN/`` and, once finished, ``result.json``.

Under ``torchrun`` the same calls run on every rank (see :mod:`rlsched.population.comm`), and a
worker group that ``torchrun --max-restarts`` restarts resumes its run from the last complete
generation.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rlsched.app.config import build_agent_checked, is_user_task, load_factory
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
from rlsched.population.rundir import RunDir, member_run
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
    device: str | None = None,
) -> RunResult:
    """Run ``population`` members of ``job_factory`` for ``decisions`` intervals under ``agent``.

    ``job_factory`` is a callable ``seed -> TrainingJob`` or the name of a built-in task, whose
    space, initial hyperparameters, budget and decisions then fill in what is not given; a built-in
    task's members train on ``device`` (default ``"cpu"``).
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
    if task_name is not None and not is_user_task(task_name):
        space, initial, budget_samples, decisions = task_defaults(
            get_task(task_name), space, initial, budget_samples, decisions
        )
    job_factory = _job_factory(job_factory, device)
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
    parents = comm.from_root(lambda: _make_parents(run_dir.path.parent))
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
                    _remove_empty(parents)
            elif isinstance(error, JOB_ERRORS):
                _resumable(error, run_dir, state.decision)
            raise


JOB_ERRORS = (JobFailed, JobContractError)


def _job_factory(job_factory: JobFactory | str, device: str | None) -> JobFactory:
    """The factory of a built-in task on ``device``, of a user's ``"module:attr"``, or as given.

    A user's job places its own model: ``device`` applies to built-in tasks only."""
    if isinstance(job_factory, str) and not is_user_task(job_factory):
        return get_task(job_factory).on(device or "cpu")
    if device not in (None, "cpu"):
        raise ValueError(
            f"device: {device!r} applies to the built-in tasks; a user's job puts its model on its device"
        )
    return load_factory(job_factory) if isinstance(job_factory, str) else job_factory


def _make_parents(path: Path) -> list[str]:
    """Make ``path`` and its missing parents; the ones made, deepest first, to remove on failure."""
    made, missing = [], path
    while not missing.exists() and missing != missing.parent:
        made.append(str(missing))
        missing = missing.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _remove_empty(made)
        raise ValueError(f"logdir: cannot make {path} ({error.strerror or error})") from None
    return made


def _remove_empty(paths: list[str]) -> None:
    for path in paths:  # deepest first; a directory something else wrote in stays
        try:
            os.rmdir(path)
        except OSError:
            return


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


def _factory(spec: RunSpec, job_factory: JobFactory | None, device: str | None = None) -> JobFactory:
    if job_factory is not None:
        return _job_factory(job_factory, device)
    if spec.task is None:
        raise ValueError("job_factory: this run was made with a custom job factory; pass the same one")
    return _job_factory(spec.task, device)


def _agent(directory: RunDir, spec: RunSpec) -> Agent:
    """The run's agent, rebuilt from ``run.json``; a bad table is one line naming the file."""
    if spec.agent is None:
        raise ValueError("agent: this run's agent cannot be rebuilt from run.json; pass the same agent")
    return build_agent_checked(spec.agent, f"run_dir: {directory.spec_file}: agent", spec.population)


def check_resume(
    run_dir: str | Path,
    job_factory: JobFactory | None = None,
    agent: Agent | None = None,
    device: str | None = None,
) -> None:
    """Read and check everything :func:`resume` reads, changing nothing: ``run.json``, the agent,
    the newest checkpoint (``run.pt`` and every member's file, each loaded into a fresh job of its
    member) and the lineage it covers. One ``ValueError`` naming the file, if any is bad."""
    directory = RunDir(run_dir)
    spec = directory.spec()
    agent = agent if agent is not None else _agent(directory, spec)
    directory.refuse_legacy()
    checkpoints = directory.checkpoints()
    finished = directory.result_file.is_file()
    if finished and not checkpoints:
        raise ValueError(f"run_dir: {directory.path} is finished but holds no checkpoint to read")
    factory = _factory(spec, job_factory, device)
    if not checkpoints:
        return
    newest = checkpoints[-1]
    saved = directory.check_checkpoint(newest)
    if len(saved.members) != spec.population or saved.decision > spec.decisions:
        raise ValueError(
            f"checkpoint: {newest} holds {len(saved.members)} members at decision {saved.decision}; "
            f"the run has {spec.population} members and {spec.decisions} decisions"
        )
    if finished and saved.decision != spec.decisions:
        raise ValueError(
            f"run_dir: {directory.path} has result.json but its newest checkpoint is decision "
            f"{saved.decision} of {spec.decisions}; remove result.json to resume it"
        )
    directory.covered_lineage(saved.lineage_events)
    try:
        copy.deepcopy(agent).load_state_dict(copy.deepcopy(saved.agent))  # the caller's agent stays as it was
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise ValueError(
            f"checkpoint: {newest / 'run.pt'} holds an agent state that does not fit its "
            f"{type(agent).__name__} ({_one_line(error)})"
        ) from None
    for i, seed in enumerate(saved.seeds):
        state = directory.load_member(newest, i)
        try:
            factory(seed).load_state_dict(state)
        except Exception as error:  # wrong shapes, missing keys: whatever the job's own loader says
            raise ValueError(
                f"checkpoint: {newest / member_run(i)}.pt does not fit this run's job ({_one_line(error)})"
            ) from None


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:160]}" if text else type(error).__name__


def resume(
    run_dir: str | Path,
    job_factory: JobFactory | None = None,
    agent: Agent | None = None,
    progress: Progress | None = None,
    comm: Comm | None = None,
    device: str | None = None,
) -> RunResult:
    """Continue a killed run from its newest complete checkpoint; the result equals an unbroken
    run's. The number of ``torchrun`` ranks may differ from the run's first attempt, and a built-in
    task's members may go on on another ``device``.

    A finished run (``result.json`` written) is not run again: its result is rebuilt from its
    final checkpoint and nothing in the directory changes. A bad file fails before anything
    changes (see :func:`check_resume`)."""
    comm = comm or current_comm()
    directory = RunDir(run_dir)
    spec = directory.spec()
    agent = agent if agent is not None else _agent(directory, spec)
    finished = directory.result_file.is_file()
    observers = _observers(None if finished else directory, spec, agent, comm, progress, True)
    runner = Runner(_factory(spec, job_factory, device), agent, spec, comm=comm, observers=observers)
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
            lineage = directory.covered_lineage(saved.lineage_events)
            # the jobs load first: a checkpoint that does not fit them fails before anything changes
            state = runner.restore(saved, lambda i: directory.load_member(checkpoints[-1], i), lineage)
            if not finished:  # drop the events written after the checkpoint, before the kill
                persistence = next(o for o in observers if isinstance(o, Persistence))
                state.lineage = persistence.restore_lineage(saved)
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


def replay(
    run_dir: str | Path, job_factory: JobFactory | None = None, device: str | None = None
) -> ReplayResult:
    """Retrain one fresh member, from the best member's original initialisation, on its trajectory
    rebuilt from ``lineage.jsonl`` alone, and report it beside the run's result."""
    directory = RunDir(run_dir)
    spec = directory.spec()
    result = directory.read_result()
    best = result["best_member"]
    factory = _factory(spec, job_factory, device)
    trajectory = _trajectory(directory, best, spec)  # a bad lineage fails before the lock is taken
    with hold(directory, Local(), read_only=True):
        trajectory = _trajectory(directory, best, spec)
        member = Member(factory(result["seed_of_best_origin"]), trajectory[0][1])
        member.start()
        for (_, hp), samples in zip(trajectory, spec.intervals, strict=True):
            member.advance(hp, samples)
    run_metrics = {k: math.nan if v is None else float(v) for k, v in result["best"]["metrics"].items()}
    return ReplayResult(trajectory, dict(member.last.metrics), run_metrics, result["seed_of_best_origin"])


def _trajectory(directory: RunDir, member: int, spec: RunSpec) -> list[tuple[int, Hyperparams]]:
    """``member``'s whole trajectory from the lineage, one entry per decision, every one in the space."""
    events = directory.finished_lineage()
    where = f"lineage: {directory.lineage_file}"
    try:
        trajectory = trajectory_from_lineage(events, member)
    except KeyError:
        raise ValueError(
            f"{where} lacks a training event of member {member} or an ancestor; its trajectory cannot be "
            "rebuilt"
        ) from None
    if len(trajectory) != spec.decisions:
        raise ValueError(
            f"{where} holds {len(trajectory)} of member {member}'s {spec.decisions} intervals; "
            "the run is not finished or the file was cut"
        )
    for _, hp in trajectory:
        spec.space.check(hp, f"{where}: hparams")
    return trajectory
