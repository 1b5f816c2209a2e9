import math

import numpy as np
import pytest

import rlsched
from rlsched import Hyperparams
from rlsched.agents import Fixed, GridSearch, RandomSearch, Schedule, factor
from rlsched.agents.schedules import cosine, onecycle, step, wsd


def test_closed_forms():
    assert cosine(0.0) == 1.0 and cosine(0.5) == pytest.approx(0.5) and cosine(1.0) == pytest.approx(0.0)
    assert cosine(0.05, warmup=0.1) == pytest.approx(0.5)
    assert cosine(1.0, final=0.1) == pytest.approx(0.1)
    assert [step(p) for p in (0.2, 0.5, 0.8)] == pytest.approx([1.0, 0.1, 0.01])
    assert onecycle(0.0) == pytest.approx(1 / 25) and onecycle(0.3) == pytest.approx(1.0)
    assert onecycle(1.0) == pytest.approx(1e-4)
    assert [wsd(p) for p in (0.05, 0.5, 0.9, 1.0)] == pytest.approx([0.5, 1.0, 0.5, 0.0])
    assert factor("constant", 0.7) == 1.0
    with pytest.raises(ValueError, match="schedule: expected one of constant, cosine"):
        Schedule("linear")


def test_fixed_agent_follows_the_schedule_at_interval_midpoints():
    result = rlsched.run("synthetic", Fixed(Schedule("cosine", warmup=0.2)), seed=0, decisions=5)
    lrs = [hp.lr for _, hp in result.best.trajectory]
    expected = [max(0.05 * cosine((d + 0.5) / 5, warmup=0.2), 1e-3) for d in range(5)]
    assert lrs == pytest.approx(expected)
    assert [s for s, _ in result.best.trajectory] == [0, 4000, 8000, 12000, 16000]


def test_grid_search_runs_every_point_and_checks_population():
    agent = GridSearch(lr=[0.01, 0.1], batch_size=[16, 64])
    result = rlsched.run("synthetic", agent, population=4, seed=0)
    starts = sorted((m.trajectory[0][1].lr, m.trajectory[0][1].batch_size) for m in result.members)
    assert starts == [(0.01, 16), (0.01, 64), (0.1, 16), (0.1, 64)]
    assert result.best.val_loss == min(m.val_loss for m in result.members)
    with pytest.raises(ValueError, match="population: the grid has 4 points"):
        rlsched.run("synthetic", agent, population=3)


def test_random_search_is_seeded_and_in_bounds():
    space = rlsched.envs.get_task("synthetic").space
    a = RandomSearch().initial(8, space, Hyperparams(0.05, 32), 5, np.random.default_rng(1))
    b = RandomSearch().initial(8, space, Hyperparams(0.05, 32), 5, np.random.default_rng(1))
    assert a == b and all(space.contains(h) for h in a)
    assert len({h.lr for h in a}) == 8 and math.log10(max(h.lr for h in a) / min(h.lr for h in a)) > 1
