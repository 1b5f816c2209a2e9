"""The task zoo: many kinds of small training jobs, split by kind into training and evaluation.

A learned LR/batch-size controller is meta-trained on tasks drawn from the ``"train"`` family and
benchmarked on the ``"eval"`` family. The evaluation family is *leave-kind-out*: its kinds (a 2-D
CNN on procedural images, a causal transformer on source code, an autoencoder) never occur in
training, so the benchmark measures transfer to new architectures, losses and data, not only to
new instances. Where data is seeded, the two families also draw from disjoint data seeds
(:data:`DATA_SEEDS`). Every data set is made locally or shipped with Python
(:mod:`rlsched.envs.zoo_data`); nothing is downloaded.

* train: ``mlp-mnist1d``, ``cnn1d-mnist1d``, ``gru-mnist1d`` (classifiers), ``charmlp-docs``,
  ``lstm-docs`` (character models), ``teacher-regression`` (MSE), ``mlp-spirals``;
* eval: ``cnn2d-shapes``, ``transformer-code``, ``autoencoder-mnist1d`` (MSE).

Each kind (:data:`ZOO_KINDS`, one line of description each) records the optimizers it runs with
(SGD with momentum, Adam, AdamW), a reference LR per optimizer family (the best of a sweep of
constant LRs at a reference batch size: ``experiments/zoo_check.py --sweep``), its batch-size
ladder, its default budget and its regimes: *under-fit* (enough data that val loss still falls at
the end of the budget) and *over-fit* (small data, mostly with label noise, where val loss
bottoms out and rises). :func:`sample_zoo_task` draws a kind, its settings (size, optimizer,
regime, label noise, budget, 10-40 decisions) and a deliberately poor start: the initial LR is
log-uniform from 10x below to 4x above the reference LR (scaled to the drawn batch size), so a
controller has to find the LR scale within one run. An episode takes about 0.2-7 s on one CPU
thread (median about 1.5 s).

>>> from rlsched.envs.zoo import sample_zoo_task, zoo_task
>>> task = sample_zoo_task(0, "train")
>>> task.space.contains(task.initial)
True
>>> zoo_task("cnn2d-shapes").name
'zoo/cnn2d-shapes'
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import numpy as np

from rlsched.core.checks import integer
from rlsched.core.space import Hyperparams, HyperparamSpace
from rlsched.envs.tasks import Task
from rlsched.envs.zoo_data import (
    autoencoder_job,
    gru_job,
    mnist1d_job,
    shapes_job,
    spirals_job,
    teacher_job,
    text_job,
)
from rlsched.train.supervised import SupervisedJob

FAMILIES = ("train", "eval")
DATA_SEEDS = {"train": (100, 101, 102), "eval": (200, 201)}
INITIAL_LR_FACTORS = (0.1, 4.0)  # the initial LR is log-uniform in [0.1, 4] x the reference LR
SPACE_LR_FACTORS = (1 / 30, 10.0)  # the space reaches 30x below and 10x above it at every rung
BUDGETS = {"short": 0.6, "medium": 1.0, "long": 1.5}  # x the kind's budget_samples
DECISIONS = (10, 40)


# -- kinds -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZooKind:
    """One kind of job: its builder, default settings, what a draw varies, LR scale and budget.

    ``defaults`` are the builder's keyword arguments but the optimizer's (``optimizer``
    defaults to the first of ``optimizers``, ``weight_decay`` to 0, or 0.05 with AdamW);
    ``regime`` names the regime the defaults are in. A draw picks some settings from ``grid``
    and a regime from ``regimes``, which gives its ``train_size`` choices and ``label_noise``
    range. ``lr`` is the reference LR at ``reference_batch`` per optimizer family (``"sgd"``,
    ``"adam"``; AdamW uses Adam's); ``budget_samples`` is the medium budget, in examples.
    """

    family: str
    doc: str
    job: Callable[..., SupervisedJob]
    defaults: dict[str, Any]
    regime: str
    optimizers: tuple[str, ...]
    lr: dict[str, float]
    budget_samples: int
    batch_sizes: tuple[int, ...]
    grid: dict[str, tuple] = dataclass_field(default_factory=dict)
    regimes: dict[str, dict[str, tuple]] = dataclass_field(default_factory=dict)
    reference_batch: int = 128

    def __str__(self) -> str:
        return self.doc


UNDER, OVER = "under-fit", "over-fit"
LADDER, SEQUENCE_LADDER = (32, 64, 128, 256, 512), (8, 16, 32, 64)
TRAIN_DATA = {"label_noise": 0.0, "data_seed": DATA_SEEDS["train"][0]}
EVAL_DATA = {"label_noise": 0.0, "data_seed": DATA_SEEDS["eval"][0]}
NOISY = {"label_noise": (0.1, 0.25)}
MNIST1D_REGIMES = {UNDER: {"train_size": (20_000,)}, OVER: {"train_size": (1500, 2000, 3000, 4000), **NOISY}}

ZOO_KINDS: dict[str, ZooKind] = {
    "mlp-mnist1d": ZooKind(
        "train", "MLP on MNIST-1D (20k examples, or 1.5-4k with label noise)",
        mnist1d_job, dict(model="mlp", width=128, depth=2, train_size=20_000, **TRAIN_DATA),
        regime=UNDER, optimizers=("sgd", "adam", "adamw"), lr={"sgd": 0.1, "adam": 5e-3},
        budget_samples=240_000, batch_sizes=LADDER,
        grid={"width": (64, 128), "depth": (1, 2, 3)}, regimes=MNIST1D_REGIMES,
    ),
    "cnn1d-mnist1d": ZooKind(
        "train", "1-D CNN on MNIST-1D (1.5k examples with 20 % label noise, or 20k clean)",
        mnist1d_job, dict(TRAIN_DATA, model="cnn", width=32, depth=2, train_size=1500, label_noise=0.2),
        regime=OVER, optimizers=("adam", "sgd", "adamw"), lr={"sgd": 0.03, "adam": 2e-3},
        budget_samples=64_000, batch_sizes=LADDER,
        grid={"width": (16, 32), "depth": (1, 2, 3)}, regimes=MNIST1D_REGIMES,
    ),
    "gru-mnist1d": ZooKind(
        "train", "GRU reading MNIST-1D as a sequence of 4-8 value steps (20k examples, or 1.5-4k noisy)",
        gru_job, dict(width=48, chunk=4, train_size=20_000, **TRAIN_DATA),
        regime=UNDER, optimizers=("adam", "adamw", "sgd"), lr={"sgd": 0.7, "adam": 0.04},
        budget_samples=48_000, batch_sizes=LADDER,
        grid={"width": (32, 48, 64), "chunk": (4, 5, 8)}, regimes=MNIST1D_REGIMES,
    ),
    "charmlp-docs": ZooKind(
        "train", "next-character MLP on Python's documentation (200k windows, or 20-50k)",
        text_job, dict(model="mlp", width=128, depth=1, train_size=200_000),
        regime=UNDER, optimizers=("adam", "adamw", "sgd"), lr={"sgd": 0.1, "adam": 3e-3},
        budget_samples=120_000, batch_sizes=LADDER,
        grid={"width": (64, 128)},
        regimes={UNDER: {"train_size": (200_000,)}, OVER: {"train_size": (20_000, 50_000)}},
    ),
    "lstm-docs": ZooKind(
        "train", "character LSTM language model on Python's documentation (32-character windows)",
        text_job, dict(model="lstm", width=64, depth=1, train_size=200_000),
        regime=UNDER, optimizers=("adam", "adamw"), lr={"adam": 0.03},
        budget_samples=12_000, batch_sizes=SEQUENCE_LADDER, reference_batch=32, grid={"width": (48, 64, 96)},
    ),
    "teacher-regression": ZooKind(
        "train", "MLP regressing a random tanh teacher (MSE; 20k examples, or 2-10k very noisy)",
        teacher_job, dict(TRAIN_DATA, width=64, depth=2, train_size=20_000, label_noise=0.2),
        regime=UNDER, optimizers=("sgd", "adam", "adamw"), lr={"sgd": 0.05, "adam": 4e-3},
        budget_samples=300_000, batch_sizes=LADDER, grid={"width": (32, 64, 128), "depth": (1, 2, 3)},
        regimes={
            UNDER: {"train_size": (20_000,), "label_noise": (0.1, 0.3)},
            OVER: {"train_size": (2000, 5000, 10_000), "label_noise": (0.5, 0.8)},
        },
    ),
    "mlp-spirals": ZooKind(
        "train", "deep narrow MLP separating the 5 arms of a 2-D spiral (10k points, or 300-500 noisy)",
        spirals_job, dict(width=64, depth=3, train_size=10_000, **TRAIN_DATA),
        regime=UNDER, optimizers=("sgd", "adam", "adamw"), lr={"sgd": 0.03, "adam": 1.5e-3},
        budget_samples=240_000, batch_sizes=LADDER,
        grid={"width": (32, 64), "depth": (2, 3, 4)},
        regimes={UNDER: {"train_size": (10_000,)}, OVER: {"train_size": (300, 500), **NOISY}},
    ),
    "cnn2d-shapes": ZooKind(
        "eval", "2-D CNN on 12x12 procedural shapes and stripe textures (20k images, or 1.5-3k noisy)",
        shapes_job, dict(width=8, train_size=20_000, **EVAL_DATA),
        regime=UNDER, optimizers=("sgd", "adam", "adamw"), lr={"sgd": 0.08, "adam": 9e-3},
        budget_samples=48_000, batch_sizes=LADDER,
        grid={"width": (8, 12)},
        regimes={UNDER: {"train_size": (20_000,)}, OVER: {"train_size": (1500, 2000, 3000), **NOISY}},
    ),
    "transformer-code": ZooKind(
        "eval", "causal transformer character model on the standard library's source code",
        text_job, dict(model="transformer", width=48, depth=2, train_size=100_000),
        regime=UNDER, optimizers=("adamw", "adam"), lr={"adam": 0.015},
        budget_samples=6000, batch_sizes=SEQUENCE_LADDER, reference_batch=32,
        grid={"width": (32, 48), "depth": (1, 2)},
    ),
    "autoencoder-mnist1d": ZooKind(
        "eval", "MLP autoencoder reconstructing MNIST-1D signals (MSE; 4k or 20k signals)",
        autoencoder_job, dict(width=128, bottleneck=16, train_size=20_000, data_seed=DATA_SEEDS["eval"][0]),
        regime=UNDER, optimizers=("adam", "adamw", "sgd"), lr={"sgd": 0.07, "adam": 1.5e-3},
        budget_samples=200_000, batch_sizes=LADDER,
        grid={"width": (64, 128), "bottleneck": (8, 16, 24)},
        regimes={UNDER: {"train_size": (4000, 20_000)}},
    ),
}  # fmt: skip
ZOO_FAMILIES = {family: tuple(k for k, v in ZOO_KINDS.items() if v.family == family) for family in FAMILIES}


# -- tasks -----------------------------------------------------------------------------------
def _kind(kind: str) -> ZooKind:
    if kind not in ZOO_KINDS:
        raise ValueError(f"kind: unknown kind {kind!r}; expected one of {', '.join(ZOO_KINDS)}")
    return ZOO_KINDS[kind]


def good_lr(kind: str, optimizer: str, batch_size: int | None = None) -> float:
    """The kind's reference LR for ``optimizer`` at ``batch_size`` (default: the kind's reference
    batch), scaled from the reference batch by the space's rule: linear for SGD, sqrt for Adam(W)."""
    spec = _kind(kind)
    if optimizer not in spec.optimizers:
        raise ValueError(f"optimizer: {kind} runs with {', '.join(spec.optimizers)}, got {optimizer!r}")
    ratio = (batch_size or spec.reference_batch) / spec.reference_batch
    if optimizer == "sgd":
        return spec.lr["sgd"] * ratio
    return spec.lr["adam"] * math.sqrt(ratio)


def zoo_space(kind: str, optimizer: str) -> HyperparamSpace:
    """The kind's ladder, with LRs from 30x below the good LR at the smallest batch size to 10x
    above it at the largest; the scale rule is linear for SGD and sqrt for Adam and AdamW."""
    ladder = _kind(kind).batch_sizes
    low = good_lr(kind, optimizer, ladder[0]) * SPACE_LR_FACTORS[0]
    high = good_lr(kind, optimizer, ladder[-1]) * SPACE_LR_FACTORS[1]
    rule = "linear" if optimizer == "sgd" else "sqrt"
    return HyperparamSpace(lr=(low, high), batch_size=ladder, scale_rule=rule)


def _make_task(kind: str, settings: dict[str, Any], meta: dict[str, Any], initial: Hyperparams,
               budget_samples: int, decisions: int, description: str) -> Task:  # fmt: skip
    spec = ZOO_KINDS[kind]
    space = zoo_space(kind, settings["optimizer"])
    return Task(
        name=f"zoo/{kind}",
        env_id=None,
        description=description,
        build=functools.partial(spec.job, lr=initial.lr, **settings),
        space=space,
        initial=space.check(initial, "initial"),
        budget_samples=budget_samples,
        decisions=decisions,
        settings={"kind": kind, **meta, **settings},
    )


TASK_OVERRIDES = ("optimizer", "weight_decay", "lr", "batch_size", "budget_samples", "decisions")


def zoo_task(kind: str, seed: int = 0, **overrides: Any) -> Task:
    """One kind at its default settings, starting at its good LR and reference batch size.

    ``seed`` picks the data seed: ``DATA_SEEDS[family][seed]`` for the kind's family.
    ``overrides`` replace any default setting (see ``ZOO_KINDS[kind].defaults``) or the task's
    ``lr``, ``batch_size`` (the initial point), ``budget_samples`` and ``decisions``.
    """
    spec = _kind(kind)
    seeds = DATA_SEEDS[spec.family]
    what = f"an index 0..{len(seeds) - 1} into the {spec.family} data seeds {seeds}"
    if integer(seed, "seed", 0, what=what) >= len(seeds):
        raise ValueError(f"seed: expected {what}, got {seed}")
    allowed = (*spec.defaults, *TASK_OVERRIDES)
    for key in overrides:
        if key not in allowed:
            raise ValueError(f"{key}: not a setting of {kind}; allowed: {', '.join(allowed)}")
    settings = {**spec.defaults, "optimizer": spec.optimizers[0], "weight_decay": 0.0}
    if "data_seed" in settings:
        settings["data_seed"] = seeds[seed]
    task_keys = ("lr", "batch_size", "budget_samples", "decisions")
    settings.update({k: v for k, v in overrides.items() if k not in task_keys})
    if settings["optimizer"] == "adamw" and "weight_decay" not in overrides:
        settings["weight_decay"] = 0.05
    batch_size = overrides.get("batch_size", spec.reference_batch)
    lr = overrides.get("lr", good_lr(kind, settings["optimizer"], batch_size))
    custom = {"train_size", "label_noise"} & set(overrides)
    meta = {
        "family": spec.family,
        "regime": "custom" if custom else spec.regime,
        "budget": "custom" if "budget_samples" in overrides else "medium",
        "lr_factor": round(lr / good_lr(kind, settings["optimizer"], batch_size), 4),
    }
    return _make_task(
        kind,
        settings,
        meta,
        Hyperparams(lr, batch_size),
        overrides.get("budget_samples", spec.budget_samples),
        overrides.get("decisions", 20),
        f"{spec.doc}; default settings",
    )


def sample_zoo_task(seed: int, family: str = "train") -> Task:
    """A task drawn from ``family`` by ``seed``; the same ``(seed, family)`` gives the same task.

    Draws the kind (uniformly from ``ZOO_FAMILIES[family]``), its grid settings, a regime and
    its data size and label noise, a data seed of the family, the optimizer (AdamW with weight
    decay log-uniform in 0.01-0.1), a short, medium or long budget, 10 to 40 decisions, the
    initial batch size (uniform on the kind's ladder) and the initial LR: the good LR at that
    batch size times a factor log-uniform in [0.1, 4] (``settings["lr_factor"]``).
    """
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}")
    integer(seed, "seed", 0, what="a non-negative integer")
    rng = np.random.default_rng([7919, FAMILIES.index(family), int(seed)])
    kind = _pick(rng, ZOO_FAMILIES[family])
    spec = ZOO_KINDS[kind]
    settings = dict(spec.defaults)
    settings.update({key: _pick(rng, values) for key, values in spec.grid.items()})
    regime = _pick(rng, tuple(spec.regimes)) if spec.regimes else spec.regime
    for key, values in spec.regimes.get(regime, {}).items():
        settings[key] = _pick(rng, values) if key == "train_size" else round(float(rng.uniform(*values)), 3)
    if "data_seed" in settings:
        settings["data_seed"] = _pick(rng, DATA_SEEDS[family])
    optimizer = _pick(rng, spec.optimizers)
    decay = math.exp(rng.uniform(math.log(0.01), math.log(0.1)))
    settings |= {"optimizer": optimizer, "weight_decay": round(decay, 4) if optimizer == "adamw" else 0.0}
    budget = _pick(rng, tuple(BUDGETS))
    decisions = int(rng.integers(DECISIONS[0], DECISIONS[1] + 1))
    batch_size = _pick(rng, spec.batch_sizes)
    factor = math.exp(rng.uniform(*np.log(INITIAL_LR_FACTORS)))
    return _make_task(
        kind,
        settings,
        {"family": family, "regime": regime, "budget": budget, "lr_factor": round(factor, 4)},
        Hyperparams(good_lr(kind, optimizer, batch_size) * factor, batch_size),
        round(spec.budget_samples * BUDGETS[budget]),
        decisions,
        f"{spec.doc}; {family} family, seed {seed}",
    )


def _pick(rng: np.random.Generator, values: tuple) -> Any:
    """A uniformly drawn element of ``values``, as a plain Python value."""
    value = values[int(rng.integers(len(values)))]
    return value.item() if isinstance(value, np.generic) else value
