import random
from collections import Counter

import numpy as np
import pytest
import torch

from rlsched import Hyperparams
from rlsched.core.job import interval_sizes
from rlsched.envs import TASKS, get_task, sample_task
from rlsched.envs import tasks as tasks_module
from rlsched.envs.data_cache import CACHE_DIR_VARIABLE, cache_dir, cached
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


def test_the_mnist1d_tasks_under_fit_their_data():
    for name in ("mnist1d-mlp", "mnist1d-cnn"):
        assert get_task(name).settings["train_size"] == tasks_module.MNIST1D_TRAIN_SIZE == 40_000
        assert get_task(name).make_job(0).train_data.tensors[0].shape == (40_000, 40)


@pytest.mark.parametrize("name", ["mnist1d-mlp", pytest.param("mnist1d-cnn", marks=pytest.mark.slow)])
def test_val_loss_still_falls_at_the_end_of_a_constant_lr_run(name):
    # At 4,000 examples the MLP's val loss bottomed near 1.1 at 20 % of the budget and ended above 2.
    task = get_task(name)
    job = task.make_job(0)
    losses = []
    for samples in interval_sizes(task.budget_samples, task.decisions):
        job.train(task.initial, samples)
        losses.append(job.evaluate()["loss"])
    assert losses[-1] < 0.8 * losses[len(losses) // 2 - 1]  # the second half still gains 20 %
    assert losses.index(min(losses)) >= len(losses) - 2  # the best is one of the last two


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    monkeypatch.delenv(CACHE_DIR_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "rlsched"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "rlsched"


def test_cached_data_is_saved_once_atomically_and_remade_when_damaged(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return {"x": torch.arange(10.0)[:4], "y": torch.tensor([len(calls)])}

    first = cached("k", make, tmp_path)
    again = cached("k", make, tmp_path)
    assert len(calls) == 1 and torch.equal(first["x"], again["x"]) and again["y"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["k.pt"]  # no temporary file left behind
    assert again["x"].untyped_storage().nbytes() == 4 * 4  # the slice alone was saved, not its base
    assert cached("k", make, tmp_path, valid=lambda d: d["y"].item() == 2)["y"].item() == 2
    (tmp_path / "k.pt").write_bytes(b"not a checkpoint")
    assert cached("k", make, tmp_path)["y"].item() == 3 and cached("k", make, tmp_path)["y"].item() == 3
    torch.save({"x": [1, 2]}, tmp_path / "k.pt")  # not a dict of tensors
    assert cached("k", make, tmp_path)["y"].item() == 4 and len(calls) == 4


def test_an_unwritable_cache_folder_still_gives_the_data(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    assert cached("k", lambda: {"x": torch.ones(3)}, blocker / "cache")["x"].tolist() == [1.0, 1.0, 1.0]


def test_mnist1d_data_is_read_from_the_cache_on_disk(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(tmp_path))
    make = tasks_module.mnist1d_data.__wrapped__  # past the in-memory cache
    made = make(7, 100)
    (entry,) = tmp_path.glob("mnist1d-*-seed7-train100.pt")

    def fail(*args):
        raise AssertionError("generated again")

    monkeypatch.setattr(tasks_module, "_make_mnist1d", fail)
    loaded = make(7, 100)
    assert loaded.keys() == made.keys() and all(torch.equal(loaded[k], made[k]) for k in made)
    assert loaded["x_train"].shape == (100, 40) and loaded["x_test"].shape == (1000, 40)
    monkeypatch.undo()
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(tmp_path))
    torch.save({**made, "x_train": made["x_train"][:50]}, entry)  # a wrong size is made again
    assert make(7, 100)["x_train"].shape == (100, 40)


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
