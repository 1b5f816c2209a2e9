import io
import math

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from rlsched import Hyperparams, SupervisedJob, TrainingJob, accuracy


def classification_job(seed=0, optimizer="sgd", dropout=0.0, n=512):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 3))
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-2)
    )
    return SupervisedJob(
        model,
        opt,
        TensorDataset(x[:400], y[:400]),
        TensorDataset(x[400:], y[400:]),
        nn.functional.cross_entropy,
        metrics={"accuracy": accuracy},
        seed=seed,
    )


class LossRecorder:
    """Wraps a loss function and records every training loss it computes."""

    def __init__(self, fn):
        self.fn, self.values = fn, []

    def __call__(self, out, y):
        loss = self.fn(out, y)
        if torch.is_grad_enabled():
            self.values.append(loss.item())
        return loss


def test_is_a_training_job():
    assert isinstance(classification_job(), TrainingJob)


def test_trains_exactly_the_samples_asked_with_a_partial_last_step():
    job = classification_job()
    seen = []
    job.model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])) if m.training else None)
    stats = job.train(Hyperparams(0.1, 32), 100)
    assert (stats.samples, stats.steps) == (100, 4)
    assert seen == [32, 32, 32, 4]
    assert job.sampler.position == 100  # nothing carried: the next call starts at example 100


def test_batch_size_changes_with_no_lag():
    job = classification_job()
    seen = []
    job.model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])) if m.training else None)
    job.train(Hyperparams(0.1, 16), 64)
    job.train(Hyperparams(0.1, 64), 128)
    job.train(Hyperparams(0.1, 8), 16)
    assert seen == [16] * 4 + [64] * 2 + [8] * 2


@pytest.mark.parametrize("optimizer, dropout", [("sgd", 0.0), ("adam", 0.3)])
def test_restored_job_continues_bit_identically(optimizer, dropout):
    original = classification_job(seed=1, optimizer=optimizer, dropout=dropout)
    original.train(Hyperparams(0.05, 32), 300)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)  # through a real file round trip
    original.loss_fn = LossRecorder(original.loss_fn)
    schedule = [Hyperparams(0.05, 64), Hyperparams(0.02, 16), Hyperparams(0.1, 128)]
    for hp in schedule:
        original.train(hp, 250)

    copy = classification_job(seed=7, optimizer=optimizer, dropout=dropout)  # other init and order
    buffer.seek(0)
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    copy.loss_fn = LossRecorder(copy.loss_fn)
    for hp in schedule:
        copy.train(hp, 250)
    assert copy.loss_fn.values == original.loss_fn.values  # step for step, exactly
    for a, b in zip(original.model.parameters(), copy.model.parameters()):
        assert torch.equal(a, b)
    assert copy.evaluate() == original.evaluate()


def test_state_dict_is_a_snapshot_not_a_view():
    job = classification_job()
    state = job.state_dict()
    weight = state["model"]["0.weight"].clone()
    job.train(Hyperparams(0.1, 32), 64)
    assert torch.equal(state["model"]["0.weight"], weight)
    other_a, other_b = classification_job(seed=2), classification_job(seed=3)
    other_a.load_state_dict(state)
    other_b.load_state_dict(state)  # two recipients of one state must not share buffers
    other_a.train(Hyperparams(0.1, 32), 64)
    assert torch.equal(other_b.model[0].weight, weight)


def test_new_lr_wins_over_the_restored_optimizer():
    donor = classification_job()
    donor.train(Hyperparams(0.3, 32), 64)
    job = classification_job(seed=4)
    job.load_state_dict(donor.state_dict())
    assert job.optimizer.param_groups[0]["lr"] == 0.3  # restored as saved...
    seen = []
    job.optimizer.register_step_pre_hook(lambda opt, a, k: seen.append(opt.param_groups[0]["lr"]))
    job.train(Hyperparams(0.01, 32), 64)
    assert seen == [0.01, 0.01]  # ...but every step runs at the LR given next


def test_param_groups_keep_their_lr_ratios():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[1].parameters(), "lr": 0.01}]
    )
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    job = SupervisedJob(model, opt, data, data, nn.functional.mse_loss)
    job.train(Hyperparams(0.5, 16), 16)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])


class PairDataset(Dataset):
    """A map-style dataset that is not a TensorDataset: items built on access."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = torch.tensor([math.sin(i), math.cos(i), (i % 7) / 7.0])
        return x, torch.tensor([x.sum().item()])


def test_any_map_style_dataset_regression():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    job = SupervisedJob(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        PairDataset(300),
        PairDataset(50),
        nn.functional.mse_loss,
        seed=0,
    )
    before = job.evaluate()["loss"]
    for _ in range(5):
        stats = job.train(Hyperparams(0.1, 16), 300)
    after = job.evaluate()["loss"]
    assert stats.samples == 300 and after < 0.01 * before


def test_evaluate_is_exact_in_eval_mode_and_without_grad():
    job = classification_job(dropout=0.5)
    job.eval_batch_size = 37  # uneven chunks must still give the exact mean
    x, y = job.splits["val"].tensors
    job.model.eval()
    with torch.no_grad():
        out = job.model(x)
        expected_loss = nn.functional.cross_entropy(out, y).item()
        expected_acc = (out.argmax(1) == y).float().mean().item()
    job.model.train()
    modes, grads = [], []

    def hook(module, inputs, output):
        modes.append(module.training)
        grads.append(output.requires_grad)

    job.model.register_forward_hook(hook)
    result = job.evaluate()
    assert set(result) == {"loss", "accuracy"}
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert result["accuracy"] == pytest.approx(expected_acc, rel=1e-6)
    assert not any(modes) and not any(grads)
    assert job.model.training  # mode restored
    with pytest.raises(ValueError, match="split"):
        job.evaluate("test")


def test_divergence_sets_the_nonfinite_flag():
    job = classification_job()
    stats = job.train(Hyperparams(1e6, 32), 256)
    assert stats.nonfinite
    assert not math.isfinite(job.evaluate()["loss"])


def test_job_rng_is_isolated_from_the_global_rng():
    job = classification_job(dropout=0.5)
    state = torch.get_rng_state()
    job.train(Hyperparams(0.1, 32), 64)
    assert torch.equal(torch.get_rng_state(), state)


def linear_regression_job(n=20000, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w_true = torch.randn(d, 1, generator=g)
    y = x @ w_true + 0.5 * torch.randn(n, 1, generator=g)
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_((w_true + 0.3 * torch.randn(d, 1, generator=g)).T)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    job = SupervisedJob(
        model,
        opt,
        TensorDataset(x, y),
        TensorDataset(x[:100], y[:100]),
        nn.functional.mse_loss,
        seed=seed,
        stat_pairs=300,
    )
    return job, x, y


def test_gradient_statistics_match_the_exact_values():
    """At a fixed point (LR ~ 0), exact |G|^2 and tr(Sigma) follow from per-example gradients."""
    job, x, y = linear_regression_job()
    w = job.model.weight.detach().T
    per_example = 2 * (x @ w - y) * x  # gradient of (x.w - y)^2 for each example
    g_full = per_example.mean(0)
    trace = per_example.var(0, unbiased=False).sum().item()
    b_simple_true = trace / g_full.square().sum().item()
    batch = 16
    stats = job.train(Hyperparams(1e-9, batch), batch * 600)
    assert stats.b_simple == pytest.approx(b_simple_true, rel=0.15)
    expected_norm_sq = g_full.square().sum().item() + trace / batch
    assert stats.grad_norm**2 == pytest.approx(expected_norm_sq, rel=0.15)
    assert 2 < b_simple_true < 1000  # a case where the estimate is informative


def test_update_ratio_of_plain_sgd_is_lr_times_grad_over_weight():
    job, _, _ = linear_regression_job()
    w0 = job.model.weight.detach().clone()
    stats = job.train(Hyperparams(0.01, 32), 32)  # one step: the probed one
    expected = (job.model.weight.detach() - w0).norm() / w0.norm()
    assert stats.update_ratio == pytest.approx(expected.item(), rel=1e-6)
    assert stats.update_ratio == pytest.approx(0.01 * stats.grad_norm / w0.norm().item(), rel=1e-5)
    assert math.isnan(stats.b_simple)  # needs two full steps


def test_loss_mean_and_spread():
    job = classification_job()
    job.loss_fn = LossRecorder(job.loss_fn)
    stats = job.train(Hyperparams(0.1, 32), 320)
    values = torch.tensor(job.loss_fn.values, dtype=torch.float64)
    assert stats.loss_mean == pytest.approx(values.mean().item(), rel=1e-6)
    assert stats.loss_std == pytest.approx(values.std(unbiased=False).item(), rel=1e-6)


def test_bad_arguments():
    job = classification_job()
    with pytest.raises(ValueError, match="samples"):
        job.train(Hyperparams(0.1, 32), 0)
    with pytest.raises(ValueError, match="state.format"):
        job.load_state_dict({"model": {}})
    with pytest.raises(ValueError, match="reserved"):
        SupervisedJob(
            job.model,
            job.optimizer,
            job.train_data,
            job.splits["val"],
            job.loss_fn,
            metrics={"loss": accuracy},
        )
