"""A plain PyTorch training loop, adapted by the shipped controller with about ten added lines.

Trains an MLP on MNIST-1D twice from the same initialisation: once at the starting LR and batch
size throughout, once with rlsched.AdaptiveScheduler, and prints both validation losses.

    python experiments/wrap_your_loop.py
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import rlsched
from rlsched.envs.tasks import mnist1d_data

BUDGET, DECISIONS = 192_000, 10


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(x), y).item()
    model.train()
    return loss


def train(adaptive: bool) -> float:
    data = mnist1d_data()
    train_set = TensorDataset(data["x_train"], data["y_train"])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    sampler = rlsched.DynamicBatchSampler(len(train_set), batch_size=128, seed=0)  # + rlsched
    loader = DataLoader(train_set, batch_sampler=sampler)  # the loader is built on it
    space = rlsched.HyperparamSpace(lr=(1e-3, 1.0), batch_size=(32, 64, 128, 256, 512), scale_rule="linear")
    sched = rlsched.AdaptiveScheduler(
        optimizer,
        sampler,
        space=space,
        budget_samples=BUDGET,  # + rlsched
        decisions=DECISIONS,
    )
    sched.report(val_loss=evaluate(model, data["x_val"], data["y_val"]))  # + rlsched: the starting point

    seen = 0
    while seen < BUDGET:
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if adaptive:
                sched.step(loss)  # + rlsched
                if sched.decision_due:  # + rlsched
                    sched.report(val_loss=evaluate(model, data["x_val"], data["y_val"]))  # + rlsched
            optimizer.zero_grad()
            seen += len(x)
            if seen >= BUDGET:
                break
    if adaptive:
        print(
            "schedule (examples: lr, batch size): "
            + ", ".join(
                f"{r.samples - r.stats.samples}: {r.hparams.lr:.3g}, {r.hparams.batch_size}"
                for r in sched.history[1:]
            )
        )
    return evaluate(model, data["x_val"], data["y_val"])


def main() -> None:
    torch.set_num_threads(1)
    constant = train(adaptive=False)
    adapted = train(adaptive=True)
    print(f"val loss after {BUDGET} examples: constant {constant:.4f}, AdaptiveScheduler {adapted:.4f}")


if __name__ == "__main__":
    main()
