import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rlsched
from rlsched import Decision, Hyperparams, HyperparamSpace
from rlsched.agents import PB2, PBT, exploit, explore
from rlsched.envs import get_task
from rlsched.runner import Runner

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


def synthetic_runner(agent, *, population, budget_samples):
    """An in-process Runner on the synthetic task, 3 decisions, no run directory."""
    task = get_task("synthetic")
    return Runner(
        task.build,
        agent,
        space=task.space,
        population=population,
        budget_samples=budget_samples,
        decisions=3,
        initial=task.initial,
        seed=0,
        run_dir=None,
    )


class CloneOneFromZero:
    """Member 1 copies member 0 and both keep member 0's hyperparameters."""

    def initial(self, population, space, initial, decisions, rng):
        return [initial, Hyperparams(space.lr[1], space.batch_size[0])]

    def decide(self, view, rng):
        hp = view.members[0].hparams
        return [Decision(hp), Decision(hp, clone_from=0, reason="test")]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_clone_copies_weights_optimizer_data_order_and_rng_exactly():
    runner = synthetic_runner(CloneOneFromZero(), population=2, budget_samples=6000)
    state = runner.start()
    runner.step(state)
    assert state.members[0].last.val_loss != state.members[1].last.val_loss
    runner.step(state)  # member 1 copies member 0, then both train identically
    a, b = state.members
    assert a.last.val_loss == b.last.val_loss and a.last.stats == b.last.stats
    for p, q in zip(a.job.model.parameters(), b.job.model.parameters()):
        assert p.data_ptr() != q.data_ptr() and np.array_equal(p.detach().numpy(), q.detach().numpy())
    assert b.history[:2] == a.history[:2]  # the past is inherited: samples never go back
    assert [e["event"] for e in state.lineage if e["member"] == 1].count("clone") == 1


def test_seeded_runs_are_reproducible():
    def go(seed):
        r = rlsched.run("synthetic", PBT(), population=4, seed=seed)
        return r.lineage, [m.metrics for m in r.members]

    assert go(3) == go(3)
    assert go(3) != go(4)


@pytest.mark.parametrize("agent", [PBT(), PB2(candidates=64)])
def test_bounds_hold_and_lineage_schedule_matches(agent, tmp_path):
    from rlsched.runner import read_lineage, schedule_from_lineage

    result = rlsched.run(
        "synthetic", agent, population=6, seed=1, logdir=tmp_path, decisions=6, budget_samples=12000
    )
    space = get_task("synthetic").space
    events = read_lineage(tmp_path / "run")
    assert events == result.lineage
    assert any(e["event"] == "clone" for e in events)
    for e in events:
        for key in ("hparams", "new"):
            if key in e:
                assert space.contains(Hyperparams(**e[key]))
    for m in result.members:
        assert schedule_from_lineage(events, m.member_id) == m.schedule
    samples = [e["samples"] for e in events if e["event"] == "train" and e["member"] == result.best.member_id]
    assert samples == sorted(samples)


class NoisyQuadratic:
    """SGD on 0.5 * sum(h_i w_i^2) with minibatch gradient noise; the val loss is the exact loss.

    A constant LR either converges slowly (small) or stalls at a noise floor (large);
    a decaying LR does both, so the best schedule is known to decay."""

    H = np.logspace(-2, 0, 20)

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.w = np.ones(20) * 3.0

    def train(self, hp, samples):
        steps = samples // hp.batch_size
        for _ in range(steps):
            grad = self.H * self.w + self.rng.normal(size=20) * np.sqrt(self.H) * 2.0 / np.sqrt(hp.batch_size)
            self.w = self.w - hp.lr * grad
        loss = self.evaluate()["loss"]
        return rlsched.TrainStats(samples, steps, loss, 0.0, 0.0, math.nan, 0.0, not math.isfinite(loss))

    def evaluate(self):
        return {"loss": float(0.5 * np.sum(self.H * self.w**2))}

    def state_dict(self):
        return {"w": self.w.copy(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.w = state["w"].copy()
        self.rng.bit_generator.state = state["rng"]


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
    lrs = [hp.lr for _, hp in pbt.best.schedule]
    assert lrs[-1] < lrs[0]  # and the schedule it found decays


class CloneChain:
    """In the same generation member 1 copies member 0 and member 2 copies member 1."""

    def initial(self, population, space, initial, decisions, rng):
        return [initial] * population

    def decide(self, view, rng):
        hp = view.members[0].hparams
        return [Decision(hp), Decision(hp, clone_from=0), Decision(hp, clone_from=1)]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_a_clone_of_a_member_cloned_in_the_same_generation_takes_its_old_weights():
    runner = synthetic_runner(CloneChain(), population=3, budget_samples=3000)
    state = runner.start()
    runner.step(state)
    before = [m.last for m in state.members]
    runner.step(state)  # 1 <- 0 and 2 <- 1, from the snapshots taken before anyone changed
    assert state.origins == [0, 0, 1]
    assert state.members[1].history[-2] == before[0] and state.members[2].history[-2] == before[1]
    assert state.members[0].last.val_loss == state.members[1].last.val_loss  # same weights, same hp
