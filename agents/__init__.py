"""rlsched.agents: everything that decides hyperparameters.

Hand schedules (``Fixed`` with a ``Schedule``), static search (``GridSearch``, ``RandomSearch``),
``PBT``, ``PB2`` and the learned ``Controller``, all through one interface
(:class:`rlsched.core.agent.Agent`).
"""

from typing import Any

from rlsched.agents.controller import Controller
from rlsched.agents.pb2 import GPUCB, PB2
from rlsched.agents.pbt import PBT, exploit, explore
from rlsched.agents.prior import ProbeCosine
from rlsched.agents.schedules import KINDS, Schedule, factor
from rlsched.agents.search import Fixed, GridSearch, RandomSearch

AGENTS = {
    "Fixed": Fixed,
    "GridSearch": GridSearch,
    "RandomSearch": RandomSearch,
    "PBT": PBT,
    "PB2": PB2,
    "ProbeCosine": ProbeCosine,
    "Controller": Controller.load,
}


def build_agent(config: dict[str, Any]):
    """An agent from its ``config()`` dict, e.g. ``{"type": "PBT", "quantile_fraction": 0.25}``."""
    config = dict(config)
    kind = config.pop("type", None)
    if kind not in AGENTS:
        raise ValueError(f"agent.type: expected one of {', '.join(AGENTS)}, got {kind!r}")
    if isinstance(config.get("schedule"), str):
        config["schedule"] = Schedule(config["schedule"])
    elif isinstance(config.get("schedule"), dict):
        config["schedule"] = Schedule(**config["schedule"])
    explore = config.get("explore")
    if explore == "controller":  # the hybrid with the shipped controller
        config["explore"] = Controller.load("default")
    elif isinstance(explore, dict):
        config["explore"] = build_agent(explore)
    if "perturbation_factors" in config:
        config["perturbation_factors"] = tuple(config["perturbation_factors"])
    return AGENTS[kind](**config)


__all__ = [
    "AGENTS",
    "GPUCB",
    "KINDS",
    "PB2",
    "PBT",
    "ProbeCosine",
    "Fixed",
    "GridSearch",
    "RandomSearch",
    "Schedule",
    "build_agent",
    "exploit",
    "explore",
    "factor",
]
