"""The shipped controller on jobs from outside the task zoo: its schedule follows the job."""

from __future__ import annotations

import math

import pytest
import torch
from quadratic import NoisyQuadratic
from torch import nn
from torch.utils.data import TensorDataset

import rlsched
from rlsched.agents import Controller, ProbeCosine

DATA = torch.Generator().manual_seed(0)
X = torch.randn(6000, 20, generator=DATA)
Y = (X[:, :5].sum(dim=1) > 0).long() + (X[:, 5:10].sum(dim=1) > 0).long()  # 3 classes
NOISY = Y.clone()
FLIP = torch.rand(len(Y), generator=DATA) < 0.3
NOISY[FLIP] = torch.randint(0, 3, (int(FLIP.sum()),), generator=DATA)  # 30 % of training labels wrong


def classification(labels: torch.Tensor):
    """An MLP with SGD on a 3-class problem, not a kind of the zoo; ``labels`` train it."""

    def make_job(seed: int) -> rlsched.SupervisedJob:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        train, val = TensorDataset(X[:5000], labels[:5000]), TensorDataset(X[5000:], Y[5000:])
        return rlsched.SupervisedJob(model, optimizer, train, val, nn.functional.cross_entropy, seed=seed)

    return make_job


SPACE = rlsched.HyperparamSpace(lr=(1e-4, 1.0), batch_size=(16, 32, 64, 128, 256), scale_rule="linear")
INITIAL = rlsched.Hyperparams(lr=0.05, batch_size=64)


def schedule(job, budget, *, space=SPACE, initial=INITIAL, decisions=10):
    """The shipped controller alone on ``job``: its (lr, batch size) per interval, the run, and the
    policy's actions (its greedy choice at each decision)."""
    controller, actions = Controller.load("default"), []
    act = controller.act

    def recording(obs, **kwargs):
        action = act(obs, **kwargs)
        actions.append(tuple(int(a) for a in action))
        return action

    controller.act = recording
    run = rlsched.run(
        job, controller, space=space, initial=initial, budget_samples=budget, decisions=decisions, seed=0
    )
    return [(hp.lr, hp.batch_size) for _, hp in run.best.trajectory], run, actions


def prior(job, budget, *, space=SPACE, initial=INITIAL, decisions=10):
    """The controller's prior alone (probe + cosine) on ``job``, as :func:`schedule` runs it."""
    return rlsched.run(
        job, ProbeCosine(), space=space, initial=initial, budget_samples=budget, decisions=decisions, seed=0
    )


def test_the_default_is_a_version_2_controller_with_its_card():
    controller = Controller.load("default")
    assert controller.version == 2 and controller.probe_fraction > 0
    assert controller.metadata["provenance"]["family"] == "train"


def test_two_jobs_from_outside_the_zoo_get_two_different_schedules():
    """Clean labels at batch 64, and 30 % wrong labels at batch 16 from an LR 10x lower: the probe
    sets each job's LR scale. The policy keeps its prior's LR and moves to smaller batches, the rule
    it learned on the zoo (where the budget is examples); on the clean job that beats the prior."""
    clean, clean_run, clean_actions = schedule(classification(Y), 50_000)
    noisy_start = rlsched.Hyperparams(lr=0.005, batch_size=16)
    noisy, noisy_run, _ = schedule(classification(NOISY), 100_000, initial=noisy_start)
    for trajectory, run in ((clean, clean_run), (noisy, noisy_run)):
        assert len(trajectory) == 10 and all(math.isfinite(lr) for lr, _ in trajectory)
        assert not run.best.diverged
    assert [lr for lr, _ in clean] != pytest.approx([lr for lr, _ in noisy], rel=0.05)
    assert [size for _, size in clean] == [32] + [16] * 9  # from 64, a rung down at each decision
    assert [size for _, size in noisy] == [16] * 10  # already the ladder's smallest
    assert {lr for lr, _ in clean_actions} == {2}  # the LR factor stays the prior's
    assert clean_run.best.val_loss < prior(classification(Y), 50_000).best.val_loss


def test_the_controller_stays_close_to_its_prior_on_an_outside_job():
    space = rlsched.HyperparamSpace(lr=(1e-3, 1.0), batch_size=(8, 16, 32, 64), scale_rule="linear")
    initial = rlsched.Hyperparams(lr=0.01, batch_size=16)
    settings = dict(space=space, initial=initial, decisions=8)
    _, run, _ = schedule(NoisyQuadratic, 16_000, **settings)
    assert run.best.val_loss <= 1.5 * prior(NoisyQuadratic, 16_000, **settings).best.val_loss
