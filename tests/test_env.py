import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import rlsched.envs  # noqa: F401  (registers the built-in tasks)
from rlsched import Hyperparams, HyperparamSpace, TrainStats
from rlsched.envs import DIVERGENCE_RETURN, FEATURES, TASKS, TrainingEnv, get_task

IDS = [t.env_id for t in TASKS.values()]


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes_for_every_registered_id(env_id):
    env = gym.make(env_id)  # the default episode settings
    check_env(env.unwrapped)
    env.close()


def test_make_vec_sync():
    envs = gym.make_vec("rlsched/Synthetic-v0", num_envs=2, vectorization_mode="sync")
    obs, info = envs.reset(seed=0)
    assert obs.shape == (2, len(FEATURES))
    obs, rewards, terminated, truncated, info = envs.step(np.array([[2, 1], [4, 2]]))
    assert obs.shape == (2, len(FEATURES)) and rewards.shape == (2,)
    assert info["batch_size"].tolist() == [32, 64]
    envs.close()


class NoisyQuadraticJob:
    """A user-defined job (not SupervisedJob): SGD on a noisy quadratic, loss = 0.5 * |w|^2."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.w = self.rng.normal(size=4) * 3

    def train(self, hp, samples):
        steps = max(samples // hp.batch_size, 1)
        losses = []
        for _ in range(steps):
            grad = self.w + self.rng.normal(size=4) / math.sqrt(hp.batch_size)
            self.w = self.w - hp.lr * grad
            losses.append(0.5 * float(self.w @ self.w))
        return TrainStats(
            samples,
            steps,
            float(np.mean(losses)),
            float(np.std(losses)),
            float(np.linalg.norm(self.w)),
            math.nan,
            hp.lr,
            not np.isfinite(losses[-1]),
        )

    def evaluate(self):
        return {"loss": 0.5 * float(self.w @ self.w) + 1e-3}

    def state_dict(self):
        return {"w": self.w.copy()}

    def load_state_dict(self, state):
        self.w = state["w"].copy()


def quadratic_env(**kwargs):
    space = HyperparamSpace(lr=(1e-3, 10.0), batch_size=(8, 16, 32), scale_rule="none")
    return TrainingEnv(
        NoisyQuadraticJob,
        space=space,
        budget_samples=800,
        decisions=4,
        initial=Hyperparams(0.05, 16),
        **kwargs,
    )


def test_user_defined_job_runs_and_return_is_log_l0_over_lt():
    env = quadratic_env()
    check_env(env)
    obs, info = env.reset(seed=3)
    l0, total, done, steps = info["val_loss"], 0.0, False, 0
    while not done:
        obs, r, done, truncated, info = env.step([3, 1])  # LR x1.25 each decision
        total += r
        steps += 1
        assert env.observation_space.contains(obs) and not truncated
    assert steps == 4 and info["samples"] == 800
    assert obs[FEATURES.index("progress")] == 1.0
    assert total == pytest.approx(math.log(l0 / info["val_loss"]))
    assert info["lr"] == pytest.approx(0.05 * 1.25**4)


def test_actions_move_hyperparameters_as_documented():
    env = quadratic_env()
    env.reset(seed=0)
    _, _, _, _, info = env.step([4, 2])  # LR x2, batch one rung up (scale rule none)
    assert (info["lr"], info["batch_size"]) == (pytest.approx(0.1), 32)
    _, _, _, _, info = env.step([0, 0])
    assert (info["lr"], info["batch_size"]) == (pytest.approx(0.05), 16)
    obs = env._observation()
    assert obs[FEATURES.index("log_lr_ratio")] == pytest.approx(0.0)


def test_divergence_ends_the_episode_with_the_penalty():
    env = get_task("synthetic").make_env(initial=Hyperparams(1.0, 16), budget_samples=4000)
    env.reset(seed=0)
    total, done, info = 0.0, False, {}
    while not done:
        _, r, done, _, info = env.step([4, 1])  # keep doubling the LR
        total += r
    assert info["diverged"] is True
    assert total == pytest.approx(DIVERGENCE_RETURN)
    with pytest.raises(RuntimeError, match="reset"):
        env.step([2, 1])


def test_misuse_errors_say_how_to_fix():
    env = quadratic_env()
    with pytest.raises(RuntimeError, match="reset"):
        env.step([2, 1])
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step([7, 1])
    with pytest.raises(ValueError, match="initial.batch_size"):
        quadratic_env().__class__(
            NoisyQuadraticJob, space=env.space, budget_samples=800, decisions=4, initial=Hyperparams(0.1, 12)
        )
    with pytest.raises(ValueError, match="budget_samples"):
        TrainingEnv(NoisyQuadraticJob, space=env.space, budget_samples=3, decisions=4)


def test_same_seed_same_episode():
    def run(seed):
        env = get_task("synthetic").make_env()
        out = [env.reset(seed=seed)[0]]
        for action in ([4, 2], [1, 0], [2, 1]):
            out.append(env.step(action)[0])
        return np.stack(out)

    assert np.array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_env_leaves_global_rng_alone():
    state = torch.get_rng_state()
    env = get_task("synthetic").make_env()
    env.reset(seed=1)
    env.step([2, 1])
    assert torch.equal(torch.get_rng_state(), state)
