import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from quadratic import NoisyQuadratic

import rlsched
from rlsched import Decision, Hyperparams, HyperparamSpace, RunDir
from rlsched.agents import PB2, PBT, exploit, explore
from rlsched.envs import get_task
from rlsched.population.lineage import Clone, Train, trajectory_from_lineage

SPACE = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(16, 32, 64, 128, 256), scale_rule="linear")


def test_exploit_bottom_quantile_copies_top_quantile():
    scores = [-0.5, -0.9, -0.1, -0.7, -0.3, -0.8, -0.2, -0.6]  # best: 2, 6; worst: 1, 5
    pairs = exploit(scores, 0.25, np.random.default_rng(0))
    assert set(pairs) == {1, 5} and set(pairs.values()) <= {2, 6}
    again = exploit(scores, 0.25, np.random.default_rng(0))
    assert pairs == again


def test_every_diverged_member_is_replaced_by_a_finite_one():
    scores = [-math.inf, -0.2, -math.inf, -0.3, -math.inf, -0.1, -0.4, -0.5]
    pairs = exploit(scores, 0.25, np.random.default_rng(0))
    assert {0, 2, 4} <= set(pairs) and all(math.isfinite(scores[d]) for d in pairs.values())
    assert exploit([-math.inf] * 4, 0.25, np.random.default_rng(0)) == {}


@given(
    lr=st.floats(1e-3, 1.0),
    rung=st.integers(0, 4),
    seed=st.integers(0, 2**32 - 1),
    resample=st.sampled_from([0.0, 0.25, 1.0]),
    scale_lr=st.booleans(),
)
def test_explore_always_stays_in_bounds_and_on_the_ladder(lr, rung, seed, resample, scale_lr):
    hp = Hyperparams(lr, SPACE.batch_size[rung])
    rng = np.random.default_rng(seed)
    new, changes = explore(hp, SPACE, rng, resample_probability=resample, scale_lr=scale_lr)
    assert SPACE.contains(new) and changes
    if resample == 0.0:
        assert abs(SPACE.rung(new.batch_size) - rung) <= 1
        scaled = SPACE.clip_lr(SPACE.scale_lr(lr, hp.batch_size, new.batch_size)) if scale_lr else lr
        assert any(new.lr == pytest.approx(SPACE.clip_lr(scaled * f)) for f in (0.8, 1.25))


def synthetic_run(agent, *, population, budget_samples, decisions=2):
    """``rlsched.run`` on the synthetic task, 2 decisions, no run directory; also the jobs it built."""
    task = get_task("synthetic")
    jobs = []

    def factory(seed):
        jobs.append(task.build(seed))
        return jobs[-1]

    result = rlsched.run(
        factory,
        agent,
        space=task.space,
        population=population,
        budget_samples=budget_samples,
        decisions=decisions,
        initial=task.initial,
    )
    return result, jobs


class CloneOneFromZero:
    """Member 1 copies member 0 and both keep member 0's hyperparameters."""

    def initial(self, population, space, initial, decisions, rng):
        return [initial, Hyperparams(space.lr[1], space.batch_size[0])]

    def decide(self, view, rng):
        hp = view.members[0].hparams
        return [Decision(hp), Decision(hp, clone_from=0, reason="test")]

    def config(self):
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_clone_copies_weights_optimizer_data_order_and_rng_exactly():
    first, _ = synthetic_run(CloneOneFromZero(), population=2, budget_samples=2000, decisions=1)
    assert first.members[0].val_loss != first.members[1].val_loss  # the two differ before the copy
    result, (a, b) = synthetic_run(CloneOneFromZero(), population=2, budget_samples=4000)
    assert result.members[0].metrics == result.members[1].metrics  # after it they train identically
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert p.data_ptr() != q.data_ptr() and np.array_equal(p.detach().numpy(), q.detach().numpy())
    for x, y in zip(a.optimizer.state.values(), b.optimizer.state.values()):
        assert all(v.data_ptr() != y[k].data_ptr() for k, v in x.items() if v.dim())
    assert result.members[1].trajectory == result.members[0].trajectory  # the past is inherited
    assert sum(isinstance(e, Clone) and e.member == 1 for e in result.lineage) == 1
    assert [m.origin for m in result.members] == [0, 0]


def test_seeded_runs_are_reproducible():
    def go(seed):
        r = rlsched.run("synthetic", PBT(), population=4, seed=seed)
        return r.lineage, [m.metrics for m in r.members]

    assert go(3) == go(3)
    assert go(3) != go(4)


@pytest.mark.parametrize("agent", [PBT(), PB2(candidates=64)])
def test_bounds_hold_and_lineage_schedule_matches(agent, tmp_path):
    result = rlsched.run(
        "synthetic", agent, population=6, seed=1, logdir=tmp_path, decisions=6, budget_samples=12000
    )
    space = get_task("synthetic").space
    events = RunDir(tmp_path / "run").lineage()
    assert events == result.lineage
    assert any(isinstance(e, Clone) for e in events)
    for e in events:
        for key in ("hparams", "new"):
            if hasattr(e, key):
                assert space.contains(getattr(e, key))
    for m in result.members:
        assert trajectory_from_lineage(events, m.member_id) == m.trajectory
    samples = [e.samples for e in events if isinstance(e, Train) and e.member == result.best.member_id]
    assert samples == sorted(samples)


def test_pbt_beats_every_constant_lr_on_the_noisy_quadratic():
    space = HyperparamSpace(lr=(1e-2, 2.0), batch_size=(8,), scale_rule="none")
    kwargs = dict(space=space, budget_samples=8 * 400, decisions=16, initial=Hyperparams(1.0, 8))
    grid = [float(x) for x in np.geomspace(0.02, 1.5, 8)]
    constant = rlsched.run(
        NoisyQuadratic, rlsched.agents.GridSearch(grid, [8]), population=8, seed=0, **kwargs
    )
    pbt = rlsched.run(
        NoisyQuadratic, PBT(quantile_fraction=0.25, resample_probability=0.0), population=8, seed=0, **kwargs
    )
    assert pbt.total_samples == constant.total_samples  # equal compute
    best_constant = min(m.val_loss for m in constant.members)
    assert pbt.best.val_loss < best_constant
    lrs = [hp.lr for _, hp in pbt.best.trajectory]
    assert lrs[-1] < lrs[0]  # and the schedule it found decays


class CloneChain:
    """In the same generation member 1 copies member 0 and member 2 copies member 1."""

    def initial(self, population, space, initial, decisions, rng):
        return [initial] * population

    def decide(self, view, rng):
        hp = view.members[0].hparams
        return [Decision(hp), Decision(hp, clone_from=0), Decision(hp, clone_from=1)]

    def config(self):
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Keep(CloneChain):
    """Every member trains on at member 0's hyperparameters; nobody copies."""

    def decide(self, view, rng):
        return [Decision(view.members[0].hparams) for _ in view.members]


def test_a_clone_of_a_member_cloned_in_the_same_generation_takes_its_old_weights():
    chain, _ = synthetic_run(CloneChain(), population=3, budget_samples=2000)
    keep, _ = synthetic_run(Keep(), population=3, budget_samples=2000)
    assert [m.origin for m in chain.members] == [0, 0, 1]  # 1 <- 0 and 2 <- 1 in one generation
    assert chain.members[1].metrics == chain.members[0].metrics  # same weights, same hp
    assert chain.members[2].metrics == keep.members[1].metrics  # member 1's weights from before its copy
    assert chain.members[2].metrics != chain.members[1].metrics
