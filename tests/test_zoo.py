import math
import pickle
import random
from collections import Counter

import numpy as np
import pytest
import torch

import rlsched.envs.zoo
from rlsched.core.space import Hyperparams
from rlsched.envs.zoo import (
    DATA_SEEDS,
    DECISIONS,
    INITIAL_LR_FACTORS,
    ZOO_FAMILIES,
    ZOO_KINDS,
    good_lr,
    sample_zoo_task,
    zoo_task,
)
from rlsched.envs.zoo_data import SHAPE_CLASSES, code_data, shapes_data

TRAIN_DRAWS = [sample_zoo_task(s, "train") for s in range(400)]
EVAL_DRAWS = [sample_zoo_task(s, "eval") for s in range(200)]
HELD_OUT = set(ZOO_FAMILIES["eval"]) - set(ZOO_FAMILIES["train"])


def test_zoo_has_many_kinds_and_a_leave_kind_out_split():
    assert len(ZOO_KINDS) >= 10
    assert set(ZOO_FAMILIES["train"]) | set(ZOO_FAMILIES["eval"]) == set(ZOO_KINDS)
    assert len(HELD_OUT) >= 3 and len(ZOO_FAMILIES["train"]) >= 6
    assert {"cnn2d-shapes", "transformer-code", "autoencoder-mnist1d"} <= HELD_OUT
    assert not set(DATA_SEEDS["train"]) & set(DATA_SEEDS["eval"])
    assert {o for k in ZOO_KINDS.values() for o in k.optimizers} == {"sgd", "adam", "adamw"}
    for name, kind in ZOO_KINDS.items():
        assert "\n" not in kind.doc and 20 < len(kind.doc) < 100, name
        assert f"``{name}``" in rlsched.envs.zoo.__doc__, name
        assert kind.regime in ("under-fit", "over-fit") and set(kind.regimes) <= {"under-fit", "over-fit"}
        assert kind.reference_batch in kind.batch_sizes


def test_sampling_is_deterministic_and_varied():
    for seed, family in [(0, "train"), (17, "train"), (5, "eval")]:
        a, b = sample_zoo_task(seed, family), sample_zoo_task(seed, family)
        assert (a.settings, a.initial, a.space, a.budget_samples, a.decisions) == (
            b.settings, b.initial, b.space, b.budget_samples, b.decisions,
        )  # fmt: skip
    assert len({t.initial.lr for t in TRAIN_DRAWS}) == len(TRAIN_DRAWS)
    assert Counter(t.settings["kind"] for t in TRAIN_DRAWS).keys() == set(ZOO_FAMILIES["train"])
    assert Counter(t.settings["kind"] for t in EVAL_DRAWS).keys() == set(ZOO_FAMILIES["eval"])
    assert {t.settings["optimizer"] for t in TRAIN_DRAWS} == {"sgd", "adam", "adamw"}
    assert {t.settings["regime"] for t in TRAIN_DRAWS} == {"under-fit", "over-fit"}
    assert {t.settings["budget"] for t in TRAIN_DRAWS} == {"short", "medium", "long"}
    assert min(t.budget_samples for t in TRAIN_DRAWS) * 10 < max(t.budget_samples for t in TRAIN_DRAWS)


def test_train_family_never_yields_held_out_kinds_or_eval_data():
    assert not {t.settings["kind"] for t in TRAIN_DRAWS} & HELD_OUT
    for draws, family in ((TRAIN_DRAWS, "train"), (EVAL_DRAWS, "eval")):
        assert {t.settings["family"] for t in draws} == {family}
        seeds = {t.settings["data_seed"] for t in draws if "data_seed" in t.settings}
        assert seeds == set(DATA_SEEDS[family])


def test_initial_point_is_inside_the_space_and_spread_around_the_good_lr():
    factors = []
    for task in TRAIN_DRAWS + EVAL_DRAWS:
        kind, optimizer, hp = task.settings["kind"], task.settings["optimizer"], task.initial
        assert task.space.contains(hp) and task.space.batch_size == ZOO_KINDS[kind].batch_sizes
        assert DECISIONS[0] <= task.decisions <= DECISIONS[1]
        factor = hp.lr / good_lr(kind, optimizer, hp.batch_size)
        assert factor == pytest.approx(task.settings["lr_factor"], rel=1e-3)
        factors.append(factor)
        assert task.space.scale_rule == ("linear" if optimizer == "sgd" else "sqrt")
        ladder = task.space.batch_size
        assert task.space.lr[0] <= good_lr(kind, optimizer, ladder[0]) / 30
        assert task.space.lr[1] >= good_lr(kind, optimizer, ladder[-1]) * 10
        assert task.budget_samples // task.decisions >= ladder[-1]  # a full step per interval
        wd = task.settings["weight_decay"]
        assert 0.01 <= wd <= 0.1 if optimizer == "adamw" else wd == 0.0
    low, high = INITIAL_LR_FACTORS
    assert low <= min(factors) < 1.3 * low and high / 1.3 < max(factors) <= high
    assert 0.3 < np.mean(np.log(factors) < 0) < 0.7  # about as many too small as too large
    assert {t.decisions for t in TRAIN_DRAWS} >= {10, 40}


# Small data sets (the small MNIST-1D pool) and half of each budget keep this fast; the loss is
# checked after each tenth of the budget, as over-fitting kinds may rise again before the end.
@pytest.mark.parametrize("kind", list(ZOO_KINDS))
def test_every_kind_learns_at_its_good_lr(kind):
    spec = ZOO_KINDS[kind]
    task = zoo_task(kind, **({"train_size": 2000} if spec.defaults.get("train_size") == 20_000 else {}))
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    job = task.make_job(0)
    before = job.evaluate()
    after = []
    for _ in range(5):
        job.train(task.initial, spec.budget_samples // 10)
        after.append(job.evaluate())
    best = min(after, key=lambda m: m["loss"])
    assert best["loss"] < 0.85 * before["loss"], (before, after)
    if "accuracy" in before:
        assert best["accuracy"] > before["accuracy"] + 0.1
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_zoo_task_defaults_and_overrides():
    task = zoo_task("mlp-mnist1d")
    assert task.name == "zoo/mlp-mnist1d" and task.env_id is None
    assert task.initial == Hyperparams(good_lr("mlp-mnist1d", "sgd"), 128)
    assert task.settings["train_size"] == 20_000 and task.settings["data_seed"] == DATA_SEEDS["train"][0]
    assert zoo_task("cnn2d-shapes", seed=1).settings["data_seed"] == DATA_SEEDS["eval"][1]
    custom = zoo_task("cnn2d-shapes", optimizer="adamw", batch_size=32, budget_samples=999, decisions=11)
    assert custom.settings["weight_decay"] == 0.05 and custom.space.scale_rule == "sqrt"
    assert custom.initial == Hyperparams(good_lr("cnn2d-shapes", "adamw") / 2, 32)
    assert (custom.budget_samples, custom.decisions) == (999, 11)


def test_episode_of_a_sampled_task_runs_its_intervals():
    task = next(t for t in TRAIN_DRAWS if t.settings["kind"] == "teacher-regression")
    env = task.make_env(budget_samples=3000, decisions=3)
    _, info = env.reset(seed=0)
    assert info["lr"] == task.initial.lr and info["batch_size"] == task.initial.batch_size
    _, reward, _, _, info = env.step([2, 1])
    assert info["samples"] == 1000 and math.isfinite(reward)
    copy = pickle.loads(pickle.dumps(task))  # tasks travel to worker processes
    assert copy.settings == task.settings and copy.make_job(0).evaluate() == task.make_job(0).evaluate()


def test_generated_data_is_deterministic_balanced_and_split():
    a, b = shapes_data(5, 600), shapes_data(6, 600)
    assert a["x_train"].shape == (600, 12, 12) and a["x_val"].shape == a["x_test"].shape == (500, 12, 12)
    assert torch.equal(a["x_train"], shapes_data.__wrapped__(5, 600)["x_train"])
    assert not torch.allclose(a["x_train"], b["x_train"])
    counts = torch.bincount(a["y_train"], minlength=len(SHAPE_CLASSES))
    assert counts.min() > 30 and abs(float(a["x_train"].mean())) < 0.1
    text = code_data()
    assert text["train"].shape[1] == 33 and int(text["train"].max()) < text["vocab"]
    assert text["val"].shape == text["test"].shape == (256, 33)


def test_bad_inputs_name_the_field():
    with pytest.raises(ValueError, match=r"^family: expected one of train, eval, got 'test'$"):
        sample_zoo_task(0, "test")
    for seed in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match=r"^seed: expected a non-negative integer"):
            sample_zoo_task(seed)
    with pytest.raises(ValueError, match=r"^kind: unknown kind 'mlp'; expected one of mlp-mnist1d, "):
        zoo_task("mlp")
    with pytest.raises(ValueError, match=r"^seed: expected an index 0\.\.2 into the train data seeds"):
        zoo_task("mlp-mnist1d", seed=3)
    with pytest.raises(ValueError, match=r"^widht: not a setting of mlp-mnist1d; allowed: model, width, "):
        zoo_task("mlp-mnist1d", widht=3)
    with pytest.raises(ValueError, match=r"^optimizer: transformer-code runs with adamw, adam, got 'sgd'$"):
        zoo_task("transformer-code", optimizer="sgd")
