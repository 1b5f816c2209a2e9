"""Proximal policy optimisation (Schulman et al. 2017) in one readable function.

Reads top to bottom like the paper's algorithm, for a vector of Gymnasium environments with a
Box observation and a Discrete or MultiDiscrete action::

    for each update:
        collect num_steps transitions from each of num_envs environments with the current policy
        compute advantages with GAE(gamma, lambda) and returns = advantages + values
        for update_epochs epochs, over shuffled minibatches:
            ratio = exp(log pi(a|s) - log pi_old(a|s)); advantages normalised per minibatch
            loss = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)        (clipped objective)
                   + vf_coef * (V(s) - R)^2 / 2 - ent_coef * entropy
            one Adam step with gradient clipping

Curves go to TensorBoard under ``charts/`` and ``losses/`` against the global environment step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlsched.agents.controller import ActorCritic


@dataclass(frozen=True)
class PPOArgs:
    total_steps: int = 50_000
    """environment steps in all (over all environments)"""
    num_steps: int = 64
    """steps per environment per rollout"""
    learning_rate: float = 3e-4
    """Adam learning rate, annealed linearly to 0 when anneal_lr"""
    anneal_lr: bool = True
    """anneal the learning rate to 0 over training"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    update_epochs: int = 4
    """epochs over each rollout"""
    clip_coef: float = 0.2
    """surrogate clipping epsilon"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    seed: int = 0
    """seeds the environments, the policy's sampling and the minibatch order"""
    max_seconds: float | None = None
    """stop after the first update past this wall time (the LR anneals over it too)"""


def action_dims(space: gym.Space) -> tuple[int, ...]:
    if isinstance(space, gym.spaces.Discrete):
        return (int(space.n),)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return tuple(int(n) for n in space.nvec)
    raise TypeError(f"PPO: expected a Discrete or MultiDiscrete action space, got {space}")


def train_ppo(
    envs: gym.vector.VectorEnv,
    net: ActorCritic,
    args: PPOArgs,
    *,
    writer: Any = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train ``net`` on ``envs`` (autoreset mode SAME_STEP, wrapped in RecordEpisodeStatistics)."""
    torch.manual_seed(args.seed)
    num_envs = envs.num_envs
    batch_size = num_envs * args.num_steps
    minibatch = batch_size // args.num_minibatches
    updates = max(args.total_steps // batch_size, 1)
    dims = len(action_dims(envs.single_action_space))
    optimizer = torch.optim.Adam(net.parameters(), lr=args.learning_rate, eps=1e-5)

    obs = torch.zeros((args.num_steps, num_envs, *envs.single_observation_space.shape))
    actions = torch.zeros((args.num_steps, num_envs, dims), dtype=torch.long)
    logprobs = torch.zeros((args.num_steps, num_envs))
    rewards = torch.zeros((args.num_steps, num_envs))
    dones = torch.zeros((args.num_steps, num_envs))
    values = torch.zeros((args.num_steps, num_envs))

    step, started, returns_seen = 0, time.perf_counter(), []
    next_obs = torch.as_tensor(envs.reset(seed=args.seed)[0], dtype=torch.float32)
    next_done = torch.zeros(num_envs)
    history = {"episode_returns": [], "updates": updates}
    for update in range(1, updates + 1):
        elapsed = time.perf_counter() - started
        if args.max_seconds is not None and elapsed >= args.max_seconds:
            break
        if args.anneal_lr:
            done = max((update - 1) / updates, elapsed / args.max_seconds if args.max_seconds else 0.0)
            optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - done)

        # 1. rollout
        for t in range(args.num_steps):
            step += num_envs
            obs[t], dones[t] = next_obs, next_done
            with torch.no_grad():
                dists = net.dists(next_obs)
                action = torch.stack([d.sample() for d in dists], dim=-1)
                logprobs[t] = sum(d.log_prob(action[:, k]) for k, d in enumerate(dists))
                values[t] = net.value(next_obs)
            actions[t] = action
            env_action = action.numpy() if dims > 1 else action[:, 0].numpy()
            o, r, terminated, truncated, info = envs.step(env_action)
            rewards[t] = torch.as_tensor(r, dtype=torch.float32)
            next_obs = torch.as_tensor(o, dtype=torch.float32)
            next_done = torch.as_tensor(np.logical_or(terminated, truncated), dtype=torch.float32)
            if "episode" in info:
                for k in np.flatnonzero(info["_episode"]):
                    returns_seen.append(float(info["episode"]["r"][k]))
                    if writer is not None:
                        writer.add_scalar("charts/episodic_return", returns_seen[-1], step)

        # 2. advantages: GAE over the rollout, bootstrapped from the value of the next observation
        with torch.no_grad():
            next_value = net.value(next_obs)
            advantages = torch.zeros_like(rewards)
            gae = torch.zeros(num_envs)
            for t in reversed(range(args.num_steps)):
                not_done = 1.0 - (next_done if t == args.num_steps - 1 else dones[t + 1])
                following = next_value if t == args.num_steps - 1 else values[t + 1]
                delta = rewards[t] + args.gamma * following * not_done - values[t]
                gae = delta + args.gamma * args.gae_lambda * not_done * gae
                advantages[t] = gae
            returns = advantages + values

        # 3. optimise the clipped objective
        b_obs = obs.reshape(-1, *envs.single_observation_space.shape)
        b_actions, b_logprobs = actions.reshape(-1, dims), logprobs.reshape(-1)
        b_adv, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)
        clipfracs = []
        for _ in range(args.update_epochs):
            order = torch.randperm(batch_size)
            for start in range(0, batch_size, minibatch):
                idx = order[start : start + minibatch]
                new_logp, entropy, new_value = net.evaluate(b_obs[idx], b_actions[idx])
                log_ratio = new_logp - b_logprobs[idx]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
                adv = b_adv[idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(
                    -adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
                ).mean()
                v_loss = 0.5 * (new_value - b_returns[idx]).pow(2).mean()
                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), args.max_grad_norm)
                optimizer.step()

        explained = 1 - (b_returns - b_values).var() / (b_returns.var() + 1e-8)
        stats = {
            "losses/policy": pg_loss.item(),
            "losses/value": v_loss.item(),
            "losses/entropy": entropy_loss.item(),
            "losses/approx_kl": approx_kl.item(),
            "losses/clipfrac": float(np.mean(clipfracs)),
            "losses/explained_variance": explained.item(),
            "charts/learning_rate": optimizer.param_groups[0]["lr"],
            "charts/steps_per_second": step / (time.perf_counter() - started),
            "charts/mean_return_recent": float(np.mean(returns_seen[-20:])) if returns_seen else float("nan"),
        }
        if writer is not None:
            for key, value in stats.items():
                writer.add_scalar(key, value, step)
        if callback is not None:
            callback(step, stats)
    history["episode_returns"] = returns_seen
    history["steps"] = step
    history["seconds"] = time.perf_counter() - started
    history["args"] = asdict(args)
    return history


def make_vector(
    make_env: Callable[[], gym.Env], num_envs: int, *, asynchronous: bool = False
) -> gym.vector.VectorEnv:
    """A vector of ``make_env()`` environments with episode statistics, resetting in the same step."""
    cls = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
    envs = cls([make_env] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)
