"""A live progress bar over member-intervals, with the best val loss so far."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rlsched.population.lineage import Event
from rlsched.population.observer import RunObserver
from rlsched.population.state import RunState

Progress = Callable[[int, int, float], None]  # progress(member-intervals done, total, best val loss)


class ProgressObserver(RunObserver):
    """Calls ``update`` after each member in process, after each generation on several ranks."""

    def __init__(self, update: Progress, world: int, decisions: int) -> None:
        self.update, self.world, self.decisions = update, world, decisions

    def member_trained(self, state: RunState, member_id: int) -> None:
        if self.world == 1:
            members = state.members
            best = min(
                (m.last.val_loss for m in members[: member_id + 1] if not m.diverged), default=math.nan
            )
            n = len(members)
            self.update(state.decision * n + member_id + 1, self.decisions * n, best)

    def generation(self, state: RunState, events: list[Event]) -> None:
        if self.world > 1:
            members = state.members
            best = min((m.last.val_loss for m in members if not m.diverged), default=math.nan)
            self.update(state.decision * len(members), self.decisions * len(members), best)


class LazyBar:
    """A tqdm bar made at the first update, so a run refused before training prints no bar:
    an error is then the only line on stderr. ``close(failed=True)`` also erases it."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def update(self, done: int, total: int, best: float) -> None:
        if self.bar is None:
            from tqdm import tqdm  # only once a run trains: the command line starts without it

            self.bar = tqdm(total=total, desc=self.label, unit="interval", dynamic_ncols=True, leave=True)
        self.bar.total = total
        self.bar.n = done
        self.bar.set_postfix_str(f"best val loss {best:.4f}", refresh=False)
        self.bar.refresh()

    def close(self, failed: bool = False) -> None:
        if self.bar is not None:
            self.bar.leave = not failed
            self.bar.close()


def progress_bar(quiet: bool, label: str) -> tuple[Progress | None, LazyBar | None]:
    """``(update, bar)``: pass ``update`` as a run's ``progress`` and close ``bar`` after; None when quiet."""
    if quiet:
        return None, None
    bar = LazyBar(label)
    return bar.update, bar
