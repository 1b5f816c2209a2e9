"""rlsched: adapt a PyTorch model's learning rate and batch size while it trains."""

from rlsched.agent import Agent, Decision, MemberView, PopulationView
from rlsched.experiment import ReplayResult, replay, resume, run
from rlsched.job import TrainingJob, TrainStats, interval_sizes
from rlsched.member import Member, Record
from rlsched.runner import MemberResult, RunResult
from rlsched.sampler import DynamicBatchSampler
from rlsched.scheduler import AdaptiveScheduler
from rlsched.space import Hyperparams, HyperparamSpace
from rlsched.supervised import SupervisedJob, accuracy

__version__ = "0.1.0"

__all__ = [
    "AdaptiveScheduler",
    "Agent",
    "Decision",
    "MemberResult",
    "MemberView",
    "PopulationView",
    "ReplayResult",
    "RunResult",
    "replay",
    "resume",
    "run",
    "DynamicBatchSampler",
    "Hyperparams",
    "HyperparamSpace",
    "Member",
    "Record",
    "SupervisedJob",
    "TrainStats",
    "TrainingJob",
    "accuracy",
    "interval_sizes",
]
