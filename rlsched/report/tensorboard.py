"""TensorBoard output of a run, as a run observer: a run per member, a ``best`` run and the root.

Layout under the run directory (``tensorboard --logdir <logdir>`` shows every experiment)::

    member-00/ ... member-NN/   sched/lr, sched/batch_size, sched/<extra> for each extra
                                hyperparameter, train/loss, val/loss, val/<metric>, pbt/copied
                                (1 where an interval began with a copy, else 0), pbt/clone_from
                                (the donor, -1: no copy), text events/pbt, test/<metric> at the
                                end, and the member's HParams session
    best/                       the best member's reconstructed trajectory and val loss
    (root)                      custom-scalars layout, HParams experiment config, schedule figure

The x-axis is examples trained. The hyperparameters of an interval are logged at its first and
last example (``start + 1`` and ``end``) so they draw as steps and every value written for an
interval lies in ``(start, end]``. The layout, the HParams config and each member's session (its
initial hyperparameters; its final LR, batch size and metrics are the last points of its scalars)
are written when the run starts, so they show while it runs.

A resumed run shows what an unbroken one shows, in every loader: the ``EventAccumulator``, the
Python loader (``tensorboard --load_fast=false``) and the Rust data server. Purges alone cannot
do that (the ``EventAccumulator`` never purges tensors such as texts and HParams, the Python
loader ignores a run's first ``SessionLog.START``, the Rust server ignores them all), so a resume
first rewinds each member's event files to its checkpoint (:func:`rewind_run`), and rewrites the
root and ``best`` whole. Each member's run is written by its home rank (``member % world``) from
the shared records, wherever it trains.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import summary_v2 as hp_summary
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter

from rlsched.core.files import atomic_write_bytes
from rlsched.core.member import Record
from rlsched.population import lineage
from rlsched.population.comm import Comm
from rlsched.population.lineage import Clone, Explore, Train
from rlsched.population.observer import RunObserver
from rlsched.population.rundir import RunDir
from rlsched.population.state import RunResult, RunSpec, RunState
from rlsched.report.figures import Interval, best_path, schedule_figure

CHARTS = {"learning rate": "sched/lr", "batch size": "sched/batch_size", "val loss": "val/loss"}
START_TAGS = ("probe/",)  # logged once at the start, on an axis of their own: a rewind keeps them
END_TAGS = ("test/",)  # logged at the end: a rewind drops them, the end comes again
REWOUND = ".rewound"  # the suffix of a rewound event file's name


class TensorBoardObserver(RunObserver):
    """Writes a run's TensorBoard files as it goes.

    ``resumed``: the run continues a killed attempt, whose member event files are rewound to the
    checkpoint (or emptied, when no checkpoint was reached) before anything is written.
    """

    def __init__(self, run_dir: RunDir, spec: RunSpec, comm: Comm, *, resumed: bool = False) -> None:
        self.run_dir, self.spec, self.comm, self.resumed = run_dir, spec, comm, resumed
        self.home = [i for i in range(spec.population) if i % comm.world == comm.rank]
        self.writers: dict[int, SummaryWriter] = {}
        self.root: SummaryWriter | None = None  # rank 0's

    def _open(self, state: RunState, kept: dict[int, int] | None) -> None:
        """This rank's writers, after rewinding each member's run to its step in ``kept`` (None:
        the run starts, nothing of a killed attempt is kept); on rank 0 the root, rewritten."""
        dirs = [self.run_dir.member_dir(i) for i in self.home]
        _after_existing_files(dirs + [self.run_dir.path])
        for i, path in zip(self.home, dirs):
            left = self.resumed and rewind_run(path, None if kept is None else kept[i])
            # A run's first event is a START at step 0 (the Python loader takes a later one for a
            # restart and purges what it read); a rewound file already begins with one.
            self.writers[i] = SummaryWriter(str(path), purge_step=None if left else 0, flush_secs=5)
        if self.comm.rank == 0:
            _empty(event_files(self.run_dir.path))
            self.root = SummaryWriter(str(self.run_dir.path), purge_step=0)
            self.root.add_custom_scalars(layout(list(self.spec.space.extra)))
            names = list(dict.fromkeys(n for m in state.members for n in m.last.metrics))
            self.root._get_file_writer().add_summary(_experiment(list(self.spec.space.extra), names))
            self.root.flush()

    # -- hooks ------------------------------------------------------------------------------
    def started(self, state: RunState) -> None:
        self._open(state, None)
        for i in self.home:
            record = state.members[i].last
            w = self.writers[i]
            _sched(w, record.hparams, 0)
            _metrics(w, "val", record.metrics, 0)
            w._get_file_writer().add_summary(_session(record.hparams))
            probe = state.members[i].probe
            if probe is not None:  # the LR range probe: loss against LR, one point per step
                for k, (lr, loss) in enumerate(zip(probe.lrs, probe.losses)):
                    w.add_scalar("probe/lr", lr, k)
                    w.add_scalar("probe/loss", loss, k)
                w.add_text("events/pbt", f"LR range probe: suggested peak lr {probe.peak_lr:.4g}", 0)

    def restored(self, state: RunState) -> None:
        self._open(state, {i: state.members[i].last.samples for i in self.home})

    def generation(self, state: RunState, events: list[lineage.Event]) -> None:
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
        w.add_scalar("pbt/copied", float(clone_from is not None), start + 1)
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
        for r in result.members:
            if r.member_id in self.writers and r.test_metrics:
                _metrics(
                    self.writers[r.member_id], "test", r.test_metrics, state.members[r.member_id].last.samples
                )
        if self.root is not None:
            self._finish_root(state, result)
            self.root.close()
        for w in self.writers.values():
            w.close()

    def _finish_root(self, state: RunState, result: RunResult) -> None:
        """The ``best`` run, rewritten whole (also after a resume), and the schedule figure."""
        assert self.root is not None
        best = result.best
        initial, path = best_path(state.lineage, best.member_id)
        summary = (
            f"best member {best.member_id} (weights descend from member {best.origin}), "
            f"final val loss {best.val_loss:.4g}; schedule: "
            + ", ".join(f"{s.start}: lr {s.hparams.lr:.3g}, batch {s.hparams.batch_size}" for s in path)
        )
        _empty(event_files(self.run_dir.best_dir))  # rewritten whole, also after a resume
        with SummaryWriter(str(self.run_dir.best_dir), purge_step=0) as w:
            log_path(w, initial, path)
            w.add_text("events/pbt", summary, 0)
        fig = schedule_figure(state.lineage, best.member_id, len(result.members))
        fig.savefig(self.run_dir.figure_file, dpi=110)
        self.root.add_figure("schedules", fig, 0)


def log_path(w: SummaryWriter, initial: float, path: Sequence[Interval]) -> None:
    """A member's path (:func:`~rlsched.report.figures.best_path`): its hyperparameters at each
    interval's first and last example, and its val loss from ``initial`` on."""
    w.add_scalar("val/loss", initial, 0)
    for interval in path:
        for step in (interval.start + 1, interval.end):
            _sched(w, interval.hparams, step)
        w.add_scalar("val/loss", interval.val_loss, interval.end)


def layout(extras: list[str], runs: str = "all members", *, copies: bool = True) -> dict[str, Any]:
    """The custom-scalars layout: a chart of all ``runs`` per hyperparameter, for val loss and,
    with ``copies``, for ``pbt/copied``."""
    tags = {
        **CHARTS,
        **{name: f"sched/{name}" for name in extras},
        **({"copies": "pbt/copied"} if copies else {}),
    }
    return {"rlsched": {f"{title} ({runs})": ["Multiline", [tag]] for title, tag in tags.items()}}


def _sched(w: SummaryWriter, hp: Any, step: int) -> None:
    """The hyperparameters in effect: ``sched/lr``, ``sched/batch_size`` and ``sched/<extra>``."""
    w.add_scalar("sched/lr", hp.lr, step)
    w.add_scalar("sched/batch_size", hp.batch_size, step)
    for name, value in hp.extra.items():
        w.add_scalar(f"sched/{name}", value, step)


def _metrics(w: SummaryWriter, prefix: str, metrics: dict[str, float], step: int) -> None:
    for name, value in metrics.items():
        w.add_scalar(f"{prefix}/{name}", value, step)


def _session(initial: Any) -> Summary:
    """A member's HParams session: its initial hyperparameters. No group name, so TensorBoard
    names it after the member's run (``<run>/member-03``): unique across runs, seeds and agents."""
    values = {"lr_initial": initial.lr, "batch_size_initial": float(initial.batch_size)}
    values.update({f"{name}_initial": value for name, value in initial.extra.items()})
    return hp_summary.hparams_pb(values, trial_id="", start_time_secs=0)


def _experiment(extras: list[str], metrics: list[str]) -> Summary:
    """The HParams experiment: initial hyperparameters; final val and test metrics, and final
    hyperparameters (the last point of ``sched/<name>``)."""
    names = ["lr", "batch_size", *extras]
    return hp_summary.hparams_config_pb(
        hparams=[hp_summary.HParam(f"{n}_initial") for n in names],
        metrics=[hp_summary.Metric(f"val/{n}", display_name=f"final val {n}") for n in metrics]
        + [hp_summary.Metric(f"test/{n}", display_name=f"test {n}") for n in metrics]
        + [hp_summary.Metric(f"sched/{n}", display_name=f"final {n}") for n in names],
    )


# -- event files ------------------------------------------------------------------------------
def event_files(path: Path) -> list[Path]:
    """The event files of the run directory ``path``, in the order every loader reads them."""
    return sorted(p for p in path.glob("*tfevents*") if p.is_file())


def rewind_run(path: Path, step: int | None) -> bool:
    """Rewrite the event files of the run directory ``path`` as one file holding what an unbroken
    run had logged by ``step`` (``None``: nothing). Returns whether it wrote that file.

    Kept, in order: every value at a step up to ``step`` but ``test/`` ones (logged at the end, which
    comes again), and the LR probe's ``probe/`` points whatever their step (logged once, at the
    start). The file begins with a ``SessionLog.START`` at step 0, so a live Python loader purges
    what it read of the killed attempt and reads these points again. It is named after the last
    file it replaces plus ``.rewound``, so it sorts after them, and renamed into place before they
    are emptied (see :func:`_empty`); a rewind killed in between leaves them whole, and the next
    one reads from the newest ``.rewound`` file on and empties those before it.
    """
    files = event_files(path)
    newest = max((k for k, p in enumerate(files) if p.name.endswith(REWOUND)), default=0)
    superseded, files = files[:newest], files[newest:]
    if step is None or not files:
        _empty(superseded + files)
        return False
    records = [r for p in files for r in RawEventFileLoader(str(p)).Load()]
    wall = Event.FromString(records[0]).wall_time if records else time.time()
    kept = [
        Event(wall_time=wall, file_version="brain.Event:2").SerializeToString(),
        Event(wall_time=wall, session_log=SessionLog(status=SessionLog.START)).SerializeToString(),
    ]
    for record in records:
        e = Event.FromString(record)
        values = [v for v in e.summary.value if v.tag.startswith(START_TAGS) or _before(v.tag, e.step, step)]
        if len(values) == len(e.summary.value) > 0:
            kept.append(record)  # as it was: the bytes of a map (HParams) have no fixed order
        elif values:
            kept.append(
                Event(wall_time=e.wall_time, step=e.step, summary=Summary(value=values)).SerializeToString()
            )
    last = files[-1]
    target = last if last.name.endswith(REWOUND) else last.with_name(last.name + REWOUND)
    staged = path / "rewound.partial"  # no loader reads it: its name lacks "tfevents"

    def write(file: Any) -> None:
        writer = RecordWriter(file)
        for record in kept:
            writer.write(record)

    atomic_write_bytes(staged, write)
    os.replace(staged, target)
    _empty([p for p in superseded + files if p != target])
    return True


def _before(tag: str, at: int, step: int) -> bool:
    return at <= step and not tag.startswith(END_TAGS)


def _empty(paths: Sequence[Path]) -> None:
    """Empty event files rather than remove them: a live Python loader reads the file it is on by
    name (it would stop at a removed one for good) and moves on from an empty one to the next."""
    for p in paths:
        os.truncate(p, 0)


def _after_existing_files(dirs: Sequence[Path]) -> None:
    """Wait, if need be, until a new event file would sort after every existing one in ``dirs``.

    Loaders read a run's event files in name order and the name starts with the creation second
    (then host and pid): a file opened within the second of an existing one could sort before it.
    """
    seconds = [int(p.name.split(".")[3]) for d in dirs for p in d.glob("events.out.tfevents.*")]
    while seconds and int(time.time()) <= max(seconds):
        time.sleep(0.05)
