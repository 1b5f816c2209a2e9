"""A live progress bar over member-intervals, with the best val loss so far."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def progress_bar(quiet: bool, label: str) -> tuple[Callable[[int, int, float], None] | None, Any]:
    """``(update, bar)``: pass ``update`` as a run's ``progress`` and close ``bar`` after; None when quiet."""
    if quiet:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=0, desc=label, unit="interval", dynamic_ncols=True, leave=True)

    def update(done: int, total: int, best: float) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(f"best val loss {best:.4f}", refresh=False)
        bar.refresh()

    return update, bar
