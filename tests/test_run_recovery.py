"""A run can always be finished: resume refuses a broken lineage up front, and a finished run
resumes to its result without changing a byte."""

from __future__ import annotations

import errno
import hashlib

import pytest
from test_user_jobs import INITIAL, SPACE, Buggy

import rlsched
import rlsched.core.files as files
from rlsched.agents import PBT
from rlsched.app.cli import main
from rlsched.core.job import JobFailed


def tree(path):
    """Every file under ``path`` with its bytes' digest and its modification time."""
    return {
        str(p.relative_to(path)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_resuming_a_finished_run_changes_nothing_and_gives_its_result(tmp_path, capsys):
    result = rlsched.run("synthetic", PBT(), population=3, decisions=3, seed=1, logdir=tmp_path, name="done")
    before = tree(tmp_path / "done")
    again = rlsched.resume(tmp_path / "done")
    assert tree(tmp_path / "done") == before
    assert again.lineage == result.lineage
    assert [m.metrics for m in again.members] == [m.metrics for m in result.members]
    assert again.best.trajectory == result.best.trajectory
    assert main(["resume", str(tmp_path / "done")]) == 0
    assert tree(tmp_path / "done") == before
    assert f"{result.best.val_loss:.3g}" in capsys.readouterr().out


def stopped_run(tmp_path, monkeypatch):
    """A run of a buggy job stopped during decision 2: its checkpoint covers decisions 0-2."""
    monkeypatch.setattr(Buggy, "broken", True)
    settings = dict(space=SPACE, initial=INITIAL, population=3, budget_samples=3000, decisions=4, seed=2)
    with pytest.raises(JobFailed):
        rlsched.run(Buggy, PBT(), logdir=tmp_path, name="half", **settings)
    monkeypatch.setattr(Buggy, "broken", False)
    return tmp_path / "half"


@pytest.mark.parametrize("line", [1, 2, 4])
def test_a_bad_lineage_line_is_refused_before_any_training(tmp_path, monkeypatch, line):
    run_dir = stopped_run(tmp_path, monkeypatch)
    lines = (run_dir / "lineage.jsonl").read_text().splitlines()
    lines[line - 1] = "{garbage"
    (run_dir / "lineage.jsonl").write_text("\n".join(lines) + "\n")
    before = tree(run_dir)
    trained = []
    monkeypatch.setattr(Buggy, "train", lambda self, hp, samples: trained.append(1))
    with pytest.raises(ValueError, match=f"lineage: .*lineage.jsonl line {line} is not an event"):
        rlsched.resume(run_dir, Buggy, PBT())
    assert trained == [] and tree(run_dir) == before


def test_a_lineage_cut_short_after_the_checkpoint_still_resumes(tmp_path, monkeypatch):
    run_dir = stopped_run(tmp_path, monkeypatch)
    with (run_dir / "lineage.jsonl").open("a") as lineage:
        lineage.write('{"event": "train", "decis')  # a line cut short by a kill
    assert rlsched.resume(run_dir, Buggy, PBT()).best.val_loss < 1.0


def test_a_full_disk_is_one_line_with_the_resume_hint_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    real, writes = files.os.fsync, []

    def fsync(fd):  # the disk fills up at the 6th file written atomically (a mid-run checkpoint)
        writes.append(fd)
        if len(writes) == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    argv = ["run", "--set", "task=synthetic", "--set", "population=2", "--set", f"logdir={tmp_path}"]
    assert main([*argv, "--set", "name=full", "--quiet"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no space left on device while writing" in lines[0]
    assert f"`rlsched resume {tmp_path / 'full'}`" in lines[0]
    monkeypatch.setattr(files.os, "fsync", real)
    assert main(["resume", str(tmp_path / "full"), "--quiet"]) == 0
    assert (tmp_path / "full" / "result.json").is_file()
