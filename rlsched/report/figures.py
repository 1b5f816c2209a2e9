"""The schedule figure: every member's LR, batch size and val loss over examples, copies and the
best path; and that path itself, rebuilt from the lineage."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from rlsched.core.space import Hyperparams
from rlsched.population.lineage import Clone, Event, Start, Train
from rlsched.population.rundir import member_run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


class Interval(NamedTuple):
    """One trained interval ``(start, end]`` of a member's path and its val loss at ``end``."""

    start: int
    hparams: Hyperparams
    end: int
    val_loss: float


def best_path(lineage: Sequence[Event], member: int) -> tuple[float, list[Interval]]:
    """``member``'s path, following its copies back to the member its weights started as: that
    member's val loss before training, and every interval since.

    The intervals' ``(start, hparams)`` are the member's trajectory
    (:func:`rlsched.population.lineage.trajectory_from_lineage`).
    """
    trains = {(e.decision, e.member): e for e in lineage if isinstance(e, Train)}
    clones = {(e.decision, e.member): e.donor for e in lineage if isinstance(e, Clone)}
    path, current = [], member
    for d in range(max((d for d, _ in trains), default=-1), -1, -1):
        source = clones.get((d, current), current)  # whose weights this interval started from
        train = trains[(d, current)]
        start = trains[(d - 1, source)].samples if d > 0 else 0
        path.append(Interval(start, train.hparams, train.samples, train.val_loss))
        current = source
    initial = next((e.val_loss for e in lineage if isinstance(e, Start) and e.member == current), math.nan)
    return initial, path[::-1]


def schedule_figure(lineage: list[Event], best: int, population: int) -> Figure:
    """LR, batch size and val loss over examples for every member; copies drawn as dotted edges,
    and the path of member ``best`` (see :func:`best_path`) bold."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8.5), sharex=True)
    ax_lr, ax_bs, ax_val = axes
    colors = plt.get_cmap("tab10" if population <= 10 else "tab20")
    trains = {(e.decision, e.member): e for e in lineage if isinstance(e, Train)}
    starts = {e.member: e.val_loss for e in lineage if isinstance(e, Start)}
    clones = {(e.decision, e.member): e.donor for e in lineage if isinstance(e, Clone)}
    for (d, i), train in sorted(trains.items()):
        source = clones.get((d, i), i)  # where this interval's weights came from
        before = trains.get((d - 1, source))
        start = before.samples if before is not None else 0
        color, style = colors(i % colors.N), ":" if source != i else "-"
        label = member_run(i) if d == 0 else None
        for ax, value in ((ax_lr, lambda e: e.hparams.lr), (ax_bs, lambda e: e.hparams.batch_size)):
            ax.plot([start, train.samples], [value(train)] * 2, color=color, lw=1.2, alpha=0.8, label=label)
            if before is not None:  # the edge from the hyperparameters the weights had
                ax.plot([start] * 2, [value(before), value(train)], color=color, lw=0.8, ls=style, alpha=0.7)
        previous = before.val_loss if before is not None else starts.get(source, math.nan)
        ax_val.plot(
            [start, train.samples], [previous, train.val_loss], color=color, lw=1.2, ls=style, alpha=0.8
        )
    _best(axes, *best_path(lineage, best))
    ax_lr.set_yscale("log")
    ax_bs.set_yscale("log", base=2)
    ax_val.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_bs.set_ylabel("batch size")
    ax_val.set_ylabel("val loss")
    ax_val.set_xlabel("examples trained")
    ax_lr.set_title("schedules: dotted edges are copies (clone from donor), bold is the best member's path")
    ax_lr.legend(fontsize=7, ncol=4, loc="best")
    fig.tight_layout()
    return fig


def _best(axes: Sequence[Axes], initial: float, path: list[Interval]) -> None:
    """The best member's path, bold: its hyperparameters as steps and its val loss."""
    xs = [x for step in path for x in (step.start, step.end)]
    style = dict(color="black", lw=3, alpha=0.6)
    lrs = [lr for step in path for lr in (step.hparams.lr,) * 2]
    batch_sizes = [bs for step in path for bs in (step.hparams.batch_size,) * 2]
    axes[0].plot(xs, lrs, label="best (reconstructed)", **style)
    axes[1].plot(xs, batch_sizes, **style)
    axes[2].plot([0] + [step.end for step in path], [initial] + [step.val_loss for step in path], **style)
