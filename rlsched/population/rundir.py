"""RunDir: the one owner of a run directory's files, their format and their reading and writing.

::

    <logdir>/<name>/
        run.json               RunSpec (format "rlsched.run/1")
        lineage.jsonl          lineage events, one per line, appended as they happen
        checkpoint-NNNNN/      the newest complete generation: run.pt + member-XX.pt per member id
        result.json            once finished: every member's result, the best, its origin; a member
                               whose own job raised in an interval lists it in ``failed_intervals``
                               (decision and error; the interval's examples count as spent)
        member-XX/, best/      TensorBoard runs (written by rlsched.report)
        schedules.png          the schedule figure
        .lock                  while a run, resume or replay holds it (rlsched.population.lock)

Checkpoints are plain dicts of tensors and Python scalars (``weights_only=True`` to load), written
under a temporary name and renamed into place, so a kill never leaves a half-written one.
Nothing is written through a symbolic link: a writer first refuses any link in the directory
(:meth:`RunDir.refuse_links`), and files are created exclusively or renamed into place.
Every reader checks what it reads (a file edited by hand, cut short or of another tool) and
raises one ``ValueError`` naming the file and the field, never a ``KeyError`` or ``TypeError``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rlsched.core.files import (
    append_bytes,
    atomic_write_bytes,
    atomic_write_json,
    link_error,
    load_checkpoint,
    save_checkpoint,
)
from rlsched.core.member import Record
from rlsched.core.probe import ProbeResult
from rlsched.core.space import Hyperparams, HyperparamSpace
from rlsched.population import lineage
from rlsched.population.lineage import Event
from rlsched.population.state import MemberResult, RunResult, RunSpec, RunState, SavedMember, SavedRun

RUN_FORMAT = "rlsched.run/1"


def member_run(member_id: int) -> str:
    """The name of a member's TensorBoard run and checkpoint file: ``member-07``."""
    return f"member-{member_id:02d}"


class RunDir:
    """A run directory at ``path``; nothing is read or written until a method is called."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- safety -----------------------------------------------------------------------------
    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    def refuse_links(self) -> None:
        """One ``ValueError`` naming the first symbolic link, or FIFO, socket or device, in the
        directory at any depth, the directory itself included (its parents may be links)."""
        if self.path.is_symlink():
            raise link_error(self.path)
        folders = [self.path]
        while folders:
            try:
                with os.scandir(folders.pop()) as entries:
                    found = sorted(entries, key=lambda e: e.name)
            except FileNotFoundError:  # not made yet
                continue
            for entry in found:
                if entry.is_symlink():
                    raise link_error(Path(entry.path))
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                elif not entry.is_file(follow_symlinks=False) and os.path.lexists(entry.path):
                    raise ValueError(f"run_dir: {entry.path} is not a regular file or directory; remove it")

    # -- run.json ---------------------------------------------------------------------------
    @property
    def spec_file(self) -> Path:
        return self.path / "run.json"

    def exists(self) -> bool:
        """Whether a run was started here (``run.json`` exists)."""
        return self.spec_file.exists()

    def create(self, spec: RunSpec) -> None:
        """Make the directory and write ``run.json``; a stale ``lineage.jsonl`` is removed."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.lineage_file.unlink(missing_ok=True)
        atomic_write_json(
            self.spec_file,
            {
                "format": RUN_FORMAT,
                "task": spec.task,
                "agent": spec.agent,
                "space": spec.space.to_dict(),
                "population": spec.population,
                "budget_samples": spec.budget_samples,
                "decisions": spec.decisions,
                "initial": spec.initial.to_dict(),
                "seed": spec.seed,
                "checkpoint_every": spec.checkpoint_every,
                "launch": spec.launch,
                **({"probe_samples": spec.probe_samples} if spec.probe_samples else {}),
            },
        )

    def read_json(self) -> dict[str, Any]:
        """``run.json`` as written; one ``ValueError`` if it is missing, not JSON or not ours."""
        if not self.spec_file.is_file():
            raise ValueError(f"run_dir: {self.path} is not an rlsched run directory (no run.json)")
        try:
            data = json.loads(self.spec_file.read_text())
        except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, nested too deep
            raise ValueError(f"run_dir: {self.spec_file} is not valid JSON ({_first_line(error)})") from None
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            raise ValueError(
                f"run_dir: {self.spec_file} is not an rlsched run file (expected format {RUN_FORMAT!r})"
            )
        return data

    def spec(self) -> RunSpec:
        """The run's settings from ``run.json``; one ``ValueError`` naming the file and field if bad."""
        data = self.read_json()
        where = f"run_dir: {self.spec_file}"
        for key in ("space", "population", "budget_samples", "decisions", "initial", "seed"):
            if key not in data:
                raise ValueError(f"{where} lacks {key!r}")
        space, initial = data["space"], data["initial"]
        if not isinstance(space, dict) or not set(space) <= {"lr", "batch_size", "scale_rule", "extra"}:
            raise ValueError(f"{where}: space: expected a table of lr, batch_size, scale_rule, extra")
        try:
            return RunSpec(
                space=HyperparamSpace.from_dict(space),
                population=data["population"],
                budget_samples=data["budget_samples"],
                decisions=data["decisions"],
                initial=Hyperparams.from_dict(initial),
                seed=data["seed"],
                checkpoint_every=data.get("checkpoint_every", 1),
                task=data.get("task"),
                agent=data.get("agent"),
                launch=data.get("launch"),
                probe_samples=data.get("probe_samples", 0),
            )
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None

    # -- lineage.jsonl ----------------------------------------------------------------------
    @property
    def lineage_file(self) -> Path:
        return self.path / "lineage.jsonl"

    def append(self, events: Iterable[Event]) -> None:
        text = "".join(json.dumps(lineage.encode(e), allow_nan=False) + "\n" for e in events)
        if text:
            append_bytes(self.lineage_file, text.encode())

    def lineage(self) -> list[Event]:
        """The events up to the first unreadable line (a line cut short by a kill: the checkpoint
        says how many events count)."""
        return self._read_lineage()[0]

    def finished_lineage(self) -> list[Event]:
        """Every event of a finished run; a ``ValueError`` naming the file when it is missing,
        empty, or has a line that is not an event."""
        if not self.lineage_file.is_file():
            raise ValueError(f"lineage: {self.lineage_file} is missing; the run's history cannot be rebuilt")
        events, problem = self._read_lineage()
        if problem is not None:
            line = len(events) + 1
            raise ValueError(f"lineage: {self.lineage_file} line {line} is not an event ({problem})")
        if not events:
            raise ValueError(f"lineage: {self.lineage_file} is empty; the run's history cannot be rebuilt")
        return events

    def _read_lineage(self) -> tuple[list[Event], str | None]:
        """The readable events, and why the line after them is not one (None: the file ended)."""
        if not self.lineage_file.exists():
            return [], None
        events: list[Event] = []
        for line in self.lineage_file.read_text(errors="replace").splitlines():
            try:
                events.append(lineage.decode(json.loads(line)))
            except (ValueError, TypeError, RecursionError) as error:  # JSONDecodeError is a ValueError
                return events, str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        return events, None

    def covered_lineage(self, count: int) -> list[Event]:
        """The first ``count`` events, which a checkpoint covers; a ``ValueError`` naming the line
        when fewer are readable (the lineage cannot be rebuilt from the checkpoint)."""
        events, problem = self._read_lineage()
        if len(events) < count:
            where = f"line {len(events) + 1} is not an event ({problem})" if problem else "ends early"
            raise ValueError(
                f"lineage: {self.lineage_file} {where}, but the newest checkpoint covers {count} "
                "events; restore the file or start the run again under another name"
            )
        return events[:count]

    def rewrite_lineage(self, events: list[Event]) -> None:
        text = "".join(json.dumps(lineage.encode(e), allow_nan=False) + "\n" for e in events)
        atomic_write_bytes(self.lineage_file, lambda f: f.write(text.encode()))

    def remove_lineage(self) -> None:
        self.lineage_file.unlink(missing_ok=True)

    # -- checkpoints ------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Complete generation checkpoints (``checkpoint-NNNNN/`` holding ``run.pt``), oldest first."""
        return sorted(p for p in self.path.glob("checkpoint-[0-9]*") if (p / "run.pt").is_file())

    def refuse_legacy(self) -> None:
        """Refuse, before anything changes, a run of an older rlsched with single-file checkpoints."""
        legacy = sorted(self.path.glob("checkpoint-*.pt"))
        if legacy and not self.checkpoints():
            raise ValueError(
                f"checkpoint: {legacy[-1]} is a single-file checkpoint of an older rlsched; "
                "this version resumes generation directories (checkpoint-NNNNN/) only"
            )

    def partial_checkpoint_path(self, decision: int) -> Path:
        return self.path / f".checkpoint-{decision:05d}.partial"

    def partial_checkpoint(self, decision: int) -> Path:
        """A fresh, empty directory to write generation ``decision``'s checkpoint into."""
        partial = self.partial_checkpoint_path(decision)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        return partial

    @staticmethod
    def save_member(checkpoint: Path, member_id: int, job_state: dict[str, Any]) -> None:
        save_checkpoint(checkpoint / f"{member_run(member_id)}.pt", {"member": member_id, "job": job_state})

    @staticmethod
    def save_run(checkpoint: Path, state: RunState, agent_state: dict[str, Any]) -> None:
        save_checkpoint(
            checkpoint / "run.pt",
            {
                "decision": state.decision,
                "seeds": state.seeds,
                "origins": state.origins,
                "rng": state.rng.bit_generator.state,
                "agent": agent_state,
                "lineage_events": len(state.lineage),
                "members": [
                    {
                        "hparams": m.hparams.to_dict(),
                        "history": [r.to_dict() for r in m.history],
                        "train_seconds": m.train_seconds,
                        **({"probe": m.probe.to_dict()} if m.probe else {}),
                    }
                    for m in state.members
                ],
            },
        )

    def commit(self, partial: Path, decision: int) -> None:
        """Rename a fully written checkpoint into place and prune every older one."""
        final = self.path / f"checkpoint-{decision:05d}"
        shutil.rmtree(final, ignore_errors=True)  # only left by an attempt that died mid-prune
        os.replace(partial, final)
        for old in self.path.glob("checkpoint-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)

    @staticmethod
    def load_run(checkpoint: Path) -> SavedRun:
        """``run.pt`` of a generation checkpoint, checked field by field; one ``ValueError`` if bad."""
        path = checkpoint / "run.pt"
        data = load_checkpoint(path)
        try:
            return _saved_run(data)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            reason = f"lacks {error}" if isinstance(error, KeyError) else _first_line(error)
            raise ValueError(f"checkpoint: {path} is not a complete run checkpoint ({reason})") from None

    @staticmethod
    def load_member(checkpoint: Path, member_id: int) -> dict[str, Any]:
        path = checkpoint / f"{member_run(member_id)}.pt"
        data = load_checkpoint(path)
        if data.get("member", member_id) != member_id or not isinstance(data.get("job"), dict):
            raise ValueError(
                f"checkpoint: {path} is not member {member_id}'s checkpoint "
                "(expected its 'member' id and a 'job' table)"
            )
        return data["job"]

    @staticmethod
    def check_checkpoint(checkpoint: Path) -> SavedRun:
        """Read and validate a generation checkpoint's every file; one clear ``ValueError`` if any is bad."""
        saved = RunDir.load_run(checkpoint)
        for i in range(len(saved.members)):
            member = checkpoint / f"{member_run(i)}.pt"
            if not member.is_file():
                raise ValueError(f"checkpoint: {checkpoint} lacks {member.name} (an incomplete generation)")
            RunDir.load_member(checkpoint, i)
        return saved

    # -- result.json ------------------------------------------------------------------------
    @property
    def result_file(self) -> Path:
        return self.path / "result.json"

    def write_result(self, result: RunResult) -> None:
        atomic_write_json(
            self.result_file,
            {
                "best_member": result.best.member_id,
                "best": _member_json(result.best, result.failed_intervals(result.best.member_id)),
                "members": [_member_json(r, result.failed_intervals(r.member_id)) for r in result.members],
                "origin_of_best": result.best.origin,
                "seed_of_best_origin": result.seed_of_best_origin,
            },
        )

    def read_result(self) -> dict[str, Any]:
        """``result.json`` as written, checked for what ``replay`` reads; one ``ValueError`` if bad."""
        if not self.result_file.is_file():
            raise ValueError(
                f"run_dir: {self.path} has no result.json; the run has not finished (resume it first)"
            )
        try:
            data = json.loads(self.result_file.read_text())
        except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, nested too deep
            raise ValueError(f"result: {self.result_file} is not valid JSON ({_first_line(error)})") from None
        problem = _result_problem(data)
        if problem:
            raise ValueError(f"result: {self.result_file} {problem}; rerun or resume the run to rewrite it")
        return data

    # -- TensorBoard runs -------------------------------------------------------------------
    def member_dir(self, member_id: int) -> Path:
        return self.path / member_run(member_id)

    @property
    def best_dir(self) -> Path:
        return self.path / "best"

    @property
    def figure_file(self) -> Path:
        return self.path / "schedules.png"


def _member_json(r: MemberResult, failed: list[tuple[int, str]]) -> dict[str, Any]:
    return {
        "member": r.member_id,
        "metrics": r.metrics,
        "test_metrics": r.test_metrics,
        "hparams": r.hparams.to_dict(),
        "diverged": r.diverged,
        "failed_intervals": [{"decision": d, "error": e} for d, e in failed],
        "origin": r.origin,
        "trajectory": [[s, hp.to_dict()] for s, hp in r.trajectory],
    }


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:160] if text else type(error).__name__


def _integer(value: Any, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}"[:160])
    return value


def _saved_run(data: dict[str, Any]) -> SavedRun:
    """A :class:`SavedRun` from ``run.pt``'s dict; ``KeyError``/``TypeError``/``ValueError`` if bad."""
    members = [
        SavedMember(
            Hyperparams.from_dict(m["hparams"]),
            [Record.from_dict(r) for r in m["history"]],
            float(m["train_seconds"]),
            ProbeResult.from_dict(m["probe"]) if "probe" in m else None,
        )
        for m in data["members"]
    ]
    seeds = [_integer(s, "seeds") for s in data["seeds"]]
    origins = [_integer(o, "origins") for o in data["origins"]]
    if not members or not len(seeds) == len(origins) == len(members):
        raise ValueError(f"members, seeds, origins: expected one each per member, got {len(members)} members")
    if any(o >= len(members) for o in origins):
        raise ValueError(f"origins: expected member ids below {len(members)}")
    decision = _integer(data["decision"], "decision")
    for m in members:
        if not m.history or m.history[-1].decision != decision:
            raise ValueError(f"members: expected each history to end at decision {decision}")
        if not all("loss" in r.metrics for r in m.history):
            raise ValueError("members: a record of the history lacks its 'loss'")
    rng = data["rng"]
    np.random.default_rng().bit_generator.state = rng  # a bad generator state fails here
    if not isinstance(data["agent"], dict):
        raise ValueError(f"agent: expected the agent's state table, got {type(data['agent']).__name__}")
    return SavedRun(
        decision,
        seeds,
        origins,
        rng,
        data["agent"],
        _integer(data["lineage_events"], "lineage_events"),
        members,
    )


def _result_problem(data: Any) -> str | None:
    """What ``result.json`` lacks for ``replay`` (best member, its metrics and origin seed), or None."""
    if not isinstance(data, dict):
        return "is not a table"
    for key in ("best_member", "best", "members", "seed_of_best_origin"):
        if key not in data:
            return f"lacks {key!r}"
    best, members = data["best"], data["members"]
    if not isinstance(members, list) or not members:
        return "has no members"
    if isinstance(data["best_member"], bool) or data["best_member"] not in range(len(members)):
        return f"best_member: expected a member id below {len(members)}, got {data['best_member']!r}"[:200]
    seed = data["seed_of_best_origin"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        return f"seed_of_best_origin: expected an integer >= 0, got {seed!r}"[:200]
    metrics = best.get("metrics") if isinstance(best, dict) else None
    if not isinstance(metrics, dict) or "loss" not in metrics:
        return "best.metrics: expected a table with the best member's loss"
    numbers = (
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in metrics.values()
    )
    if not all(numbers):
        return "best.metrics: expected numbers (null for a non-finite one)"
    return None
