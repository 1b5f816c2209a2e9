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
    assert "rlsched/agents/default_controller.pt" in names and "rlsched/agents/default_controller.md" in names


def test_public_api_imports_no_top_level_envs_or_agents():
    code = (
        "import sys, rlsched, rlsched.envs, rlsched.agents, rlsched.app.cli\n"
        "from rlsched import Hyperparams, HyperparamSpace, TrainingJob, TrainStats, SupervisedJob, "
        "DynamicBatchSampler\n"
        "import gymnasium as gym; gym.make('rlsched/Synthetic-v0')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('envs', 'agents')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_main_job_command_runs(tmp_path):
    def run(population):
        command = [sys.executable, "-m", "rlsched", "run", "--quiet", "--set", "task=synthetic"]
        command += ["--set", f"population={population}"]
        return subprocess.run(command, check=True, capture_output=True, text=True, cwd=tmp_path)

    out = run(4)
    assert "view: tensorboard --logdir runs" in out.stdout
    assert (tmp_path / "runs" / "pbt-mnist1d-mlp" / "result.json").is_file()
    again = run(2)
    assert "logs: runs/pbt-mnist1d-mlp-2" in again.stdout  # the default name steps aside
