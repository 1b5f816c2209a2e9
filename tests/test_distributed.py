"""torchrun with 2 gloo processes: same results as in process, a killed worker, a raising job."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import rlsched
from rlsched import RunDir
from rlsched.agents import PBT
from rlsched.population.comm import Local, state_bytes, state_from_bytes
from rlsched.population.lineage import Clone, encode
from rlsched.population.placement import balance, predicted_costs

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
CONFIG = """
task = "synthetic"
population = 4
seed = 3
budget_samples = {budget}
decisions = {decisions}
logdir = "runs"
name = "{name}"
[agent]
type = "PBT"
"""


def flaky_module():
    spec = importlib.util.spec_from_file_location("flaky_job", Path(__file__).with_name("flaky_job.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun worker runs (OMP_NUM_THREADS=1)
    yield
    torch.set_num_threads(threads)


def in_process(tmp_path, budget, decisions):
    return rlsched.run(
        "synthetic",
        PBT(),
        population=4,
        seed=3,
        budget_samples=budget,
        decisions=decisions,
        logdir=tmp_path / "local",
        name="run",
    )


def scalars(run_dir, member, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir / f"member-{member:02d}"))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def lineage(run_dir):
    return RunDir(run_dir).lineage()


def same_run(run_dir, reference):
    assert lineage(run_dir) == reference.lineage
    result = json.loads((run_dir / "result.json").read_text())
    assert result == json.loads((reference.logdir / "result.json").read_text())
    assert sum(isinstance(e, Clone) for e in reference.lineage) >= 2  # states did cross ranks


def test_state_bytes_round_trip_without_pickle():
    state = {"w": torch.arange(6.0).reshape(2, 3), "rng": torch.get_rng_state(), "step": 3, "lr": [0.1]}
    back = state_from_bytes(state_bytes(state))
    assert torch.equal(back["w"], state["w"]) and torch.equal(back["rng"], state["rng"])
    assert back["step"] == 3 and back["lr"] == [0.1]
    comm = Local()
    assert comm.all_gather({"a": 1}) == [{"a": 1}] and comm.from_root(lambda: 7) == 7


def test_two_gloo_ranks_match_the_in_process_run(tmp_path, one_thread):
    (tmp_path / "run.toml").write_text(CONFIG.format(budget=20_000, decisions=6, name="two"))
    out = subprocess.run(
        [*TORCHRUN, "-m", "rlsched", "run", "run.toml", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 ranks" in out.stdout and out.stdout.count("best: member") == 1  # rank 0 reports, once
    run_dir = tmp_path / "runs" / "two"
    same_run(run_dir, in_process(tmp_path, 20_000, 6))
    assert sorted(p.name for p in run_dir.glob("member-*")) == [f"member-0{i}" for i in range(4)]
    for member in range(4):  # TensorBoard: the same points, one event file per member run
        assert len(list((run_dir / f"member-0{member}").glob("events.out.tfevents.*"))) == 1
        for tag in ("sched/lr", "val/loss", "pbt/clone_from"):
            assert repr(scalars(run_dir, member, tag)) == repr(
                scalars(tmp_path / "local" / "run", member, tag)
            )
    (generation,) = RunDir(run_dir).checkpoints()
    assert sorted(p.name for p in generation.iterdir()) == [f"member-0{i}.pt" for i in range(4)] + ["run.pt"]


def worker_pids(parent: int) -> dict[int, int]:
    """``{rank: pid}`` of the torchrun workers under process ``parent``."""
    found = {}
    for task in Path(f"/proc/{parent}/task").iterdir():
        for child in (task / "children").read_text().split():
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            ranks = [e.split(b"=", 1)[1] for e in env if e.startswith(b"RANK=")]
            if ranks:
                found[int(ranks[0])] = int(child)
    return found


def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_unbroken(tmp_path, one_thread):
    budget, decisions = 120_000, 24
    (tmp_path / "run.toml").write_text(CONFIG.format(budget=budget, decisions=decisions, name="fault"))
    proc = subprocess.Popen(
        [*TORCHRUN, "--max-restarts=1", "-m", "rlsched", "run", "run.toml", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = tmp_path / "runs" / "fault"
    killed_at = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and killed_at is None:
        done = RunDir(run_dir).checkpoints() if run_dir.exists() else []
        if done and int(done[-1].name.split("-")[1]) >= 3:
            workers = worker_pids(proc.pid)
            os.kill(workers[1], signal.SIGKILL)  # rank 1 dies mid-run
            killed_at = int(done[-1].name.split("-")[1])
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=300)
    assert killed_at is not None and killed_at < decisions, "the run ended before a worker was killed"
    assert proc.returncode == 0, stderr[-6000:]
    assert "torchrun restart 1: resuming" in stderr
    same_run(run_dir, in_process(tmp_path, budget, decisions))
    for member in range(4):  # TensorBoard: what the dead attempt wrote after its checkpoint is purged
        for tag in ("sched/lr", "val/loss"):
            assert repr(scalars(run_dir, member, tag)) == repr(
                scalars(tmp_path / "local" / "run", member, tag)
            )
    assert [p.name for p in run_dir.glob("*checkpoint-*")] == [f"checkpoint-{decisions:05d}"]


def test_a_raising_job_is_logged_and_replaced_like_a_diverged_member(tmp_path, caplog, one_thread):
    flaky = flaky_module()
    with caplog.at_level(logging.ERROR, logger="rlsched"):
        result = flaky.run(str(tmp_path / "local"))
    assert "member 2 raised during decision 2" in caplog.text
    assert "RuntimeError: injected failure in member 2" in caplog.text  # the traceback
    (failed,) = [e for e in result.lineage if getattr(e, "error", None)]
    assert encode(failed) == {
        "event": "train",
        "decision": 2,
        "member": 2,
        "hparams": failed.hparams.to_dict(),
        "samples": failed.samples,
        "val_loss": None,
        "diverged": True,
        "error": "RuntimeError: injected failure in member 2",
    }
    (replaced,) = [e for e in result.lineage if isinstance(e, Clone) and e.decision == 3 and e.member == 2]
    assert replaced.score == -math.inf and replaced.reason.startswith("diverged")
    assert math.isfinite(result.members[2].val_loss) and not result.members[2].diverged

    out = subprocess.run(  # the same under torchrun: the rank hosting member 2 logs and carries on
        [*TORCHRUN, str(Path(__file__).with_name("flaky_job.py")), str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RuntimeError: injected failure in member 2" in out.stderr
    assert lineage(tmp_path / "dist" / "flaky") == result.lineage


def test_balance_keeps_a_good_placement_and_fixes_a_bad_one_with_few_moves():
    current = [0, 1, 0, 1]
    assert balance([1.0, 1.0, 1.0, 1.0], current, 2) == current  # already balanced: nobody moves
    assert balance([1.0, 1.02, 1.0, 1.0], current, 2) == current  # gain under the slack
    # rank 0 holds both heavy members (predicted 8 vs 2): one of them swaps with a light one
    placement = balance([4.0, 1.0, 4.0, 1.0], current, 2)
    loads = [sum(c for c, r in zip([4.0, 1.0, 4.0, 1.0], placement) if r == k) for k in (0, 1)]
    assert loads == [5.0, 5.0] and sum(a != b for a, b in zip(placement, current)) == 2
    assert balance([3.0, 1.0, 1.0, 1.0, 1.0, 1.0], [0, 0, 0, 1, 1, 1], 2) == [0, 1, 0, 1, 1, 1]  # one move
    costs = [5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0]
    three = balance(costs, [0, 1, 2] * 3, 3)  # loads 7, 3, 11 -> the 9 alone, the rest spread
    assert max(sum(c for c, r in zip(costs, three) if r == k) for k in range(3)) == 9.0


def test_predicted_costs_follow_the_batch_size():
    # 1 s per interval at batch 32 and 0.25 s at 512: a per-step cost that shrinks with the batch
    costs = predicted_costs([1.0, 0.25, 1.0], [32, 512, 32], [32, 512, 128])
    assert costs[0] == pytest.approx(1.0) and costs[1] == pytest.approx(0.25)
    assert 0.25 < costs[2] < 1.0
    assert predicted_costs([2.0, 4.0], [64, 64], [64, 128]) == [3.0, 3.0]  # one batch size: the mean


def test_a_run_killed_in_process_resumes_on_two_ranks(tmp_path, one_thread):
    budget, decisions = 120_000, 24
    script = (
        "import sys, torch, rlsched\nfrom rlsched.agents import PBT\ntorch.set_num_threads(1)\n"
        f"rlsched.run('synthetic', PBT(), population=4, seed=3, budget_samples={budget}, "
        f"decisions={decisions}, logdir=sys.argv[1], name='run')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "killed")])
    run_dir = tmp_path / "killed" / "run"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = RunDir(run_dir).checkpoints() if run_dir.exists() else []
        if done and int(done[-1].name.split("-")[1]) >= 3:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "result.json").exists(), "the run finished before it could be killed"
    out = subprocess.run(
        [*TORCHRUN, "-m", "rlsched", "resume", str(run_dir), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    same_run(run_dir, in_process(tmp_path, budget, decisions))


@pytest.mark.parametrize(
    "command, message",
    [
        (["compare", "c.toml"], "compare: runs in one process"),
        (["replay", "runs/x"], "replay: retrains one member in one process; run it without torchrun"),
    ],
)
def test_one_process_commands_refuse_torchrun_with_one_clear_line(tmp_path, command, message):
    (tmp_path / "c.toml").write_text('task = "synthetic"\nseeds = [0]\n[agents.a]\ntype = "PBT"\n')
    out = subprocess.run(
        [sys.executable, "-m", "rlsched", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "x"},
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]
