"""TensorBoard output of a run: one TensorBoard run per member, a ``best`` run and the root.

Layout under the run directory (``tensorboard --logdir <logdir>`` shows every experiment)::

    member-00/ ... member-NN/   sched/lr, sched/batch_size, train/loss, val/loss, val/<metric>,
                                pbt/clone_from (-1: no copy), text events/pbt, test/<metric> at
                                the end, and the member's HParams session
    best/                       the best member's reconstructed schedule and val loss
    (root)                      custom-scalars layout, HParams experiment config, schedule figure

The x-axis is examples trained. The hyperparameters of an interval are logged at its first and
last example (``start + 1`` and ``end``) so they draw as steps and every value written for an
interval lies in ``(start, end]``: a resumed run purges exactly what came after its checkpoint.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlsched.member import Record
from rlsched.space import Hyperparams

ROOT_TAGS = {
    "rlsched": {
        "learning rate (all members)": ["Multiline", [r"sched/lr"]],
        "batch size (all members)": ["Multiline", [r"sched/batch_size"]],
        "val loss (all members)": ["Multiline", [r"val/loss"]],
    }
}


def member_run(member_id: int) -> str:
    return f"member-{member_id:02d}"


class TensorBoardLogger:
    """Writes a run's TensorBoard files; only the runner calls it."""

    def __init__(self, run_dir: Path, members: Sequence[int], *, purge_after: int | None = None) -> None:
        """Writers for ``members`` (under ``torchrun``, the members this rank hosts)."""
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        purge = None if purge_after is None else purge_after + 1
        if purge is not None:
            _after_existing_files([self.run_dir / member_run(i) for i in members])
        self.writers = {
            i: SummaryWriter(str(self.run_dir / member_run(i)), purge_step=purge, flush_secs=5)
            for i in members
        }

    def start(self, member_id: int, record: Record) -> None:
        w = self.writers[member_id]
        w.add_scalar("sched/lr", record.hparams.lr, 0)
        w.add_scalar("sched/batch_size", record.hparams.batch_size, 0)
        self._metrics(w, "val", record.metrics, 0)

    def interval(self, member_id: int, start: int, record: Record, clone_from: int | None, text: str) -> None:
        """One trained interval ``(start, record.samples]`` of a member, and how it began."""
        w, end = self.writers[member_id], record.samples
        for step in (start + 1, end):
            w.add_scalar("sched/lr", record.hparams.lr, step)
            w.add_scalar("sched/batch_size", record.hparams.batch_size, step)
        w.add_scalar("pbt/clone_from", -1 if clone_from is None else clone_from, start + 1)
        if text:
            w.add_text("events/pbt", text, start + 1)
        if record.stats is not None:
            w.add_scalar("train/loss", record.stats.loss_mean, end)
        self._metrics(w, "val", record.metrics, end)

    @staticmethod
    def _metrics(w: Any, prefix: str, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            w.add_scalar(f"{prefix}/{name}", value, step)

    def finish_members(self, members: Sequence[dict[str, Any]]) -> None:
        """Test metrics and the HParams session of each member this logger writes."""
        from tensorboard.plugins.hparams import summary_v2 as hp_summary

        for m in members:
            w = self.writers[m["member"]]
            step = m["samples"]
            if m["test_metrics"]:
                self._metrics(w, "test", m["test_metrics"], step)
            session = hp_summary.hparams_pb(
                _session_hparams(m), trial_id=member_run(m["member"]), start_time_secs=0
            )
            w._get_file_writer().add_summary(session)
            w.flush()

    def finish_root(
        self,
        members: Sequence[dict[str, Any]],
        best: dict[str, Any],
        lineage: list[dict[str, Any]],
        metric_names: Sequence[str],
    ) -> Path:
        """The ``best`` run, the root layout, HParams config and the schedule figure (PNG path)."""
        from tensorboard.plugins.hparams import summary_v2 as hp_summary
        from torch.utils.tensorboard import SummaryWriter

        best_dir = self.run_dir / "best"
        shutil.rmtree(best_dir, ignore_errors=True)  # rewritten whole, also after a resume
        with SummaryWriter(str(best_dir)) as w:
            for start, hp, end in best["schedule"]:
                for step in (start + 1, end):
                    w.add_scalar("sched/lr", hp.lr, step)
                    w.add_scalar("sched/batch_size", hp.batch_size, step)
            for step, loss in best["val_loss"]:
                w.add_scalar("val/loss", loss, step)
            w.add_text("events/pbt", best["summary"], 0)

        for old in self.run_dir.glob("events.out.tfevents.*"):
            old.unlink()  # the root is rewritten whole as well
        figure = self.run_dir / "schedules.png"
        fig = schedule_figure(lineage, best, len(members))
        fig.savefig(figure, dpi=110)
        with SummaryWriter(str(self.run_dir)) as w:
            w.add_custom_scalars(ROOT_TAGS)
            config = hp_summary.hparams_config_pb(
                hparams=[hp_summary.HParam(name) for name in _session_hparams(members[0])],
                metrics=[hp_summary.Metric(f"val/{n}", display_name=f"final val {n}") for n in metric_names]
                + [hp_summary.Metric(f"test/{n}", display_name=f"test {n}") for n in metric_names],
            )
            w._get_file_writer().add_summary(config)
            w.add_figure("schedules", fig, 0)
        return figure

    def flush(self) -> None:
        """Put every event written so far on disk (before a checkpoint: what it covers is durable)."""
        for w in self.writers.values():
            w.flush()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def _after_existing_files(dirs: Sequence[Path]) -> None:
    """Wait, if need be, until a new event file would sort after every existing one in ``dirs``.

    TensorBoard reads a run's event files in name order and the name starts with the creation
    second (then host and pid): a resumed writer opened within the second the killed one started
    could sort first, and its purge would then come before the points it is meant to follow.
    """
    seconds = [int(p.name.split(".")[3]) for d in dirs for p in d.glob("events.out.tfevents.*")]
    while seconds and int(time.time()) <= max(seconds):
        time.sleep(0.05)


def _session_hparams(m: dict[str, Any]) -> dict[str, float]:
    first, last = m["initial"], m["hparams"]  # the member's own start, not its ancestors'

    return {
        "lr_initial": first.lr,
        "batch_size_initial": float(first.batch_size),
        "lr_final": last.lr,
        "batch_size_final": float(last.batch_size),
    }


def schedule_figure(lineage: list[dict[str, Any]], best: dict[str, Any], population: int):
    """LR and batch size over examples for every member; clones drawn as dotted edges, best path bold."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_bs) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    colors = plt.get_cmap("tab10" if population <= 10 else "tab20")
    trains = {
        (e["decision"], e["member"]): (e["samples"], Hyperparams(**e["hparams"]))
        for e in lineage
        if e["event"] == "train"
    }
    ends_at = {d: samples for (d, _), (samples, _) in trains.items()}  # synchronous: one per decision
    clones = {(e["decision"], e["member"]): e["donor"] for e in lineage if e["event"] == "clone"}
    for (d, i), (end, hp) in sorted(trains.items()):
        start, color = ends_at.get(d - 1, 0), colors(i % colors.N)
        ax_lr.plot(
            [start, end], [hp.lr] * 2, color=color, lw=1.2, alpha=0.8, label=member_run(i) if d == 0 else None
        )
        ax_bs.plot([start, end], [hp.batch_size] * 2, color=color, lw=1.2, alpha=0.8)
        source = clones.get((d, i), i)
        if (d - 1, source) in trains:  # the edge from where this interval's weights came from
            previous, style = trains[(d - 1, source)][1], ":" if source != i else "-"
            ax_lr.plot([start, start], [previous.lr, hp.lr], color=color, lw=0.8, ls=style, alpha=0.7)
            ax_bs.plot(
                [start, start], [previous.batch_size, hp.batch_size], color=color, lw=0.8, ls=style, alpha=0.7
            )
    xs, lrs, bss = [], [], []
    for start, hp, end in best["schedule"]:
        xs += [start, end]
        lrs += [hp.lr, hp.lr]
        bss += [hp.batch_size, hp.batch_size]
    ax_lr.plot(xs, lrs, color="black", lw=3, alpha=0.6, label="best (reconstructed)")
    ax_bs.plot(xs, bss, color="black", lw=3, alpha=0.6)
    ax_lr.set_yscale("log")
    ax_bs.set_yscale("log", base=2)
    ax_lr.set_ylabel("learning rate")
    ax_bs.set_ylabel("batch size")
    ax_bs.set_xlabel("examples trained")
    ax_lr.set_title("schedules: dotted edges are copies (clone from donor), bold is the best member's path")
    ax_lr.legend(fontsize=7, ncol=4, loc="best")
    fig.tight_layout()
    return fig


@contextmanager
def tensorboard_server(logdir: str | Path, *, timeout: float = 60.0) -> Iterator[str]:
    """Serve ``logdir`` with the real ``tensorboard`` on a free loopback port; yields its base URL
    once ``/data/runs`` answers, and stops the server on exit.

    >>> with tensorboard_server("runs") as url:  # doctest: +SKIP
    ...     print(url)
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--load_fast=false",
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url + "/data/runs", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"tensorboard did not start on {url} within {timeout:g} s") from None
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
