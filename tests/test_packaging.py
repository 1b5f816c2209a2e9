import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_only_the_rlsched_package(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("rlsched", "envs", "agents"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("rlsched-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"rlsched", next(t for t in tops if t.endswith(".dist-info"))}
    assert "rlsched/envs/env.py" in names and "rlsched/agents/__init__.py" in names
    assert "rlsched/envs/__init__.py" in names


def test_public_api_imports_no_top_level_envs_or_agents():
    code = (
        "import sys, rlsched, rlsched.envs, rlsched.agents, rlsched.cli\n"
        "from rlsched import Hyperparams, HyperparamSpace, TrainingJob, TrainStats, SupervisedJob, "
        "DynamicBatchSampler\n"
        "import gymnasium as gym; gym.make('rlsched/Synthetic-v0')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('envs', 'agents')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_main_job_command_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "rlsched", "run", "--task", "synthetic", "--quiet"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    lines = out.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("constant", "step-decay"))}
    assert set(rows) == {"constant", "step-decay"}
    assert all(float(r[1]) < 0.2 for r in rows.values())  # val loss fell from ~0.5
    bad = subprocess.run(
        [sys.executable, "-m", "rlsched", "run", "--task", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "rlsched: error: task: unknown task 'nope'; "
        "expected one of synthetic, mnist1d-mlp, mnist1d-cnn, char-lm"
    ]
    assert list(tmp_path.iterdir()) == []  # nothing written
