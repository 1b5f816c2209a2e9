"""Scale-out under torchrun: member-intervals per second with 1 and 2 gloo ranks, measured in one run.

Setup (issue 6): mnist1d MLP, PBT, population 8, 384k examples per member, 10 decisions, one
thread per rank, run directory with TensorBoard and per-generation checkpoints. For each rank
count the script launches ``torchrun --standalone --nproc-per-node=K`` on itself as a worker and
reads back rank 0's figures. Rank counts alternate over ``--repeats`` and the table shows medians.

    python experiments/bench_scale.py [--ranks 1 2] [--repeats 2] [--seed 0]

Columns: wall (the run, rank 0's clock, from building the members to the result; the dataset is
generated and TensorBoard imported before, as data on disk would be ready), member-intervals
per second, speed-up over 1 rank, overhead = wall / (summed training time / K) - 1 (everything
that is not training: evaluation, collectives, checkpoints, TensorBoard, waiting for the slower
rank), its imbalance share = (busiest rank's training time) / (mean rank's) - 1, and the
end-to-end process time (torchrun start, imports and building the data included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    import torch

    import rlsched
    from rlsched.agents import PBT
    from rlsched.population.comm import current_comm, shutdown

    torch.set_num_threads(1)
    comm = current_comm()
    # data and imports are ready before the clock starts, as a dataset already on disk would be
    import torch.utils.tensorboard  # noqa: F401

    from rlsched.envs.tasks import get_task

    get_task("mnist1d-mlp").build(0)
    result = rlsched.run(
        "mnist1d-mlp", PBT(), population=8, seed=args.seed, logdir=args.logdir, name="run", comm=comm
    )
    per_rank = result.rank_train_seconds
    if comm.rank == 0:
        Path(args.out).write_text(
            json.dumps(
                {
                    "ranks": comm.world,
                    "wall": result.wall_seconds,
                    "train_per_rank": per_rank,
                    "member_intervals": len(result.members) * len(result.best.trajectory),
                    "best_val_loss": result.best.val_loss,
                }
            )
        )
    shutdown()


def launch(ranks: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={ranks}",
            __file__,
            "--worker",
            "--out",
            str(out),
            "--logdir",
            str(Path(tmp) / "runs"),
            "--seed",
            str(seed),
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
        figures = json.loads(out.read_text())
        figures["process"] = time.perf_counter() - started
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--logdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    runs: dict[int, list[dict]] = {k: [] for k in args.ranks}
    for repeat in range(args.repeats):
        for k in args.ranks:
            figures = launch(k, args.seed)
            runs[k].append(figures)
            print(
                f"repeat {repeat}, {k} rank(s): wall {figures['wall']:.1f} s, training per rank "
                f"{[round(t, 1) for t in figures['train_per_rank']]}, process {figures['process']:.1f} s, "
                f"best val loss {figures['best_val_loss']:.4f}",
                flush=True,
            )
    print(f"\nmnist1d-mlp, PBT, population 8, 10 decisions, seed {args.seed}, {os.cpu_count()} cores")
    print("| ranks | wall s | member-intervals/s | speed-up | overhead | of which imbalance | process s |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for k in args.ranks:
        wall = statistics.median(f["wall"] for f in runs[k])
        rate = statistics.median(f["member_intervals"] / f["wall"] for f in runs[k])
        overhead = statistics.median(f["wall"] / (sum(f["train_per_rank"]) / k) - 1 for f in runs[k])
        imbalance = statistics.median(
            max(f["train_per_rank"]) / statistics.mean(f["train_per_rank"]) - 1 for f in runs[k]
        )
        process = statistics.median(f["process"] for f in runs[k])
        base = base or rate
        print(
            f"| {k} | {wall:.1f} | {rate:.2f} | {rate / base:.2f}x | {overhead:+.1%} | {imbalance:+.1%} | "
            f"{process:.1f} |"
        )


if __name__ == "__main__":
    main()
