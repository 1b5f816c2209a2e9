"""rlsched: adapt a PyTorch model's learning rate and batch size while it trains."""

from rlsched.job import TrainingJob, TrainStats, interval_sizes
from rlsched.member import Member, Record
from rlsched.sampler import DynamicBatchSampler
from rlsched.space import Hyperparams, HyperparamSpace
from rlsched.supervised import SupervisedJob, accuracy

__version__ = "0.1.0"

__all__ = [
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
