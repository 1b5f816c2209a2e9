"""Lineage events: what happened to which member at which decision, as typed values.

A run's ``lineage.jsonl`` holds one event per line, appended as it happens; :func:`encode` and
:func:`decode` are the only way events become JSON and back. Four kinds:

- ``start``: a member's first hyperparameters and untrained val loss (decision 0);
- ``clone``: a member copied a donor (weights, optimizer, data order, RNG, history) and took
  new hyperparameters (PBT's exploit and explore);
- ``explore``: a member changed its hyperparameters without copying;
- ``train``: a member trained one interval at ``hparams`` and reached ``samples`` and ``val_loss``.

A member's whole trajectory, across the ancestors it copied, can be rebuilt from events alone
(:func:`trajectory_from_lineage`), which is what ``rlsched replay`` retrains.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from rlsched.core.agent import Decision
from rlsched.core.files import finite
from rlsched.core.member import Record
from rlsched.core.space import Hyperparams


class _Event:
    """Events compare by their encoded form, so a diverged member's NaN val loss equals itself."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and encode(self) == encode(other)  # type: ignore[arg-type]

    def __hash__(self) -> int:
        return hash(json.dumps(encode(self), sort_keys=True))  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class Start(_Event):
    decision: int
    member: int
    hparams: Hyperparams
    val_loss: float


@dataclass(frozen=True, eq=False)
class Clone(_Event):
    decision: int
    member: int
    donor: int
    old: Hyperparams
    new: Hyperparams
    score: float  # the member's own score before the copy (higher is better, -inf diverged)
    donor_score: float
    reason: str


@dataclass(frozen=True, eq=False)
class Explore(_Event):
    decision: int
    member: int
    old: Hyperparams
    new: Hyperparams
    score: float
    reason: str


@dataclass(frozen=True, eq=False)
class Train(_Event):
    decision: int
    member: int
    hparams: Hyperparams
    samples: int  # examples the member's weights have seen after the interval
    val_loss: float
    diverged: bool
    error: str | None = None  # the job raised: ``"Type: message"``


Event = Start | Clone | Explore | Train
KINDS: dict[str, type] = {"start": Start, "clone": Clone, "explore": Explore, "train": Train}
_NAMES = {cls: name for name, cls in KINDS.items()}
_HPARAMS = ("hparams", "old", "new")
_SCORES = ("score", "donor_score")  # JSON null: -inf (diverged)


def encode(event: Event) -> dict[str, Any]:
    """The event as strict-JSON-ready plain values (non-finite floats become ``None``)."""
    fields: dict[str, Any] = {"event": _NAMES[type(event)]}
    for name in event.__dataclass_fields__:
        value = getattr(event, name)
        if name == "error" and value is None:
            continue
        fields[name] = value.to_dict() if isinstance(value, Hyperparams) else value
    return finite(fields)


def decode(data: Any) -> Event:
    """An event from :func:`encode`'s form; a ``ValueError`` naming what is wrong otherwise."""
    if not isinstance(data, dict) or data.get("event") not in KINDS:
        kind = data.get("event") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"lineage: unknown event {kind!r}, expected one of {', '.join(KINDS)}")
    cls = KINDS[data["event"]]
    names = list(cls.__dataclass_fields__)
    values: dict[str, Any] = {}
    try:
        for name in names:
            if name not in data:
                if name == "error":
                    continue
                raise ValueError(f"lineage: a {data['event']} event lacks {name!r}")
            value = data[name]
            if name in _HPARAMS:
                value = Hyperparams(**value)
            elif name in _SCORES:
                value = -math.inf if value is None else float(value)
            elif name == "val_loss":
                value = math.nan if value is None else float(value)
            values[name] = value
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"lineage: a bad {data['event']} event ({error})") from None


def member_events(
    d: int,
    member: int,
    decision: Decision,
    donor: int | None,
    old: Hyperparams,
    score: float,
    donor_score: float | None,
    record: Record,
    error: str | None,
) -> list[Event]:
    """A member's events of generation ``d``: a copy of ``donor`` or a change of hyperparameters
    (none if neither), then its training, which ended at ``record`` (``error``: the job raised)."""
    events: list[Event] = []
    if donor is not None:
        events.append(Clone(d, member, donor, old, decision.hparams, score, donor_score, decision.reason))
    elif decision.hparams != old:
        events.append(Explore(d, member, old, decision.hparams, score, decision.reason))
    events.append(Train(d, member, decision.hparams, record.samples, record.val_loss, record.diverged, error))
    return events


def trajectory_from_lineage(events: list[Event], member: int) -> list[tuple[int, Hyperparams]]:
    """Rebuild ``member``'s whole trajectory from lineage events alone, following copies back."""
    trains: dict[tuple[int, int], Train] = {}
    clones: dict[tuple[int, int], int] = {}
    last = -1
    for e in events:
        if isinstance(e, Train):
            trains[(e.decision, e.member)] = e
            last = max(last, e.decision)
        elif isinstance(e, Clone):
            clones[(e.decision, e.member)] = e.donor
    trajectory = []
    current = member
    for d in range(last, -1, -1):
        previous = clones.get((d, current), current)  # whose weights this interval started from
        start = trains[(d - 1, previous)].samples if d > 0 else 0
        trajectory.append((start, trains[(d, current)].hparams))
        current = previous
    return trajectory[::-1]
