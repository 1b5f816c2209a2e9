"""rlsched.envs: training jobs as Gymnasium environments.

Importing this package registers the built-in tasks with Gymnasium:

>>> import gymnasium as gym
>>> import rlsched.envs
>>> env = gym.make("rlsched/Synthetic-v0")
"""

import gymnasium as gym

from rlsched.core.actions import BATCH_STEPS, LR_FACTORS, apply_action
from rlsched.core.features import FEATURES, OBSERVATION_VERSION, observation
from rlsched.core.reward import DIVERGENCE_RETURN, reward
from rlsched.envs.distribution import FAMILIES, DistributionEnv, sample_task
from rlsched.envs.env import TrainingEnv
from rlsched.envs.prior_env import PriorEnv
from rlsched.envs.tasks import TASKS, Task, get_task, make_env
from rlsched.envs.zoo import ZOO_FAMILIES, ZOO_KINDS, sample_zoo_task, zoo_task


def _register() -> None:
    for task in TASKS.values():
        if task.env_id is not None and task.env_id not in gym.registry:
            gym.register(
                id=task.env_id, entry_point="rlsched.envs.tasks:make_env", kwargs={"task": task.name}
            )
    for family in ("train", "eval"):
        env_id = f"rlsched/TaskDistribution-{family.capitalize()}-v0"
        if env_id not in gym.registry:
            gym.register(
                id=env_id, entry_point="rlsched.envs.distribution:DistributionEnv", kwargs={"family": family}
            )
        prior_id = f"rlsched/Prior-{family.capitalize()}-v0"  # version 2: the zoo, against the prior
        if prior_id not in gym.registry:
            gym.register(
                id=prior_id, entry_point="rlsched.envs.prior_env:PriorEnv", kwargs={"family": family}
            )


_register()

__all__ = [
    "BATCH_STEPS",
    "DistributionEnv",
    "DIVERGENCE_RETURN",
    "FAMILIES",
    "FEATURES",
    "LR_FACTORS",
    "OBSERVATION_VERSION",
    "PriorEnv",
    "TASKS",
    "ZOO_FAMILIES",
    "ZOO_KINDS",
    "Task",
    "TrainingEnv",
    "apply_action",
    "get_task",
    "make_env",
    "observation",
    "reward",
    "sample_task",
    "sample_zoo_task",
    "zoo_task",
]
