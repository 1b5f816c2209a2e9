import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlsched import Hyperparams, HyperparamSpace


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"lr": (1.0, 0.1)}, "lr"),
        ({"lr": (0.1, 0.1)}, "lr"),
        ({"lr": (0.0, 1.0)}, "lr"),
        ({"lr": (-1.0, 1.0)}, "lr"),
        ({"lr": (1e-3, math.inf)}, "lr"),
        ({"lr": (1e-3,)}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"batch_size": ()}, "batch_size"),
        ({"batch_size": (64, 32)}, "batch_size"),
        ({"batch_size": (32, 32, 64)}, "batch_size"),
        ({"batch_size": (0, 32)}, "batch_size"),
        ({"batch_size": (16, 32.5)}, "batch_size"),
        ({"scale_rule": "cubic"}, "scale_rule"),
    ],
)
def test_invalid_space_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}: expected"):
        HyperparamSpace(**kwargs)


def test_invalid_scale_rule_lists_allowed_values():
    with pytest.raises(ValueError, match="sqrt, linear, none"):
        HyperparamSpace(scale_rule="cubic")


@pytest.mark.parametrize(
    "lr, batch_size", [(0.0, 32), (-1.0, 32), (math.nan, 32), (0.1, 0), (0.1, 1.5), (True, 32)]
)
def test_invalid_hyperparams(lr, batch_size):
    with pytest.raises(ValueError):
        Hyperparams(lr, batch_size)


def test_hyperparams_are_immutable_and_normalised():
    hp = Hyperparams(1, np.int64(64))
    assert hp.lr == 1.0 and type(hp.lr) is float and type(hp.batch_size) is int
    with pytest.raises(AttributeError):
        hp.lr = 0.5


@pytest.mark.parametrize("rule, factor", [("sqrt", math.sqrt(2)), ("linear", 2.0), ("none", 1.0)])
def test_batch_step_rescales_lr_by_rule_before_the_correction(rule, factor):
    space = HyperparamSpace(lr=(1e-4, 10.0), batch_size=(32, 64, 128), scale_rule=rule)
    up = space.move(Hyperparams(0.1, 64), lr_factor=0.5, batch_step=1)
    assert up.batch_size == 128 and up.lr == pytest.approx(0.1 * factor * 0.5)
    down = space.move(Hyperparams(0.1, 64), batch_step=-1)
    assert down.batch_size == 32 and down.lr == pytest.approx(0.1 / factor)


def test_moves_stop_at_ladder_ends_and_lr_bounds():
    space = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(32, 64), scale_rule="linear")
    top = space.move(Hyperparams(0.5, 64), lr_factor=1.0, batch_step=1)
    assert top == Hyperparams(0.5, 64)  # no rung above: no rescale either
    assert space.move(Hyperparams(0.5, 64), lr_factor=4.0).lr == 1.0
    assert space.move(Hyperparams(0.002, 32), lr_factor=0.1).lr == 1e-3


def test_check_names_field_and_allowed_values():
    space = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(32, 64))
    with pytest.raises(ValueError, match=r"initial.batch_size: 48 is not on the ladder \[32, 64\]"):
        space.check(Hyperparams(0.1, 48), "initial")
    with pytest.raises(ValueError, match=r"initial.lr: 2.0 is outside the bounds \[0.001, 1.0\]"):
        space.check(Hyperparams(2.0, 32), "initial")


@given(
    lr=st.floats(1e-6, 1e3),
    rung=st.integers(0, 4),
    factor=st.sampled_from([0.5, 0.8, 1.0, 1.25, 2.0, 100.0, 1e-4]),
    step=st.integers(-3, 3),
    rule=st.sampled_from(["sqrt", "linear", "none"]),
)
def test_move_always_stays_in_space(lr, rung, factor, step, rule):
    space = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(16, 32, 64, 128, 256), scale_rule=rule)
    moved = space.move(Hyperparams(lr, space.batch_size[rung]), lr_factor=factor, batch_step=step)
    assert space.contains(moved)
    assert moved.batch_size == space.batch_size[min(max(rung + step, 0), 4)]


def test_sample_is_log_uniform_within_bounds():
    space = HyperparamSpace(lr=(1e-4, 1.0), batch_size=(16, 32, 64))
    rng = np.random.default_rng(0)
    draws = [space.sample(rng) for _ in range(4000)]
    logs = np.log10([d.lr for d in draws])
    assert all(space.contains(d) for d in draws)
    assert np.median(logs) == pytest.approx(-2.0, abs=0.1)  # geometric middle of [1e-4, 1]
    counts = np.bincount([space.batch_size.index(d.batch_size) for d in draws])
    assert counts.min() > 1200
    assert space.sample(np.random.default_rng(5)) == space.sample(np.random.default_rng(5))
