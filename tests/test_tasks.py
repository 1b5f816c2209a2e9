import random
from collections import Counter

import numpy as np
import pytest
import torch

from rlsched import Hyperparams
from rlsched.envs import TASKS, get_task, sample_task
from rlsched.envs.distribution import DATA_SEEDS


@pytest.mark.parametrize("name", list(TASKS))
def test_each_builtin_task_learns_and_leaves_global_rngs_alone(name):
    task = get_task(name)
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    job = task.make_job(0)
    before = job.evaluate()
    job.train(task.initial, 4096)
    after = job.evaluate()
    assert after["loss"] < before["loss"]
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])
    assert task.space.contains(task.initial)


def test_mnist1d_splits_are_disjoint_and_sized():
    from rlsched.envs.tasks import mnist1d_data

    data = mnist1d_data()
    assert data["x_train"].shape == (4000, 40) and data["x_val"].shape == (1000, 40)
    assert data["x_test"].shape == (1000, 40)
    assert set(data["y_train"].tolist()) == set(range(10))
    rows = {tuple(r) for r in data["x_train"][:, :5].tolist()}
    assert not rows & {tuple(r) for r in data["x_val"][:, :5].tolist()}


def test_job_seed_sets_init_and_order():
    task = get_task("synthetic")
    a, b, c = task.make_job(1), task.make_job(1), task.make_job(2)
    assert torch.equal(a.model[0].weight, b.model[0].weight)
    assert not torch.equal(a.model[0].weight, c.model[0].weight)


def test_task_distribution_is_deterministic_and_varied():
    assert sample_task(4, "train").settings == sample_task(4, "train").settings
    settings = [sample_task(s, "train").settings for s in range(60)]
    assert Counter(s["optimizer"] for s in settings).keys() == {"sgd", "adam"}
    assert len({s["kind"] for s in settings}) == 3
    assert len({s.get("depth") for s in settings}) >= 3
    assert len({round(s["lr"], 8) for s in settings}) == 60
    assert len({s.get("train_size") for s in settings}) >= 3


def test_families_never_share_tasks():
    train = [sample_task(s, "train").settings for s in range(100)]
    evaluation = [sample_task(s, "eval").settings for s in range(100)]
    assert not {repr(sorted(s.items())) for s in train} & {repr(sorted(s.items())) for s in evaluation}
    assert not set(DATA_SEEDS["train"]) & set(DATA_SEEDS["eval"])
    assert {s.get("data_seed") for s in train} - {None} <= set(DATA_SEEDS["train"])
    assert {s.get("data_seed") for s in evaluation} - {None} <= set(DATA_SEEDS["eval"])
    assert "char-lm" not in {s["kind"] for s in train}
    assert "char-lm" in {s["kind"] for s in evaluation}


@pytest.mark.parametrize("seed, family", [(0, "train"), (1, "train"), (0, "eval"), (3, "eval")])
def test_sampled_tasks_train(seed, family):
    task = sample_task(seed, family)
    env = task.make_env(budget_samples=2048, decisions=2)
    obs, info = env.reset(seed=0)
    _, reward, _, _, info = env.step([2, 1])
    assert np.isfinite(reward) and info["samples"] == 1024


def test_bad_names():
    with pytest.raises(ValueError, match="task: unknown task 'nope'; expected one of synthetic"):
        get_task("nope")
    with pytest.raises(ValueError, match="family"):
        sample_task(0, "test")
    with pytest.raises(TypeError, match="make_env"):
        get_task("synthetic").make_env(budget=3)
    with pytest.raises(ValueError, match="initial.lr"):
        get_task("synthetic").make_env(initial=Hyperparams(50.0, 16))
