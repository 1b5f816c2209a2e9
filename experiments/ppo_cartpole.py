"""Is our PPO a correct PPO? Train it on Gymnasium's CartPole-v1 and report the mean return.

CleanRL's CartPole settings: 4 environments, 128 steps per rollout, 500k steps, LR 2.5e-4.
Prints the mean return of the last 20 training episodes and of 20 evaluation episodes with the
greedy policy (goal: >= 475; the maximum is 500).

    python experiments/ppo_cartpole.py [--steps 500000] [--seed 0]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

from rlsched.agents.controller import ActorCritic
from rlsched.agents.ppo import PPOArgs, action_dims, make_vector, train_ppo


def evaluate(net: ActorCritic, episodes: int = 20, seed: int = 1000) -> float:
    env = gym.make("CartPole-v1")
    totals = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done, total = False, 0.0
        while not done:
            with torch.no_grad():
                logits = net.actor(torch.as_tensor(obs, dtype=torch.float32))
            obs, r, terminated, truncated, _ = env.step(int(logits.argmax()))
            total += r
            done = terminated or truncated
        totals.append(total)
    return float(np.mean(totals))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    envs = make_vector(lambda: gym.make("CartPole-v1"), 4)
    net = ActorCritic(4, action_dims(envs.single_action_space))
    history = train_ppo(
        envs, net, PPOArgs(total_steps=args.steps, num_steps=128, learning_rate=2.5e-4, seed=args.seed)
    )
    recent = float(np.mean(history["episode_returns"][-20:]))
    print(
        f"CartPole-v1, {history['steps']} steps in {history['seconds']:.0f} s, seed {args.seed}: "
        f"mean return of the last 20 training episodes {recent:.1f}, "
        f"greedy policy over 20 episodes {evaluate(net):.1f}"
    )


if __name__ == "__main__":
    main()
