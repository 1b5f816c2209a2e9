import math

import numpy as np
import pytest

from rlsched import Hyperparams, Record, TrainStats
from rlsched.core.features import CLIP, FEATURES, observation
from rlsched.core.reward import DIVERGENCE_RETURN, reward

HP0 = Hyperparams(0.1, 64)


def stats(loss=1.0, std=0.1, grad=2.0, b_simple=128.0, ratio=1e-3, nonfinite=False):
    return TrainStats(1000, 10, loss, std, grad, b_simple, ratio, nonfinite)


def test_initial_observation_is_neutral():
    obs = observation([Record(0, 0, HP0, None, {"loss": 2.3})], initial=HP0, budget_samples=1000)
    expected = np.zeros(len(FEATURES), dtype=np.float32)
    expected[FEATURES.index("population_rank")] = 0.5
    assert obs.dtype == np.float32 and np.array_equal(obs, expected)


def test_features_have_their_documented_values():
    history = [
        Record(0, 0, HP0, None, {"loss": 2.0}),
        Record(1, 400, Hyperparams(0.1, 64), stats(loss=1.5, grad=4.0), {"loss": 1.6}),
        Record(
            2,
            800,
            Hyperparams(0.2, 128),
            stats(loss=1.0, std=0.25, grad=2.0, b_simple=512.0, ratio=1e-2),
            {"loss": 1.2},
        ),
    ]
    obs = dict(zip(FEATURES, observation(history, initial=HP0, budget_samples=1000, rank=0.75)))
    expected = {
        "progress": 0.8,
        "log_lr_ratio": math.log(2.0),
        "log2_batch_size_ratio": 1.0,
        "train_loss": math.log(1.0 / 2.0),
        "train_loss_slope": math.log(1.0 / 1.5),
        "val_loss": math.log(1.2 / 2.0),
        "val_loss_slope": math.log(1.2 / 1.6),
        "generalization_gap": math.log(1.2 / 1.0),
        "train_loss_spread": 0.25,
        "grad_norm_trend": math.log(0.5),
        "log_noise_scale_ratio": math.log(4.0),
        "log10_update_ratio": -2.0,
        "population_rank": 0.75,
        "nonfinite": 0.0,
    }
    for name, value in expected.items():
        assert obs[name] == pytest.approx(value, abs=1e-6), name


def test_divergence_sets_the_flag_and_clips():
    history = [
        Record(0, 0, HP0, None, {"loss": 2.0}),
        Record(
            1,
            500,
            HP0,
            stats(loss=math.nan, std=math.nan, b_simple=math.nan, nonfinite=True),
            {"loss": math.inf},
        ),
    ]
    obs = dict(zip(FEATURES, observation(history, initial=HP0, budget_samples=1000)))
    assert obs["nonfinite"] == 1.0
    assert obs["val_loss"] == CLIP and obs["train_loss"] == CLIP
    assert obs["log_noise_scale_ratio"] == 0.0  # not estimable: neutral


def test_returns_telescope_to_log_initial_over_final():
    losses = [2.3, 1.7, 1.9, 0.8, 0.6]
    rewards = [reward(a, b, initial_loss=losses[0]) for a, b in zip(losses, losses[1:])]
    assert rewards[1] < 0  # a worse val loss is punished
    assert sum(rewards) == pytest.approx(math.log(2.3 / 0.6))


@pytest.mark.parametrize("diverge_at", [1, 2, 4])
def test_a_diverged_episode_always_returns_the_penalty(diverge_at):
    losses = [2.3, 1.7, 1.2, 0.9, 0.8][:diverge_at] + [math.nan]
    rewards = [reward(a, b, initial_loss=losses[0]) for a, b in zip(losses, losses[1:])]
    assert sum(rewards) == pytest.approx(DIVERGENCE_RETURN)
