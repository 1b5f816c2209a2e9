import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rlsched
from rlsched import RunDir
from rlsched.agents import PB2, PBT, Fixed
from rlsched.population.lineage import encode

SCRIPT = """
import sys, rlsched
from rlsched.agents import {agent}
rlsched.run("synthetic", {agent}(), population=4, seed=7, logdir=sys.argv[1], name="run",
            budget_samples=40000, decisions=10, checkpoint_every={every})
"""


def reference(agent, logdir):
    return rlsched.run(
        "synthetic",
        agent,
        population=4,
        seed=7,
        budget_samples=40000,
        decisions=10,
        logdir=logdir,
        name="run",
    )


def board(run_dir, member, tag):
    ea = EventAccumulator(str(run_dir / f"member-{member:02d}"))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


@pytest.mark.parametrize("agent, every", [("PBT", 1), ("PB2", 1), ("PBT", 3)])
def test_sigkill_then_resume_gives_the_unbroken_result(agent, every, tmp_path):
    rng = random.Random()
    target = rng.randint(1, 8)  # kill after this many checkpoints, plus a random extra delay
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(agent=agent, every=every), str(tmp_path)])
    run_dir = tmp_path / "run"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = [int(p.name.split("-")[1]) for p in RunDir(run_dir).checkpoints()] if run_dir.exists() else []
        if done and max(done) >= target:
            time.sleep(rng.uniform(0, 0.15))
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "result.json").exists(), "the run finished before it could be killed"
    resumed = rlsched.resume(run_dir)
    unbroken = reference(PBT() if agent == "PBT" else PB2(), tmp_path / "unbroken")
    assert resumed.lineage == unbroken.lineage
    assert repr([m.metrics for m in resumed.members]) == repr(
        [m.metrics for m in unbroken.members]
    )  # NaN-safe
    assert resumed.best.trajectory == unbroken.best.trajectory
    lines = (run_dir / "lineage.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [encode(e) for e in unbroken.lineage]
    assert [p.name for p in run_dir.glob("*checkpoint-*")] == ["checkpoint-00010"]  # old ones pruned
    for member in range(4):  # TensorBoard: what was written after the checkpoint is purged, once
        for tag in ("sched/lr", "val/loss", "pbt/clone_from"):
            assert repr(board(run_dir, member, tag)) == repr(
                board(tmp_path / "unbroken" / "run", member, tag)
            )


def test_replay_of_a_clone_free_run_reproduces_it_exactly(tmp_path):
    result = rlsched.run("synthetic", Fixed("cosine"), seed=2, logdir=tmp_path)
    replayed = rlsched.replay(tmp_path / "run")
    assert replayed.trajectory == result.best.trajectory
    assert replayed.metrics == replayed.run_metrics == result.best.metrics


def test_replay_of_pbt_retrains_the_best_schedule(tmp_path):
    result = rlsched.run("synthetic", PBT(), population=4, seed=2, logdir=tmp_path)
    replayed = rlsched.replay(tmp_path / "run")
    assert replayed.trajectory == result.best.trajectory
    assert replayed.run_metrics == result.best.metrics
    assert replayed.metrics["loss"] < 0.2


def test_bad_run_dirs_and_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not an rlsched run directory"):
        rlsched.resume(tmp_path)
    rlsched.run("synthetic", PBT(), population=2, seed=0, logdir=tmp_path, decisions=2, budget_samples=2000)
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="already holds a run"):
        rlsched.run("synthetic", PBT(), population=2, logdir=tmp_path)
    (generation,) = RunDir(run_dir).checkpoints()
    assert sorted(p.name for p in generation.iterdir()) == ["member-00.pt", "member-01.pt", "run.pt"]
    ckpt = generation / "member-01.pt"
    ckpt.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable rlsched checkpoint"):
        rlsched.resume(run_dir)

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"format": "rlsched.core.files/1", "x": Payload()}, ckpt)
    with pytest.raises(ValueError, match="not a readable rlsched checkpoint"):
        rlsched.resume(run_dir)
    assert not (tmp_path / "pwned").exists()
    torch.save({"format": "something-else"}, ckpt)
    with pytest.raises(ValueError, match="has format 'something-else'"):
        rlsched.resume(run_dir)
    shutil.rmtree(generation)  # a run directory from the single-file checkpoint era is refused, kept
    (run_dir / "checkpoint-00002.pt").write_bytes(b"old")
    with pytest.raises(ValueError, match="single-file checkpoint of an older rlsched"):
        rlsched.resume(run_dir)
    assert (run_dir / "lineage.jsonl").exists() and (run_dir / "checkpoint-00002.pt").exists()


def test_run_files_follow_the_umask_like_tensorboards(tmp_path):
    rlsched.run("synthetic", PBT(), population=2, seed=0, decisions=2, budget_samples=2000, logdir=tmp_path)
    run_dir = tmp_path / "run"
    event = next((run_dir / "member-00").glob("events.out.tfevents.*"))
    expected = event.stat().st_mode & 0o777  # what the umask gives any new file
    written = [run_dir / "run.json", run_dir / "result.json", *run_dir.glob("checkpoint-*/*.pt")]
    assert len(written) == 5 and all(p.stat().st_mode & 0o777 == expected for p in written)
