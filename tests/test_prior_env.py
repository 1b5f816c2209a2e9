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


def neutral() -> Controller:
    """A version-2 controller that always takes the neutral action: the prior itself."""
    controller = Controller()
    with torch.no_grad():
        head = controller.net.actor[-1]
        head.weight.zero_()
        head.bias.zero_()
        head.bias[NEUTRAL[0]] = 10.0
        head.bias[5 + NEUTRAL[1]] = 10.0
    return controller


def test_probe_cosine_and_the_neutral_controller_agree():
    """A controller that always takes the neutral action is exactly probe + cosine (batch kept)."""
    neutral_controller = neutral()
    a = rlsched.run("synthetic", neutral_controller, seed=3)
    b = rlsched.run("synthetic", ProbeCosine(), seed=3)
    assert a.best.trajectory == b.best.trajectory and a.best.metrics == b.best.metrics


def test_a_v2_controller_probes_then_follows_the_prior_in_a_plain_loop():
    torch.manual_seed(0)
    x, y = torch.randn(1024, 8), torch.randint(0, 3, (1024,))
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    start = [p.detach().clone() for p in model.parameters()]
    sampler = rlsched.DynamicBatchSampler(1024, batch_size=32, seed=0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_sampler=sampler)
    space = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(16, 32, 64), scale_rule="linear")
    sched = rlsched.AdaptiveScheduler(
        optimizer, sampler, controller=neutral(), space=space, budget_samples=6400, decisions=4, model=model
    )
    lrs, restored = [], None
    while not sched.done:
        for xb, yb in loader:
            lrs.append((sched.get_last_lr()[0], len(xb)))
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            sched.step(loss, batch_size=len(xb))
            optimizer.zero_grad()
            if sched.probe is not None and restored is None:  # the probe just ended: all undone
                restored = all(torch.equal(p, q) for p, q in zip(model.parameters(), start))
            if sched.done:
                break
    probe_steps = 320 // 16  # 5 % of the budget, at the smallest rung: too few steps at 32
    assert {b for _, b in lrs[:probe_steps]} == {16} and lrs[probe_steps][1] == 32
    assert lrs[0][0] == pytest.approx(1e-3) and lrs[probe_steps - 1][0] > 0.3  # rising across the space
    assert restored and sched.probe.samples == 320 and sched.probe.batch_size == 16
    assert lrs[probe_steps][0] == pytest.approx(
        prior_lr(sched.probe.peak_lr, Hyperparams(0.01, 32), 32, space, 0, 4)
    )
    assert sched.samples == 6400 and len(sched.history) == 5
    # the probe's 320 examples are undone; decisions fall on the first step past each boundary
    assert [r.samples for r in sched.history] == [0, 1536, 3040, 4576, 6080]
