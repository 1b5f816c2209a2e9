"""A synthetic job that raises on one member's third interval; run under torchrun by test_distributed.

torchrun --standalone --nproc-per-node=2 tests/flaky_job.py LOGDIR
"""

from __future__ import annotations

import sys

import torch

import rlsched
from rlsched.agents import PBT
from rlsched.envs.tasks import get_task
from rlsched.population.runner import job_seed

SEED = 5
TASK = get_task("synthetic")


class FlakyJob:
    """The synthetic task's job, except that member 2's job raises on its third ``train`` call.

    The flag and the call count are part of the job's state, so they travel with it (to a clone,
    or to another rank) exactly as the job contract asks of everything a job does.
    """

    def __init__(self, seed: int) -> None:
        self.job = TASK.build(seed)
        self.flaky = seed == job_seed(SEED, 2)
        self.calls = 0
        self.splits = getattr(self.job, "splits", ())

    def train(self, hp, samples):
        self.calls += 1
        if self.flaky and self.calls == 3:
            raise RuntimeError("injected failure in member 2")
        return self.job.train(hp, samples)

    def evaluate(self, split: str = "val"):
        return self.job.evaluate(split)

    def state_dict(self):
        return {"job": self.job.state_dict(), "flaky": self.flaky, "calls": self.calls}

    def load_state_dict(self, state):
        self.job.load_state_dict(state["job"])
        self.flaky, self.calls = state["flaky"], state["calls"]


def run(logdir: str | None) -> rlsched.RunResult:
    return rlsched.run(
        FlakyJob,
        PBT(),
        space=TASK.space,
        population=4,
        budget_samples=20_000,
        decisions=6,
        initial=TASK.initial,
        seed=SEED,
        logdir=logdir,
        name="flaky",
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1])
