"""Built-in tasks: real data made or shipped locally, never downloaded.

Every task is a :class:`Task`: a seeded job factory plus the hyperparameter space, initial
hyperparameters and episode budget it is meant to run with.

>>> from rlsched.envs.tasks import get_task
>>> env = get_task("synthetic").make_env()
>>> obs, info = env.reset(seed=0)
"""

from __future__ import annotations

import functools
import importlib.metadata
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from rlsched.core.space import Hyperparams, HyperparamSpace
from rlsched.envs.data_cache import cached
from rlsched.envs.env import TrainingEnv
from rlsched.train.supervised import SupervisedJob, accuracy


@dataclass(frozen=True)
class Task:
    """A training job family with the settings it is meant to run with.

    ``build(seed)`` returns a fresh job; ``settings`` are the keyword arguments of the job
    builder (width, depth, optimizer, ...), recorded so a sampled task can be described.
    """

    name: str
    env_id: str | None
    description: str
    build: Callable[[int], SupervisedJob]
    space: HyperparamSpace
    initial: Hyperparams
    budget_samples: int
    decisions: int = 10
    settings: dict[str, Any] = field(default_factory=dict)

    def make_job(self, seed: int) -> SupervisedJob:
        return self.build(seed)

    def on(self, device: str | torch.device = "cpu") -> Callable[[int], SupervisedJob]:
        """The job factory with the model on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``...);
        the weights start the same on every device (made on the CPU from the seed, then moved).
        Batches follow the model: the job moves each one to its parameters' device."""
        if torch.device(device).type == "cpu":
            return self.build
        return functools.partial(self.build, device=device)

    def make_env(self, **overrides: Any) -> TrainingEnv:
        """A TrainingEnv for this task; ``overrides`` replace space, budget_samples, decisions, initial."""
        kwargs = {
            "space": self.space,
            "budget_samples": self.budget_samples,
            "decisions": self.decisions,
            "initial": self.initial,
        }
        unknown = set(overrides) - set(kwargs)
        if unknown:
            raise TypeError(f"make_env: unknown argument(s) {sorted(unknown)}; allowed: {sorted(kwargs)}")
        kwargs.update(overrides)
        return TrainingEnv(self.build, **kwargs)


# -- data ------------------------------------------------------------------------------------
MNIST1D_TRAIN_SIZE = 40_000  # enough that the built-in tasks under-fit: docs/benchmarks.md


@functools.lru_cache(maxsize=8)
def mnist1d_data(data_seed: int = 42, train_size: int = 4000) -> dict[str, torch.Tensor]:
    """MNIST-1D generated offline: ``train_size`` training, 1000 validation and 1000 test examples.

    Generating is slow (about 10 s for 40,000 examples on one core), so the data is kept on disk
    (:mod:`rlsched.envs.data_cache`, keyed by the mnist1d version, ``data_seed`` and ``train_size``).
    """
    key = f"mnist1d-{importlib.metadata.version('mnist1d')}-seed{data_seed}-train{train_size}"
    shapes = {"x_train": (train_size, 40), "x_val": (1000, 40), "x_test": (1000, 40)}
    shapes |= {f"y{k[1:]}": shape[:1] for k, shape in shapes.items()}
    return cached(
        key,
        functools.partial(_make_mnist1d, data_seed, train_size),
        valid=lambda data: {k: tuple(v.shape) for k, v in data.items()} == shapes,
    )


def _make_mnist1d(data_seed: int, train_size: int) -> dict[str, torch.Tensor]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    total = train_size + 2000
    args.num_samples, args.train_split, args.seed = total, (total - 1000) / total, data_seed
    py_state, np_state = random.getstate(), np.random.get_state()
    try:  # make_dataset seeds the global `random` and numpy generators; leave them as they were
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = torch.tensor(data["x"], dtype=torch.float32)
    y = torch.tensor(data["y"], dtype=torch.int64)
    return {
        "x_train": x[:train_size],
        "y_train": y[:train_size],
        "x_val": x[train_size:],
        "y_val": y[train_size:],
        "x_test": torch.tensor(data["x_test"], dtype=torch.float32),
        "y_test": torch.tensor(data["y_test"], dtype=torch.int64),
    }


@functools.lru_cache(maxsize=2)
def char_data(context: int = 32, train_size: int = 200_000, val_size: int = 5000) -> dict[str, Any]:
    """Character windows from Python's own documentation (``pydoc_data.topics``, shipped with Python).

    Windows for training come from the first 90 % of the text and validation/test windows from
    the rest, so no validation window overlaps a training one.
    """
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))
    alphabet = [chr(c) for c in range(32, 127)] + ["\n"]
    index = {c: i for i, c in enumerate(alphabet)}
    unknown = index["?"]
    codes = torch.tensor([index.get(c, unknown) for c in text], dtype=torch.uint8)
    split = int(len(codes) * 0.9)
    generator = torch.Generator().manual_seed(0)

    def windows(start: int, stop: int, count: int) -> torch.Tensor:
        offsets = torch.randint(start, stop - context - 1, (count,), generator=generator)
        return codes[offsets[:, None] + torch.arange(context + 1)]

    train = windows(0, split, train_size)
    held_out = windows(split, len(codes), 2 * val_size)
    return {"train": train, "val": held_out[:val_size], "test": held_out[val_size:], "vocab": len(alphabet)}


def _label_noise(y: torch.Tensor, fraction: float, classes: int, seed: int) -> torch.Tensor:
    """A copy of ``y`` with ``fraction`` of the labels replaced by uniformly random classes."""
    if fraction <= 0:
        return y
    generator = torch.Generator().manual_seed(seed)
    flip = torch.rand(len(y), generator=generator) < fraction
    return torch.where(flip, torch.randint(classes, y.shape, generator=generator), y)


# -- models and jobs -------------------------------------------------------------------------
def _seeded(seed: int, make: Callable[[], nn.Module]) -> nn.Module:
    """Build a model from ``seed`` without touching the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def _optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {name!r}")


def mlp(inputs: int, width: int, depth: int, outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(inputs if i == 0 else width, width), nn.ReLU()]
    layers.append(nn.Linear(width if depth else inputs, outputs))
    return nn.Sequential(*layers)


class Conv1DNet(nn.Module):
    """A small 1-D CNN for 40-sample MNIST-1D signals."""

    def __init__(self, width: int = 32, depth: int = 2, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(1, width, 5, padding=2), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * (40 // 2**depth), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


class CharMLP(nn.Module):
    """Next-character model: embeddings of a fixed context, concatenated, through an MLP."""

    def __init__(self, vocab: int, context: int = 32, embed: int = 16, width: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.mlp = nn.Sequential(nn.Linear(context * embed, width), nn.ReLU(), nn.Linear(width, vocab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(x.long()).flatten(1))


def mnist1d_job(
    seed: int,
    *,
    model: str = "mlp",
    width: int = 100,
    depth: int = 2,
    optimizer: str = "sgd",
    lr: float = 0.05,
    train_size: int = MNIST1D_TRAIN_SIZE,
    label_noise: float = 0.0,
    data_seed: int = 42,
    device: str | torch.device = "cpu",
) -> SupervisedJob:
    """A classifier (``model="mlp"`` or ``"cnn"``) on MNIST-1D."""
    data = mnist1d_data(data_seed, train_size)
    y_train = _label_noise(data["y_train"], label_noise, 10, data_seed)
    if model == "mlp":
        net = _seeded(seed, lambda: mlp(40, width, depth, 10))
    elif model == "cnn":
        net = _seeded(seed, lambda: Conv1DNet(width, depth))
    else:
        raise ValueError(f"model: expected 'mlp' or 'cnn', got {model!r}")
    net = net.to(device)  # before the optimizer is made, so it holds the moved parameters
    return SupervisedJob(
        net,
        _optimizer(optimizer, net, lr),
        TensorDataset(data["x_train"], y_train),
        TensorDataset(data["x_val"], data["y_val"]),
        nn.functional.cross_entropy,
        metrics={"accuracy": accuracy},
        test_data=TensorDataset(data["x_test"], data["y_test"]),
        seed=seed,
    )


def char_lm_job(
    seed: int,
    *,
    width: int = 256,
    optimizer: str = "adam",
    lr: float = 3e-3,
    device: str | torch.device = "cpu",
) -> SupervisedJob:
    """Next-character prediction on Python's documentation text."""
    data = char_data()
    net = _seeded(seed, lambda: CharMLP(data["vocab"], width=width)).to(device)

    def split(windows: torch.Tensor) -> TensorDataset:
        return TensorDataset(windows[:, :-1], windows[:, -1].long())

    return SupervisedJob(
        net,
        _optimizer(optimizer, net, lr),
        split(data["train"]),
        split(data["val"]),
        nn.functional.cross_entropy,
        metrics={"accuracy": accuracy},
        test_data=split(data["test"]),
        seed=seed,
    )


@functools.lru_cache(maxsize=8)
def synthetic_data(data_seed: int = 0, train_size: int = 2000, noise: float = 0.1) -> dict[str, torch.Tensor]:
    """Teacher-student regression: targets from a fixed random tanh network plus Gaussian noise."""
    generator = torch.Generator().manual_seed(data_seed)
    w1 = torch.randn(16, 32, generator=generator) / 4
    w2 = torch.randn(32, 1, generator=generator) / 32**0.5
    x = torch.randn(train_size + 1000, 16, generator=generator)
    y = torch.tanh(x @ w1) @ w2 + noise * torch.randn(len(x), 1, generator=generator)
    return {
        "x_train": x[:train_size],
        "y_train": y[:train_size],
        "x_val": x[train_size:],
        "y_val": y[train_size:],
    }


def synthetic_job(
    seed: int,
    *,
    width: int = 32,
    depth: int = 1,
    optimizer: str = "sgd",
    lr: float = 0.05,
    train_size: int = 2000,
    label_noise: float = 0.1,
    data_seed: int = 0,
    device: str | torch.device = "cpu",
) -> SupervisedJob:
    """A fast regression job for tests: an MLP fits a random teacher network."""
    data = synthetic_data(data_seed, train_size, label_noise)
    net = _seeded(seed, lambda: mlp(16, width, depth, 1)).to(device)
    return SupervisedJob(
        net,
        _optimizer(optimizer, net, lr),
        TensorDataset(data["x_train"], data["y_train"]),
        TensorDataset(data["x_val"], data["y_val"]),
        nn.functional.mse_loss,
        seed=seed,
    )


def _task(
    name: str,
    env_id: str | None,
    description: str,
    job: Callable[..., SupervisedJob],
    settings: dict[str, Any],
    **kwargs: Any,
) -> Task:
    return Task(name, env_id, description, functools.partial(job, **settings), settings=settings, **kwargs)


SGD_SPACE = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(32, 64, 128, 256, 512), scale_rule="linear")
ADAM_SPACE = HyperparamSpace(lr=(1e-5, 1e-1), batch_size=(32, 64, 128, 256, 512), scale_rule="sqrt")

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        _task(
            "synthetic",
            "rlsched/Synthetic-v0",
            "tanh-teacher regression, 2-layer MLP, SGD (fast, for tests)",
            synthetic_job,
            {},
            space=replace(SGD_SPACE, batch_size=(16, 32, 64, 128)),
            initial=Hyperparams(0.05, 32),
            budget_samples=20_000,
            decisions=5,
        ),
        _task(
            "mnist1d-mlp",
            "rlsched/MNIST1D-MLP-v0",
            "MNIST-1D (40k training examples), MLP 40-100-100-10, SGD momentum 0.9",
            mnist1d_job,
            {"model": "mlp", "train_size": MNIST1D_TRAIN_SIZE},
            space=SGD_SPACE,
            initial=Hyperparams(0.05, 128),
            budget_samples=384_000,
        ),
        _task(
            "mnist1d-cnn",
            "rlsched/MNIST1D-CNN-v0",
            "MNIST-1D (40k training examples), 1-D CNN (3 conv layers), Adam",
            mnist1d_job,
            {"model": "cnn", "width": 32, "optimizer": "adam", "lr": 3e-3, "train_size": MNIST1D_TRAIN_SIZE},
            space=ADAM_SPACE,
            initial=Hyperparams(3e-3, 64),
            budget_samples=96_000,
        ),
        _task(
            "char-lm",
            "rlsched/CharLM-v0",
            "next-character MLP on Python's documentation text, Adam",
            char_lm_job,
            {},
            space=ADAM_SPACE,
            initial=Hyperparams(3e-3, 64),
            budget_samples=96_000,
        ),
    ]
}


def get_task(name: str) -> Task:
    """A built-in task by name (see :data:`TASKS`)."""
    if name not in TASKS:
        raise ValueError(f"task: unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[name]


def make_env(task: str, **overrides: Any) -> TrainingEnv:
    """Gymnasium entry point: the TrainingEnv of a built-in task."""
    return get_task(task).make_env(**overrides)
