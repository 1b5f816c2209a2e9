"""What crosses ranks under ``torchrun``, and how: typed values with a codec each.

In process the runner works on typed ``Decision``s and ``Record``s throughout; only a
``TorchComm`` calls these codecs, at its boundary, to send plain JSON values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlsched.core.agent import Decision
from rlsched.core.member import Record
from rlsched.core.probe import ProbeResult
from rlsched.core.space import Hyperparams
from rlsched.population import lineage
from rlsched.population.comm import PLAIN, Codec

__all__ = [
    "EVENTS",
    "HPARAMS",
    "OUTCOMES",
    "PLAIN",
    "PLAN",
    "RECORDS",
    "Codec",
    "Outcome",
    "Plan",
    "by_member",
]


@dataclass(frozen=True)
class Plan:
    """Rank 0's word for a generation: each member's decision and the rank it trains on."""

    decisions: list[Decision]
    placement: list[int]


@dataclass(frozen=True)
class Outcome:
    """One member's trained interval: its record, the error its job raised, its training time so far."""

    record: Record
    error: str | None
    seconds: float


def _decision(d: dict[str, Any]) -> Decision:
    return Decision(Hyperparams(**d["hparams"]), d["clone_from"], d["reason"])


PLAN: Codec[Plan] = Codec(
    lambda p: {
        "decisions": [
            {"hparams": c.hparams.to_dict(), "clone_from": c.clone_from, "reason": c.reason}
            for c in p.decisions
        ],
        "placement": p.placement,
    },
    lambda d: Plan([_decision(c) for c in d["decisions"]], list(d["placement"])),
)
HPARAMS: Codec[list[Hyperparams]] = Codec(
    lambda hps: [hp.to_dict() for hp in hps], lambda d: [Hyperparams(**hp) for hp in d]
)
RECORDS: Codec[Record] = Codec(Record.to_dict, Record.from_dict)
OUTCOMES: Codec[Outcome] = Codec(
    lambda o: {"record": o.record.to_dict(), "error": o.error, "seconds": o.seconds},
    lambda d: Outcome(Record.from_dict(d["record"]), d["error"], d["seconds"]),
)
PROBES: Codec[ProbeResult] = Codec(ProbeResult.to_dict, ProbeResult.from_dict)
EVENTS: Codec[list[lineage.Event]] = Codec(
    lambda events: [lineage.encode(e) for e in events], lambda d: [lineage.decode(e) for e in d]
)


def by_member(codec: Codec) -> Codec[dict[int, Any]]:
    """``{member id: value}`` with each value through ``codec`` (JSON object keys are strings)."""
    return Codec(
        lambda values: {str(i): codec.encode(v) for i, v in values.items()},
        lambda d: {int(i): codec.decode(v) for i, v in d.items()},
    )
