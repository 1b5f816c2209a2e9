"""What TrainingEnv adds around a job's own training, as a ratio of pure training time.

Runs, side by side and interleaved, on the same model, data and batch sequence:
  pure  - a minimal hand-written PyTorch loop (index, forward, backward, step);
  env   - the same training through TrainingEnv (SupervisedJob statistics, RNG isolation,
          member bookkeeping, features, reward), with the validation pass timed separately.
Reports  overhead = (env time - validation time - pure time) / pure time.

    python experiments/bench_overhead.py [--task mnist1d-mlp] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rlsched.core.job import interval_sizes
from rlsched.envs.tasks import get_task
from rlsched.train.supervised import SupervisedJob


def pure_episode(job: SupervisedJob, batch_size: int, intervals: list[int]) -> float:
    """The same steps as the env episode, in a bare loop (same sampler draws, no statistics)."""
    model, opt, loss_fn = job.model, job.optimizer, job.loss_fn
    x, y = job.train_data.tensors
    job.sampler.batch_size = batch_size
    start = time.perf_counter()
    for samples in intervals:
        full, rest = divmod(samples, batch_size)
        for step in range(full + (rest > 0)):
            index = job.sampler.take(batch_size if step < full else rest)
            loss = loss_fn(model(x[index]), y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def env_episode(task, seed: int) -> tuple[float, float]:
    """Wall time of one env episode with a constant action, and the part spent in evaluate()."""
    env = task.make_env()
    env.reset(seed=seed)
    job = env.member.job
    evaluate, spent = job.evaluate, [0.0]

    def timed_evaluate(*args, **kwargs):
        t = time.perf_counter()
        out = evaluate(*args, **kwargs)
        spent[0] += time.perf_counter() - t
        return out

    job.evaluate = timed_evaluate
    start = time.perf_counter()
    done = False
    while not done:
        _, _, done, _, _ = env.step([2, 1])
    return time.perf_counter() - start, spent[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d-mlp")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    intervals = interval_sizes(task.budget_samples, task.decisions)
    pure_episode(task.make_job(0), task.initial.batch_size, intervals)  # warm-up
    env_episode(task, 0)
    pure, env, val = [], [], []
    for r in range(args.repeats):
        job = task.make_job(r)
        job.set_lr(task.initial.lr)
        pure.append(pure_episode(job, task.initial.batch_size, intervals))
        total, evaluation = env_episode(task, r)
        env.append(total - evaluation)
        val.append(evaluation)
    steps = sum(-(-n // task.initial.batch_size) for n in intervals)
    ratio = [(e - p) / p for e, p in zip(env, pure)]
    print(
        f"task {args.task}: {task.budget_samples} examples, {task.decisions} decisions, "
        f"batch {task.initial.batch_size} ({steps} steps), {args.threads} thread(s), {args.repeats} repeats"
    )
    print(f"pure training      {statistics.median(pure):8.3f} s  (median)")
    print(f"env minus val pass {statistics.median(env):8.3f} s")
    print(
        f"validation passes  {statistics.median(val):8.3f} s  "
        f"({statistics.median(val) / statistics.median(pure):.1%} of pure training)"
    )
    print(
        f"env overhead       {statistics.median(ratio):+8.2%}  (median of per-repeat ratios; "
        f"min {min(ratio):+.2%}, max {max(ratio):+.2%})"
    )


if __name__ == "__main__":
    main()
