"""Meta-training: PPO on a vector of environments drawn from the train family of jobs.

Version 2 (the default) trains on :class:`~rlsched.envs.prior_env.PriorEnv` over the task zoo's
train kinds: the policy acts relative to the probe + cosine prior and is rewarded against it.
Version 1 trains on the older ``DistributionEnv``. ``train_controller(config)`` trains a
:class:`Controller`, evaluates it on held-out tasks of the *eval* family, and writes the
controller with a model card (``<out>.md``: tasks, seeds, steps, wall time, evaluation table).

    rlsched train-controller experiments/train-controller.toml
"""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlsched.agents.controller import Controller
from rlsched.agents.ppo import PPOArgs, make_vector, train_ppo
from rlsched.core.checks import check_keys, integer, real
from rlsched.core.files import atomic_write_bytes
from rlsched.core.reward import DIVERGENCE_RETURN
from rlsched.envs.distribution import DistributionEnv, sample_task
from rlsched.envs.prior_env import PriorEnv
from rlsched.envs.zoo import sample_zoo_task


@dataclass(frozen=True)
class MetaConfig:
    out: str = "controller.pt"
    """where the controller is written (its model card goes beside it, .md)"""
    logdir: str = "runs/train-controller"
    """TensorBoard curves of PPO"""
    seed: int = 0
    """seeds PPO, the environments and their task draws"""
    total_steps: int = 20_000
    """environment steps (decision intervals) in all"""
    num_envs: int = 8
    """parallel environments, each a fresh train-family task per episode"""
    asynchronous: bool = True
    """run the environments in worker processes (one per core helps)"""
    num_steps: int = 20
    """steps per environment per PPO rollout (two 10-decision episodes)"""
    learning_rate: float = 3e-4
    """PPO's Adam learning rate"""
    ent_coef: float = 0.01
    """entropy bonus"""
    gamma: float = 1.0
    """discount: 1, as the return log(L0/LT) is what counts"""
    eval_tasks: int = 12
    """eval-family tasks in the model card's table"""
    version: int = 2
    """observation version: 2 acts relative to the probe + cosine prior, 1 on the job's own start"""
    episodes_per_task: int = 2
    """version 2: episodes on each drawn task (its probe and prior run are shared by them)"""
    max_minutes: float = 0.0
    """stop PPO after this many minutes (0: run all total_steps); the evaluation comes after"""


def _worker_env(version: int = 2, episodes_per_task: int = 2):
    torch.set_num_threads(1)
    if version == 1:
        return DistributionEnv("train")
    return PriorEnv("train", episodes_per_task=episodes_per_task)


def episode_return(env, policy, seed: int) -> float:
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, reward, done, _, _ = env.step(policy(obs))
        total += reward
    return total


def evaluate(controller: Controller, tasks: int, seed: int = 10_000) -> list[dict[str, Any]]:
    """Returns of the greedy controller on eval-family tasks, against a baseline: version 1,
    log(L0/LT) against constant hyperparameters; version 2, log(L_prior/L_T) (the prior scores 0)
    against the constant hyperparameters the same way."""
    rows = []
    for k in range(tasks):
        if controller.version == 1:
            task = sample_task(seed + k, "eval")
            env = task.make_env()
            constant = episode_return(env, lambda o: np.array([2, 1]), seed=k)
        else:
            env = PriorEnv("eval", tasks=1, sample=lambda _, family, k=k: sample_zoo_task(seed + k, family))
            constant = _constant_v2(env, seed=k)
        learned = episode_return(env, lambda o: controller.act(o, deterministic=True), seed=k)
        rows.append({"task": env.task.name, "controller": learned, "constant": constant})
    return rows


def _constant_v2(env: PriorEnv, seed: int) -> float:
    """log(L_prior/L_T) of the job's own starting hyperparameters kept constant (same task)."""
    env.reset(seed=seed)
    member = env.member
    for samples in env.intervals:
        member.advance(env.task.initial, samples)
        if member.diverged:
            return DIVERGENCE_RETURN
    return env.relative_gain(member.last.decision, member.last.val_loss)


def model_card(
    config: MetaConfig, history: dict[str, Any], rows: list[dict[str, Any]], seconds: float
) -> str:
    wins = sum(r["controller"] > r["constant"] for r in rows)
    family = "task zoo's" if config.version == 2 else "task distribution's"
    measure = (
        "return log(L_prior/L_T) against the probe + cosine prior on the same job (the prior scores 0)"
        if config.version == 2
        else "return log(L0/LT)"
    )
    lines = [
        "# rlsched controller",
        "",
        f"Meta-trained with PPO on the {family} **train** family ({config.num_envs} environments, "
        f"{history['steps']} decision steps, {len(history['episode_returns'])} episodes), "
        f"seed {config.seed}, "
        f"in {seconds / 60:.1f} min on this machine. Observation version {config.version}, "
        "action MultiDiscrete([5, 3]).",
        "",
        "Configuration: " + ", ".join(f"{k}={v}" for k, v in asdict(config).items()),
        "",
        f"Evaluation on {len(rows)} **eval**-family tasks (never trained on): {measure}, "
        f"higher is better; the controller acts greedily; 'constant' keeps the initial hyperparameters.",
        "",
        "| task | controller | constant |",
        "|---|---|---|",
        *[f"| {r['task']} | {r['controller']:.3f} | {r['constant']:.3f} |" for r in rows],
        f"| **mean** | **{statistics.mean(r['controller'] for r in rows):.3f}** | "
        f"**{statistics.mean(r['constant'] for r in rows):.3f}** |",
        "",
        f"The controller beats constant hyperparameters on {wins} of {len(rows)} tasks.",
    ]
    return "\n".join(lines) + "\n"


def train_controller(config: MetaConfig, *, quiet: bool = False) -> tuple[Controller, str]:
    from torch.utils.tensorboard import SummaryWriter

    started = time.perf_counter()
    controller = Controller(
        metadata={"provenance": {"family": "train", **asdict(config)}}, version=config.version
    )
    make = functools.partial(_worker_env, config.version, config.episodes_per_task)
    envs = make_vector(make, config.num_envs, asynchronous=config.asynchronous)
    args = PPOArgs(
        total_steps=config.total_steps,
        num_steps=config.num_steps,
        learning_rate=config.learning_rate,
        ent_coef=config.ent_coef,
        gamma=config.gamma,
        gae_lambda=0.95,
        seed=config.seed,
        num_minibatches=4,
        update_epochs=4,
        max_seconds=config.max_minutes * 60 if config.max_minutes > 0 else None,
    )

    def report(step: int, stats: dict[str, float]) -> None:
        if not quiet:
            print(
                f"step {step:>7}  mean return (last 20 episodes) {stats['charts/mean_return_recent']:+.3f}  "
                f"{stats['charts/steps_per_second']:.1f} steps/s",
                flush=True,
            )

    with SummaryWriter(config.logdir) as writer:
        history = train_ppo(envs, controller.net, args, writer=writer, callback=report)
    envs.close()
    rows = evaluate(controller, config.eval_tasks)
    seconds = time.perf_counter() - started
    controller.metadata["provenance"].update({"steps": history["steps"], "seconds": round(seconds, 1)})
    card = model_card(config, history, rows, seconds)
    out = Path(config.out)
    controller.save(out)
    atomic_write_bytes(out.with_suffix(".md"), lambda f: f.write(card.encode()))
    return controller, card


COUNTS = {  # integer fields and their bounds: more environments than this is a typo, not a plan
    "seed": (0, 2**32 - 1),
    "total_steps": (1, 10**9),
    "num_envs": (1, 256),
    "num_steps": (1, 10**6),
    "eval_tasks": (1, 10_000),
    "episodes_per_task": (1, 10_000),
}


def meta_config(data: dict[str, Any]) -> MetaConfig:
    """Validate a train-controller config dict; one ValueError line per problem, before any work."""
    check_keys(data, [f.name for f in fields(MetaConfig)])
    config = MetaConfig(**data)
    for name in ("out", "logdir"):
        value = getattr(config, name)
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            raise ValueError(f"{name}: expected a non-empty path, got {value!r}")
    for name, (low, high) in COUNTS.items():
        integer(getattr(config, name), name, low, high)
    if isinstance(config.version, bool) or config.version not in (1, 2):
        raise ValueError(f"version: expected 1 or 2, got {config.version!r}")
    if not isinstance(config.asynchronous, bool):
        raise ValueError(f"asynchronous: expected true or false, got {config.asynchronous!r}")
    real(config.learning_rate, "learning_rate", 0, 1, open_low=True)
    real(config.ent_coef, "ent_coef", 0, 1)
    real(config.gamma, "gamma", 0, 1)
    real(config.max_minutes, "max_minutes", 0)
    return config
