"""The population runner: N members through ``decisions`` intervals, one agent deciding.

A round, before each interval after the first::

    view      = every member's history, observation (with population rank) and score
    decisions = agent.decide(view, rng)            # per member: hparams, maybe clone_from
    snapshot the donors, then for each member: copy its donor (weights, optimizer, data order,
    RNG, history), apply the new hparams, train one interval, evaluate
    append lineage events; write a checkpoint (one directory per generation) atomically

The same loop runs in one process or sharded over ``torchrun`` ranks (see ``rlsched.dist``); a
run on K ranks makes the same lineage and results as one in process.

>>> from rlsched.agents import PBT
>>> result = run("synthetic", PBT(perturbation_interval=1), population=4, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rlsched.agent import Agent, Decision, MemberView, PopulationView, ranks, score
from rlsched.checkpoint import atomic_write_bytes, atomic_write_json, finite, load_checkpoint, save_checkpoint
from rlsched.dist import Comm, Local, balance, predicted_costs
from rlsched.job import TrainingJob, interval_sizes
from rlsched.member import Member, Record
from rlsched.space import Hyperparams, HyperparamSpace
from rlsched.tblog import TensorBoardLogger, member_run

log = logging.getLogger("rlsched")

RUN_FORMAT = "rlsched.run/1"
JobFactory = Callable[[int], TrainingJob]


@dataclass(frozen=True)
class MemberResult:
    """A member at the end of a run. ``schedule`` lists ``(samples at start, hparams)`` per interval,
    across the member's ancestors (a clone inherits its donor's past)."""

    member_id: int
    metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    hparams: Hyperparams
    schedule: list[tuple[int, Hyperparams]]
    diverged: bool
    train_seconds: float = 0.0

    @property
    def val_loss(self) -> float:
        return self.metrics["loss"]


@dataclass
class RunResult:
    best: MemberResult
    members: list[MemberResult]
    lineage: list[dict[str, Any]]
    total_samples: int
    wall_seconds: float
    train_seconds: float
    logdir: Path | None = None
    rank_train_seconds: list[float] = field(default_factory=list)  # per torchrun rank (one in process)


@dataclass
class _State:
    """Everything a resumed run needs; checkpointed after every interval."""

    decision: int
    members: list[Member]  # all of them; one hosted by another rank has no job, only its history
    seeds: list[int]
    origins: list[int]  # member whose initial job each member's weights descend from
    rng: np.random.Generator
    lineage: list[dict[str, Any]] = field(default_factory=list)


def job_seed(seed: int, member_id: int) -> int:
    return int(np.random.SeedSequence([seed, member_id]).generate_state(1)[0] % (2**31 - 1))


def schedule_of(history: list[Record]) -> list[tuple[int, Hyperparams]]:
    return [(r.samples - r.stats.samples, r.hparams) for r in history[1:] if r.stats is not None]


def _decision_dict(c: Decision) -> dict[str, Any]:
    return {"hparams": c.hparams.to_dict(), "clone_from": c.clone_from, "reason": c.reason}


def _decision(d: dict[str, Any]) -> Decision:
    return Decision(Hyperparams(**d["hparams"]), d["clone_from"], d["reason"])


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete generation checkpoints (``checkpoint-NNNNN/`` holding ``run.pt``), oldest first."""
    return sorted(p for p in Path(run_dir).glob("checkpoint-[0-9]*") if (p / "run.pt").is_file())


def check_checkpoint(path: Path) -> dict[str, Any]:
    """Read and validate a generation checkpoint's every file; one clear ``ValueError`` if any is bad."""
    run = load_checkpoint(path / "run.pt")
    for i in range(len(run.get("members", []))):
        member = path / member_run(i)
        if not (member.with_suffix(".pt")).is_file():
            raise ValueError(f"checkpoint: {path} lacks {member.name}.pt (an incomplete generation)")
        load_checkpoint(member.with_suffix(".pt"))
    return run


class Runner:
    """Runs one experiment; use :func:`run` and :func:`resume` rather than this class directly.

    With a ``TorchComm`` the same code runs on every rank of a ``torchrun`` launch: each rank trains
    the members it hosts, every rank keeps every member's history (records are small), and rank 0
    alone runs the agent, writes the experiment-level files and owns the RNG.
    """

    def __init__(
        self,
        job_factory: JobFactory,
        agent: Agent,
        *,
        space: HyperparamSpace,
        population: int,
        budget_samples: int,
        decisions: int,
        initial: Hyperparams,
        seed: int,
        run_dir: Path | None,
        progress: Callable[[int, int, float], None] | None = None,
        comm: Comm | None = None,
        checkpoint_every: int = 1,
    ) -> None:
        if isinstance(population, bool) or not isinstance(population, int) or population < 1:
            raise ValueError(f"population: expected an integer >= 1, got {population!r}")
        if (
            isinstance(checkpoint_every, bool)
            or not isinstance(checkpoint_every, int)
            or checkpoint_every < 1
        ):
            raise ValueError(f"checkpoint_every: expected an integer >= 1, got {checkpoint_every!r}")
        self.checkpoint_every = checkpoint_every
        self.job_factory, self.agent, self.space = job_factory, agent, space
        self.population, self.budget_samples, self.decisions = population, budget_samples, decisions
        self.intervals = interval_sizes(budget_samples, decisions)
        self.initial = space.check(initial, "initial")
        self.seed, self.run_dir = int(seed), run_dir
        self.comm: Comm = comm or Local()
        self.placement = [i % self.comm.world for i in range(population)]  # member -> rank
        self.seconds: list[float] | None = None  # each member's training time in the last interval
        self.busy = 0.0  # this rank's time in training
        self.board: TensorBoardLogger | None = None
        self.progress = progress  # called as progress(member-intervals done, total, best val loss)

    @property
    def root(self) -> bool:
        return self.comm.rank == 0

    def local(self, member_id: int) -> bool:
        """Whether this rank trains the member now (placement can change between generations)."""
        return self.placement[member_id] == self.comm.rank

    def home(self, member_id: int) -> bool:
        """Whether this rank writes the member's TensorBoard run: always its first rank, wherever it
        trains (records reach every rank), so a run is one event file in step order."""
        return member_id % self.comm.world == self.comm.rank

    def _members(self, seeds: list[int], hps: list[Hyperparams]) -> list[Member]:
        """Every member; one hosted elsewhere is a shadow with no job (``job=None``), only a history."""
        return [
            Member(self.job_factory(s) if self.local(i) else None, hp, i)  # type: ignore[arg-type]
            for i, (s, hp) in enumerate(zip(seeds, hps, strict=True))
        ]

    def _share(self, local: dict[str, Any]) -> dict[int, Any]:
        """``{member: value}`` for every member, from each rank's values for its own members."""
        shared: dict[int, Any] = {}
        for part in self.comm.all_gather(local):
            shared.update({int(i): v for i, v in part.items()})
        return dict(sorted(shared.items()))  # member order, whatever the ranks

    # -- the loop ---------------------------------------------------------------------------
    def start(self, purge_board: bool = False) -> _State:
        """Build, evaluate and log every member at decision 0. ``purge_board`` drops TensorBoard
        points an earlier, killed attempt wrote (a resume that found no checkpoint)."""
        rng = np.random.default_rng(self.seed)

        def initial() -> list[dict[str, Any]]:
            hps = self.agent.initial(self.population, self.space, self.initial, self.decisions, rng)
            return [self.space.check(hp, f"member {i}").to_dict() for i, hp in enumerate(hps)]

        hps = [Hyperparams(**hp) for hp in self.comm.from_root(initial)]
        seeds = [job_seed(self.seed, i) for i in range(self.population)]
        members = self._members(seeds, hps)
        local = {str(m.member_id): m.start().to_dict() for m in members if self.local(m.member_id)}
        for i, record in self._share(local).items():
            if not self.local(i):
                members[i].history = [Record.from_dict(record)]
        state = _State(0, members, seeds, list(range(self.population)), rng)
        if self.run_dir is not None:
            self.board = TensorBoardLogger(
                self.run_dir,
                [i for i in range(self.population) if self.home(i)],
                purge_after=-1 if purge_board else None,
            )
        for m in members:
            self._event(state, "start", m.member_id, hparams=m.hparams.to_dict(), val_loss=m.last.val_loss)
            if self.board and self.home(m.member_id):
                self.board.start(m.member_id, m.last)
        return state

    def view(self, state: _State) -> PopulationView:
        from rlsched.envs.features import observation  # the env's own features: one mechanism

        scores = [score(m.last) for m in state.members]
        rank = ranks(scores)
        views = tuple(
            MemberView(
                m.member_id,
                m.hparams,
                tuple(m.history),
                observation(
                    m.history, initial=self.initial, budget_samples=self.budget_samples, rank=rank[i]
                ),
                scores[i],
            )
            for i, m in enumerate(state.members)
        )
        return PopulationView(state.decision, self.decisions, self.space, views)

    def _decide(self, state: _State) -> dict[str, Any]:
        """The agent's decisions (rank 0 only), checked against the space, and where each member
        trains next: placed to balance the ranks' predicted training time (see ``dist.balance``)."""
        decisions = list(self.agent.decide(self.view(state), state.rng))
        if len(decisions) != self.population:
            raise RuntimeError(f"agent returned {len(decisions)} decisions for {self.population} members")
        decisions = [
            replace(c, hparams=self.space.check(c.hparams, f"decision for member {i}"))
            for i, c in enumerate(decisions)
        ]
        placement = self.placement
        if self.comm.world > 1 and self.seconds is not None:
            costs = predicted_costs(
                self.seconds,
                [m.hparams.batch_size for m in state.members],
                [c.hparams.batch_size for c in decisions],
            )
            placement = balance(costs, self.placement, self.comm.world)
        return {"decisions": [_decision_dict(c) for c in decisions], "placement": placement}

    def step(self, state: _State) -> None:
        """Decide (from the second interval on), clone, train and evaluate every member once."""
        d, members = state.decision, state.members
        placement = self.placement
        if d == 0:
            decisions = [Decision(m.hparams) for m in members]
        else:
            decided = self.comm.from_root(lambda: self._decide(state))
            decisions, placement = [_decision(c) for c in decided["decisions"]], decided["placement"]
        clones = {i: c.clone_from for i, c in enumerate(decisions) if c.clone_from not in (None, i)}
        moved = {i for i in range(self.population) if placement[i] != self.placement[i]}
        wanted: dict[int, set[int]] = {}  # member -> ranks that need its job state
        for i in set(clones) | moved:
            wanted.setdefault(clones.get(i, i), set()).add(placement[i])
        # snapshot every needed state before anyone trains; each travels only to ranks that need it
        states = self.comm.exchange(
            {j: members[j].job.state_dict() for j in wanted if self.local(j)}, wanted, self.placement
        )
        donor_history = {j: list(members[j].history) for j in set(clones.values())}
        before = [(m.hparams, score(m.last)) for m in members]
        previous = [m.train_seconds for m in members]
        self._move(state, placement)

        outcomes: dict[str, Any] = {}
        for i, (member, choice) in enumerate(zip(members, decisions)):
            if not self.local(i):
                continue
            if i in clones or i in moved:
                member.job.load_state_dict(states[clones.get(i, i)])
            if i in clones:
                member.history = list(donor_history[clones[i]])
            error = self._advance(member, choice.hparams, self.intervals[d], d)
            outcomes[str(i)] = {
                "record": member.last.to_dict(),
                "error": error,
                "seconds": member.train_seconds,
            }
            if self.progress and self.comm.world == 1:
                best = min((m.last.val_loss for m in members[: i + 1] if not m.diverged), default=math.nan)
                self.progress(d * self.population + i + 1, self.decisions * self.population, best)

        shared = self._share(outcomes)
        self.seconds = [shared[i]["seconds"] - previous[i] for i in range(self.population)]
        self.busy += sum(t for i, t in enumerate(self.seconds) if self.local(i))
        origins = list(state.origins)  # a donor cloned in this generation still lends its old origin
        for i, out in shared.items():
            member, choice = members[i], decisions[i]
            if i in clones:
                state.origins[i] = origins[clones[i]]
            if not self.local(i):
                member.history = list(donor_history[clones[i]]) if i in clones else member.history
                member.history.append(Record.from_dict(out["record"]))
                member.hparams, member.train_seconds = choice.hparams, out["seconds"]
            self._record_events(state, i, choice, clones.get(i), before[i], donor_history, out["error"])
        if self.progress and self.comm.world > 1 and self.root:
            best = min((m.last.val_loss for m in members if not m.diverged), default=math.nan)
            self.progress((d + 1) * self.population, self.decisions * self.population, best)
        state.decision += 1

    def _move(self, state: _State, placement: list[int]) -> None:
        """Apply the next placement on this rank: a member that leaves drops its job here; one that
        arrives gets a job built from its own seed, as in process, and its state is loaded before
        it trains. Its TensorBoard run stays with its home rank."""
        rank = self.comm.rank
        for i, m in enumerate(state.members):
            if self.placement[i] == rank and placement[i] != rank:
                m.job = None  # type: ignore[assignment]
            elif placement[i] == rank and self.placement[i] != rank:
                m.job = self.job_factory(state.seeds[i])
        self.placement = list(placement)

    def _advance(self, member: Member, hp: Hyperparams, samples: int, decision: int) -> str | None:
        """Train one interval. A job that raises is logged with its traceback and recorded as
        diverged (score -inf), so PBT replaces it like any diverged member; the run goes on."""
        try:
            member.advance(hp, samples)
            return None
        except Exception as error:
            log.error(
                "member %d raised during decision %d; recorded as diverged:\n%s",
                member.member_id,
                decision,
                traceback.format_exc(),
            )
            member.fail(hp, samples)
            return f"{type(error).__name__}: {error}"

    def _record_events(
        self,
        state: _State,
        i: int,
        choice: Decision,
        donor: int | None,
        before: tuple[Hyperparams, float],
        donor_history: dict[int, list[Record]],
        error: str | None,
    ) -> None:
        d, member, (old, own_score) = state.decision, state.members[i], before
        text = ""
        if donor is not None:
            self._event(
                state,
                "clone",
                i,
                donor=donor,
                old=old.to_dict(),
                new=choice.hparams.to_dict(),
                score=own_score,
                donor_score=score(donor_history[donor][-1]),
                reason=choice.reason,
            )
            text = f"decision {d}: copied member {donor}. {choice.reason}"
        elif choice.hparams != old:
            self._event(
                state,
                "explore",
                i,
                old=old.to_dict(),
                new=choice.hparams.to_dict(),
                score=own_score,
                reason=choice.reason,
            )
            text = f"decision {d}: {choice.reason or 'hyperparameters changed'}"
        record = member.last
        self._event(
            state,
            "train",
            i,
            hparams=choice.hparams.to_dict(),
            samples=record.samples,
            val_loss=record.val_loss,
            diverged=record.diverged,
            **({"error": error} if error else {}),
        )
        if self.board and self.home(i):
            text += f"\ndecision {d}: the job raised {error}; recorded as diverged" if error else ""
            self.board.interval(i, record.samples - self.intervals[d], record, donor, text)

    def _event(self, state: _State, kind: str, member: int, **fields: Any) -> None:
        event = {"event": kind, "decision": state.decision, "member": member, **finite(fields)}
        state.lineage.append(event)  # every rank keeps the lineage; rank 0 writes it, as it happens
        if self.run_dir is not None and self.root:
            with open(self.run_dir / "lineage.jsonl", "a") as f:
                f.write(json.dumps(event, allow_nan=False) + "\n")

    # -- persistence: one directory per generation, one file per member id ------------------
    def checkpoint(self, state: _State) -> None:
        """Write ``checkpoint-NNNNN/`` (``run.pt`` by rank 0, ``member-XX.pt`` by each member's rank)
        under a temporary name, renamed into place once every file is written; older ones pruned.
        Files are named by member id, not rank, so a restart may use another number of ranks."""
        if self.run_dir is None:
            return
        if self.board:  # TensorBoard buffers events; a resume trusts all before the checkpoint on disk
            self.board.flush()
        final = self.run_dir / f"checkpoint-{state.decision:05d}"
        partial = self.run_dir / f".{final.name}.partial"
        if self.root:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
        self.comm.barrier()
        for m in state.members:
            if self.local(m.member_id):
                save_checkpoint(
                    partial / f"{member_run(m.member_id)}.pt",
                    {"member": m.member_id, "job": m.job.state_dict()},
                )
        self.comm.barrier()
        if not self.root:
            return
        save_checkpoint(
            partial / "run.pt",
            {
                "decision": state.decision,
                "seeds": state.seeds,
                "origins": state.origins,
                "rng": state.rng.bit_generator.state,
                "agent": self.agent.state_dict(),
                "lineage_events": len(state.lineage),
                "members": [
                    {
                        "hparams": m.hparams.to_dict(),
                        "history": [r.to_dict() for r in m.history],
                        "train_seconds": m.train_seconds,
                    }
                    for m in state.members
                ],
            },
        )
        shutil.rmtree(final, ignore_errors=True)  # only left by an attempt that died mid-prune
        os.replace(partial, final)
        for old in self.run_dir.glob("checkpoint-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)

    def restore(self, path: Path) -> _State:
        """The state saved in generation checkpoint ``path``, each rank loading its own members."""
        ckpt = load_checkpoint(path / "run.pt")
        if len(ckpt["members"]) != self.population:
            raise ValueError(
                f"checkpoint: holds {len(ckpt['members'])} members, the run has {self.population}"
            )
        saved = ckpt["members"]
        members = self._members(list(ckpt["seeds"]), [Hyperparams(**m["hparams"]) for m in saved])
        for m, s in zip(members, saved):
            m.history = [Record.from_dict(r) for r in s["history"]]
            m.train_seconds = float(s["train_seconds"])
            if self.local(m.member_id):
                m.job.load_state_dict(load_checkpoint(path / f"{member_run(m.member_id)}.pt")["job"])
        rng = np.random.default_rng()
        rng.bit_generator.state = ckpt["rng"]
        self.agent.load_state_dict(ckpt["agent"])

        def lineage() -> list[dict[str, Any]]:
            events = read_lineage(self.run_dir)[: ckpt["lineage_events"]] if self.run_dir else []
            if self.run_dir is not None:  # drop events written after the checkpoint, before the kill
                _rewrite_lineage(self.run_dir, events)
            return events

        events = self.comm.from_root(lineage)
        if self.run_dir is not None:
            self.board = TensorBoardLogger(
                self.run_dir,
                [i for i in range(self.population) if self.home(i)],
                purge_after=max(m.last.samples for m in members),
            )
        return _State(ckpt["decision"], members, list(ckpt["seeds"]), list(ckpt["origins"]), rng, events)

    def loop(self, state: _State, started: float) -> RunResult:
        while state.decision < self.decisions:
            self.step(state)
            if state.decision % self.checkpoint_every == 0 or state.decision == self.decisions:
                self.checkpoint(state)
        return self.result(state, time.perf_counter() - started)

    def result(self, state: _State, wall: float) -> RunResult:
        tests = self._share(
            {
                str(m.member_id): m.job.evaluate("test") if "test" in getattr(m.job, "splits", ()) else None
                for m in state.members
                if self.local(m.member_id)
            },
        )
        results = [
            MemberResult(
                m.member_id,
                dict(m.last.metrics),
                tests[m.member_id],
                m.hparams,
                schedule_of(m.history),
                m.diverged,
                m.train_seconds,
            )
            for m in state.members
        ]
        best = max(results, key=lambda r: (-math.inf if r.diverged else -r.val_loss, -r.member_id))
        if self.board is not None:
            self._finish_board(state, results, best)
        wall = self.comm.from_root(lambda: wall)  # rank 0's clock, on every rank
        busy = self.comm.all_gather(self.busy)
        self.comm.barrier()  # every rank's files are written before result.json says "finished"
        if self.run_dir is not None and self.root:
            atomic_write_json(
                self.run_dir / "result.json",
                {
                    "best_member": best.member_id,
                    "best": _member_json(best),
                    "members": [_member_json(r) for r in results],
                    "origin_of_best": state.origins[best.member_id],
                    "seed_of_best_origin": state.seeds[state.origins[best.member_id]],
                },
            )
        return RunResult(
            best,
            results,
            list(state.lineage),
            sum(self.intervals) * self.population,
            wall,
            sum(m.train_seconds for m in state.members),
            self.run_dir,
            busy,
        )

    def _finish_board(self, state: _State, results: list[MemberResult], best: MemberResult) -> None:
        assert self.board is not None
        member = state.members[best.member_id]
        starts = {e["member"]: Hyperparams(**e["hparams"]) for e in state.lineage if e["event"] == "start"}
        schedule = [
            (r.samples - r.stats.samples, r.hparams, r.samples) for r in member.history[1:] if r.stats
        ]
        summary = (
            f"best member {best.member_id} (weights descend from member {state.origins[best.member_id]}), "
            f"final val loss {best.val_loss:.4g}; schedule: "
            + ", ".join(f"{s}: lr {hp.lr:.3g}, batch {hp.batch_size}" for s, hp, _ in schedule)
        )
        members = [
            {
                "member": r.member_id,
                "samples": state.members[r.member_id].last.samples,
                "test_metrics": r.test_metrics,
                "initial": starts[r.member_id],
                "hparams": r.hparams,
            }
            for r in results
        ]
        self.board.finish_members([m for m in members if self.home(m["member"])])
        if self.root:
            self.board.finish_root(
                members,
                {
                    "schedule": schedule,
                    "val_loss": [(r.samples, r.val_loss) for r in member.history],
                    "summary": summary,
                },
                state.lineage,
                list(best.metrics),
            )
        self.board.close()


def _member_json(r: MemberResult) -> dict[str, Any]:
    return {
        "member": r.member_id,
        "metrics": r.metrics,
        "test_metrics": r.test_metrics,
        "hparams": r.hparams.to_dict(),
        "diverged": r.diverged,
        "schedule": [[s, hp.to_dict()] for s, hp in r.schedule],
    }


def read_lineage(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "lineage.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill: the checkpoint decides what counts
            break
    return events


def _rewrite_lineage(run_dir: Path, events: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(e, allow_nan=False) + "\n" for e in events)
    atomic_write_bytes(run_dir / "lineage.jsonl", lambda f: f.write(text.encode()))


def schedule_from_lineage(events: list[dict[str, Any]], member: int) -> list[tuple[int, Hyperparams]]:
    """Reconstruct ``member``'s whole schedule from lineage events alone, following clones back."""
    trains: dict[tuple[int, int], dict[str, Any]] = {}
    clones: dict[tuple[int, int], int] = {}
    last = -1
    for e in events:
        if e["event"] == "train":
            trains[(e["decision"], e["member"])] = e
            last = max(last, e["decision"])
        elif e["event"] == "clone":
            clones[(e["decision"], e["member"])] = e["donor"]
    schedule = []
    current = member
    for d in range(last, -1, -1):
        previous = clones.get((d, current), current)  # whose weights this interval started from
        start = trains[(d - 1, previous)]["samples"] if d > 0 else 0
        schedule.append((start, Hyperparams(**trains[(d, current)]["hparams"])))
        current = previous
    return schedule[::-1]
