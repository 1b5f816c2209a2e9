import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from forced import forced
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import rlsched
from rlsched import AdaptiveScheduler, DynamicBatchSampler, HyperparamSpace
from rlsched.agents import PBT, Controller
from rlsched.agents.ppo import PPOArgs, make_vector, train_ppo
from rlsched.envs import FEATURES
from rlsched.population.lineage import Clone, Explore


def test_save_load_round_trip_and_metadata(tmp_path):
    controller = Controller(metadata={"provenance": {"note": "test"}}, version=1)
    path = tmp_path / "c.pt"
    controller.save(path)
    loaded = Controller.load(path)
    obs = np.random.default_rng(0).normal(size=len(FEATURES)).astype(np.float32)
    assert [p.tolist() for p in loaded.probabilities(obs)] == [
        p.tolist() for p in controller.probabilities(obs)
    ]
    assert loaded.metadata["provenance"] == {"note": "test"} and loaded.metadata["observation_version"] == 1


def test_mismatched_or_bad_files_give_clear_errors(tmp_path):
    path = tmp_path / "c.pt"
    Controller(version=1, metadata={"observation_version": 1}).save(path)
    state = torch.load(path, weights_only=True)
    state["metadata"]["observation_version"] = 3
    torch.save(state, path)
    with pytest.raises(ValueError, match="expects observation version 3"):
        Controller.load(path)
    Controller(metadata={"lr_factors": [0.5, 2.0]}, version=1).save(path)
    with pytest.raises(ValueError, match="was trained for actions"):
        Controller.load(path)
    path.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable controller file"):
        Controller.load(path)
    torch.save({"format": "other"}, path)
    with pytest.raises(ValueError, match="not an rlsched controller"):
        Controller.load(path)
    with pytest.raises(ValueError, match="no such file"):
        Controller.load(tmp_path / "missing.pt")


def test_act_is_reproducible_with_a_seeded_generator():
    controller = Controller(version=1)
    obs = np.zeros(len(FEATURES), dtype=np.float32)
    draws = [controller.act(obs, rng=np.random.default_rng(3)).tolist() for _ in range(2)]
    assert draws[0] == draws[1]
    assert forced(4, 2).act(obs, deterministic=True).tolist() == [4, 2]


def test_controller_alone_is_an_agent():
    task = rlsched.envs.get_task("synthetic")
    result = rlsched.run("synthetic", forced(1, 1), population=1, seed=0)  # LR x0.8 at every decision
    lrs = [hp.lr for _, hp in result.best.trajectory]
    assert lrs == pytest.approx([task.initial.lr * 0.8**d for d in range(task.decisions)])


def test_hybrid_controller_adjusts_between_rounds_and_explores():
    result = rlsched.run(
        "synthetic", PBT(explore=forced(4, 1), perturbation_interval=2, init="fixed"), population=4, seed=0
    )
    explores = [e for e in result.lineage if isinstance(e, Explore)]
    assert explores and all(e.new.lr == pytest.approx(min(2 * e.old.lr, 1.0)) for e in explores)
    clones = [e for e in result.lineage if isinstance(e, Clone)]
    assert clones and all("controller sampled" in e.reason for e in clones)


class SignBandit(gym.Env):
    """One-step episodes: reward 1 when action[0] == 4 if obs[0] > 0, action[0] == 0 otherwise."""

    observation_space = gym.spaces.Box(-10, 10, (len(FEATURES),), np.float32)
    action_space = gym.spaces.MultiDiscrete([5, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.obs = np.zeros(len(FEATURES), np.float32)
        self.obs[0] = self.np_random.choice([-1.0, 1.0])
        return self.obs, {}

    def step(self, action):
        good = 4 if self.obs[0] > 0 else 0
        return self.obs, float(action[0] == good), True, False, {}


def test_ppo_learns_a_contextual_bandit():
    envs = make_vector(SignBandit, 8)
    controller = Controller(version=1)
    history = train_ppo(
        envs, controller.net, PPOArgs(total_steps=6000, num_steps=16, learning_rate=3e-3, seed=0)
    )
    assert np.mean(history["episode_returns"][:50]) < 0.5
    assert np.mean(history["episode_returns"][-100:]) > 0.9
    up, down = np.zeros(len(FEATURES), np.float32), np.zeros(len(FEATURES), np.float32)
    up[0], down[0] = 1.0, -1.0
    assert controller.act(up, deterministic=True)[0] == 4 and controller.act(down, deterministic=True)[0] == 0


def test_ppo_runs_on_training_envs():
    envs = make_vector(lambda: rlsched.envs.get_task("synthetic").make_env(budget_samples=2000), 2)
    history = train_ppo(envs, Controller(version=1).net, PPOArgs(total_steps=40, num_steps=10, seed=0))
    assert history["steps"] == 40 and len(history["episode_returns"]) == 8


def test_stable_baselines3_trains_on_training_env(tmp_path, monkeypatch):
    sb3 = pytest.importorskip("stable_baselines3")
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path))  # its logger makes a folder, by default in /tmp
    env = rlsched.envs.get_task("synthetic").make_env(budget_samples=2000)
    model = sb3.PPO("MlpPolicy", env, n_steps=20, batch_size=10, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=40)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action)


def test_adaptive_scheduler_in_a_plain_loop():
    torch.manual_seed(0)
    x, y = torch.randn(512, 8), torch.randint(0, 3, (512,))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.05}, {"params": model[2].parameters(), "lr": 0.025}],
        momentum=0.9,
    )
    sampler = DynamicBatchSampler(512, batch_size=32, seed=0)
    loader = DataLoader(TensorDataset(x, y), batch_sampler=sampler)
    space = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(16, 32, 64, 128), scale_rule="linear")
    sched = AdaptiveScheduler(
        optimizer, sampler, controller=forced(3, 2), space=space, budget_samples=3200, decisions=4
    )
    seen = []
    while not sched.done:
        for xb, yb in loader:
            seen.append((len(xb), optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"]))
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            sched.step(loss, batch_size=len(xb))
            optimizer.zero_grad()
            if sched.done:
                break
    sizes = [s for s, _, _ in seen]
    assert sum(sizes) >= 3200 and sched.samples == sum(sizes)
    assert sizes[0] == 32 and 64 in sizes and 128 in sizes  # one rung up at each decision, no lag
    first_64 = next(i for i, s in enumerate(seen) if s[0] == 64)
    assert seen[first_64][1] == pytest.approx(0.05 * 2 * 1.25)  # linear rule, then x1.25
    assert all(a == pytest.approx(2 * b) for _, a, b in seen)  # param groups keep their ratio
    assert len(sched.history) == 5 and all(math.isfinite(r.val_loss) for r in sched.history)
    state = sched.state_dict()
    other = AdaptiveScheduler(
        optimizer, sampler, controller=forced(3, 2), space=space, budget_samples=3200, decisions=4
    )
    other.load_state_dict(state)
    assert other.hparams == sched.hparams and other.samples == sched.samples


def test_the_default_controller_ships_with_its_model_card():
    import importlib.resources

    controller = Controller.load("default")
    provenance = controller.metadata["provenance"]
    assert provenance["family"] == "train" and provenance["steps"] >= 10_000
    card = importlib.resources.files("rlsched.agents").joinpath("default_controller.md").read_text()
    assert "eval**-family tasks" in card and "| **mean** |" in card
    result = rlsched.run("synthetic", controller, seed=0)
    assert math.isfinite(result.best.val_loss) and not result.best.diverged


def test_hybrid_and_controller_from_configs_round_trip():
    from rlsched.agents import build_agent
    from rlsched.app.config import run_config

    hybrid = build_agent({"type": "PBT", "explore": "controller"})
    assert isinstance(hybrid.explorer, Controller)
    again = build_agent(hybrid.config())
    assert isinstance(again.explorer, Controller) and again.config() == hybrid.config()
    alone = build_agent({"type": "Controller", "path": "default"})
    assert isinstance(alone, Controller)
    resolved = run_config({"task": "synthetic", "agent": {"explore": "controller"}})
    assert resolved.config.agent == {"type": "PBT", "explore": "controller"}
