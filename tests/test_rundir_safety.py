import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import rlsched
from rlsched.agents import PBT
from rlsched.app.cli import main
from rlsched.core.files import append_bytes, atomic_write_json
from rlsched.population import lock as lock_module
from rlsched.population.comm import Local
from rlsched.population.lock import RunLock, hold
from rlsched.population.rundir import RunDir

SMALL = dict(population=2, seed=0, decisions=2, budget_samples=2000)

# every file and folder a run writes; a glob picks the first match
WRITTEN = [
    "run.json",
    "lineage.jsonl",
    "result.json",
    "schedules.png",
    "checkpoint-00002",
    "checkpoint-00002/run.pt",
    "checkpoint-00002/member-01.pt",
    "member-01",
    "member-00/events.out.tfevents.*",
    "best",
    "best/events.out.tfevents.*",
    "events.out.tfevents.*",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("finished")
    rlsched.run("synthetic", PBT(), logdir=logdir, name="run", **SMALL)
    return logdir / "run"


@pytest.fixture
def run_dir(finished, tmp_path):
    copy = tmp_path / "runs" / "half"
    shutil.copytree(finished, copy)
    return copy


def snapshot(root: Path) -> dict[str, tuple]:
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    return {
        str(p): (p.is_dir() or p.read_bytes(), p.stat().st_mtime_ns)
        for p in paths
        if p != root or not p.is_dir()
    }


def refused(args: list[str], capsys) -> str:
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("written", WRITTEN)
def test_a_link_anywhere_in_the_run_directory_is_refused(written, run_dir, tmp_path, capsys):
    path = next(run_dir.glob(written))
    victim = tmp_path / "victim" / path.name
    victim.parent.mkdir()
    shutil.move(path, victim)  # the victim holds what rlsched expects there, so only the link is wrong
    path.symlink_to(victim, target_is_directory=victim.is_dir())
    before, victim_before = snapshot(run_dir), snapshot(victim)
    for args in (["resume", str(run_dir), "--quiet"], ["replay", str(run_dir)]):
        line = refused(args, capsys)
        assert f"run_dir: {path} is a symbolic link" in line, line
    with pytest.raises(ValueError, match="is a symbolic link"):
        rlsched.resume(run_dir)
    assert snapshot(victim) == victim_before
    assert snapshot(run_dir) == before  # no lock file left behind either
    assert path.is_symlink()


def test_a_linked_run_directory_is_refused_and_a_run_never_writes_into_a_link(run_dir, tmp_path, capsys):
    link = run_dir.parent / "link"
    link.symlink_to(run_dir, target_is_directory=True)
    before = snapshot(run_dir)
    assert f"run_dir: {link} is a symbolic link" in refused(["resume", str(link), "--quiet"], capsys)
    assert snapshot(run_dir) == before
    victim = tmp_path / "victim"
    victim.mkdir()
    (run_dir.parent / "evil").symlink_to(victim, target_is_directory=True)
    with pytest.raises(ValueError, match="evil is a symbolic link"):
        rlsched.run("synthetic", PBT(), logdir=run_dir.parent, name="evil", **SMALL)
    assert list(victim.iterdir()) == []


def test_a_fifo_in_the_run_directory_is_refused(run_dir, capsys):
    figure = run_dir / "schedules.png"
    figure.unlink()
    os.mkfifo(figure)  # writing the figure would block for ever
    assert f"run_dir: {figure} is not a regular file" in refused(["resume", str(run_dir), "--quiet"], capsys)


def test_files_are_never_written_through_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "result.json"
    link.symlink_to(victim)
    atomic_write_json(link, {"a": 1})  # replaces the link, not what it points to
    assert not link.is_symlink() and json.loads(link.read_text()) == {"a": 1}
    assert victim.read_text() == "precious"
    log = tmp_path / "lineage.jsonl"
    log.symlink_to(victim)
    with pytest.raises(ValueError, match=f"run_dir: {log} is a symbolic link"):
        append_bytes(log, b"{}\n")
    assert victim.read_text() == "precious"


def test_a_second_writer_is_refused_naming_the_holder(run_dir, capsys):
    holder = f"pid {os.getpid()} on host {socket.gethostname()} (since "
    before = snapshot(run_dir)
    with RunLock(run_dir / ".lock"):
        for args in (["resume", str(run_dir), "--quiet"], ["replay", str(run_dir)]):
            line = refused(args, capsys)
            assert line.startswith(f"rlsched: error: run_dir: {run_dir} is in use by {holder}"), line
        with pytest.raises(ValueError, match="is in use by pid"):
            RunLock(run_dir / ".lock").acquire()
    assert not (run_dir / ".lock").exists()
    assert snapshot(run_dir) == before


def test_two_runs_of_one_name_never_both_write(tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with RunLock(fresh / ".lock"):  # the other run has made the directory but not yet run.json
        with pytest.raises(ValueError, match=f"run_dir: {fresh} is in use by pid {os.getpid()}"):
            rlsched.run("synthetic", PBT(), logdir=tmp_path, name="fresh", **SMALL)
        assert [p.name for p in fresh.iterdir()] == [".lock"]
    (fresh / "run.json").write_text("{}")  # it wrote run.json between our look and our lock
    with pytest.raises(ValueError, match="already holds a run"):
        with hold(RunDir(fresh), Local(), new=True):
            pass
    assert sorted(p.name for p in fresh.iterdir()) == ["run.json"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_is_taken_over(run_dir, caplog):
    (run_dir / ".lock").write_text(
        json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "started": "2020-01-01T00:00:00+00:00"})
    )
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert "taking over the stale lock of pid" in caplog.text
    assert not (run_dir / ".lock").exists()
    assert json.loads((run_dir / "result.json").read_text())["best"]["metrics"]["loss"] < 1.0


def test_without_flock_the_lock_file_decides(tmp_path, monkeypatch):
    path = tmp_path / ".lock"
    other_host = {"host": "elsewhere", "pid": 1, "started": "2020-01-01T00:00:00+00:00"}
    path.write_text(json.dumps(other_host))
    with RunLock(path):  # flock obtained: whoever wrote it has gone, wherever it ran
        assert json.loads(path.read_text())["pid"] == os.getpid()
    monkeypatch.setattr(lock_module, "_flock", lambda fd: False)  # e.g. a Lustre mount without flock
    for holder, taken in [
        (other_host, False),
        ({**other_host, "host": socket.gethostname(), "pid": os.getpid()}, False),
        ({**other_host, "host": socket.gethostname(), "pid": dead_pid()}, True),
    ]:
        path.write_text(json.dumps(holder))
        if taken:
            with RunLock(path):
                assert json.loads(path.read_text())["pid"] == os.getpid()
            assert not path.exists()
        else:
            with pytest.raises(
                ValueError, match=f"in use by pid {holder['pid']} on host .*, or remove {path}"
            ):
                RunLock(path).acquire()
            assert json.loads(path.read_text()) == holder
