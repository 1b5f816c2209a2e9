"""What hangs off the runner: persistence (lineage, checkpoints, result) and observers
(TensorBoard, progress), all through one small interface, like Stable-Baselines3's callbacks.

The runner calls every observer's hooks in the order given, on every rank; an observer that
writes shared files checks the rank itself. Each hook does nothing unless overridden.
"""

from __future__ import annotations

from rlsched.population.lineage import Event
from rlsched.population.state import RunResult, RunState


class RunObserver:
    """Hooks of a population run, called by :class:`~rlsched.population.runner.Runner`."""

    def started(self, state: RunState) -> None:
        """Every member was built and evaluated at decision 0 (``state.lineage`` has the starts)."""

    def restored(self, state: RunState) -> None:
        """The run was restored from a checkpoint at ``state.decision``."""

    def member_trained(self, state: RunState, member_id: int) -> None:
        """This rank trained and evaluated one of its members in generation ``state.decision``."""

    def generation(self, state: RunState, events: list[Event]) -> None:
        """A generation ended: ``events`` are its lineage events; ``state.decision`` already counts it."""

    def checkpoint(self, state: RunState) -> None:
        """A checkpoint of ``state`` is due (observers before the one that writes it flush first)."""

    def finished(self, state: RunState, result: RunResult) -> None:
        """The run is over; ``result`` is the same on every rank."""
