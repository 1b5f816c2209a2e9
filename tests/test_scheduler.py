"""AdaptiveScheduler in a plain PyTorch loop: decisions, reports, checkpoints and misuse."""

import copy
import io
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rlsched import AdaptiveScheduler, DynamicBatchSampler, HyperparamSpace
from rlsched.agents.controller import Controller
from rlsched.core.features import observation

SPACE = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(16, 32, 64), scale_rule="linear")
torch.manual_seed(0)
DEFAULT = Controller(version=1)  # version 1, untrained: no probe
torch.manual_seed(1)
PROBING = Controller()  # version 2, untrained: probes first, then acts near the prior


def make(controller=DEFAULT, *, budget=1280, decisions=4, num=200, deterministic=True, **kwargs):
    """A small classification loop; 200 examples at batch 32 leave a last batch of 8 per epoch."""
    torch.manual_seed(0)
    x, y = torch.randn(num + 64, 8), torch.randint(0, 3, (num + 64,))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sampler = DynamicBatchSampler(num, batch_size=32, seed=0)
    loader = DataLoader(TensorDataset(x[:num], y[:num]), batch_sampler=sampler)
    sched = AdaptiveScheduler(
        optimizer,
        sampler,
        controller=controller,
        space=SPACE,
        budget_samples=budget,
        decisions=decisions,
        deterministic=deterministic,
        model=model,
        **kwargs,
    )

    def evaluate():
        with torch.no_grad():
            return nn.functional.cross_entropy(model(x[num:]), y[num:]).item()

    return SimpleNamespace(
        model=model, optimizer=optimizer, sampler=sampler, loader=loader, sched=sched, val=evaluate
    )


def train_step(run, xb, yb, loss=None):
    out = nn.functional.cross_entropy(run.model(xb), yb)
    out.backward()
    run.optimizer.step()
    run.sched.step(out if loss is None else loss)
    run.optimizer.zero_grad()


def natural_loop(run, report=True, losses=None):
    """The README's loop; returns the (lr, batch size) of every step and the val losses reported."""
    trace, reported = [], []
    while not run.sched.done:
        for xb, yb in run.loader:
            trace.append((run.sched.get_last_lr()[0], len(xb)))
            train_step(run, xb, yb, losses.get(len(trace) - 1) if losses else None)
            if report and run.sched.decision_due:
                reported.append(run.val())
                run.sched.report(val_loss=reported[-1])
            if run.sched.done:
                break
    return trace, reported


def test_the_natural_loop_passes_each_val_loss_to_the_decision():
    spy, seen = copy.copy(DEFAULT), []
    spy.act = lambda obs, **kw: seen.append(obs) or Controller.act(spy, obs, **kw)
    run = make(spy)
    trace, reported = natural_loop(run)
    history = run.sched.history
    assert len(reported) == 4 and [r.val_loss for r in history[1:]] == reported
    for d in range(1, 4):  # decision d acted on the observation made with the val loss just reported
        obs = observation(history[: d + 1], initial=run.sched.initial, budget_samples=1280)
        assert any(np.array_equal(obs, s) for s in seen)
    assert np.array_equal(seen[-1], obs)  # the last word: no step used the train-loss decision
    waited = make(wait_for_report=True)  # decides only once report comes
    assert natural_loop(waited) == (trace, reported)
    assert [r.to_dict() for r in waited.sched.history] == [r.to_dict() for r in history]
    silent = make()
    natural_loop(silent, report=False)  # without reports: the train loss
    assert [r.val_loss for r in silent.sched.history[1:]] == [
        r.stats.loss_mean for r in silent.sched.history[1:]
    ]


def test_decision_due_stays_true_until_the_next_step_and_get_last_lr():
    run = make()
    sizes = []
    while not run.sched.decision_due:
        for xb, yb in run.loader:
            sizes.append(len(xb))
            train_step(run, xb, yb)
            if run.sched.decision_due:
                break
    assert sum(sizes) >= run.sched.intervals[0] > sum(sizes[:-1])
    assert run.sched.decision_due and len(run.sched.history) == 2  # decided on the train loss, revisable
    assert run.sched.get_last_lr() == [g["lr"] for g in run.optimizer.param_groups] == [run.sched.hparams.lr]
    xb, yb = next(iter(run.loader))
    train_step(run, xb, yb)
    assert (
        not run.sched.decision_due and run.sched.history[1].val_loss == run.sched.history[1].stats.loss_mean
    )


def test_a_torch_lr_scheduler_on_the_same_optimizer_warns_once():
    run = make()
    other = torch.optim.lr_scheduler.StepLR(run.optimizer, step_size=1, gamma=0.9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            for xb, yb in run.loader:
                train_step(run, xb, yb)
                other.step()
    messages = [str(w.message) for w in caught if "lr_scheduler" in str(w.message)]
    assert len(messages) == 1 and "remove the other scheduler" in messages[0]


def roundtrip(run, **kwargs):
    """Save model, optimizer and scheduler to bytes, and load them into fresh objects."""
    buffer = io.BytesIO()
    torch.save(
        {"model": run.model.state_dict(), "opt": run.optimizer.state_dict(), "sched": run.sched.state_dict()},
        buffer,
    )
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = make(**kwargs)
    fresh.model.load_state_dict(state["model"])
    fresh.optimizer.load_state_dict(state["opt"])
    fresh.sched.load_state_dict(state["sched"])
    return fresh


def loop_with_restart(stop, when, **kwargs):
    """The natural loop, saved and restored into fresh objects after step ``stop`` (before or after
    ``report``); returns the (lr, batch size) of every step, the history, and the steps a decision
    was due at."""
    run = make(**kwargs)
    batches, trace, due = iter(run.loader), [], []
    while not run.sched.done:
        batch = next(batches, None)
        if batch is None:
            batches = iter(run.loader)
            continue
        k = len(trace)
        trace.append((run.sched.get_last_lr()[0], len(batch[0])))
        out = nn.functional.cross_entropy(run.model(batch[0]), batch[1])
        out.backward()
        run.optimizer.step()
        run.sched.step(out)
        run.optimizer.zero_grad()
        if k == stop and when == "before report":
            run = roundtrip(run, **kwargs)
            batches = iter(run.loader)
        if run.sched.decision_due:
            due.append(k)
            run.sched.report(val_loss=run.val())
        if k == stop and when == "after report":
            run = roundtrip(run, **kwargs)
            batches = iter(run.loader)
    return trace, repr([r.to_dict() for r in run.sched.history]), due  # repr: nan equals nan


@pytest.mark.parametrize("controller", [DEFAULT, PROBING], ids=["version-1", "probing"])
def test_a_state_dict_round_trip_after_any_step_continues_the_same_schedule(controller):
    kwargs = {"controller": controller, "budget": 640, "deterministic": controller is DEFAULT}
    expected = loop_with_restart(-1, "", **kwargs)
    trace, _, due = expected
    assert len(set(trace)) >= 4 and len(due) == 4  # the schedule moves
    if controller is PROBING:
        assert make(**kwargs).sched.sampler.batch_size == 16  # the probe's steps are covered too
    for stop in range(len(trace)):
        for when in ("after report", "before report") if stop in due else ("after report",):
            assert loop_with_restart(stop, when, **kwargs) == expected, (stop, when)


def test_param_groups_must_all_exist_and_the_first_needs_an_lr():
    run = make()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['lr'\]: expected > 0"):
        AdaptiveScheduler(
            torch.optim.SGD(run.model.parameters(), lr=0.0),
            run.sampler,
            controller=DEFAULT,
            space=SPACE,
            budget_samples=1280,
            decisions=4,
        )
    run.optimizer.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "lr": 0.1})
    xb, yb = next(iter(run.loader))
    with pytest.raises(
        ValueError, match=r"param_groups: 2 groups now, 1 when the AdaptiveScheduler.*add_param_group"
    ):
        train_step(run, xb, yb)


def test_wait_for_report_without_a_report_warns_once_and_keeps_the_hyperparameters():
    run = make(wait_for_report=True)
    start = run.sched.get_last_lr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        natural_loop(run, report=False)
    assert [str(w.message) for w in caught if "wait_for_report" in str(w.message)] != []
    assert len([w for w in caught if "wait_for_report" in str(w.message)]) == 1
    assert run.sched.get_last_lr() == start and len(run.sched.history) == 0 and run.sched.decision_due
    run.sched.report(val_loss=1.0)  # late, but taken: the whole budget was one interval
    assert len(run.sched.history) == 2 and run.sched.history[1].stats.samples == run.sched.samples


def test_a_non_finite_loss_is_left_out_of_the_statistics_with_one_warning():
    clean, broken = make(), make()
    natural_loop(clean, report=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        natural_loop(broken, report=False, losses={3: math.nan, 5: math.inf, 14: math.nan})
    assert len([w for w in caught if "non-finite" in str(w.message)]) == 1
    first = broken.sched.history[1].stats
    assert not first.nonfinite and math.isfinite(first.loss_mean)
    assert first.samples == clean.sched.history[1].stats.samples  # the skipped steps' examples still count
    assert all(not r.diverged for r in broken.sched.history)
    # the same decisions as without the bad losses, not a jump to some extreme LR or batch size
    assert [r.hparams for r in broken.sched.history] == [r.hparams for r in clean.sched.history]


def test_every_interval_non_finite_marks_divergence():
    run = make()
    natural_loop(run, report=False, losses={k: math.nan for k in range(200)})
    assert run.sched.history[1].diverged and run.sched.history[1].stats.nonfinite


def test_mixed_precision_steps_that_grad_scaler_skips_are_not_divergence():
    """fp16 autocast with a GradScaler that overflows every few steps (its scale doubles after each
    good one): the skipped steps' infinite gradients stay out of the statistics."""
    run = make(budget=2560)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20, growth_interval=1)
    skipped = []
    while not run.sched.done:
        for xb, yb in run.loader:
            with torch.autocast("cpu", dtype=torch.float16):
                loss = nn.functional.cross_entropy(run.model(xb), yb)
            scaler.scale(loss).backward()
            scale = scaler.get_scale()
            scaler.step(run.optimizer)  # unscales the gradients first
            scaler.update()
            skipped.append(scaler.get_scale() < scale)
            run.sched.step(loss)
            run.optimizer.zero_grad()
            if run.sched.done:
                break
    assert sum(skipped) > len(skipped) / 4  # many steps skipped, measured ones among them
    for record in run.sched.history[1:]:
        assert not record.diverged and not record.stats.nonfinite
        assert 0 < record.stats.grad_norm < 100  # unscaled gradients: no factor of 2**20 in them


def test_the_sample_count_follows_the_real_batches_across_epoch_ends():
    run = make()
    trace, _ = natural_loop(run, report=False)
    assert {b for _, b in trace} - set(SPACE.batch_size)  # smaller last batches happened
    assert run.sched.samples == sum(b for _, b in trace) == 200 * run.sampler.epoch + run.sampler.position


@pytest.mark.parametrize("bad", [0, -3, 2.5, 32.0, True, "32", 10**9])
def test_bad_step_batch_sizes_name_the_field(bad):
    run = make()
    xb, yb = next(iter(run.loader))
    loss = nn.functional.cross_entropy(run.model(xb), yb)
    with pytest.raises(ValueError, match=r"step\(batch_size\): expected an integer from 1 to 320 "):
        run.sched.step(loss, batch_size=bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, 32.0, True, "32"])
def test_bad_sampler_batch_sizes_name_the_field(bad):
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        DynamicBatchSampler(100, bad)
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        make().sampler.batch_size = bad


def test_other_misuse_gets_one_clear_line():
    run = make()
    with pytest.raises(
        ValueError, match=r"step\(batch_size\): not given, and the sampler has yielded no batch"
    ):
        run.sched.step(1.0)
    xb, yb = next(iter(run.loader))
    per_example = nn.functional.cross_entropy(run.model(xb), yb, reduction="none")
    with pytest.raises(
        ValueError, match=r"step\(loss\): expected the step's scalar loss, got a tensor of shape \(32,\)"
    ):
        run.sched.step(per_example)
    with pytest.raises(ValueError, match=r"report\(val_loss\): expected a number"):
        run.sched.report(val_loss="low")
    with pytest.raises(ValueError, match="decisions: the state is for 4"):
        make(decisions=5).sched.load_state_dict(run.sched.state_dict())
    with pytest.raises(
        ValueError, match="space.batch_size: the smallest rung 16 is below the sampler's num_replicas"
    ):
        AdaptiveScheduler(
            run.optimizer,
            DynamicBatchSampler(200, 32, num_replicas=32, rank=0),
            controller=DEFAULT,
            space=SPACE,
            budget_samples=1280,
            decisions=4,
        )
