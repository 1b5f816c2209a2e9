"""The jobs of the task zoo (:mod:`rlsched.envs.zoo`): data, models and job builders.

All data is made locally or shipped with Python; nothing is downloaded. Every generator is
deterministic in its arguments and cached, so a worker that runs thousands of episodes makes each
data set once, and none touches the global ``random``, numpy or torch random streams.

* :func:`mnist1d_pool`: MNIST-1D (``rlsched.envs.tasks.mnist1d_data``) from one of two pool sizes,
  so a small training set never pays for generating a large one.
* :func:`shapes_data`: 12x12 grey images of 10 classes (6 shapes, 4 stripe orientations) with
  random position, size, rotation, contrast and pixel noise.
* :func:`spirals_data`: points on the interleaved arms of a 2-D spiral, one class per arm.
* :func:`teacher_data`: regression targets from a fixed random two-layer tanh teacher plus noise.
* :func:`code_data`: character windows from the source files of Python's standard library.

The job builders (``*_job(seed, **settings)``) return a :class:`SupervisedJob` with train,
validation and test splits (``TensorDataset``), and accuracy as a metric for classifiers.
"""

from __future__ import annotations

import functools
import glob
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from rlsched.envs.tasks import CharMLP, Conv1DNet, _label_noise, _seeded, char_data, mlp, mnist1d_data
from rlsched.train.supervised import SupervisedJob, accuracy

SMALL_POOL, LARGE_POOL = 4000, 20_000


@functools.cache
def mnist1d_pool(data_seed: int, train_size: int) -> dict[str, torch.Tensor]:
    """MNIST-1D with exactly ``train_size`` training examples (1000 validation, 1000 test).

    The examples are the first ``train_size`` of a pool of ``SMALL_POOL`` or ``LARGE_POOL``
    (whichever is the smallest that fits): generating 22k examples takes about 8 s, 6k about 2 s.
    """
    pool = SMALL_POOL if train_size <= SMALL_POOL else LARGE_POOL
    if train_size > pool:
        raise ValueError(f"train_size: expected at most {LARGE_POOL}, got {train_size}")
    data = mnist1d_data(data_seed, pool)
    return {**data, "x_train": data["x_train"][:train_size], "y_train": data["y_train"][:train_size]}


def _stripes(u: np.ndarray, period: np.ndarray, phase: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.sin(2 * math.pi * u / period[:, None, None] + phase[:, None, None])


def _soft(margin: np.ndarray) -> np.ndarray:
    """A soft (anti-aliased) inside test: 1 well inside, 0 well outside, 0.5 on the edge."""
    return 1 / (1 + np.exp(-2.5 * margin))


SHAPE_CLASSES = (
    "disk", "ring", "square", "square outline", "plus", "triangle",
    "stripes 0deg", "stripes 45deg", "stripes 90deg", "stripes 135deg",
)  # fmt: skip


@functools.lru_cache(maxsize=8)
def shapes_data(data_seed: int, train_size: int, size: int = 12, val_size: int = 500) -> dict:
    """Procedural images: ``train_size`` training and ``val_size`` validation and test images.

    Each image shows one of :data:`SHAPE_CLASSES` at a random position (within 2 px of the
    centre), radius (2.5-4.5 px) and rotation, or a stripe texture whose orientation is the class
    (jittered by up to 20 degrees, period 3-5 px), at a random contrast on a random background,
    plus Gaussian pixel noise; shapes and orientations overlap enough that no model is perfect.
    """
    rng = np.random.default_rng([7, data_seed])
    n = train_size + 2 * val_size
    y = rng.integers(len(SHAPE_CLASSES), size=n)
    grid = np.arange(size) + 0.5
    cx = size / 2 + rng.uniform(-2, 2, n)[:, None, None]
    cy = size / 2 + rng.uniform(-2, 2, n)[:, None, None]
    dx, dy = grid[None, None, :] - cx, grid[None, :, None] - cy
    theta = np.where(y >= 6, (y - 6) * math.pi / 4 + rng.uniform(-0.35, 0.35, n), rng.uniform(0, math.pi, n))
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    r = rng.uniform(2.5, 4.5, n)[:, None, None]
    dist, box = np.hypot(u, v), np.maximum(abs(u), abs(v))
    triangle = np.minimum(v + r / 2, (r - v - math.sqrt(3) * abs(u)) / 2)
    masks = [
        _soft(r - dist),
        _soft(0.8 - abs(dist - r)),
        _soft(0.8 * r - box),
        _soft(0.7 - abs(box - 0.8 * r)),
        _soft(np.minimum(np.maximum(0.9 - abs(u), 0.9 - abs(v)), r - box)),
        _soft(triangle),
    ]
    stripes = _stripes(u, rng.uniform(3, 5, n), rng.uniform(0, 2 * math.pi, n))
    image = np.where((y < 6)[:, None, None], np.choose(np.minimum(y, 5)[:, None, None], masks), stripes)
    contrast = rng.uniform(0.6, 1.4, n) * rng.choice([-1, 1], n)
    image = image * contrast[:, None, None] + rng.normal(0, 0.3, n)[:, None, None]
    image += rng.normal(0, 0.5, image.shape)
    x = torch.tensor(image, dtype=torch.float32)
    labels = torch.tensor(y, dtype=torch.int64)
    return _split(x, labels, train_size, val_size)


@functools.lru_cache(maxsize=8)
def spirals_data(data_seed: int, train_size: int, arms: int = 5, val_size: int = 1000) -> dict:
    """Points on ``arms`` interleaved spiral arms (1.5 turns each, radial noise); label = arm."""
    rng = np.random.default_rng([11, data_seed])
    n = train_size + 2 * val_size
    y = rng.integers(arms, size=n)
    t = np.sqrt(rng.uniform(0.02, 1, n))  # uniform density over the disc
    angle = 3 * math.pi * t + 2 * math.pi * y / arms
    radius = t + rng.normal(0, 0.03, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1) * 2
    return _split(
        torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64), train_size, val_size
    )


@functools.lru_cache(maxsize=8)
def teacher_data(
    data_seed: int, train_size: int, noise: float, inputs: int = 24, val_size: int = 1000
) -> dict:
    """Teacher-student regression: ``y = teacher(x) + noise * N(0, 1)`` with a fixed random
    ``inputs``-64-64-1 tanh teacher scaled to unit output variance; validation targets are clean."""
    generator = torch.Generator().manual_seed(1000 + data_seed)
    w1 = torch.randn(inputs, 64, generator=generator) * (2 / inputs) ** 0.5
    w2 = torch.randn(64, 64, generator=generator) * (2 / 64) ** 0.5
    w3 = torch.randn(64, 1, generator=generator)
    x = torch.randn(train_size + 2 * val_size, inputs, generator=generator)
    y = torch.tanh(torch.tanh(x @ w1) @ w2) @ w3
    y = (y - y.mean()) / y.std()
    y[:train_size] += noise * torch.randn(train_size, 1, generator=generator)
    return _split(x, y, train_size, val_size)


ALPHABET = [chr(c) for c in range(32, 127)] + ["\n"]


@functools.lru_cache(maxsize=2)
def code_data(context: int = 32, train_size: int = 100_000, val_size: int = 256) -> dict:
    """Character windows (``context + 1`` characters) from the standard library's source.

    The text is every top-level ``*.py`` file of the running Python's standard library
    (``os.path.dirname(os.__file__)``), read in sorted order; tabs become spaces and other
    characters outside :data:`ALPHABET` become ``?``. Training windows come from the first 90 %
    of the text, validation and test windows from the rest. Deterministic for a given Python.
    """
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    parts = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            parts.append(f.read().replace("\t", "    "))
    lookup = np.full(256, ALPHABET.index("?"), dtype=np.uint8)
    for i, c in enumerate(ALPHABET):
        lookup[ord(c)] = i
    raw = np.frombuffer("\n".join(parts).encode("ascii", "replace"), dtype=np.uint8)
    codes = torch.from_numpy(lookup[raw])
    split = int(len(codes) * 0.9)
    generator = torch.Generator().manual_seed(0)

    def windows(start: int, stop: int, count: int) -> torch.Tensor:
        offsets = torch.randint(start, stop - context - 1, (count,), generator=generator)
        return codes[offsets[:, None] + torch.arange(context + 1)]

    held_out = windows(split, len(codes), 2 * val_size)
    return {
        "train": windows(0, split, train_size),
        "val": held_out[:val_size],
        "test": held_out[val_size:],
        "vocab": len(ALPHABET),
    }


def _split(x: torch.Tensor, y: torch.Tensor, train_size: int, val_size: int) -> dict[str, torch.Tensor]:
    a, b = train_size, train_size + val_size
    return {
        "x_train": x[:a],
        "y_train": y[:a],
        "x_val": x[a:b],
        "y_val": y[a:b],
        "x_test": x[b:],
        "y_test": y[b:],
    }


# -- models ----------------------------------------------------------------------------------
class GRUClassifier(nn.Module):
    """A GRU that reads a 40-sample signal as ``40 // chunk`` steps of ``chunk`` values."""

    def __init__(self, hidden: int, chunk: int, classes: int = 10) -> None:
        super().__init__()
        self.chunk = chunk
        self.rnn = nn.GRU(chunk, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = self.rnn(x.reshape(len(x), -1, self.chunk))
        return self.head(last[-1])


class CharLSTM(nn.Module):
    """A character LSTM predicting the next character at every position."""

    def __init__(self, vocab: int, hidden: int, embed: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(x.long()))[0])


class _Block(nn.Module):
    """A pre-norm causal self-attention block with a 2x GELU feed-forward."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(b, t, d))
        return x + self.ff(self.norm2(x))


class CausalTransformer(nn.Module):
    """A small GPT-style character model: token + learned position embeddings, ``depth`` blocks."""

    def __init__(self, vocab: int, context: int, width: int, depth: int, heads: int = 4) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab, width)
        self.position = nn.Parameter(0.02 * torch.randn(context, width))
        self.blocks = nn.Sequential(*[_Block(width, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.token(x.long()) + self.position[: x.shape[1]]
        return self.head(self.norm(self.blocks(h)))


class Conv2DNet(nn.Module):
    """Three 3x3 convolutions (the last two with stride 2) and a linear head, for square images."""

    def __init__(self, width: int, size: int = 12, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(2 * width * math.ceil(size / 4) ** 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


def autoencoder(inputs: int, width: int, bottleneck: int) -> nn.Sequential:
    """``inputs -> width -> bottleneck -> width -> inputs`` with ReLUs (none at the bottleneck)."""
    return nn.Sequential(mlp(inputs, width, 1, bottleneck), nn.ReLU(), *mlp(bottleneck, width, 1, inputs))


# -- jobs ------------------------------------------------------------------------------------
def lm_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every position of ``(batch, time, vocab)`` outputs."""
    return F.cross_entropy(outputs.flatten(0, 1), targets.flatten())


def make_optimizer(
    name: str, model: nn.Module, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """SGD with momentum 0.9, Adam, or AdamW with decoupled ``weight_decay``.

    The fused implementations (torch >= 2.4 on CPU) take a third of the time per step of the
    default ones, which dominates the small models of the zoo at small batch sizes.
    """
    kinds = {
        "sgd": (torch.optim.SGD, {"momentum": 0.9}),
        "adam": (torch.optim.Adam, {}),
        "adamw": (torch.optim.AdamW, {"weight_decay": weight_decay}),
    }
    if name in BENCHMARK_OPTIMIZERS:
        return _benchmark_optimizer(name, model, lr, weight_decay)
    if name not in kinds:
        raise ValueError(
            f"optimizer: expected one of {', '.join([*kinds, *BENCHMARK_OPTIMIZERS])}, got {name!r}"
        )
    cls, kwargs = kinds[name]
    try:
        return cls(model.parameters(), lr=lr, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # no fused CPU kernels before torch 2.4
        return cls(model.parameters(), lr=lr, **kwargs)


BENCHMARK_OPTIMIZERS = ("prodigy", "schedulefree-adamw", "schedulefree-sgd")


def _benchmark_optimizer(
    name: str, model: nn.Module, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The optimizer baselines of ``experiments/benchmark.py`` (the ``bench`` extra): Prodigy, and
    Schedule-Free AdamW or SGD with momentum 0.9 (SupervisedJob switches their train/eval modes)."""
    try:
        if name == "prodigy":
            from prodigyopt import Prodigy

            return Prodigy(model.parameters(), lr=lr, weight_decay=weight_decay)
        import schedulefree

        if name == "schedulefree-sgd":
            return schedulefree.SGDScheduleFree(model.parameters(), lr=lr, momentum=0.9)
        return schedulefree.AdamWScheduleFree(model.parameters(), lr=lr, weight_decay=weight_decay)
    except ImportError:
        raise ImportError(f'optimizer {name!r} needs the bench extra: pip install "rlsched[bench]"') from None


def _job(seed: int, make: Callable[[], nn.Module], data: dict, loss_fn: Callable, opt: dict) -> SupervisedJob:
    """A SupervisedJob on ``data``'s x/y splits; classification jobs (integer targets) get accuracy."""
    net = _seeded(seed, make)
    split = {s: TensorDataset(data[f"x_{s}"], data[f"y_{s}"]) for s in ("train", "val", "test")}
    classify = not data["y_val"].is_floating_point()
    return SupervisedJob(
        net,
        make_optimizer(opt["optimizer"], net, opt["lr"], opt["weight_decay"]),
        split["train"],
        split["val"],
        loss_fn,
        metrics={"accuracy": accuracy} if classify else None,
        test_data=split["test"],
        seed=seed,
    )


def _noisy(data: dict, label_noise: float, data_seed: int, classes: int) -> dict:
    return {**data, "y_train": _label_noise(data["y_train"], label_noise, classes, data_seed)}


def _windows(data: dict, train_size: int, last_only: bool) -> dict:
    """x/y splits of character windows: predict the last character, or every next one."""
    out = {}
    for split, windows in (
        ("train", data["train"][:train_size]),
        ("val", data["val"]),
        ("test", data["test"]),
    ):
        out[f"x_{split}"] = windows[:, :-1]
        out[f"y_{split}"] = windows[:, -1].long() if last_only else windows[:, 1:].long()
    return out


def mnist1d_job(seed: int, *, model: str, width: int, depth: int, train_size: int, label_noise: float,
                data_seed: int, **opt: Any) -> SupervisedJob:  # fmt: skip
    """MNIST-1D classification by an MLP (``model="mlp"``) or a 1-D CNN (``"cnn"``)."""
    data = _noisy(mnist1d_pool(data_seed, train_size), label_noise, data_seed, 10)
    make = (lambda: mlp(40, width, depth, 10)) if model == "mlp" else (lambda: Conv1DNet(width, depth))
    return _job(seed, make, data, F.cross_entropy, opt)


def gru_job(seed: int, *, width: int, chunk: int, train_size: int, label_noise: float, data_seed: int,
            **opt: Any) -> SupervisedJob:  # fmt: skip
    """MNIST-1D classification by a GRU reading ``chunk`` values per step."""
    data = _noisy(mnist1d_pool(data_seed, train_size), label_noise, data_seed, 10)
    return _job(seed, lambda: GRUClassifier(width, chunk), data, F.cross_entropy, opt)


def autoencoder_job(seed: int, *, width: int, bottleneck: int, train_size: int, data_seed: int,
                    **opt: Any) -> SupervisedJob:  # fmt: skip
    """MNIST-1D signals reconstructed through a ``bottleneck``-wide code (MSE)."""
    data = mnist1d_pool(data_seed, train_size)
    data = {f"{v}_{s}": data[f"x_{s}"] for s in ("train", "val", "test") for v in "xy"}
    return _job(seed, lambda: autoencoder(40, width, bottleneck), data, F.mse_loss, opt)


def shapes_job(seed: int, *, width: int, train_size: int, label_noise: float, data_seed: int,
               **opt: Any) -> SupervisedJob:  # fmt: skip
    """A 2-D CNN classifying 12x12 procedural images (:func:`~rlsched.envs.zoo_data.shapes_data`)."""
    data = _noisy(shapes_data(data_seed, train_size), label_noise, data_seed, 10)
    return _job(seed, lambda: Conv2DNet(width), data, F.cross_entropy, opt)


def spirals_job(seed: int, *, width: int, depth: int, train_size: int, label_noise: float, data_seed: int,
                **opt: Any) -> SupervisedJob:  # fmt: skip
    """A deep narrow MLP separating the 5 arms of a 2-D spiral."""
    data = _noisy(spirals_data(data_seed, train_size), label_noise, data_seed, 5)
    return _job(seed, lambda: mlp(2, width, depth, 5), data, F.cross_entropy, opt)


def teacher_job(seed: int, *, width: int, depth: int, train_size: int, label_noise: float, data_seed: int,
                **opt: Any) -> SupervisedJob:  # fmt: skip
    """MSE regression of a random tanh teacher; ``label_noise`` is the std of the target noise."""
    data = teacher_data(data_seed, train_size, label_noise)
    return _job(seed, lambda: mlp(24, width, depth, 1), data, F.mse_loss, opt)


def text_job(seed: int, *, model: str, width: int, depth: int, train_size: int, **opt: Any) -> SupervisedJob:
    """Character models: ``"mlp"`` (last character) or ``"lstm"`` (every character) on Python's
    documentation, ``"transformer"`` (every character) on the standard library's source."""
    vocab = char_data()["vocab"]
    if model == "transformer":
        data, make = (
            _windows(code_data(), train_size, False),
            lambda: CausalTransformer(vocab, 32, width, depth),
        )
    elif model == "lstm":
        data, make = _windows(char_data(), train_size, False), lambda: CharLSTM(vocab, width)
    else:
        data, make = _windows(char_data(), train_size, True), lambda: CharMLP(vocab, width=width)
    held_out = 1000 if model == "mlp" else 256  # sequences score every character: 256 x 32 targets
    data = {k: v if k.endswith("train") else v[:held_out] for k, v in data.items()}
    return _job(seed, make, data, lm_loss if model != "mlp" else F.cross_entropy, opt)
