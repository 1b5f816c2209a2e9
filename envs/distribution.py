"""A distribution of varied training jobs, split up front into training and evaluation families.

Controllers are meta-trained on the ``"train"`` family and benchmarked on the ``"eval"``
family only. The two never share a task instance: each family draws from its own random
stream, MNIST-1D data for each family comes from disjoint data seeds, and the character
language model appears only in the evaluation family (a held-out kind of task).

>>> from rlsched.envs.distribution import sample_task
>>> task = sample_task(3, "train")
>>> sorted(task.settings)[:3]
['data_seed', 'depth', 'label_noise']
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlsched.core.actions import BATCH_STEPS, LR_FACTORS
from rlsched.core.checks import integer
from rlsched.core.features import CLIP, FEATURES
from rlsched.core.space import Hyperparams
from rlsched.envs.env import TrainingEnv
from rlsched.envs.tasks import ADAM_SPACE, SGD_SPACE, Task, char_lm_job, mnist1d_job, synthetic_job

FAMILIES = ("train", "eval")
KINDS = {
    "train": ("synthetic", "mnist1d-mlp", "mnist1d-cnn"),
    "eval": ("synthetic", "mnist1d-mlp", "mnist1d-cnn", "char-lm"),
}
DATA_SEEDS = {"train": tuple(range(100, 108)), "eval": tuple(range(200, 204))}
LR_RANGES = {"sgd": (3e-3, 0.3), "adam": (3e-4, 1e-2)}
BUDGETS = {"synthetic": 20_000, "mnist1d-mlp": 64_000, "mnist1d-cnn": 48_000, "char-lm": 48_000}


def sample_task(seed: int, family: str = "train", *, decisions: int = 10) -> Task:
    """A task drawn from ``family`` by ``seed``: kind, width, depth, data size, optimizer (SGD or
    Adam), label noise, initial LR and batch size. The same ``(seed, family)`` always gives the
    same task."""
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}")
    integer(seed, "seed", 0, what="a non-negative integer")
    rng = np.random.default_rng([FAMILIES.index(family), int(seed)])
    kind = str(rng.choice(KINDS[family]))
    optimizer = str(rng.choice(["sgd", "adam"]))
    low, high = LR_RANGES[optimizer]
    lr = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    space = SGD_SPACE if optimizer == "sgd" else ADAM_SPACE
    batch_size = int(rng.choice(space.batch_size[:4]))
    settings: dict = {"optimizer": optimizer, "lr": lr}
    if kind == "char-lm":
        settings |= {"width": int(rng.choice([128, 256]))}
        job = char_lm_job
    elif kind == "synthetic":
        settings |= {
            "width": int(rng.choice([16, 32, 64])),
            "depth": int(rng.integers(1, 4)),
            "train_size": int(rng.choice([500, 1000, 2000])),
            "label_noise": float(rng.uniform(0.0, 0.3)),
            "data_seed": int(rng.choice(DATA_SEEDS[family])),
        }
        job = synthetic_job
    else:
        settings |= {
            "model": kind.removeprefix("mnist1d-"),
            "width": int(rng.choice([32, 64, 128] if kind == "mnist1d-mlp" else [16, 32])),
            "depth": int(rng.integers(1, 4)),
            "train_size": int(rng.choice([1000, 2000, 4000])),
            "label_noise": float(rng.uniform(0.0, 0.2)),
            "data_seed": int(rng.choice(DATA_SEEDS[family])),
        }
        job = mnist1d_job
    initial = Hyperparams(space.clip_lr(lr), batch_size)
    return Task(
        name=f"{family}/{seed}:{kind}",
        env_id=None,
        description=f"{kind} from the {family} family",
        build=lambda s: job(s, **settings),
        space=space,
        initial=initial,
        budget_samples=BUDGETS[kind],
        decisions=decisions,
        settings={"kind": kind, **settings},
    )


class DistributionEnv(gym.Env):
    """Each episode a fresh task from ``family``: the environment controllers are meta-trained on.

    The task seed is drawn from ``self.np_random`` (so seeding ``reset`` fixes the task too), the
    episode is that task's TrainingEnv at its own space, start and budget. Observation and
    action spaces are those of every TrainingEnv. ``info["task"]`` names the task.
    """

    metadata = {"render_modes": []}

    def __init__(self, family: str = "train", *, decisions: int = 10, tasks: int = 100_000) -> None:
        if family not in FAMILIES:
            raise ValueError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}")
        self.family, self.decisions, self.tasks = family, decisions, tasks
        self.observation_space = spaces.Box(-CLIP, CLIP, shape=(len(FEATURES),), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([len(LR_FACTORS), len(BATCH_STEPS)])
        self.inner: TrainingEnv | None = None
        self.task: Task | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        task_seed = int(self.np_random.integers(self.tasks))
        self.task = sample_task(task_seed, self.family, decisions=self.decisions)
        self.inner = self.task.make_env()
        obs, info = self.inner.reset(seed=int(self.np_random.integers(2**31 - 1)))
        return obs, {**info, "task": self.task.name}

    def step(self, action):
        if self.inner is None:
            raise RuntimeError("DistributionEnv.step: call reset() before step()")
        obs, reward, terminated, truncated, info = self.inner.step(action)
        return obs, reward, terminated, truncated, {**info, "task": self.task.name}
