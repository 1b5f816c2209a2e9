"""The schedule figure: every member's LR and batch size over examples, copies and the best path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rlsched.core.space import Hyperparams
from rlsched.population.lineage import Clone, Event, Train
from rlsched.population.rundir import member_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def schedule_figure(
    lineage: list[Event], best: Sequence[tuple[int, Hyperparams, int]], population: int
) -> Figure:
    """LR and batch size over examples for every member; copies drawn as dotted edges, and the best
    member's intervals ``(start, hparams, end)`` (its trajectory) bold."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_bs) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    colors = plt.get_cmap("tab10" if population <= 10 else "tab20")
    trains = {(e.decision, e.member): (e.samples, e.hparams) for e in lineage if isinstance(e, Train)}
    ends_at = {d: samples for (d, _), (samples, _) in trains.items()}  # synchronous: one per decision
    clones = {(e.decision, e.member): e.donor for e in lineage if isinstance(e, Clone)}
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
    for start, hp, end in best:
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
