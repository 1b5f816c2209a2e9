"""rlsched: adapt a PyTorch model's learning rate and batch size while it trains.

The layers, each a subpackage, import only downwards:
``core`` <- ``train`` <- ``envs`` <- ``agents`` | ``population`` <- ``report`` <- ``app``.
"""

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

__version__ = "0.1.0"

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
