"""Jobs as users write them: shallow state dicts, broken contracts, and bugs that stop a run."""

from __future__ import annotations

import copy

import pytest
import torch

import rlsched
from rlsched.agents import PBT, RandomSearch
from rlsched.core.job import JobContractError, JobFailed
from rlsched.population.lineage import Clone, Train
from rlsched.population.runner import job_seed

SPACE = rlsched.HyperparamSpace(lr=(1e-3, 1.0), batch_size=(16, 32, 64))
INITIAL = rlsched.Hyperparams(lr=0.05, batch_size=32)


class ShallowJob:
    """Adam on a small regression, with the state dict almost every PyTorch user writes:
    ``model.state_dict()`` and ``optimizer.state_dict()``, both holding live tensors."""

    def __init__(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(512, 8, generator=generator)
        self.y = self.x @ torch.randn(8, 1, generator=generator) + 0.3 * torch.randn(
            512, 1, generator=generator
        )
        self.model = torch.nn.Linear(8, 1)
        with torch.no_grad():
            self.model.weight.normal_(generator=generator)
            self.model.bias.zero_()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=INITIAL.lr)
        self.position = 0

    def train(self, hp: rlsched.Hyperparams, samples: int) -> rlsched.TrainStats:
        for group in self.opt.param_groups:
            group["lr"] = hp.lr
        losses, sizes = [], []
        probe = rlsched.GradientProbe(list(self.model.parameters()), samples // hp.batch_size, pairs=2)
        for step in range(samples // hp.batch_size):
            rows = torch.arange(self.position, self.position + hp.batch_size) % len(self.x)
            self.position += hp.batch_size
            loss = torch.nn.functional.mse_loss(self.model(self.x[rows]), self.y[rows])
            self.opt.zero_grad()
            loss.backward()
            probe.before_step(step, hp.batch_size)
            self.opt.step()
            probe.after_step(step)
            losses.append(loss.detach())
            sizes.append(hp.batch_size)
        return rlsched.summarize(losses, sizes, probe)

    def evaluate(self) -> dict[str, float]:
        with torch.no_grad():
            return {"loss": float(torch.nn.functional.mse_loss(self.model(self.x), self.y))}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.position = state["position"]


class DeepJob(ShallowJob):
    """The same job with a state dict that shares nothing with it."""

    def state_dict(self) -> dict:
        return copy.deepcopy(super().state_dict())

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(copy.deepcopy(state))


def run(factory, agent=None, **kwargs) -> rlsched.RunResult:
    settings = dict(space=SPACE, initial=INITIAL, population=4, budget_samples=4096, decisions=6, seed=3)
    return rlsched.run(factory, agent or PBT(), **{**settings, **kwargs})


def test_copies_of_a_shallow_state_dict_equal_copies_of_a_deep_one():
    shallow, deep = run(ShallowJob, seed=0), run(DeepJob, seed=0)
    clones = [e for e in deep.lineage if isinstance(e, Clone)]
    assert any(c.donor < c.member for c in clones)  # a donor that trained before its copy did
    assert shallow.lineage == deep.lineage
    assert [m.metrics for m in shallow.members] == [m.metrics for m in deep.members]


class Missing:
    def __init__(self, seed: int) -> None:
        pass

    def train(self, hp, samples):  # no evaluate, state_dict or load_state_dict
        raise AssertionError("never called")


class WrongStats(ShallowJob):
    def train(self, hp, samples):
        super().train(hp, samples)
        return {"loss": 0.1}


class NoLoss(ShallowJob):
    def evaluate(self):
        return {"mse": 0.1}


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (Missing, "job_factory: built a Missing without evaluate, state_dict, load_state_dict"),
        (WrongStats, "job.train: returned dict, expected rlsched.TrainStats"),
        (NoLoss, "job.evaluate: returned ['mse'], expected a dict with a float 'loss'"),
    ],
)
def test_a_job_that_breaks_the_contract_stops_the_run_with_one_line(tmp_path, factory, message):
    with pytest.raises(JobContractError) as caught:
        run(factory, logdir=tmp_path, name="broken")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "broken").exists()  # nothing left behind


class Buggy(ShallowJob):
    """Every member raises the same error from the given interval on, while ``broken`` is set."""

    broken_from = 3
    broken = True

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.calls = 0

    def train(self, hp, samples):
        self.calls += 1
        if Buggy.broken and self.calls >= Buggy.broken_from:
            raise ZeroDivisionError("a bug in the user's loss")
        return super().train(hp, samples)

    def state_dict(self):
        return {**super().state_dict(), "calls": self.calls}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.calls = state["calls"]


def test_a_bug_in_every_member_stops_the_run_with_the_users_traceback_and_it_resumes_once_fixed(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(Buggy, "broken", True)
    with pytest.raises(JobFailed, match="every member's job raised during decision 2") as caught:
        run(Buggy, logdir=tmp_path, name="buggy")
    assert isinstance(caught.value.__cause__, ZeroDivisionError)  # the user's own traceback
    assert "rlsched resume" in "".join(getattr(caught.value, "__notes__", []))
    assert not (tmp_path / "buggy" / "result.json").exists()

    monkeypatch.setattr(Buggy, "broken", False)
    resumed = rlsched.resume(tmp_path / "buggy", Buggy, PBT())
    unbroken = run(Buggy)
    assert resumed.lineage == unbroken.lineage
    assert resumed.best.metrics == unbroken.best.metrics


def test_a_bug_at_the_first_interval_leaves_no_run_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(Buggy, "broken_from", 1)
    with pytest.raises(JobFailed, match="during decision 0") as caught:
        run(Buggy, logdir=tmp_path, name="buggy")
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    assert not (tmp_path / "buggy").exists()
    monkeypatch.setattr(Buggy, "broken", False)
    assert run(Buggy, logdir=tmp_path, name="buggy").best.val_loss < 1.0  # the name is free again


class OneBroken(ShallowJob):
    """Only one member's job raises, at its second interval: the run goes on without it."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.broken, self.calls = seed == job_seed(3, 1), 0

    def train(self, hp, samples):
        self.calls += 1
        if self.broken and self.calls == 2:
            raise RuntimeError("one member's bad luck")
        return super().train(hp, samples)


def test_one_failing_member_is_recorded_and_the_run_finishes():
    result = run(OneBroken, RandomSearch(), population=3)
    failed = [e for e in result.lineage if isinstance(e, Train) and e.error]
    assert [(e.member, e.decision, e.error) for e in failed] == [
        (1, 1, "RuntimeError: one member's bad luck")
    ]
    assert failed[0].diverged
    assert result.best.val_loss < 1.0


class EvaluateRaises(ShallowJob):
    def evaluate(self):
        raise OSError("cannot read the validation set")


def test_an_evaluation_that_raises_on_every_member_at_the_start_stops_the_run():
    with pytest.raises(JobFailed, match="before training") as caught:
        run(EvaluateRaises)
    assert isinstance(caught.value.__cause__, OSError)
