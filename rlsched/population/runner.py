"""The population runner: N members through ``decisions`` intervals, one agent deciding.

One generation, as in the PBT paper::

    view      = every member's history, observation (with population rank) and score
    decisions = agent.decide(view, rng)          # per member: hparams, maybe clone_from
    snapshot the donors' job states, before anyone trains
    for each member: copy its donor (weights, optimizer, data order, RNG, history),
                     apply the new hparams, train one interval, evaluate
    lineage events -> observers (lineage file, TensorBoard, progress); a checkpoint when due

The same loop runs in one process or sharded over ``torchrun`` ranks (:mod:`rlsched.population.comm`);
a run on K ranks makes the same lineage and results as one in process. Persistence and reporting
hang off the loop as :class:`~rlsched.population.observer.RunObserver` hooks.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from rlsched.core.agent import Agent, Decision, MemberView, PopulationView, ranks, score
from rlsched.core.features import observation
from rlsched.core.job import JobContractError, JobFailed, TrainingJob, check_job, evaluate_test
from rlsched.core.member import Member, Record
from rlsched.core.probe import ProbeResult, lr_range_test
from rlsched.core.space import Hyperparams
from rlsched.population import wire
from rlsched.population.comm import Comm, Local
from rlsched.population.lineage import Event, Start, member_events
from rlsched.population.observer import RunObserver
from rlsched.population.placement import balance, predicted_costs
from rlsched.population.state import MemberResult, RunResult, RunSpec, RunState, SavedRun
from rlsched.population.wire import Outcome, Plan

log = logging.getLogger("rlsched")

JobFactory = Callable[[int], TrainingJob]


def job_seed(seed: int, member_id: int) -> int:
    """The seed of member ``member_id``'s job in a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, member_id]).generate_state(1)[0] % (2**31 - 1))


class Runner:
    """Runs one experiment; :func:`rlsched.run` and :func:`rlsched.resume` build it.

    With a ``TorchComm`` the same code runs on every rank: each rank trains the members placed on
    it, every rank keeps every member's history (records are small), and rank 0 alone runs the
    agent and owns the RNG.
    """

    def __init__(
        self,
        job_factory: JobFactory,
        agent: Agent,
        spec: RunSpec,
        *,
        comm: Comm | None = None,
        observers: Sequence[RunObserver] = (),
    ) -> None:
        self.job_factory, self.agent, self.spec = job_factory, agent, spec
        self.intervals = spec.intervals
        self.comm: Comm = comm or Local()
        self.observers = list(observers)
        self.placement = [i % self.comm.world for i in range(spec.population)]  # member -> rank
        self.seconds: list[float] | None = None  # each member's training time in the last interval
        self.busy = 0.0  # this rank's time in training
        self.failures: dict[int, Exception] = {}  # this generation's exceptions of local members' jobs

    def local(self, member_id: int) -> bool:
        """Whether this rank trains the member now (placement can change between generations)."""
        return self.placement[member_id] == self.comm.rank

    def _notify(self, hook: str, *args: Any) -> None:
        for observer in self.observers:
            getattr(observer, hook)(*args)

    # -- start, or restore ------------------------------------------------------------------
    def start(self) -> RunState:
        """Build, evaluate and announce every member at decision 0, then checkpoint."""
        spec = self.spec
        rng = np.random.default_rng(spec.seed)

        def initial() -> list[Hyperparams]:
            hps = self.agent.initial(spec.population, spec.space, spec.initial, spec.decisions, rng)
            return [spec.space.check(hp, f"member {i}") for i, hp in enumerate(hps)]

        hps = self.comm.from_root(initial, wire.HPARAMS)
        seeds = [job_seed(spec.seed, i) for i in range(spec.population)]
        members = self._members(seeds, hps)
        local = {m.member_id: self._begin(m) for m in members if self.local(m.member_id)}
        started = self._share(local, wire.OUTCOMES)
        self._stop_if_all_failed(started, None)
        for i, outcome in started.items():
            members[i].history = [outcome.record]
        if spec.probe_samples:
            probes = {m.member_id: self._probe(m) for m in members if self.local(m.member_id)}
            for i, probe in self._share(probes, wire.PROBES).items():
                members[i].probe = probe
        state = RunState(0, members, seeds, list(range(spec.population)), rng)
        state.lineage += [Start(0, m.member_id, m.hparams, m.last.val_loss) for m in members]
        self._notify("started", state)
        self.checkpoint(state)
        return state

    def restore(
        self, saved: SavedRun, job_state: Callable[[int], dict[str, Any]], lineage: list[Event]
    ) -> RunState:
        """The state of a checkpoint: ``job_state(i)`` reads member ``i``'s job (on its rank only)."""
        if len(saved.members) != self.spec.population:
            raise ValueError(
                f"checkpoint: holds {len(saved.members)} members, the run has {self.spec.population}"
            )
        members = self._members(saved.seeds, [m.hparams for m in saved.members])
        for m, s in zip(members, saved.members):
            m.history, m.train_seconds, m.probe = list(s.history), s.train_seconds, s.probe
            if m.job is not None:
                m.job.load_state_dict(job_state(m.member_id))
        rng = np.random.default_rng()
        rng.bit_generator.state = saved.rng
        self.agent.load_state_dict(saved.agent)
        state = RunState(saved.decision, members, saved.seeds, saved.origins, rng, lineage)
        self._notify("restored", state)
        return state

    def _probe(self, member: Member) -> ProbeResult:
        """The member's LR range probe at its starting batch size; its job is left as it was."""
        return lr_range_test(member.job, member.hparams, self.spec.probe_samples, self.spec.space)

    def _members(self, seeds: list[int], hps: list[Hyperparams]) -> list[Member]:
        """Every member; one trained on another rank has no job (``job=None``), only a history."""
        return [
            Member(self._job(s) if self.local(i) else None, hp, i)  # type: ignore[arg-type]
            for i, (s, hp) in enumerate(zip(seeds, hps, strict=True))
        ]

    def _job(self, seed: int) -> TrainingJob:
        job = self.job_factory(seed)
        check_job(job)
        return job

    def _begin(self, member: Member) -> Outcome:
        """Evaluate a member's untrained job; one whose evaluation raises starts diverged."""
        try:
            return Outcome(member.start(), None, 0.0)
        except Exception as error:
            self.failures[member.member_id] = error
            return Outcome(member.fail_start(), _describe(error), 0.0)

    def _stop_if_all_failed(self, outcomes: dict[int, Outcome], decision: int | None) -> None:
        """Stop the run when every member's job raised the same error, or any error in the first
        interval or the evaluation before it (``decision`` None): a bug in the job's code.
        Otherwise log this rank's failures; those members go on as diverged."""
        failures, self.failures = self.failures, {}
        errors = [o.error for o in outcomes.values()]
        if all(errors) and (decision in (None, 0) or len(set(errors)) == 1):
            first = next(iter(failures.values()), None)
            if isinstance(first, JobContractError):
                raise first
            when = "before training" if decision is None else f"during decision {decision}"
            raise JobFailed(
                f"every member's job raised {when} ({errors[0]}): a bug in the job's code, not a "
                "diverged run; the run stopped"
            ) from first
        for i, error in failures.items():
            log.error(
                "member %d raised %s; recorded as diverged:\n%s",
                i,
                "before training" if decision is None else f"during decision {decision}",
                "".join(traceback.format_exception(error)),
            )

    def _share(self, local: dict[int, Any], codec: wire.Codec) -> dict[int, Any]:
        """``{member: value}`` for every member, from each rank's values for its own members."""
        shared: dict[int, Any] = {}
        for part in self.comm.all_gather(local, wire.by_member(codec)):
            shared.update(part)
        return dict(sorted(shared.items()))  # member order, whatever the ranks

    # -- the loop ---------------------------------------------------------------------------
    def run(self, state: RunState, started: float) -> RunResult:
        """Train generations until the budget is spent, checkpointing as configured."""
        while state.decision < self.spec.decisions:
            self.step(state)
            if state.decision % self.spec.checkpoint_every == 0 or state.decision == self.spec.decisions:
                self.checkpoint(state)
        return self.finish(state, time.perf_counter() - started)

    def step(self, state: RunState) -> None:
        """One generation: decide, copy, train and evaluate every member once, record it."""
        decided = state.decision or self.spec.probe_samples  # a probing agent decides the first interval
        plan = self.comm.from_root(lambda: self.decide(state), wire.PLAN) if decided else self.stay(state)
        clones = {i: c.clone_from for i, c in enumerate(plan.decisions) if c.clone_from not in (None, i)}
        moved = {i for i, rank in enumerate(plan.placement) if rank != self.placement[i]}
        loads = {i: clones.get(i, i) for i in set(clones) | moved}  # member -> whose job state it loads
        states = self._snapshot(state, loads, plan.placement)  # before anyone trains
        before = [
            (m.hparams, score(m.last), list(m.history), m.train_seconds, m.probe) for m in state.members
        ]
        self._place(state, plan.placement)
        trained = self._train(state, plan, loads, states, {i: before[j][2] for i, j in clones.items()})
        outcomes = self._share(trained, wire.OUTCOMES)
        self._stop_if_all_failed(outcomes, state.decision)
        events = self._absorb(state, plan, clones, outcomes, before)
        self.seconds = [outcomes[i].seconds - before[i][3] for i in range(self.spec.population)]
        self.busy += sum(t for i, t in enumerate(self.seconds) if self.local(i))
        state.lineage += events
        state.decision += 1
        self._notify("generation", state, events)

    def _absorb(
        self, state: RunState, plan: Plan, clones: dict[int, int], outcomes: dict[int, Outcome], before: list
    ) -> list[Event]:
        """Take in every member's outcome (records trained on other ranks, origins of copies) and
        return the generation's lineage events, member by member."""
        origins = list(state.origins)  # a donor copied in this generation still lends its old origin
        events: list[Event] = []
        for i, outcome in outcomes.items():
            member, choice, donor = state.members[i], plan.decisions[i], clones.get(i)
            if donor is not None:  # a copy takes over its donor's origin and probe with its weights
                state.origins[i], member.probe = origins[donor], before[donor][4]
            if member.job is None:  # trained on another rank: its record arrived
                member.history = [*before[donor if donor is not None else i][2], outcome.record]
                member.hparams, member.train_seconds = choice.hparams, outcome.seconds
            old, own_score = before[i][:2]
            donor_score = before[donor][1] if donor is not None else None
            events += member_events(
                state.decision, i, choice, donor, old, own_score, donor_score, outcome.record, outcome.error
            )
        return events

    def view(self, state: RunState) -> PopulationView:
        """What the agent sees: each member's history, observation (with rank) and score."""
        scores = [score(m.last) for m in state.members]
        rank = ranks(scores)
        spec = self.spec
        views = tuple(
            MemberView(
                m.member_id,
                m.hparams,
                tuple(m.history),
                observation(
                    m.history, initial=spec.initial, budget_samples=spec.budget_samples, rank=rank[i]
                ),
                scores[i],
                m.probe,
            )
            for i, m in enumerate(state.members)
        )
        return PopulationView(state.decision, spec.decisions, spec.space, views)

    def decide(self, state: RunState) -> Plan:
        """The agent's decisions (rank 0 only), checked against the space, and where each member
        trains next: placed to balance the ranks' predicted training time."""
        decisions = list(self.agent.decide(self.view(state), state.rng))
        if len(decisions) != self.spec.population:
            raise RuntimeError(
                f"agent returned {len(decisions)} decisions for {self.spec.population} members"
            )
        decisions = [
            replace(c, hparams=self.spec.space.check(c.hparams, f"decision for member {i}"))
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
        return Plan(decisions, list(placement))

    def stay(self, state: RunState) -> Plan:
        """The first generation: every member trains at its initial hyperparameters where it is."""
        return Plan([Decision(m.hparams) for m in state.members], list(self.placement))

    def _snapshot(self, state: RunState, loads: dict[int, int], placement: list[int]) -> dict[int, Any]:
        """The job states that members load before training (a donor's for a copy, its own for a
        member that moves rank), each sent only to the ranks that need it."""
        wanted: dict[int, set[int]] = {}  # member -> ranks that need its job state
        for i, source in loads.items():
            wanted.setdefault(source, set()).add(placement[i])
        held = {j: copy.deepcopy(state.members[j].job.state_dict()) for j in wanted if self.local(j)}
        return self.comm.exchange(held, wanted, self.placement)

    def _place(self, state: RunState, placement: list[int]) -> None:
        """Apply the next placement on this rank: a member that leaves drops its job here; one that
        arrives gets a job built from its own seed, its state loaded before it trains."""
        rank = self.comm.rank
        for i, m in enumerate(state.members):
            if self.placement[i] == rank and placement[i] != rank:
                m.job = None  # type: ignore[assignment]
            elif placement[i] == rank and self.placement[i] != rank:
                m.job = self._job(state.seeds[i])
        self.placement = list(placement)

    def _train(
        self,
        state: RunState,
        plan: Plan,
        loads: dict[int, int],
        states: dict[int, Any],
        inherited: dict[int, list[Record]],
    ) -> dict[int, Outcome]:
        """Train this rank's members one interval each; a copy first loads its donor's job state
        and takes over its donor's history (``inherited``)."""
        outcomes = {}
        for i, member in enumerate(state.members):
            if member.job is None:
                continue
            if i in loads:  # its own copy: two copies of one donor share no tensor
                member.job.load_state_dict(copy.deepcopy(states[loads[i]]))
            if i in inherited:
                member.history = list(inherited[i])
            hp = plan.decisions[i].hparams
            error = self._advance(member, hp, self.intervals[state.decision])
            outcomes[i] = Outcome(member.last, error, member.train_seconds)
            self._notify("member_trained", state, i)
        return outcomes

    def _advance(self, member: Member, hp: Hyperparams, samples: int) -> str | None:
        """Train one interval. A job that raises is recorded as diverged (score -inf), so PBT
        replaces it like any diverged member (see :meth:`_stop_if_all_failed`)."""
        try:
            member.advance(hp, samples)
            return None
        except Exception as error:
            self.failures[member.member_id] = error
            member.fail(hp, samples)
            return _describe(error)

    def checkpoint(self, state: RunState) -> None:
        self._notify("checkpoint", state)

    # -- the end ----------------------------------------------------------------------------
    def finish(self, state: RunState, wall: float) -> RunResult:
        """Every member's result (test split evaluated once, here), the best, and the observers told."""
        tests = self._share(
            {m.member_id: evaluate_test(m.job) for m in state.members if self.local(m.member_id)}, wire.PLAIN
        )
        results = [
            MemberResult(
                m.member_id,
                dict(m.last.metrics),
                tests[m.member_id],
                m.hparams,
                m.trajectory,
                m.diverged,
                m.train_seconds,
                state.origins[m.member_id],
            )
            for m in state.members
        ]
        best = max(results, key=lambda r: (r.score, -r.member_id))
        result = RunResult(
            best,
            results,
            list(state.lineage),
            self.spec.budget_samples * self.spec.population,
            self.comm.from_root(lambda: wall),  # rank 0's clock, on every rank
            sum(m.train_seconds for m in state.members),
            None,
            self.comm.all_gather(self.busy),
            state.seeds[best.origin],
        )
        self._notify("finished", state, result)
        return result


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
