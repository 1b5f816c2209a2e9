import math

import numpy as np
import pytest
from quadratic import NoisyQuadratic

import rlsched
from rlsched import Hyperparams, HyperparamSpace, RunDir
from rlsched.agents import Fixed, GridSearch, ProbeCosine, Schedule
from rlsched.core.prior import prior_lr
from rlsched.core.probe import lr_range_test, suggest
from rlsched.envs import get_task

LRS = [1e-4 * 4**k for k in range(8)]


def test_suggest_takes_the_smoothed_minimum_before_the_blow_up():
    curve = [2.0, 1.9, 1.5, 1.0, 0.8, 0.9, 3.0, math.nan]
    assert suggest(LRS, curve, divisor=4.0) == LRS[4] / 4
    rising = [2.0, 1.0, 0.5, 2.5, 0.1, 0.1, 0.1, 0.1]  # cut at 2.5 > 4 x 0.5: the later dip never counts
    assert suggest(LRS, rising, divisor=1.0) == LRS[2]
    assert suggest(LRS, [math.nan] * 8, divisor=2.0) == LRS[0] / 2  # diverged at once: the lowest LR


def test_the_probe_leaves_the_job_exactly_as_it_was():
    task = get_task("synthetic")
    probed, untouched = task.build(3), task.build(3)
    result = lr_range_test(probed, Hyperparams(0.05, 32), 2000, task.space)
    assert (
        result.samples == 2000
        and len(result.losses) == 12
        and task.space.contains(Hyperparams(result.peak_lr, 32))
    )
    hp = Hyperparams(0.05, 32)
    assert probed.train(hp, 1000) == untouched.train(hp, 1000)  # same data order, weights, RNG
    assert probed.evaluate() == untouched.evaluate()


def test_probe_cosine_finds_the_lr_scale_from_a_start_20x_too_small():
    space = HyperparamSpace(lr=(1e-3, 4.0), batch_size=(8,), scale_rule="none")
    kwargs = dict(space=space, budget_samples=8 * 400, decisions=16, initial=Hyperparams(0.05, 8))
    probe = rlsched.run(NoisyQuadratic, ProbeCosine(), seed=0, **kwargs)
    constant = rlsched.run(NoisyQuadratic, Fixed(), seed=0, **kwargs)
    cosine = rlsched.run(NoisyQuadratic, Fixed(Schedule("cosine")), seed=0, **kwargs)
    grid = [float(x) for x in np.geomspace(0.05, 1.5, 8)]
    best_cosine = rlsched.run(
        NoisyQuadratic, GridSearch(grid, [8], schedule="cosine"), population=8, seed=0, **kwargs
    )
    peak = probe.best.trajectory[1][1].lr  # the second interval runs near the peak
    assert peak > 5 * kwargs["initial"].lr  # it moved to the right scale
    assert probe.total_samples == constant.total_samples == 8 * 400  # the probe is paid for
    assert probe.best.val_loss < 0.5 * min(constant.best.val_loss, cosine.best.val_loss)
    assert probe.best.val_loss < np.median([m.val_loss for m in best_cosine.members])  # beats most peaks


def test_prior_follows_the_scale_rule_and_the_cosine():
    space = HyperparamSpace(lr=(1e-4, 1.0), batch_size=(32, 64, 128), scale_rule="linear")
    base = Hyperparams(0.1, 64)
    assert prior_lr(0.2, base, 64, space, 0, 10) == pytest.approx(0.1)  # warmup: half the peak
    assert prior_lr(0.2, base, 128, space, 1, 10) == pytest.approx(
        0.4 * 0.5 * (1 + math.cos(math.pi * 0.5 / 9))
    )
    assert prior_lr(0.2, base, 64, space, 9, 10) < 0.2 * 0.02  # the end of the cosine


class Kill(Exception):
    pass


def test_a_probing_run_resumes_to_the_unbroken_result(tmp_path, monkeypatch):
    kwargs = dict(population=2, seed=1, decisions=5, budget_samples=10_000)
    unbroken = rlsched.run("synthetic", ProbeCosine(batch="noise"), logdir=tmp_path, name="a", **kwargs)
    decide = ProbeCosine.decide

    def dies_at_3(self, view, rng):
        if view.decision == 3:
            raise Kill
        return decide(self, view, rng)

    monkeypatch.setattr(ProbeCosine, "decide", dies_at_3)
    with pytest.raises(Kill):
        rlsched.run("synthetic", ProbeCosine(batch="noise"), logdir=tmp_path, name="b", **kwargs)
    monkeypatch.setattr(ProbeCosine, "decide", decide)
    (checkpoint,) = RunDir(tmp_path / "b").checkpoints()
    assert checkpoint.name == "checkpoint-00003"
    resumed = rlsched.resume(tmp_path / "b")  # the agent is rebuilt from run.json
    assert resumed.lineage == unbroken.lineage
    assert [m.metrics for m in resumed.members] == [m.metrics for m in unbroken.members]
    assert RunDir(tmp_path / "b").spec().probe_samples == 500
