"""TensorBoard output of a run, as a run observer: a run per member, a ``best`` run and the root.

Layout under the run directory (``tensorboard --logdir <logdir>`` shows every experiment)::

    member-00/ ... member-NN/   sched/lr, sched/batch_size, sched/<extra> for each extra
                                hyperparameter, train/loss, val/loss, val/<metric>,
                                pbt/clone_from (-1: no copy), text events/pbt, test/<metric> at
                                the end, and the member's HParams session
    best/                       the best member's reconstructed trajectory and val loss
    (root)                      custom-scalars layout, HParams experiment config, schedule figure

The x-axis is examples trained. The hyperparameters of an interval are logged at its first and
last example (``start + 1`` and ``end``) so they draw as steps and every value written for an
interval lies in ``(start, end]``: a resumed run purges exactly what came after its checkpoint.
Each member's run is written by its home rank (``member % world``) from the shared records,
wherever it trains, so a run is one event file in step order.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tensorboard.plugins.hparams import summary_v2 as hp_summary
from torch.utils.tensorboard import SummaryWriter

from rlsched.core.member import Record
from rlsched.population.comm import Comm
from rlsched.population.lineage import Clone, Event, Explore, Start, Train
from rlsched.population.observer import RunObserver
from rlsched.population.rundir import RunDir, member_run
from rlsched.population.state import MemberResult, RunResult, RunSpec, RunState
from rlsched.report.figures import schedule_figure

ROOT_TAGS = {
    "rlsched": {
        "learning rate (all members)": ["Multiline", [r"sched/lr"]],
        "batch size (all members)": ["Multiline", [r"sched/batch_size"]],
        "val loss (all members)": ["Multiline", [r"val/loss"]],
    }
}


class TensorBoardObserver(RunObserver):
    """Writes a run's TensorBoard files as it goes.

    ``resumed``: the run continues a killed attempt, whose points after the checkpoint (or all
    of them, when no checkpoint was reached) are purged.
    """

    def __init__(self, run_dir: RunDir, spec: RunSpec, comm: Comm, *, resumed: bool = False) -> None:
        self.run_dir, self.spec, self.comm, self.resumed = run_dir, spec, comm, resumed
        self.home = [i for i in range(spec.population) if i % comm.world == comm.rank]
        self.writers: dict[int, SummaryWriter] = {}

    def _open(self, purge_after: int | None) -> None:
        purge = None if purge_after is None else purge_after + 1
        if purge is not None:
            _after_existing_files([self.run_dir.member_dir(i) for i in self.home])
        self.writers = {
            i: SummaryWriter(str(self.run_dir.member_dir(i)), purge_step=purge, flush_secs=5)
            for i in self.home
        }

    # -- hooks ------------------------------------------------------------------------------
    def started(self, state: RunState) -> None:
        self._open(-1 if self.resumed else None)
        for i in self.home:
            record = state.members[i].last
            w = self.writers[i]
            _sched(w, record.hparams, 0)
            _metrics(w, "val", record.metrics, 0)
            probe = state.members[i].probe
            if probe is not None:  # the LR range probe: loss against LR, one point per step
                for k, (lr, loss) in enumerate(zip(probe.lrs, probe.losses)):
                    w.add_scalar("probe/lr", lr, k)
                    w.add_scalar("probe/loss", loss, k)
                w.add_text("events/pbt", f"LR range probe: suggested peak lr {probe.peak_lr:.4g}", 0)

    def restored(self, state: RunState) -> None:
        self._open(max(m.last.samples for m in state.members))

    def generation(self, state: RunState, events: list[Event]) -> None:
        text: dict[int, str] = {}
        donors: dict[int, int] = {}
        for e in events:
            if isinstance(e, Clone):
                donors[e.member] = e.donor
                text[e.member] = f"decision {e.decision}: copied member {e.donor}. {e.reason}"
            elif isinstance(e, Explore):
                text[e.member] = f"decision {e.decision}: {e.reason or 'hyperparameters changed'}"
            elif isinstance(e, Train) and e.member in self.writers:
                note = text.get(e.member, "")
                if e.error:
                    note += f"\ndecision {e.decision}: the job raised {e.error}; recorded as diverged"
                start = e.samples - self.spec.intervals[e.decision]
                self._interval(e.member, start, state.members[e.member].last, donors.get(e.member), note)

    def _interval(
        self, member_id: int, start: int, record: Record, clone_from: int | None, text: str
    ) -> None:
        """One trained interval ``(start, record.samples]`` of a member, and how it began."""
        w, end = self.writers[member_id], record.samples
        for step in (start + 1, end):
            _sched(w, record.hparams, step)
        w.add_scalar("pbt/clone_from", -1 if clone_from is None else clone_from, start + 1)
        if text:
            w.add_text("events/pbt", text, start + 1)
        if record.stats is not None:
            w.add_scalar("train/loss", record.stats.loss_mean, end)
        _metrics(w, "val", record.metrics, end)

    def checkpoint(self, state: RunState) -> None:
        """Put every event so far on disk: a resume trusts all before its checkpoint to be there."""
        for w in self.writers.values():
            w.flush()

    def finished(self, state: RunState, result: RunResult) -> None:
        starts = {e.member: e.hparams for e in state.lineage if isinstance(e, Start)}
        for r in result.members:
            if r.member_id in self.writers:
                self._finish_member(r, state.members[r.member_id].last.samples, starts[r.member_id])
        if self.comm.rank == 0:
            self._finish_root(state, result, starts)
        for w in self.writers.values():
            w.close()

    # -- the end of a run -------------------------------------------------------------------
    def _finish_member(self, r: MemberResult, samples: int, initial: Any) -> None:
        """Test metrics and the member's HParams session."""
        w = self.writers[r.member_id]
        if r.test_metrics:
            _metrics(w, "test", r.test_metrics, samples)
        session = hp_summary.hparams_pb(
            _session_hparams(initial, r.hparams), trial_id=member_run(r.member_id), start_time_secs=0
        )
        w._get_file_writer().add_summary(session)
        w.flush()

    def _finish_root(self, state: RunState, result: RunResult, starts: dict[int, Any]) -> None:
        """The ``best`` run, the root layout, HParams config and the schedule figure."""
        best = result.best
        history = state.members[best.member_id].history
        intervals = [(r.samples - r.stats.samples, r.hparams, r.samples) for r in history[1:] if r.stats]
        summary = (
            f"best member {best.member_id} (weights descend from member {best.origin}), "
            f"final val loss {best.val_loss:.4g}; schedule: "
            + ", ".join(f"{s}: lr {hp.lr:.3g}, batch {hp.batch_size}" for s, hp, _ in intervals)
        )
        shutil.rmtree(self.run_dir.best_dir, ignore_errors=True)  # rewritten whole, also after a resume
        with SummaryWriter(str(self.run_dir.best_dir)) as w:
            for start, hp, end in intervals:
                for step in (start + 1, end):
                    _sched(w, hp, step)
            for r in history:
                w.add_scalar("val/loss", r.val_loss, r.samples)
            w.add_text("events/pbt", summary, 0)

        for old in self.run_dir.path.glob("events.out.tfevents.*"):
            old.unlink()  # the root is rewritten whole as well
        fig = schedule_figure(state.lineage, intervals, len(result.members))
        fig.savefig(self.run_dir.figure_file, dpi=110)
        names = list(best.metrics)
        with SummaryWriter(str(self.run_dir.path)) as w:
            w.add_custom_scalars(_layout(list(self.spec.space.extra)))
            first = result.members[0]
            config = hp_summary.hparams_config_pb(
                hparams=[hp_summary.HParam(n) for n in _session_hparams(starts[0], first.hparams)],
                metrics=[hp_summary.Metric(f"val/{n}", display_name=f"final val {n}") for n in names]
                + [hp_summary.Metric(f"test/{n}", display_name=f"test {n}") for n in names],
            )
            w._get_file_writer().add_summary(config)
            w.add_figure("schedules", fig, 0)


def _sched(w: SummaryWriter, hp: Any, step: int) -> None:
    """The hyperparameters in effect: ``sched/lr``, ``sched/batch_size`` and ``sched/<extra>``."""
    w.add_scalar("sched/lr", hp.lr, step)
    w.add_scalar("sched/batch_size", hp.batch_size, step)
    for name, value in hp.extra.items():
        w.add_scalar(f"sched/{name}", value, step)


def _layout(extras: list[str]) -> dict[str, Any]:
    """The custom-scalars layout: a chart of all members per hyperparameter and for val loss."""
    charts = dict(ROOT_TAGS["rlsched"])
    for name in extras:
        charts[f"{name} (all members)"] = ["Multiline", [rf"sched/{name}"]]
    return {"rlsched": charts}


def _metrics(w: SummaryWriter, prefix: str, metrics: dict[str, float], step: int) -> None:
    for name, value in metrics.items():
        w.add_scalar(f"{prefix}/{name}", value, step)


def _after_existing_files(dirs: Sequence[Path]) -> None:
    """Wait, if need be, until a new event file would sort after every existing one in ``dirs``.

    TensorBoard reads a run's event files in name order and the name starts with the creation
    second (then host and pid): a resumed writer opened within the second the killed one started
    could sort first, and its purge would then come before the points it is meant to follow.
    """
    seconds = [int(p.name.split(".")[3]) for d in dirs for p in d.glob("events.out.tfevents.*")]
    while seconds and int(time.time()) <= max(seconds):
        time.sleep(0.05)


def _session_hparams(first: Any, last: Any) -> dict[str, float]:
    """A member's HParams session: its own start (not its ancestors') and its final values."""
    return {
        "lr_initial": first.lr,
        "batch_size_initial": float(first.batch_size),
        **{f"{name}_initial": value for name, value in first.extra.items()},
        "lr_final": last.lr,
        "batch_size_final": float(last.batch_size),
        **{f"{name}_final": value for name, value in last.extra.items()},
    }
