import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlsched.app.cli import main

GOOD = """
task = "synthetic"
name = "ok"
population = 2
budget_samples = 4000
decisions = 2
[agent]
type = "PBT"
"""


def rlsched(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "rlsched", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "good.toml").write_text(GOOD)
    done = rlsched("run", "good.toml", "--quiet", cwd=root)
    assert done.returncode == 0, done.stderr
    (root / "broken.toml").write_text("task = \n")
    (root / "notes").mkdir()
    (root / "compare.toml").write_text('task = "synthetic"\nseeds = [0]\n[agents.a]\ntype = "Nope"\n')
    (root / "compare_empty.toml").write_text('task = "synthetic"\n')
    bad_ckpt = root / "runs" / "bad"
    bad_ckpt.mkdir(parents=True)
    (bad_ckpt / "run.json").write_text(
        json.dumps(json.loads((root / "runs" / "ok" / "run.json").read_text()))
    )
    (bad_ckpt / "checkpoint-00001").mkdir()
    (bad_ckpt / "checkpoint-00001" / "run.pt").write_bytes(b"not a checkpoint")
    return root


BAD = [
    (["run", "missing.toml"], "config: no such file"),
    (["run", "broken.toml"], "is not valid TOML"),
    (["run", "good.toml", "--set", "populaton=4"], "did you mean 'population'"),
    (["run", "good.toml", "--set", "population=0"], "population: expected an integer in [1, 4096], got 0"),
    (
        ["run", "good.toml", "--set", "population=two"],
        "population: expected an integer in [1, 4096], got 'two'",
    ),
    (["run", "good.toml", "--set", "seed=-1"], "seed: expected an integer >= 0"),
    (
        ["run", "good.toml", "--set", "checkpoint_every=0"],
        "checkpoint_every: expected an integer >= 1, got 0",
    ),
    (["run", "good.toml", "--set", "task=mnist2d"], "task: unknown task 'mnist2d'; expected one of"),
    (["run", "good.toml", "--set", "decisions=0"], "decisions: expected an integer in [1, 10000]"),
    (["run", "good.toml", "--set", "budget_samples=1"], "budget_samples: expected at least one example"),
    (
        ["run", "good.toml", "--set", "space.lr=[1.0, 0.1]"],
        "space.lr: expected finite bounds with 0 < low < high",
    ),
    (["run", "good.toml", "--set", "space.batch_size=[64, 32]"], "space.batch_size: expected a strictly"),
    (
        ["run", "good.toml", "--set", "space.scale_rule=cubic"],
        "space.scale_rule: expected one of sqrt, linear",
    ),
    (["run", "good.toml", "--set", "space.lrr=[0.1, 1.0]"], "space.lrr: unknown key; did you mean 'lr'?"),
    (["run", "good.toml", "--set", "initial.lr=5.0"], "initial.lr: 5.0 is outside the bounds"),
    (["run", "good.toml", "--set", "initial.batch_size=48"], "initial.batch_size: 48 is not on the ladder"),
    (["run", "good.toml", "--set", "agent.type=PPO"], "agent.type: expected one of Fixed, GridSearch"),
    (
        ["run", "good.toml", "--set", "agent.quantile_fraction=0.9"],
        "agent.quantile_fraction: expected a value",
    ),
    (["run", "good.toml", "--set", "agent.quantile_fractoin=0.2"], "did you mean 'quantile_fraction'?"),
    (["run", "good.toml", "--set", "agent.perturbation_interval=0"], "agent.perturbation_interval: expected"),
    (
        [
            "run",
            "good.toml",
            "--set",
            "agent.type=GridSearch",
            "--set",
            "agent.lr=[0.1]",
            "--set",
            "agent.batch_size=[16]",
        ],
        "agent: the grid has 1 points but population is 2",
    ),
    (
        ["run", "good.toml", "--set", "agent.type=Fixed", "--set", "agent.schedule=linear"],
        "agent.schedule: expected one of constant, cosine",
    ),
    (["run", "good.toml", "--set", "name=ok"], "name: runs/ok already holds a run"),
    (["run", "good.toml", "--set", "name=a/b"], "name: expected a plain directory name"),
    (["run", "good.toml", "--set", "novalue"], "--set: expected key=value"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["launch"], "invalid choice: 'launch'"),
    (["resume", "notes"], "RUN_DIR: 'notes' is not an rlsched run directory"),
    (["resume", "nowhere"], "RUN_DIR: 'nowhere' is not an rlsched run directory"),
    (["resume", "runs/bad"], "is not a readable rlsched checkpoint"),
    (["replay", "runs/bad"], "has no result.json"),
    (["compare", "compare.toml"], "agents.a.type: expected one of"),
    (["compare", "compare_empty.toml"], "agents: expected at least one [agents.<label>] table"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(workdir, monkeypatch, capsys, args, message):
    """In process, through the CLI's own ``main`` (tests/test_bad_inputs.py also runs some cases
    through the installed executable)."""
    monkeypatch.chdir(workdir)
    before = snapshot(workdir)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("rlsched"), lines
    assert message in lines[0], lines[0]
    assert snapshot(workdir) == before


def test_run_resume_replay_tasks_and_compare(workdir):
    out = rlsched("replay", "runs/ok", cwd=workdir)
    assert out.returncode == 0 and "replay" in out.stdout
    assert "rlsched/MNIST1D-MLP-v0" in rlsched("tasks", cwd=workdir).stdout
    (workdir / "cmp.toml").write_text(
        'task = "synthetic"\nname = "cmp"\nseeds = [0, 1]\npopulation = 2\nbudget_samples = 4000\n'
        'decisions = 2\n[agents.PBT]\ntype = "PBT"\n[agents.cosine]\ntype = "GridSearch"\n'
        'lr = [0.02, 0.2]\nbatch_size = [32]\nschedule = "cosine"\n'
        '[agents.alone]\ntype = "Fixed"\npopulation = 1\n'
    )
    out = rlsched("compare", "cmp.toml", "--quiet", "--device", "cpu", cwd=workdir)
    assert out.returncode == 0, out.stderr
    results = json.loads((workdir / "runs" / "cmp" / "results.json").read_text())
    ranking = results["ranking"]
    assert sorted(r["agent"] for r in ranking) == ["PBT", "alone", "cosine"]
    losses = [r["val_loss_mean"] for r in ranking]
    assert losses == sorted(losses)
    assert {r["agent"]: r["total_samples"] for r in ranking} == {"PBT": 8000, "cosine": 8000, "alone": 4000}
    csv_lines = (workdir / "runs" / "cmp" / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("rank,agent") and len(csv_lines) == 4
    assert (workdir / "runs" / "cmp" / "comparison.png").stat().st_size > 5000
    assert (workdir / "runs" / "cmp" / "PBT" / "seed-1" / "result.json").is_file()
