"""Experiment configs: TOML files (or dicts) into frozen dataclasses, one schema for Python and CLI.

A run config::

    task = "mnist1d-mlp"        # a built-in task (`rlsched tasks`)
    name = "pbt"                # run directory: <logdir>/<name>
    logdir = "runs"
    seed = 0
    population = 8
    budget_samples = 384000     # per member; default: the task's
    decisions = 10              # default: the task's

    [space]                     # optional; default: the task's
    lr = [0.001, 1.0]
    batch_size = [32, 64, 128, 256, 512]
    scale_rule = "linear"

    [initial]                   # optional; default: the task's
    lr = 0.05
    batch_size = 128

    [agent]                     # type plus that agent's arguments
    type = "PBT"
    quantile_fraction = 0.25

A compare config has ``seeds = [0, 1, 2]`` instead of ``seed`` and ``[agents.<label>]`` tables
(each with ``type``, its arguments and optionally its own ``population``) instead of ``[agent]``.

Every error is one ``ValueError`` line naming the field, the value and what is allowed.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from rlsched.agents import AGENTS, build_agent
from rlsched.app.experiment import task_defaults
from rlsched.core.checks import check_keys, integer
from rlsched.core.space import Hyperparams, HyperparamSpace
from rlsched.envs.tasks import Task, get_task

DEFAULT_AGENT = {"type": "PBT"}


@dataclass(frozen=True)
class RunConfig:
    """One experiment: a task, an agent and a population."""

    task: str = "mnist1d-mlp"
    name: str = "pbt-mnist1d-mlp"
    logdir: str = "runs"
    seed: int = 0
    population: int = 8
    budget_samples: int | None = None
    decisions: int | None = None
    space: dict[str, Any] | None = None
    initial: dict[str, Any] | None = None
    agent: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_AGENT))
    checkpoint_every: int = 1  # generations between checkpoints (the last one is always written)


@dataclass(frozen=True)
class CompareConfig:
    """Several agents on one task at the same examples per member, over several seeds."""

    agents: dict[str, dict[str, Any]]
    task: str = "mnist1d-mlp"
    name: str = "compare"
    logdir: str = "runs"
    seeds: tuple[int, ...] = (0, 1, 2)
    population: int = 8
    budget_samples: int | None = None
    decisions: int | None = None
    space: dict[str, Any] | None = None
    initial: dict[str, Any] | None = None


# -- reading -------------------------------------------------------------------------------------
def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config: no such file {str(path)!r}")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"config: {path} is not valid TOML ({error})") from None


def apply_sets(data: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides; dotted keys reach into tables, values are TOML or bare strings."""
    data = _deep_copy(data)
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set: expected key=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        *parents, last = key.strip().split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"--set: {key!r}: {part!r} is not a table")
        target[last] = value
    return data


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


# -- validation ----------------------------------------------------------------------------------
def _str(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
    if name == "name" and ("/" in value or value in (".", "..")):
        raise ValueError(f"name: expected a plain directory name without '/', got {value!r}")
    return value


def _task_checked(name: Any) -> Task:
    return get_task(_str(name, "task"))


def _space(data: Any, default: HyperparamSpace) -> HyperparamSpace:
    if data is None:
        return default
    if not isinstance(data, dict):
        raise ValueError(f"space: expected a table with lr, batch_size, scale_rule, got {data!r}")
    check_keys(data, ["lr", "batch_size", "scale_rule"], "space.")
    merged = {**default.to_dict(), **data}
    try:
        return HyperparamSpace(
            lr=merged["lr"], batch_size=merged["batch_size"], scale_rule=merged["scale_rule"]
        )
    except ValueError as error:
        raise ValueError(f"space.{error}") from None


def _initial(data: Any, default: Hyperparams, space: HyperparamSpace) -> Hyperparams:
    if data is None:
        return space.check(default, "initial") if space.contains(default) else space.default()
    if not isinstance(data, dict):
        raise ValueError(f"initial: expected a table with lr and batch_size, got {data!r}")
    check_keys(data, ["lr", "batch_size"], "initial.")
    merged = {**default.to_dict(), **data}
    try:
        hp = Hyperparams(merged["lr"], merged["batch_size"])
    except ValueError as error:
        raise ValueError(f"initial.{error}") from None
    return space.check(hp, "initial")


def build_agent_checked(data: Any, where: str, population: int):
    """An agent from its table, with unknown arguments and bad values reported as ``where.key``."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a table with a type, got {data!r}")
    kind = data.get("type")
    if kind not in AGENTS:
        raise ValueError(f"{where}.type: expected one of {', '.join(AGENTS)}, got {kind!r}")
    target = AGENTS[kind]
    signature = inspect.signature(target.__init__ if isinstance(target, type) else target)
    params = [p for p in signature.parameters if p not in ("self", "cls", "args", "kwargs")]
    if kind == "PB2":
        params += [
            p for p in inspect.signature(AGENTS["PBT"].__init__).parameters if p not in ("self", "explore")
        ]
    check_keys(data, ["type", *params], f"{where}.")
    try:
        agent = build_agent(data)
    except ValueError as error:
        raise ValueError(f"{where}.{error}") from None
    except TypeError as error:  # a value of the wrong kind, e.g. a string for a list
        raise ValueError(f"{where}: {error}") from None
    points = getattr(agent, "points", None)
    if points is not None and len(points) != population:
        raise ValueError(
            f"{where}: the grid has {len(points)} points but population is {population}; make them equal"
        )
    return agent


@dataclass(frozen=True)
class Resolved:
    """A validated run config with everything filled in from the task."""

    config: RunConfig
    space: HyperparamSpace
    initial: Hyperparams
    budget_samples: int
    decisions: int


def _resolve_common(data: dict[str, Any], cls: type) -> tuple[Task, HyperparamSpace, Hyperparams, int, int]:
    """Keys checked against ``cls``; task, space, start, budget and decisions, the task's where unset."""
    check_keys(data, [f.name for f in fields(cls)])
    task = _task_checked(data.get("task", "mnist1d-mlp"))
    space = _space(data.get("space"), task.space)
    initial = _initial(data.get("initial"), task.initial, space)
    budget, decisions = data.get("budget_samples"), data.get("decisions")
    budget = integer(budget, "budget_samples", 1) if budget is not None else None
    decisions = integer(decisions, "decisions", 1) if decisions is not None else None
    space, initial, budget, decisions = task_defaults(task, space, initial, budget, decisions)
    if budget < decisions:
        raise ValueError(
            f"budget_samples: expected at least one example per decision (>= {decisions}), got {budget}"
        )
    return task, space, initial, budget, decisions


def run_config(data: dict[str, Any]) -> Resolved:
    """Validate a run config dict (from TOML and ``--set``) and fill in the task's defaults."""
    task, space, initial, budget, decisions = _resolve_common(data, RunConfig)
    if isinstance(data.get("agent"), dict) and "type" not in data["agent"]:  # e.g. --set agent.explore=...
        data = {**data, "agent": {**DEFAULT_AGENT, **data["agent"]}}
    config = RunConfig(**data)
    _str(config.name, "name")
    _str(config.logdir, "logdir")
    integer(config.seed, "seed", 0)
    integer(config.population, "population", 1)
    integer(config.checkpoint_every, "checkpoint_every", 1)
    build_agent_checked(config.agent, "agent", config.population)
    return Resolved(replace(config, task=task.name), space, initial, budget, decisions)


def compare_config(data: dict[str, Any]) -> tuple[CompareConfig, HyperparamSpace, Hyperparams, int, int]:
    task, space, initial, budget, decisions = _resolve_common(data, CompareConfig)
    if "agents" not in data or not isinstance(data["agents"], dict) or not data["agents"]:
        raise ValueError("agents: expected at least one [agents.<label>] table")
    seeds = data.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError(f"seeds: expected a non-empty list of integers >= 0, got {seeds!r}")
    config = CompareConfig(**{**data, "seeds": tuple(seeds)})
    _str(config.name, "name")
    population = integer(config.population, "population", 1)
    for label, table in config.agents.items():
        if not isinstance(table, dict):
            raise ValueError(f"agents.{label}: expected a table with a type, got {table!r}")
        own = integer(table.get("population", population), f"agents.{label}.population", 1)
        build_agent_checked({k: v for k, v in table.items() if k != "population"}, f"agents.{label}", own)
    return replace(config, task=task.name), space, initial, budget, decisions
