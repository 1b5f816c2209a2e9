import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import rlsched
from rlsched import Hyperparams, HyperparamSpace, MemberView, PopulationView, Record
from rlsched.agents import PBT, Controller, ProbeCosine
from rlsched.core.prior import NEUTRAL, act_on_prior, prior_lr
from rlsched.envs.prior_env import PriorEnv
from rlsched.envs.tasks import get_task

SYNTHETIC = get_task("synthetic")


def synthetic(seed, family):
    """A fast stand-in for the zoo: the synthetic task, drawn alike for every seed."""
    return SYNTHETIC


def test_the_neutral_action_scores_zero_and_a_worse_policy_below_zero():
    env = PriorEnv(sample=synthetic, episodes_per_task=3)
    returns = []
    for policy in ([*NEUTRAL], [0, 1], [4, 1]):  # the prior, then the LR halved or doubled each time
        obs, _ = env.reset(seed=None if returns else 0)
        total, done = 0.0, False
        while not done:
            obs, reward, done, _, info = env.step(policy)
            total += reward
        returns.append(total)
        assert obs.shape == (16,) and np.all(np.abs(obs) <= 10)
    assert returns[0] == 0.0 and info["task"] == SYNTHETIC.name
    assert returns[1] < 0  # shrinking the LR 2x per decision ends worse than the prior


def test_prior_env_passes_gymnasiums_checker():
    check_env(PriorEnv(sample=synthetic), skip_render_check=True)


def test_actions_are_relative_to_the_prior():
    space = HyperparamSpace(lr=(1e-4, 1.0), batch_size=(32, 64, 128), scale_rule="sqrt")
    base = Hyperparams(0.01, 64)
    first = act_on_prior(
        NEUTRAL, hp=base, peak=0.1, base=base, stats=None, space=space, decision=0, decisions=10
    )
    assert first == Hyperparams(prior_lr(0.1, base, 64, space, 0, 10), 64)
    doubled = act_on_prior(
        [4, 2], hp=first, peak=0.1, base=base, stats=None, space=space, decision=1, decisions=10
    )
    assert doubled.batch_size == 128  # one rung up, and the LR follows by the sqrt rule, then x2
    assert doubled.lr == pytest.approx(2 * prior_lr(0.1, base, 128, space, 1, 10))
    again = act_on_prior(
        NEUTRAL, hp=doubled, peak=0.1, base=base, stats=None, space=space, decision=2, decisions=10
    )
    assert again.lr == pytest.approx(
        2 * prior_lr(0.1, base, 128, space, 2, 10)
    )  # the correction carries over


def test_an_untrained_v2_controller_runs_alone_and_in_the_hybrid_and_resumes(tmp_path):
    controller = Controller()
    alone = rlsched.run("synthetic", controller, population=2, seed=0)
    assert alone.total_samples == 2 * SYNTHETIC.budget_samples and math.isfinite(alone.best.val_loss)
    hybrid = rlsched.run(
        "synthetic", PBT(explore=controller), population=4, seed=0, logdir=tmp_path, name="h"
    )
    assert (tmp_path / "h" / "result.json").exists() and hybrid.best.val_loss < 0.2
    hp = SYNTHETIC.initial
    member = MemberView(0, hp, (Record(0, 0, hp, None, {"loss": 1.0}),), np.zeros(14, np.float32), -1.0)
    view = PopulationView(1, 5, SYNTHETIC.space, (member,))
    with pytest.raises(ValueError, match="needs the LR range probe"):
        controller.decide(view, np.random.default_rng(0))


def test_probe_cosine_and_the_neutral_controller_agree():
    """A controller that always takes the neutral action is exactly probe + cosine (batch by noise)."""
    neutral = Controller()
    with torch.no_grad():
        head = neutral.net.actor[-1]
        head.weight.zero_()
        head.bias.zero_()
        head.bias[NEUTRAL[0]] = 10.0
        head.bias[5 + NEUTRAL[1]] = 10.0
    a = rlsched.run("synthetic", neutral, seed=3)
    b = rlsched.run("synthetic", ProbeCosine(batch="noise"), seed=3)
    assert a.best.trajectory == b.best.trajectory and a.best.metrics == b.best.metrics
