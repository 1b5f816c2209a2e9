"""A user's own job from the command line, and hyperparameters beyond LR and batch size."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rlsched
from rlsched import Hyperparams, HyperparamSpace, RunDir
from rlsched.agents import PB2, GridSearch, RandomSearch, explore
from rlsched.agents.pb2 import encode
from rlsched.app.cli import main
from rlsched.app.config import load_factory
from rlsched.core.actions import apply_action
from rlsched.population.lineage import Clone, Start, Train

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

JOB = '''
import math, os
import numpy as np
import torch
import rlsched

H = np.logspace(-2, 0, 12)
CALLS = [0]


class DecayJob:
    """SGD with weight decay on a noisy quadratic whose optimum is not at zero."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.w = np.full(12, 3.0)

    def train(self, hp, samples):
        CALLS[0] += 1
        if CALLS[0] == int(os.environ.get("DIE_AT_CALL", "0")):
            os._exit(9)  # a hard kill in the middle of a run
        decay = hp.extra["weight_decay"]
        steps = samples // hp.batch_size
        for _ in range(steps):
            noise = self.rng.normal(size=12) * np.sqrt(H) / np.sqrt(hp.batch_size)
            self.w = self.w - hp.lr * (H * (self.w - 1.0) + noise + decay * self.w)
        loss = self.evaluate()["loss"]
        return rlsched.TrainStats(samples, steps, loss, 0.0, 0.0, math.nan, 0.0, not math.isfinite(loss))

    def evaluate(self):
        return {"loss": float(0.5 * np.sum(H * (self.w - 1.0) ** 2)) + 1e-3}

    def state_dict(self):
        return {"w": torch.tensor(self.w), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.w = state["w"].numpy().copy()
        self.rng.bit_generator.state = state["rng"]


def make_job(seed):
    return DecayJob(seed)


NOT_CALLABLE = 3
'''

CONFIG = """
task = "{task}"
name = "{name}"
logdir = "{logdir}"
population = 4
seed = 3
budget_samples = 4000
decisions = 4

[space]
lr = [0.01, 1.0]
batch_size = [16, 32, 64]

[space.extra]
weight_decay = [1e-4, 0.1, "log"]

[initial]
lr = 0.3
batch_size = 32

[initial.extra]
weight_decay = 0.01

[agent]
type = "PBT"
"""


@pytest.fixture
def user_job(tmp_path):
    job = tmp_path / "decay_job.py"
    job.write_text(JOB)
    return job


def write_config(tmp_path: Path, job: Path, name: str = "wd", **replace: str) -> Path:
    text = CONFIG.format(task=f"{job}:make_job", name=name, logdir=tmp_path / "runs")
    for old, new in replace.items():
        text = text.replace(old, new)
    config = tmp_path / f"{name}.toml"
    config.write_text(text)
    return config


def files(root: Path) -> dict[str, int]:
    """Every file but Python's bytecode caches, with its modification time."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


# -- the space, the values and the agents ------------------------------------------------------------
def test_extras_round_trip_hash_and_stay_out_of_plain_files():
    hp = Hyperparams(0.1, 64, {"weight_decay": 1e-3, "dropout": 0.2})
    assert hp.extra["weight_decay"] == 1e-3 and list(hp.extra) == ["dropout", "weight_decay"]
    assert Hyperparams.from_dict(hp.to_dict()) == hp and Hyperparams(**hp.to_dict()) == hp
    assert hash(hp) == hash(Hyperparams(0.1, 64, {"dropout": 0.2, "weight_decay": 1e-3}))
    assert Hyperparams(0.1, 64).to_dict() == {"lr": 0.1, "batch_size": 64}  # old files unchanged
    assert repr(Hyperparams(0.1, 64)) == "Hyperparams(lr=0.1, batch_size=64)"
    with pytest.raises(TypeError):
        hp.extra["dropout"] = 0.3  # type: ignore[index]
    space = HyperparamSpace(extra={"weight_decay": (1e-5, 0.1, "log"), "dropout": [0.0, 0.5]})
    assert HyperparamSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    assert HyperparamSpace().to_dict() == HyperparamSpace.from_dict(HyperparamSpace().to_dict()).to_dict()
    assert "extra" not in HyperparamSpace().to_dict()
    assert space.default().extra == {"dropout": 0.25, "weight_decay": pytest.approx(10**-3)}


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"weight_decay": (0.0, 0.1, "log")}, r"^extra.weight_decay: expected 0 < low < high on the log"),
        ({"weight_decay": (0.1, 0.01)}, r"^extra.weight_decay: expected finite bounds with low < high"),
        ({"dropout": (0.0, 0.5, "cubic")}, r"^extra.dropout: scale: expected one of log, linear"),
        ({"dropout": 0.5}, r"^extra.dropout: expected \[low, high\] or \[low, high, scale\]"),
        ({"lr": (0.1, 1.0)}, r"^extra: expected names .* other than lr and batch_size, got 'lr'"),
        ({"2x": (0.1, 1.0)}, r"^extra: expected names"),
        ([("dropout", (0, 1))], r"^extra: expected a table"),
    ],
)
def test_bad_extra_bounds_name_the_field(extra, message):
    with pytest.raises(ValueError, match=message):
        HyperparamSpace(extra=extra)


def test_check_names_missing_unknown_and_out_of_bounds_extras():
    space = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(32, 64), extra={"weight_decay": (1e-4, 0.1, "log")})
    with pytest.raises(ValueError, match=r"^initial.extra.weight_decay: missing"):
        space.check(Hyperparams(0.1, 32), "initial")
    with pytest.raises(ValueError, match=r"^initial.extra.momentum: not one of the space's extras"):
        space.check(Hyperparams(0.1, 32, {"weight_decay": 0.01, "momentum": 0.9}), "initial")
    with pytest.raises(ValueError, match=r"^initial.extra.weight_decay: 0.5 is outside the bounds"):
        space.check(Hyperparams(0.1, 32, {"weight_decay": 0.5}), "initial")
    assert not space.contains(Hyperparams(0.1, 32))


def test_moves_and_the_controller_action_carry_extras_over():
    space = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(32, 64), extra={"dropout": (0.0, 0.5)})
    hp = Hyperparams(0.1, 32, {"dropout": 0.3})
    assert space.move(hp, lr_factor=2.0, batch_step=1).extra == {"dropout": 0.3}
    assert apply_action(space, hp, [4, 2]) == Hyperparams(0.2 * math.sqrt(2), 64, {"dropout": 0.3})


def test_pbt_explore_moves_log_extras_by_factor_and_linear_ones_by_step():
    space = HyperparamSpace(
        lr=(1e-3, 1.0), batch_size=(32, 64), extra={"wd": (1e-4, 0.1, "log"), "dropout": (0.0, 0.5)}
    )
    hp = Hyperparams(0.1, 32, {"wd": 0.01, "dropout": 0.3})
    seen = {"wd": set(), "dropout": set()}
    for seed in range(200):
        new, changes = explore(hp, space, np.random.default_rng(seed), resample_probability=0.25)
        space.check(new)
        for name in seen:
            seen[name].add(round(new.extra[name], 9))
            assert any(c.startswith(f"{name} ") for c in changes)
    assert {0.008, 0.0125} <= seen["wd"]  # x0.8 and x1.25, like the LR
    assert {0.2, 0.425} <= seen["dropout"]  # -0.2 and +0.25 of the range's width 0.5
    assert len(seen["wd"]) > 10 and len(seen["dropout"]) > 10  # and resampled values
    at_top = explore(Hyperparams(0.1, 32, {"wd": 0.1, "dropout": 0.5}), space, np.random.default_rng(1))[0]
    space.check(at_top)  # clipped into the bounds


def test_explore_without_extras_draws_as_before():
    space = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(32, 64, 128))
    wide = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(32, 64, 128), extra={"dropout": (0.0, 0.5)})
    plain, _ = explore(Hyperparams(0.1, 64), space, np.random.default_rng(5))
    more, _ = explore(Hyperparams(0.1, 64, {"dropout": 0.1}), wide, np.random.default_rng(5))
    assert (plain.lr, plain.batch_size) == (more.lr, more.batch_size)  # extras draw after the LR


def test_pb2_encodes_extras_as_gp_dimensions():
    space = HyperparamSpace(lr=(1e-4, 1.0), batch_size=(32, 64, 128), extra={"wd": (1e-4, 1e-2, "log")})
    assert encode(Hyperparams(1e-2, 64, {"wd": 1e-3}), space, 0.5) == pytest.approx([0.5, 0.5, 0.5, 0.5])


def test_pb2_picks_extras_for_a_user_job(user_job):
    space = HyperparamSpace(
        lr=(0.01, 1.0), batch_size=(16, 32, 64), extra={"weight_decay": (1e-4, 0.1, "log")}
    )
    initial = Hyperparams(0.3, 32, {"weight_decay": 0.01})
    settings = dict(space=space, initial=initial, population=4, budget_samples=3000, decisions=3, seed=1)
    result = rlsched.run(load_factory(f"{user_job}:make_job"), PB2(candidates=16), **settings)
    clones = [e for e in result.lineage if isinstance(e, Clone)]
    assert clones and all("weight_decay" in e.reason and space.contains(e.new) for e in clones)


def test_grid_and_random_search_set_extras_per_member():
    space = HyperparamSpace(
        lr=(1e-3, 1.0), batch_size=(32, 64), extra={"wd": (1e-4, 0.1, "log"), "p": (0, 1)}
    )
    initial = Hyperparams(0.1, 32, {"wd": 0.01, "p": 0.5})
    grid = GridSearch([0.01, 0.1], [32], extra={"wd": [1e-3, 1e-2]}, schedule="cosine")
    grid.initial(4, space, initial, 4, np.random.default_rng(0))
    assert sorted((b.lr, b.extra["wd"], b.extra["p"]) for b in grid.base) == [
        (0.01, 1e-3, 0.5),
        (0.01, 1e-2, 0.5),
        (0.1, 1e-3, 0.5),
        (0.1, 1e-2, 0.5),
    ]
    assert grid.config()["extra"] == {"wd": [1e-3, 1e-2]}
    with pytest.raises(ValueError, match=r"^extra.wd: expected a non-empty list of numbers"):
        GridSearch([0.1], [32], extra={"wd": []})
    sampled = RandomSearch().initial(8, space, initial, 4, np.random.default_rng(0))
    assert len({b.extra["wd"] for b in sampled}) == 8 and all(space.contains(b) for b in sampled)


# -- a user's task from the command line ---------------------------------------------------------------
def test_user_task_with_extra_runs_resumes_and_replays_from_the_cli(user_job, tmp_path, capsys):
    killed = write_config(tmp_path, user_job, "killed")
    env = {**os.environ, "DIE_AT_CALL": "10", "PYTHONWARNINGS": "ignore"}  # in the third interval
    done = subprocess.run(
        [sys.executable, "-m", "rlsched", "run", str(killed), "--quiet"], env=env, capture_output=True
    )
    assert done.returncode == 9, done.stderr.decode()[-2000:]
    run_dir = tmp_path / "runs" / "killed"
    assert RunDir(run_dir).checkpoints() and not (run_dir / "result.json").exists()
    assert json.loads((run_dir / "run.json").read_text())["task"] == f"{user_job}:make_job"

    assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert main(["run", str(write_config(tmp_path, user_job, "unbroken")), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "weight_decay start -> end" in out
    resumed, unbroken = RunDir(run_dir), RunDir(tmp_path / "runs" / "unbroken")
    assert resumed.lineage() == unbroken.lineage()  # the resumed run is the unbroken one
    assert resumed.read_result() == unbroken.read_result()

    events = unbroken.lineage()
    starts = {e.member: e.hparams.extra["weight_decay"] for e in events if isinstance(e, Start)}
    assert starts[0] == 0.01 and len(set(starts.values())) == 4  # member 0 at [initial], others sampled
    clones = [e for e in events if isinstance(e, Clone)]
    assert clones and all("weight_decay" in e.reason for e in clones)
    trained = {e.hparams.extra["weight_decay"] for e in events if isinstance(e, Train)}
    assert trained - set(starts.values())  # PBT's explore changed weight decay
    assert all(1e-4 <= wd <= 0.1 for wd in trained)
    lines = [json.loads(line) for line in (unbroken.path / "lineage.jsonl").read_text().splitlines()]
    assert all("weight_decay" in e["hparams"]["extra"] for e in lines if e["event"] == "train")

    result = unbroken.read_result()
    best = result["best"]
    assert best["hparams"]["extra"]["weight_decay"] == best["trajectory"][-1][1]["extra"]["weight_decay"]
    assert {s for s, _ in best["trajectory"]} == {0, 1000, 2000, 3000}
    spec = json.loads((unbroken.path / "run.json").read_text())
    assert spec["space"]["extra"] == {"weight_decay": [1e-4, 0.1, "log"]}
    assert spec["initial"]["extra"] == {"weight_decay": 0.01}

    board = EventAccumulator(str(unbroken.path / "member-00"))
    board.Reload()
    logged = [e.value for e in board.Scalars("sched/weight_decay")]
    assert logged[0] == pytest.approx(0.01) and len(logged) == 1 + 2 * 4

    assert main(["replay", str(unbroken.path)]) == 0
    assert "weight_decay" in capsys.readouterr().out
    replayed = rlsched.replay(unbroken.path)
    assert [hp.to_dict() for _, hp in replayed.trajectory] == [hp for _, hp in best["trajectory"]]
    assert math.isfinite(replayed.metrics["loss"])


def test_module_task_through_set_and_the_shipped_example(user_job, tmp_path, monkeypatch, capsys):
    (tmp_path / "user_tasks_module.py").write_text(JOB)
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, user_job, "module")
    code = main(["run", str(config), "--quiet", "--set", "task=user_tasks_module:make_job"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "runs" / "module" / "run.json").read_text())["task"] == (
        "user_tasks_module:make_job"
    )
    example = f"{EXAMPLES / 'my_job.py'}:make_job"
    sets = ["--set", f"task={json.dumps(example)}", "--set", f"logdir={json.dumps(str(tmp_path))}"]
    sets += ["--set", "budget_samples=1200", "--set", "decisions=2", "--set", "population=2"]
    assert main(["run", str(EXAMPLES / "my_job.toml"), "--quiet", *sets]) == 0
    result = json.loads((tmp_path / "pbt-my-job" / "result.json").read_text())
    assert set(result["best"]["hparams"]["extra"]) == {"dropout", "weight_decay"}


SPACE = CONFIG[CONFIG.index("[space]") : CONFIG.index("[initial]")]
BAD = [
    ({"task": "no_such_module_for_rlsched:make_job"}, "task: no module named 'no_such_module_for_rlsched'"),
    ({"task": "JOB:nope"}, "has no attribute 'nope'"),
    ({"task": "JOB:NOT_CALLABLE"}, "is not callable (it is a int)"),
    ({"task": "missing_file.py:make_job"}, "task: no such file 'missing_file.py'"),
    ({"task": "BROKEN:make_job"}, "failed (RuntimeError: broken on import)"),
    ({"task": "JOB:"}, "task: expected 'module:function' or 'path/to/file.py:function'"),
    ({"budget_samples = 4000": ""}, "budget_samples: required for a user's task"),
    ({SPACE: ""}, "space: required for a user's task"),
    ({"lr = [0.01, 1.0]\n": ""}, "space.lr: required for a user's task"),
    ({"lr = 0.3\n": ""}, "initial.lr: required for a user's task"),
    ({'[1e-4, 0.1, "log"]': '[0.0, 0.1, "log"]'}, "space.extra.weight_decay: expected 0 < low < high"),
    ({'[1e-4, 0.1, "log"]': '[1e-4, 0.1, "cubic"]'}, "space.extra.weight_decay: scale: expected one of"),
    ({'[1e-4, 0.1, "log"]': "0.1"}, "space.extra.weight_decay: expected [low, high] or [low, high, scale]"),
    ({"weight_decay = 0.01": "momentum = 0.9"}, "initial.extra.momentum: not one of the space's extras"),
    ({"weight_decay = 0.01": "weight_decay = 0.5"}, "initial.extra.weight_decay: 0.5 is outside the bounds"),
]


@pytest.mark.parametrize("replace, message", BAD)
def test_bad_user_task_input_is_one_line_exit_2_and_writes_nothing(
    replace, message, user_job, tmp_path, capsys
):
    broken = tmp_path / "broken_job.py"
    broken.write_text("raise RuntimeError('broken on import')\n")
    config = write_config(tmp_path, user_job, "bad")
    text = config.read_text()
    for old, new in replace.items():
        if old == "task":
            new = new.replace("JOB", str(user_job)).replace("BROKEN", str(broken))
            text = text.replace(f'task = "{user_job}:make_job"', f'task = "{new}"')
        else:
            assert old in text
            text = text.replace(old, new)
    config.write_text(text)
    before = files(tmp_path)
    assert main(["run", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert files(tmp_path) == before and not (tmp_path / "runs").exists()


def test_load_factory_in_python(user_job):
    factory = load_factory(f"{user_job}:make_job")
    job = factory(0)
    job.train(Hyperparams(0.1, 32, {"weight_decay": 0.01}), 64)
    assert job.evaluate()["loss"] < 0.5 * np.sum(np.logspace(-2, 0, 12) * 4.0)
