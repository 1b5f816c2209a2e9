"""The population runner: N members through ``decisions`` intervals, one agent deciding.

A round, before each interval after the first::

    view      = every member's history, observation (with population rank) and score
    decisions = agent.decide(view, rng)            # per member: hparams, maybe clone_from
    snapshot the donors, then for each member: copy its donor (weights, optimizer, data order,
    RNG, history), apply the new hparams, train one interval, evaluate
    append lineage events; write a checkpoint atomically

>>> from rlsched.agents import PBT
>>> result = run("synthetic", PBT(perturbation_interval=1), population=4, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlsched.agent import Agent, Decision, MemberView, PopulationView, ranks, score
from rlsched.checkpoint import atomic_write_bytes, atomic_write_json, finite, save_checkpoint
from rlsched.job import TrainingJob, interval_sizes
from rlsched.member import Member, Record
from rlsched.space import Hyperparams, HyperparamSpace
from rlsched.tblog import TensorBoardLogger

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


@dataclass
class _State:
    """Everything a resumed run needs; checkpointed after every interval."""

    decision: int
    members: list[Member]
    seeds: list[int]
    origins: list[int]  # member whose initial job each member's weights descend from
    rng: np.random.Generator
    lineage: list[dict[str, Any]] = field(default_factory=list)


def job_seed(seed: int, member_id: int) -> int:
    return int(np.random.SeedSequence([seed, member_id]).generate_state(1)[0] % (2**31 - 1))


def schedule_of(history: list[Record]) -> list[tuple[int, Hyperparams]]:
    return [(r.samples - r.stats.samples, r.hparams) for r in history[1:] if r.stats is not None]


# -- records and members to and from plain dicts --------------------------------------------
class Runner:
    """Runs one experiment; use :func:`run` and :func:`resume` rather than this class directly."""

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
    ) -> None:
        if isinstance(population, bool) or not isinstance(population, int) or population < 1:
            raise ValueError(f"population: expected an integer >= 1, got {population!r}")
        self.job_factory, self.agent, self.space = job_factory, agent, space
        self.population, self.budget_samples, self.decisions = population, budget_samples, decisions
        self.intervals = interval_sizes(budget_samples, decisions)
        self.initial = space.check(initial, "initial")
        self.seed, self.run_dir = int(seed), run_dir
        self.board: TensorBoardLogger | None = None
        self.progress = progress  # called as progress(member-intervals done, total, best val loss)

    # -- the loop ---------------------------------------------------------------------------
    def start(self) -> _State:
        rng = np.random.default_rng(self.seed)
        hps = self.agent.initial(self.population, self.space, self.initial, self.decisions, rng)
        seeds = [job_seed(self.seed, i) for i in range(self.population)]
        members = [
            Member(self.job_factory(s), self.space.check(hp, f"member {i}"), i)
            for i, (s, hp) in enumerate(zip(seeds, hps, strict=True))
        ]
        for m in members:
            m.start()
        state = _State(0, members, seeds, list(range(self.population)), rng)
        if self.run_dir is not None:
            self.board = TensorBoardLogger(self.run_dir, self.population)
        for m in members:
            self._event(state, "start", m.member_id, hparams=m.hparams.to_dict(), val_loss=m.last.val_loss)
            if self.board:
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

    def step(self, state: _State) -> None:
        """Decide (from the second interval on), clone, train and evaluate every member once."""
        d = state.decision
        if d == 0:
            decisions = [Decision(m.hparams) for m in state.members]
        else:
            decisions = list(self.agent.decide(self.view(state), state.rng))
            if len(decisions) != self.population:
                raise RuntimeError(f"agent returned {len(decisions)} decisions for {self.population} members")
        donors = {c.clone_from for c in decisions if c.clone_from is not None}
        snapshots = {j: (state.members[j].job.state_dict(), list(state.members[j].history)) for j in donors}
        for i, (member, choice) in enumerate(zip(state.members, decisions)):
            hp = self.space.check(choice.hparams, f"decision for member {i}")
            text = ""
            if choice.clone_from is not None and choice.clone_from != i:
                j = choice.clone_from
                own_score = score(member.last)
                job_state, history = snapshots[j]
                member.job.load_state_dict(job_state)
                member.history = list(history)
                state.origins[i] = state.origins[j]
                self._event(
                    state,
                    "clone",
                    i,
                    donor=j,
                    old=member.hparams.to_dict(),
                    new=hp.to_dict(),
                    score=own_score,
                    donor_score=score(history[-1]),
                    reason=choice.reason,
                )
                text = f"decision {d}: copied member {j}. {choice.reason}"
            elif hp != member.hparams:
                self._event(
                    state,
                    "explore",
                    i,
                    old=member.hparams.to_dict(),
                    new=hp.to_dict(),
                    score=score(member.last),
                    reason=choice.reason,
                )
                text = f"decision {d}: {choice.reason or 'hyperparameters changed'}"
            record = member.advance(hp, self.intervals[d])
            self._event(
                state,
                "train",
                i,
                hparams=hp.to_dict(),
                samples=record.samples,
                val_loss=record.val_loss,
                diverged=record.diverged,
            )
            if self.board:
                clone_from = choice.clone_from if choice.clone_from != i else None
                self.board.interval(i, record.samples - self.intervals[d], record, clone_from, text)
            if self.progress:
                best = min((m.last.val_loss for m in state.members if not m.diverged), default=math.nan)
                self.progress(d * self.population + i + 1, self.decisions * self.population, best)
        state.decision += 1

    def _event(self, state: _State, kind: str, member: int, **fields: Any) -> None:
        event = {"event": kind, "decision": state.decision, "member": member, **finite(fields)}
        state.lineage.append(event)
        if self.run_dir is not None:  # written as it happens
            with open(self.run_dir / "lineage.jsonl", "a") as f:
                f.write(json.dumps(event, allow_nan=False) + "\n")

    # -- persistence ------------------------------------------------------------------------
    def checkpoint(self, state: _State) -> None:
        if self.run_dir is None:
            return
        path = self.run_dir / f"checkpoint-{state.decision:05d}.pt"
        save_checkpoint(
            path,
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
                        "job": m.job.state_dict(),
                        "history": [r.to_dict() for r in m.history],
                    }
                    for m in state.members
                ],
            },
        )
        for old in self.run_dir.glob("checkpoint-*.pt"):
            if old != path:
                old.unlink(missing_ok=True)

    def restore(self, ckpt: dict[str, Any]) -> _State:
        if len(ckpt["members"]) != self.population:
            raise ValueError(
                f"checkpoint: holds {len(ckpt['members'])} members, the run has {self.population}"
            )
        members = []
        for i, (seed, saved) in enumerate(zip(ckpt["seeds"], ckpt["members"])):
            member = Member(self.job_factory(seed), Hyperparams(**saved["hparams"]), i)
            member.job.load_state_dict(saved["job"])
            member.history = [Record.from_dict(r) for r in saved["history"]]
            members.append(member)
        rng = np.random.default_rng()
        rng.bit_generator.state = ckpt["rng"]
        self.agent.load_state_dict(ckpt["agent"])
        lineage = read_lineage(self.run_dir)[: ckpt["lineage_events"]] if self.run_dir else []
        if self.run_dir is not None:  # drop events written after the checkpoint, before the kill
            _rewrite_lineage(self.run_dir, lineage)
            self.board = TensorBoardLogger(
                self.run_dir, self.population, purge_after=max(m.last.samples for m in members)
            )
        return _State(ckpt["decision"], members, list(ckpt["seeds"]), list(ckpt["origins"]), rng, lineage)

    def loop(self, state: _State, started: float) -> RunResult:
        while state.decision < self.decisions:
            self.step(state)
            self.checkpoint(state)
        return self.result(state, time.perf_counter() - started)

    def result(self, state: _State, wall: float) -> RunResult:
        results = []
        for m in state.members:
            test = m.job.evaluate("test") if "test" in getattr(m.job, "splits", ()) else None
            results.append(
                MemberResult(
                    m.member_id, dict(m.last.metrics), test, m.hparams, schedule_of(m.history), m.diverged
                )
            )
        best = max(results, key=lambda r: (-math.inf if r.diverged else -r.val_loss, -r.member_id))
        if self.board is not None:
            self._finish_board(state, results, best)
        if self.run_dir is not None:
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
        self.board.finish(
            [
                {
                    "member": r.member_id,
                    "samples": state.members[r.member_id].last.samples,
                    "test_metrics": r.test_metrics,
                    "initial": starts[r.member_id],
                    "hparams": r.hparams,
                }
                for r in results
            ],
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
