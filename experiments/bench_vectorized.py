"""Would a vectorized population pay? 16 MNIST-1D MLPs one at a time against one torch.func batch.

Issue 6, part 4: build a vectorized population only if it gives >= 2x the training throughput of
training the members one at a time, for 16 members on mnist1d MLP. This measures the upper bound
of that gain: the same SGD-momentum step for every member, as in ``SupervisedJob``:

- sequential: 16 ``nn.Module``s, each ``zero_grad``, forward, ``cross_entropy``, backward, step;
- vectorized: parameters stacked with ``torch.func.stack_module_state``, one
  ``vmap(grad(loss))`` over members, momentum updates on the stacked tensors with a per-member LR.

With different batch sizes per member the vectorized step must pad every member to the largest
batch (masked), so its cost follows the largest batch; ``--mixed`` measures that case (ladder
32..512, two members per rung) against the sequential members at their own batch sizes.

    python experiments/bench_vectorized.py [--members 16] [--batch-size 128] [--steps 200] [--mixed]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from rlsched.envs.tasks import mlp, mnist1d_data


def sequential(models, x, y, sizes, steps, lr, generator) -> float:
    optimizers = [torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9) for m in models]
    started = time.perf_counter()
    for _ in range(steps):
        for model, opt, b in zip(models, optimizers, sizes):
            index = torch.randint(len(x), (b,), generator=generator)
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            opt.step()
    return time.perf_counter() - started


def vectorized(models, x, y, sizes, steps, lr, generator) -> float:
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    momentum = {k: torch.zeros_like(v) for k, v in params.items()}
    lrs = torch.full((len(models),), lr)
    largest = max(sizes)
    mask = (torch.arange(largest)[None, :] < torch.tensor(sizes)[:, None]).float()  # members x largest

    def loss(p, b, xb, yb, mb):
        logits = functional_call(base, (p, b), (xb,))
        per_example = nn.functional.cross_entropy(logits, yb, reduction="none")
        return (per_example * mb).sum() / mb.sum()

    step_grad = vmap(grad(loss))
    started = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(len(x), (len(models), largest), generator=generator)
        grads = step_grad(params, buffers, x[index], y[index], mask)
        with torch.no_grad():
            for k, g in grads.items():
                momentum[k].mul_(0.9).add_(g)
                shape = (-1,) + (1,) * (g.dim() - 1)
                params[k].sub_(lrs.view(shape) * momentum[k])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mixed", action="store_true", help="batch sizes 32..512 across members")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = mnist1d_data(42, 4000)
    x, y = data["x_train"], data["y_train"]
    ladder = [32, 64, 128, 256, 512]
    sizes = (
        [ladder[i * len(ladder) // args.members] for i in range(args.members)]
        if args.mixed
        else [args.batch_size] * args.members
    )
    torch.manual_seed(0)
    models = [mlp(40, 100, 2, 10) for _ in range(args.members)]
    examples = sum(sizes) * args.steps
    timings = {}
    for name, fn in (("sequential", sequential), ("vectorized", vectorized)):
        fn(
            [copy.deepcopy(m) for m in models], x, y, sizes, 5, 0.05, torch.Generator().manual_seed(0)
        )  # warm up
        timings[name] = fn(
            [copy.deepcopy(m) for m in models],
            x,
            y,
            sizes,
            args.steps,
            0.05,
            torch.Generator().manual_seed(1),
        )
    print(
        f"{args.members} members, batch sizes {sorted(set(sizes))}, {args.steps} steps, "
        f"{args.threads} thread(s)"
    )
    for name, seconds in timings.items():
        print(f"{name:<11} {seconds:6.2f} s  {examples / seconds:>10.0f} examples/s")
    print(f"vectorized / sequential throughput: {timings['sequential'] / timings['vectorized']:.2f}x")


if __name__ == "__main__":
    main()
