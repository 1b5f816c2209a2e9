"""Experiment configs: TOML files (or dicts) into frozen dataclasses, one schema for Python and CLI.

A run config::

    task = "mnist1d-mlp"        # a built-in task (`rlsched tasks`), or a user's job factory:
                                # "my_module:make_job" or "path/to/file.py:make_job" (see load_factory)
    name = "pbt"                # run directory: <logdir>/<name>
    logdir = "runs"
    seed = 0
    population = 8              # at most 4096
    budget_samples = 384000     # per member; default: the task's
    decisions = 10              # default: the task's; at most 10000

    [space]                     # optional; default: the task's
    lr = [0.001, 1.0]
    batch_size = [32, 64, 128, 256, 512]
    scale_rule = "linear"

    [space.extra]               # optional: more named floats for population methods and search
    weight_decay = [1e-5, 0.1, "log"]
    dropout = [0.0, 0.5]        # the linear scale unless "log" is given

    [initial]                   # optional; default: the task's
    lr = 0.05
    batch_size = 128

    [initial.extra]             # optional; an extra not given starts mid-range
    weight_decay = 1e-4

    [agent]                     # type plus that agent's arguments
    type = "PBT"
    quantile_fraction = 0.25

A user's task (a callable ``seed -> TrainingJob``) has no defaults: ``[space]``, ``[initial]``
(each with lr and batch_size), ``budget_samples`` and ``decisions`` are required.

A compare config has ``seeds = [0, 1, 2]`` instead of ``seed`` and ``[agents.<label>]`` tables
(each with ``type``, its arguments and optionally its own ``population``) instead of ``[agent]``.

Every error is one ``ValueError`` line naming the field, the value and what is allowed, raised
before anything is written: :func:`run_config` also draws the agent's starting points and checks
them against the space, and :func:`check_output_dir` checks where files will go.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from rlsched.agents import AGENTS, build_agent
from rlsched.agents.schedules import KINDS as SCHEDULES
from rlsched.core.checks import MAX_DECISIONS, MAX_POPULATION, check_keys, integer, real
from rlsched.core.space import Hyperparams, HyperparamSpace
from rlsched.envs.tasks import Task, get_task
from rlsched.population.runner import JobFactory

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
MAX_CONFIG_BYTES = 1 << 20  # a config is a page of settings; anything larger is the wrong file
MAX_DEPTH = 32  # tables and arrays nested deeper than this are no config of ours
# A dotted key of many parts makes tomllib's bookkeeping quadratic (16k parts: 1 GB, 3 s), and a
# key cannot span lines: so a line with more dots than this, or a file with more, is refused first.
MAX_DOTS_PER_LINE, MAX_DOTS = 1000, 10_000


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML config file as a dict; every problem (missing, unreadable, not TOML) is one line."""
    text = str(path)
    if not text or "\0" in text:
        raise ValueError(f"config: expected a file name, got {text!r}")
    path = Path(path)
    try:
        if not path.exists():
            raise ValueError(f"config: no such file {text!r}")
        if not path.is_file():
            raise ValueError(f"config: {text!r} is not a regular file (a directory or device)")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"config: {path} is over {MAX_CONFIG_BYTES} bytes; expected a TOML config")
        source = path.read_bytes().decode()
    except OSError as error:
        raise ValueError(f"config: cannot read {path} ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"config: {path} is not valid TOML ({error})") from None
    return _parse(source, f"config: {path}")


class TooLarge(ValueError):
    """TOML nested too deep or with too many dots to parse safely (a ``ValueError``, one line)."""


def _parse(source: str, where: str) -> dict[str, Any]:
    """TOML text as a dict, nested at most ``MAX_DEPTH`` deep; one ``ValueError`` otherwise."""
    too_deep = f"{where} nests keys, tables or arrays deeper than {MAX_DEPTH} levels"
    lines = source.splitlines()
    if source.count(".") > MAX_DOTS or any(line.count(".") > MAX_DOTS_PER_LINE for line in lines):
        raise TooLarge(f"{where} has over {MAX_DOTS_PER_LINE} dots on a line or {MAX_DOTS} in all")
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{where} is not valid TOML ({error})") from None
    except RecursionError:
        raise TooLarge(too_deep) from None
    if _depth(data) > MAX_DEPTH:
        raise TooLarge(too_deep)
    return data


def _depth(data: Any) -> int:
    """How deep tables and arrays nest in ``data`` (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(data, 0)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH and isinstance(value, (dict, list)):
            stack += [(v, depth + 1) for v in (value.values() if isinstance(value, dict) else value)]
    return deepest


def apply_sets(data: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides; dotted keys reach into tables, values are TOML or bare strings."""
    data = _deep_copy(data)
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set: expected key=value, got {item!r}")
        parts = [part.strip() for part in key.strip().split(".")]
        if not all(parts) or len(parts) > MAX_DEPTH:
            raise ValueError(f"--set: {key!r}: expected a key or dotted key such as agent.type")
        try:
            value = _parse(f"v = {text}", f"--set: {key.strip()!r}")["v"]
        except TooLarge:
            raise
        except ValueError:
            value = text  # not TOML: a bare string
        *parents, last = parts
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
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError(f"{name}: expected a non-empty string, got {_cut(value)}")
    if name == "name" and ("/" in value or value in (".", "..")):
        raise ValueError(f"name: expected a plain directory name without '/', got {_cut(value)}")
    if name == "name" and len(os.fsencode(value)) > NAME_MAX:
        raise ValueError(
            f"name: {len(os.fsencode(value))} bytes, over the file-name limit of {NAME_MAX} (NAME_MAX)"
        )
    return value


def _cut(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- where files go ------------------------------------------------------------------------------
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems


def check_output_dir(path: str | Path, field: str) -> None:
    """Refuse, before anything is written, a directory that rlsched could not make or write in.

    ``path`` may exist (a directory) or not (its first existing ancestor must be a writable
    directory). Nothing is created or probed on disk: the checks are ``stat``, ``access`` and the
    file system's limits, so a refusal leaves every directory as it was.
    """
    path = Path(os.path.abspath(path))
    if len(os.fsencode(path)) >= 4096:
        raise ValueError(
            f"{field}: {len(os.fsencode(path))} bytes of path, over the limit of 4095 (PATH_MAX)"
        )
    existing, missing = path, []
    while not os.path.lexists(existing) and existing != existing.parent:
        missing.append(existing.name)
        existing = existing.parent
    if not existing.is_dir():
        kind = "a file" if existing.is_file() else "a device, pipe or socket"
        inside = "" if existing == path else f", so {path} cannot be made"
        raise ValueError(f"{field}: {existing} is {kind}, not a directory{inside}")
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = NAME_MAX
    for name in missing:
        if len(os.fsencode(name)) > limit:
            raise ValueError(
                f"{field}: {name[:40]}... is {len(os.fsencode(name))} bytes, over this file system's "
                f"file-name limit of {limit} (NAME_MAX)"
            )
    if not os.access(existing, os.W_OK | os.X_OK) or _read_only(existing):
        raise ValueError(f"{field}: cannot write in {existing} (read-only or no permission)")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# -- tasks -------------------------------------------------------------------------------------
def is_user_task(task: str) -> bool:
    """Whether ``task`` names a user's job factory (``module:attr``) rather than a built-in task."""
    return ":" in task


def task_factory(task: str) -> JobFactory:
    """The job factory of a built-in task name or of a user's ``module:attr`` (:func:`load_factory`)."""
    return load_factory(task) if is_user_task(task) else get_task(task).build


def load_factory(task: str) -> JobFactory:
    """A user's job factory, a callable ``seed -> TrainingJob``, from ``"module:attr"`` or
    ``"path/to/file.py:attr"``.

    A module is imported with the current directory on the import path (as ``python -m`` does);
    a file is run as a module with its own directory on the path, so it can import its neighbours.
    ``attr`` may be dotted (``"jobs:Factories.small"``). Every failure is one ``ValueError`` line.

    >>> factory = load_factory("rlsched.envs.tasks:get_task")   # any callable will do
    """
    source, _, attr = task.rpartition(":")
    if not source or not attr:
        raise ValueError(f"task: expected 'module:function' or 'path/to/file.py:function', got {task!r}")
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ beside their code
    try:
        module = _import_file(source) if source.endswith(".py") else _import_module(source)
    finally:
        sys.dont_write_bytecode = writes
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"task: {source!r} has no attribute {attr!r} (from task {task!r})")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(
            f"task: {task!r} is not callable (it is a {type(target).__name__}); "
            "expected a function seed -> TrainingJob"
        )
    return target


def _import_module(name: str) -> Any:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    importlib.invalidate_caches()  # a module written since the last import is found
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise ValueError(
                f"task: no module named {name!r}; run from the directory that holds it, or install it"
            ) from None
        raise ValueError(f"task: importing {name!r} failed ({_one_line(error)})") from None
    except Exception as error:  # the user's module raised while it was imported
        raise ValueError(f"task: importing {name!r} failed ({_one_line(error)})") from None


def _import_file(path: str) -> Any:
    file = Path(path).resolve()
    if not file.is_file():
        raise ValueError(f"task: no such file {path!r}")
    name = f"rlsched_user_task_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ValueError(f"task: {path!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    if str(file.parent) not in sys.path:
        sys.path.insert(0, str(file.parent))
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ValueError(f"task: running {path!r} failed ({_one_line(error)})") from None
    return module


def _one_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _task_name(value: Any) -> str:
    """A built-in task's name, or a user task with its file path made absolute (for ``resume``)."""
    task = _str(value, "task")
    if not is_user_task(task):
        get_task(task)  # an unknown name fails here
        return task
    load_factory(task)  # bad modules, attributes and files fail here, before anything is written
    source, _, attr = task.rpartition(":")
    return f"{Path(source).resolve()}:{attr}" if source.endswith(".py") else task


def _space(data: Any, default: HyperparamSpace | None) -> HyperparamSpace:
    """``[space]`` over ``default`` (a built-in task's); a user's task (none) needs lr and batch_size."""
    if data is None and default is not None:
        return default
    if not isinstance(data, dict):
        raise ValueError(f"space: expected a table with lr, batch_size, scale_rule, extra, got {data!r}")
    check_keys(data, ["lr", "batch_size", "scale_rule", "extra"], "space.")
    if default is None:
        _require(data, ["lr", "batch_size"], "space.")
    merged = {**(default or HyperparamSpace()).to_dict(), **data}
    try:
        return HyperparamSpace.from_dict(merged)
    except ValueError as error:
        raise ValueError(f"space.{error}") from None


def _initial(data: Any, default: Hyperparams | None, space: HyperparamSpace) -> Hyperparams:
    """``[initial]`` over ``default`` (a built-in task's); extras not given start mid-range."""
    mid = space.default().extra
    if data is None and default is not None:
        hp = replace(default, extra={**mid, **{k: v for k, v in default.extra.items() if k in mid}})
        return space.check(hp, "initial") if space.contains(hp) else space.default()
    if not isinstance(data, dict):
        raise ValueError(f"initial: expected a table with lr, batch_size and optionally extra, got {data!r}")
    check_keys(data, ["lr", "batch_size", "extra"], "initial.")
    if default is None:
        _require(data, ["lr", "batch_size"], "initial.")
    merged = {**(default.to_dict() if default else {}), **data}
    extra = merged.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(f"initial.extra: expected a table of name = number, got {extra!r}")
    try:
        hp = Hyperparams(merged["lr"], merged["batch_size"], {**mid, **extra})
    except ValueError as error:
        raise ValueError(f"initial.{error}") from None
    return space.check(hp, "initial")


def _require(data: dict[str, Any], keys: list[str], where: str) -> None:
    for key in keys:
        if key not in data:
            raise ValueError(f"{where}{key}: required for a user's task (built-in tasks have defaults)")


def build_agent_checked(data: Any, where: str, population: int):
    """An agent from its table, with unknown arguments and bad values reported as ``where.key``."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a table with a type, got {_cut(data)}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in AGENTS:
        raise ValueError(f"{where}.type: expected one of {', '.join(AGENTS)}, got {_cut(kind)}")
    params = _agent_params(kind)
    check_keys(data, ["type", *params], f"{where}.")
    for key, param in params.items():
        if key in data:
            _check_argument(data[key], param.default, f"{where}.{key}")
        elif param.default is inspect.Parameter.empty:
            raise ValueError(f"{where}.{key}: required for {kind}")
    try:
        agent = build_agent(data)
    except ValueError as error:
        raise ValueError(f"{where}.{error}") from None
    except (TypeError, ImportError) as error:  # a value of a kind no check above foresaw; a missing extra
        raise ValueError(f"{where}: {_one_line(error)}") from None
    points = getattr(agent, "points", None)
    if points is not None and len(points) != population:
        raise ValueError(
            f"{where}: the grid has {len(points)} points but population is {population}; make them equal"
        )
    return agent


def _agent_params(kind: str) -> dict[str, inspect.Parameter]:
    """The arguments an agent's table may give, by name (PB2 also takes PBT's, except ``explore``)."""
    target = AGENTS[kind]
    signature = inspect.signature(target.__init__ if isinstance(target, type) else target)
    params = {n: p for n, p in signature.parameters.items() if n not in ("self", "cls", "args", "kwargs")}
    if kind == "PB2":
        pbt = inspect.signature(AGENTS["PBT"].__init__).parameters
        params |= {n: p for n, p in pbt.items() if n not in ("self", "explore")}
    return params


def _check_argument(value: Any, default: Any, where: str) -> None:
    """A value of the kind its default has (a number for a float, a list for a tuple...), so that a
    string where a number belongs is one line naming the key, not a ``TypeError`` deep inside."""
    if where.endswith(".schedule"):
        _check_schedule(value, where)
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {_cut(value)}")
    elif isinstance(default, (int, float)):  # the agent checks the bounds and names them
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"{where}: expected {kind}, got {_cut(value)}")
    elif isinstance(default, tuple) and not isinstance(value, list):
        raise ValueError(f"{where}: expected a list, got {_cut(value)}")
    elif isinstance(default, str) and not isinstance(value, (str, dict)):
        raise ValueError(f"{where}: expected a string, got {_cut(value)}")


def _check_schedule(value: Any, where: str) -> None:
    """``schedule``: a kind's name, or a table with ``kind`` and optionally ``warmup`` and ``final``."""
    kinds = ", ".join(SCHEDULES)
    if isinstance(value, dict):
        check_keys(value, ["kind", "warmup", "final"], f"{where}.")
        kind = value.get("kind", "constant")
        for key in ("warmup", "final"):
            if key in value:
                real(value[key], f"{where}.{key}", 0, 1)
    else:
        kind = value
    if not isinstance(kind, str) or kind not in SCHEDULES:
        raise ValueError(
            f"{where}: expected one of {kinds} or a table with kind, warmup, final, got {_cut(kind)}"
        )


def check_agent_start(
    agent: Any,
    where: str,
    population: int,
    space: HyperparamSpace,
    initial: Hyperparams,
    decisions: int,
    seed: int,
) -> None:
    """The agent's starting points, drawn on a copy of the run's generator, all inside ``space``:
    a grid value outside it fails here, before a run directory is made, not after."""
    try:
        starts = agent.initial(population, space, initial, decisions, np.random.default_rng(seed))
    except ValueError as error:
        raise ValueError(f"{where}.{error}") from None
    for i, hp in enumerate(starts):
        space.check(hp, f"{where}: member {i}'s start")


@dataclass(frozen=True)
class Resolved:
    """A validated run config with everything filled in from the task."""

    config: RunConfig
    space: HyperparamSpace
    initial: Hyperparams
    budget_samples: int
    decisions: int


def _resolve_common(data: dict[str, Any], cls: type) -> tuple[str, HyperparamSpace, Hyperparams, int, int]:
    """Keys checked against ``cls``; task, space, start, budget and decisions, the task's where unset.

    A user's task has no defaults: ``space``, ``initial``, ``budget_samples`` and ``decisions`` are required.
    """
    check_keys(data, [f.name for f in fields(cls)])
    name = _task_name(data.get("task", "mnist1d-mlp"))
    task = None if is_user_task(name) else get_task(name)
    if task is None:
        for key in ("space", "initial", "budget_samples", "decisions"):
            if key not in data:
                raise ValueError(f"{key}: required for a user's task ({name}); built-in tasks have defaults")
    space = _space(data.get("space"), task.space if task else None)
    initial = _initial(data.get("initial"), task.initial if task else None, space)
    budget, decisions = _count(data, "budget_samples", task), _count(data, "decisions", task)
    if budget < decisions:
        raise ValueError(
            f"budget_samples: expected at least one example per decision (>= {decisions}), got {budget}"
        )
    return name, space, initial, budget, decisions


def _count(data: dict[str, Any], key: str, task: Task | None) -> int:
    if data.get(key) is not None:
        return integer(data[key], key, 1, MAX_DECISIONS if key == "decisions" else None)
    assert task is not None  # a user's task was checked to give it
    return getattr(task, key)


MAX_SEED = 2**63 - 1


def run_config(data: dict[str, Any]) -> Resolved:
    """Validate a run config dict (from TOML and ``--set``) and fill in the task's defaults.

    Everything is checked here, before anything is written: the agent's arguments and its starting
    points against the space included.
    """
    task, space, initial, budget, decisions = _resolve_common(data, RunConfig)
    if isinstance(data.get("agent"), dict) and "type" not in data["agent"]:  # e.g. --set agent.explore=...
        data = {**data, "agent": {**DEFAULT_AGENT, **data["agent"]}}
    config = RunConfig(**data)
    _str(config.name, "name")
    _str(config.logdir, "logdir")
    integer(config.seed, "seed", 0)
    integer(config.population, "population", 1, MAX_POPULATION)
    integer(config.checkpoint_every, "checkpoint_every", 1)
    agent = build_agent_checked(config.agent, "agent", config.population)
    check_agent_start(agent, "agent", config.population, space, initial, decisions, config.seed)
    return Resolved(replace(config, task=task), space, initial, budget, decisions)


def compare_config(data: dict[str, Any]) -> tuple[CompareConfig, HyperparamSpace, Hyperparams, int, int]:
    """Validate a compare config dict, every agent's table and start included."""
    task, space, initial, budget, decisions = _resolve_common(data, CompareConfig)
    if "agents" not in data or not isinstance(data["agents"], dict) or not data["agents"]:
        raise ValueError("agents: expected at least one [agents.<label>] table")
    seeds = data.get("seeds", [0, 1, 2])
    if (
        not isinstance(seeds, list)
        or not 1 <= len(seeds) <= 1000
        or not all(_is_int(s) and 0 <= s <= MAX_SEED for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ValueError(f"seeds: expected a list of 1 to 1000 different integers >= 0, got {_cut(seeds)}")
    config = CompareConfig(**{**data, "seeds": tuple(seeds)})
    _str(config.name, "name")
    _str(config.logdir, "logdir")
    population = integer(config.population, "population", 1, MAX_POPULATION)
    for label, table in config.agents.items():
        if not isinstance(table, dict):
            raise ValueError(f"agents.{label}: expected a table with a type, got {_cut(table)}")
        if not label.strip() or len(os.fsencode(label)) > 100:
            raise ValueError(
                f"agents.{label[:40]}: expected a label of 1 to 100 bytes (it names a directory)"
            )
        where = f"agents.{label}"
        own = integer(table.get("population", population), f"{where}.population", 1, MAX_POPULATION)
        agent = build_agent_checked({k: v for k, v in table.items() if k != "population"}, where, own)
        check_agent_start(agent, where, own, space, initial, decisions, seeds[0])
    return replace(config, task=task), space, initial, budget, decisions


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
