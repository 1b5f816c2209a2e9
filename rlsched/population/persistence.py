"""Persistence as a run observer: the lineage as it happens, checkpoints, and the result."""

from __future__ import annotations

from rlsched.core.agent import Agent
from rlsched.population import wire
from rlsched.population.comm import Comm
from rlsched.population.lineage import Event
from rlsched.population.observer import RunObserver
from rlsched.population.rundir import RunDir
from rlsched.population.state import RunResult, RunState, SavedRun


class Persistence(RunObserver):
    """Writes a run's :class:`RunDir` as the run goes, on every rank.

    Rank 0 appends lineage events and writes ``run.pt`` and ``result.json``; every rank writes
    the checkpoint files of the members it trains. A checkpoint is a directory per generation,
    renamed into place once every rank has written, with files named by member id (not rank), so a
    restart may use another number of ranks.
    """

    def __init__(self, run_dir: RunDir, agent: Agent, comm: Comm) -> None:
        self.run_dir, self.agent, self.comm = run_dir, agent, comm

    @property
    def root(self) -> bool:
        return self.comm.rank == 0

    def started(self, state: RunState) -> None:
        if self.root:
            self.run_dir.append(state.lineage)

    def generation(self, state: RunState, events: list[Event]) -> None:
        if self.root:
            self.run_dir.append(events)

    def checkpoint(self, state: RunState) -> None:
        partial = self.run_dir.partial_checkpoint(state.decision) if self.root else None
        self.comm.barrier()
        partial = partial or self.run_dir.partial_checkpoint_path(state.decision)
        for m in state.members:
            if m.job is not None:
                self.run_dir.save_member(partial, m.member_id, m.job.state_dict())
        self.comm.barrier()
        if self.root:
            self.run_dir.save_run(partial, state, self.agent.state_dict())
            self.run_dir.commit(partial, state.decision)

    def finished(self, state: RunState, result: RunResult) -> None:
        result.logdir = self.run_dir.path
        self.comm.barrier()  # every rank's files are written before result.json says "finished"
        if self.root:
            self.run_dir.write_result(result)

    def restore_lineage(self, saved: SavedRun) -> list[Event]:
        """The lineage a checkpoint covers, on every rank; rank 0 drops the events written after
        it, before the kill."""

        def read() -> list[Event]:
            events = self.run_dir.covered_lineage(saved.lineage_events)
            self.run_dir.rewrite_lineage(events)
            return events

        return self.comm.from_root(read, wire.EVENTS)
