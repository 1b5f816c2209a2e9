"""rlsched: adapt a PyTorch model's learning rate and batch size while it trains.

The layers, each a subpackage, import only downwards:
``core`` <- ``train`` <- ``envs`` <- ``agents`` | ``population`` <- ``report`` <- ``app``.

The names below are imported on first use (PEP 562), not with the package: ``rlsched --help``
and ``rlsched --version`` then start in a fraction of a second instead of waiting for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {  # public name -> the module that defines it
    "ReplayResult": "rlsched.app.experiment",
    "replay": "rlsched.app.experiment",
    "resume": "rlsched.app.experiment",
    "run": "rlsched.app.experiment",
    "AdaptiveScheduler": "rlsched.app.scheduler",
    "Agent": "rlsched.core.agent",
    "Decision": "rlsched.core.agent",
    "Explorer": "rlsched.core.agent",
    "MemberView": "rlsched.core.agent",
    "PopulationView": "rlsched.core.agent",
    "TrainingJob": "rlsched.core.job",
    "TrainStats": "rlsched.core.job",
    "WithTestSplit": "rlsched.core.job",
    "interval_sizes": "rlsched.core.job",
    "Member": "rlsched.core.member",
    "Record": "rlsched.core.member",
    "Hyperparams": "rlsched.core.space",
    "HyperparamSpace": "rlsched.core.space",
    "RunDir": "rlsched.population.rundir",
    "MemberResult": "rlsched.population.state",
    "RunResult": "rlsched.population.state",
    "GradientProbe": "rlsched.train.probe",
    "summarize": "rlsched.train.probe",
    "DynamicBatchSampler": "rlsched.train.sampler",
    "SupervisedJob": "rlsched.train.supervised",
    "accuracy": "rlsched.train.supervised",
}

__all__ = [
    "AdaptiveScheduler",
    "Agent",
    "Decision",
    "DynamicBatchSampler",
    "Explorer",
    "GradientProbe",
    "Hyperparams",
    "HyperparamSpace",
    "Member",
    "MemberResult",
    "MemberView",
    "PopulationView",
    "Record",
    "ReplayResult",
    "RunDir",
    "RunResult",
    "SupervisedJob",
    "TrainStats",
    "TrainingJob",
    "WithTestSplit",
    "accuracy",
    "interval_sizes",
    "replay",
    "resume",
    "run",
    "summarize",
]


_SUBPACKAGES = ("agents", "app", "core", "envs", "integrations", "population", "report", "train")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # ``import rlsched; rlsched.agents.PBT`` works as it always did
        return importlib.import_module(f"rlsched.{name}")
    if name not in _WHERE:
        raise AttributeError(f"module 'rlsched' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from rlsched.app.experiment import ReplayResult, replay, resume, run
    from rlsched.app.scheduler import AdaptiveScheduler
    from rlsched.core.agent import Agent, Decision, Explorer, MemberView, PopulationView
    from rlsched.core.job import TrainingJob, TrainStats, WithTestSplit, interval_sizes
    from rlsched.core.member import Member, Record
    from rlsched.core.space import Hyperparams, HyperparamSpace
    from rlsched.population.rundir import RunDir
    from rlsched.population.state import MemberResult, RunResult
    from rlsched.train.probe import GradientProbe, summarize
    from rlsched.train.sampler import DynamicBatchSampler
    from rlsched.train.supervised import SupervisedJob, accuracy
