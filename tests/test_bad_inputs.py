"""Every bad input to the command line is one line on stderr, exit code 2, and nothing on disk
created or changed: a corpus of flags, configs, agents, files and tampered run directories.

Each case runs ``rlsched.app.cli.main`` in process (a few through the real ``rlsched`` executable)
in a directory holding a finished run and tampered copies of it, and compares that directory's
every name, byte and file time before and after. Every case fails before any training.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
COMPARE = """
task = "synthetic"
name = "cmp"
seeds = [0]
population = 2
budget_samples = 4000
decisions = 2
[agents.a]
type = "PBT"
"""
META = """
out = "ctl/controller.pt"
logdir = "runs/meta"
total_steps = 40
num_envs = 1
asynchronous = false
eval_tasks = 1
"""
LONG = "a" * 300  # over NAME_MAX (255 bytes) on every common file system
ROOT = os.geteuid() == 0  # root writes through any mode bits: chmod cannot make a directory read-only


_DIGESTS: dict[tuple, str] = {}  # (path, inode, size, time) -> digest: a file unchanged is hashed once


def tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: a directory as itself, a file with its bytes' digest, mode and time."""
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_dir() and not path.is_symlink():
            state[str(path.relative_to(root))] = ("dir", info.st_mode)
            continue
        key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if key not in _DIGESTS and path.is_file():
            _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        state[str(path.relative_to(root))] = (_DIGESTS.get(key), info.st_mode, info.st_mtime_ns)
    return state


# -- tampered run directories: each a copy of the finished run "ok" with one thing wrong ---------
def _json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _pt(path: Path, change) -> None:
    data = torch.load(path, weights_only=True)
    change(data)
    torch.save(data, path)


def _drop(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


CKPT = "checkpoint-00002"
TAMPER = {
    "no-space": lambda r: _json(r / "run.json", _drop("space")),
    "no-population": lambda r: _json(r / "run.json", _drop("population")),
    "no-initial": lambda r: _json(r / "run.json", _drop("initial")),
    "bogus-agent-arg": lambda r: _json(r / "run.json", lambda d: d["agent"].update(bogus=1)),
    "bad-agent-type": lambda r: _json(r / "run.json", lambda d: d["agent"].update(type="Nope")),
    "agent-not-table": lambda r: _json(r / "run.json", _set("agent", 5)),
    "population-1e9": lambda r: _json(r / "run.json", _set("population", 10**9)),
    "population-str": lambda r: _json(r / "run.json", _set("population", "two")),
    "decisions-0": lambda r: _json(r / "run.json", _set("decisions", 0)),
    "decisions-1e9": lambda r: _json(r / "run.json", _set("decisions", 10**9)),
    "budget-str": lambda r: _json(r / "run.json", _set("budget_samples", "x")),
    "seed-neg": lambda r: _json(r / "run.json", _set("seed", -1)),
    "space-bad": lambda r: _json(r / "run.json", lambda d: d["space"].update(lr=[1.0, 0.1])),
    "space-key": lambda r: _json(r / "run.json", lambda d: d["space"].update(bogus=1)),
    "space-list": lambda r: _json(r / "run.json", _set("space", [1, 2])),
    "initial-outside": lambda r: _json(r / "run.json", lambda d: d["initial"].update(lr=50.0)),
    "initial-str": lambda r: _json(r / "run.json", _set("initial", "x")),
    "task-unknown": lambda r: _json(r / "run.json", _set("task", "mnist2d")),
    "task-int": lambda r: _json(r / "run.json", _set("task", 5)),
    "format-wrong": lambda r: _json(r / "run.json", _set("format", "other/1")),
    "run-json-list": lambda r: (r / "run.json").write_text("[1, 2]"),
    "run-json-garbage": lambda r: (r / "run.json").write_text("{not json"),
    "run-json-deep": lambda r: (r / "run.json").write_text("[" * 100_000 + "]" * 100_000),
    "run-pt-format-only": lambda r: torch.save({"format": "rlsched.core.files/1"}, r / CKPT / "run.pt"),
    "run-pt-garbage": lambda r: (r / CKPT / "run.pt").write_bytes(b"garbage"),
    "run-pt-decision-str": lambda r: _pt(r / CKPT / "run.pt", _set("decision", "x")),
    "run-pt-decision-late": lambda r: _pt(r / CKPT / "run.pt", _set("decision", 7)),
    "run-pt-one-seed": lambda r: _pt(r / CKPT / "run.pt", lambda d: d["seeds"].pop()),
    "run-pt-no-members": lambda r: _pt(r / CKPT / "run.pt", _set("members", [])),
    "run-pt-member-no-history": lambda r: _pt(r / CKPT / "run.pt", lambda d: d["members"][0].pop("history")),
    "run-pt-rng": lambda r: _pt(r / CKPT / "run.pt", _set("rng", {"bit_generator": "nope"})),
    "run-pt-agent-state": lambda r: _pt(r / CKPT / "run.pt", _set("agent", {"bogus": 1})),
    "run-pt-lineage-count": lambda r: _pt(r / CKPT / "run.pt", _set("lineage_events", 10**6)),
    "member-format-only": lambda r: torch.save({"format": "rlsched.core.files/1"}, r / CKPT / "member-01.pt"),
    "member-missing": lambda r: (r / CKPT / "member-01.pt").unlink(),
    "member-garbage": lambda r: (r / CKPT / "member-00.pt").write_bytes(b"\x00" * 64),
    "member-shapes": lambda r: _pt(
        r / CKPT / "member-00.pt", lambda d: d["job"]["model"].update({"0.weight": torch.zeros(3, 3)})
    ),
    "member-job-keys": lambda r: _pt(r / CKPT / "member-00.pt", lambda d: d["job"].pop("optimizer")),
    "member-job-format": lambda r: _pt(r / CKPT / "member-00.pt", lambda d: d["job"].update(format="x")),
    "legacy-checkpoint": lambda r: (shutil.rmtree(r / CKPT), (r / "checkpoint-00002.pt").write_bytes(b"x")),
    "finished-early": lambda r: _json(r / "run.json", _set("decisions", 3)),
    "result-empty": lambda r: (r / "result.json").write_text("{}"),
    "result-garbage": lambda r: (r / "result.json").write_text("garbage"),
    "result-list": lambda r: (r / "result.json").write_text("[]"),
    "result-best-out": lambda r: _json(r / "result.json", _set("best_member", 9)),
    "result-seed-str": lambda r: _json(r / "result.json", _set("seed_of_best_origin", "x")),
    "result-no-metrics": lambda r: _json(r / "result.json", lambda d: d["best"].pop("metrics")),
    "lineage-empty": lambda r: (r / "lineage.jsonl").write_text(""),
    "lineage-garbage": lambda r: (r / "lineage.jsonl").write_text("garbage\n{]\n"),
    "lineage-missing": lambda r: (r / "lineage.jsonl").unlink(),
    "lineage-cut": lambda r: (r / "lineage.jsonl").write_text(
        "".join((r / "lineage.jsonl").read_text().splitlines(keepends=True)[:3])
    ),
    "lineage-no-trains": lambda r: (r / "lineage.jsonl").write_text(
        "".join(x for x in (r / "lineage.jsonl").read_text().splitlines(True) if '"train"' not in x)
    ),
    "lineage-no-ancestor": lambda r: (r / "lineage.jsonl").write_text(
        "".join(
            x
            for x in (r / "lineage.jsonl").read_text().splitlines(True)
            if '"event": "train", "decision": 0,' not in x
        )
    ),
    "lineage-bad-event": lambda r: (r / "lineage.jsonl").write_text('{"event": "boom"}\n'),
    "lineage-unhashable": lambda r: (r / "lineage.jsonl").write_text('{"event": []}\n'),
}
RESUME_ONLY = {"bogus-agent-arg", "bad-agent-type", "legacy-checkpoint", "finished-early"}
RESUME_ONLY |= {k for k in TAMPER if k.startswith(("member-", "run-pt-"))}
REPLAY_ONLY = {k for k in TAMPER if k.startswith(("result-", "lineage-"))} - {
    "lineage-cut",
    "lineage-missing",
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A directory with configs, a finished run ``runs/ok`` and its tampered copies ``runs/t-*``."""
    root = tmp_path_factory.mktemp("bad-inputs")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for name, text in [("good.toml", GOOD), ("compare.toml", COMPARE), ("meta.toml", META)]:
            (root / name).write_text(text)
        assert main(["run", "good.toml", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    (root / "afile").write_text("a file, not a directory\n")
    (root / "emptydir").mkdir()
    (root / "notes").mkdir()
    (root / "ctl").mkdir()
    (root / "exists.pt").write_bytes(b"x")
    (root / "card.md").write_text("a model card\n")
    write_configs(root)
    write_controllers(root)
    tensorboard = shutil.ignore_patterns("events.out.*", "*.png", "member-0?", "best")  # not read here
    for name, tamper in TAMPER.items():
        shutil.copytree(root / "runs" / "ok", root / "runs" / f"t-{name}", ignore=tensorboard)
        tamper(root / "runs" / f"t-{name}")
    if not ROOT:
        (root / "ro").mkdir(mode=0o555)
    return root


def write_configs(root: Path) -> None:
    files = {
        "broken.toml": "task = \n",
        "binary.toml": b"\xff\xfe\x00garbage",
        "deep-arrays.toml": "a = " + "[" * 100_000 + "]" * 100_000,
        "deep-tables.toml": "a = " + "{b=" * 100_000 + "1" + "}" * 100_000,
        "deep-dotted.toml": ".".join(["a"] * 100_000) + " = 1\n",
        "deep-header.toml": "[" + ".".join(["a"] * 100_000) + "]\n",
        "nested-40.toml": "a = " + "[" * 40 + "]" * 40 + "\n",
        "huge.toml": "# " + "x" * (2 << 20) + "\n",
        "array-root.toml": "population = [1, 2]\n",
        "compare-empty.toml": 'task = "synthetic"\n',
        "compare-dupe.toml": COMPARE + '[agents."a b"]\ntype = "PBT"\n[agents."a-b"]\ntype = "PBT"\n',
        "user.toml": 'task = "userjob.py:make_job"\n',
    }
    for name, content in files.items():
        path = root / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    if not ROOT:
        (root / "secret.toml").write_text(GOOD)
        (root / "secret.toml").chmod(0)


def write_controllers(root: Path) -> None:
    from rlsched.agents.controller import Controller

    Controller.load("default").save(root / "good-controller.pt")
    state = torch.load(root / "good-controller.pt", weights_only=True)
    bad = {k: v.clone() for k, v in state["state_dict"].items()}
    first = next(iter(bad))
    bad[first][0] = float("nan")
    torch.save({**state, "state_dict": bad}, root / "nan-controller.pt")
    shaped = dict(state["state_dict"], **{first: torch.zeros(2, 2)})
    torch.save({**state, "state_dict": shaped}, root / "shape-controller.pt")
    torch.save({"format": state["format"]}, root / "bare-controller.pt")
    (root / "garbage-controller.pt").write_bytes(b"not a controller")


# -- the corpus: (argv, what the one line must say) ------------------------------------------------
def run_set(*sets: str) -> list[str]:
    argv = ["run", "good.toml", "--quiet"]
    for s in sets:
        argv += ["--set", s]
    return argv


def agent(kind: str, *sets: str) -> list[str]:
    return run_set("name=fresh", f"agent.type={kind}", *[f"agent.{s}" for s in sets])


FLAGS = [
    (["launch"], "invalid choice: 'launch'"),
    ([], "the following arguments are required: command"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "good.toml", "other.toml"], "unrecognized arguments: other.toml"),
    (["compare"], "the following arguments are required: config"),
    (["resume"], "the following arguments are required: run_dir"),
    (["replay"], "the following arguments are required: run_dir"),
    (["train-controller"], "the following arguments are required: config"),
    (["init", "a.toml", "b.toml"], "unrecognized arguments: b.toml"),
    (["tasks", "extra"], "unrecognized arguments: extra"),
    (["run", "good.toml", "--threads", "0"], "--threads: expected an integer in [1, 1024], got '0'"),
    (["run", "good.toml", "--threads", "-2"], "--threads: expected an integer in [1, 1024]"),
    (["run", "good.toml", "--threads", "two"], "--threads: expected an integer in [1, 1024], got 'two'"),
    (["run", "good.toml", "--threads", "1.5"], "--threads: expected an integer"),
    (["run", "good.toml", "--threads", "99999"], "--threads: expected an integer in [1, 1024]"),
    (["run", "good.toml", "--threads"], "--threads: expected one argument"),
    (["compare", "compare.toml", "--threads", "0"], "--threads: expected an integer"),
    (["resume", "runs/ok", "--threads", "x"], "--threads: expected an integer"),
    (["replay", "runs/ok", "--threads", "0"], "--threads: expected an integer"),
    (["train-controller", "meta.toml", "--threads", "0"], "--threads: expected an integer"),
    (["run", "good.toml", "--device", "tpu"], "--device: expected cpu, cuda or cuda:N, got 'tpu'"),
    (["run", "good.toml", "--device", "cuda:"], "--device: expected cpu, cuda or cuda:N"),
    (["run", "good.toml", "--device", "CUDA"], "--device: expected cpu, cuda or cuda:N"),
    (["run", "good.toml", "--device", "cuda:x"], "--device: expected cpu, cuda or cuda:N"),
    (["run", "good.toml", "--device", "cuda:99"], "--device: cuda:99 is not available"),
    (["replay", "runs/ok", "--device", "mps"], "--device: expected cpu, cuda or cuda:N"),
    (["compare", "compare.toml", "--device", "tpu"], "--device: expected cpu, cuda or cuda:N, got 'tpu'"),
    (["tasks", "--threads", "2"], "unrecognized arguments: --threads 2"),
    (run_set("novalue"), "--set: expected key=value, got 'novalue'"),
    (run_set("=5"), "--set: expected key=value"),
    (run_set("agent..type=PBT"), "--set: 'agent..type': expected a key or dotted key"),
    (run_set("population.x=1"), "--set: 'population.x': 'population' is not a table"),
    (run_set("a=" + "[" * 5000 + "]" * 5000), "--set: 'a' nests keys, tables or arrays deeper than 32"),
]
if torch.cuda.is_available():
    FLAGS.remove((["run", "good.toml", "--device", "cuda:99"], "--device: cuda:99 is not available"))
else:
    FLAGS += [
        (["run", "good.toml", "--device", "cuda"], "--device: cuda is not available"),
        (["resume", "runs/ok", "--device", "cuda:0"], "--device: cuda:0 is not available"),
        (["compare", "compare.toml", "--device", "cuda"], "--device: cuda is not available"),
    ]

CONFIG_FILES = [
    (["run", "missing.toml"], "config: no such file 'missing.toml'"),
    (["run", "notes"], "config: 'notes' is not a regular file"),
    (["run", "/dev/null"], "config: '/dev/null' is not a regular file"),
    (["run", "broken.toml"], "is not valid TOML"),
    (["run", "binary.toml"], "is not valid TOML"),
    (["run", "deep-arrays.toml"], "deeper than 32 levels"),
    (["run", "deep-tables.toml"], "deeper than 32 levels"),
    (["run", "deep-dotted.toml"], "over 1000 dots on a line"),
    (["run", "deep-header.toml"], "over 1000 dots on a line"),
    (["run", "nested-40.toml"], "deeper than 32 levels"),
    (["run", "huge.toml"], "bytes; expected a TOML config"),
    (["run", "a\0b.toml"], "config: expected a file name"),
    (["run", LONG + ".toml"], "config: cannot read"),
    (["run", "array-root.toml"], "population: expected an integer in [1, 4096], got [1, 2]"),
    (["compare", "missing.toml"], "config: no such file"),
    (["train-controller", "missing.toml"], "config: no such file"),
    (["train-controller", "deep-arrays.toml"], "deeper than 32 levels"),
] + ([] if ROOT else [(["run", "secret.toml"], "config: cannot read")])

KEYS = [
    (run_set("populaton=4"), "did you mean 'population'"),
    (run_set("bogus=1"), "bogus: unknown key"),
    (run_set("population=0"), "population: expected an integer in [1, 4096], got 0"),
    (run_set("population=-1"), "population: expected an integer in [1, 4096]"),
    (run_set("population=two"), "population: expected an integer in [1, 4096], got 'two'"),
    (run_set("population=1.5"), "population: expected an integer in [1, 4096], got 1.5"),
    (run_set("population=true"), "population: expected an integer in [1, 4096], got True"),
    (run_set("population=100000"), "population: expected an integer in [1, 4096], got 100000"),
    (run_set("population=4097"), "population: expected an integer in [1, 4096]"),
    (run_set("seed=-1"), "seed: expected an integer >= 0, got -1"),
    (run_set("seed=x"), "seed: expected an integer"),
    (run_set("seed=1.5"), "seed: expected an integer"),
    (run_set("checkpoint_every=0"), "checkpoint_every: expected an integer >= 1, got 0"),
    (run_set("checkpoint_every=x"), "checkpoint_every: expected an integer >= 1"),
    (run_set("task=mnist2d"), "task: unknown task 'mnist2d'; expected one of"),
    (run_set("task=5"), "task: expected a non-empty string, got 5"),
    (run_set('task=""'), "task: expected a non-empty string"),
    (run_set("task=nosuchmodule:f"), "task: no module named 'nosuchmodule'"),
    (run_set("task=missing.py:f"), "task: no such file 'missing.py'"),
    (run_set("task=rlsched.envs.tasks:nothing"), "has no attribute 'nothing'"),
    (run_set("task=rlsched.envs.tasks:TASKS"), "is not callable"),
    (["run", "user.toml", "--quiet"], "task: no such file 'userjob.py'"),
    (run_set("decisions=0"), "decisions: expected an integer in [1, 10000], got 0"),
    (run_set("decisions=100000"), "decisions: expected an integer in [1, 10000], got 100000"),
    (run_set("decisions=x"), "decisions: expected an integer in [1, 10000]"),
    (run_set("budget_samples=1"), "budget_samples: expected at least one example"),
    (run_set("budget_samples=0"), "budget_samples: expected an integer >= 1, got 0"),
    (run_set("budget_samples=x"), "budget_samples: expected an integer >= 1"),
    (run_set("budget_samples=1e9"), "budget_samples: expected an integer >= 1, got 1000000000.0"),
    (run_set('name=""'), "name: expected a non-empty string"),
    (run_set("name=a/b"), "name: expected a plain directory name"),
    (run_set("name=.."), "name: expected a plain directory name"),
    (run_set("name=5"), "name: expected a non-empty string, got 5"),
    (run_set(f"name={LONG}"), "name: 300 bytes, over the file-name limit of 255 (NAME_MAX)"),
    (run_set("name=" + "é" * 200), "name: 400 bytes, over the file-name limit of 255"),
    (run_set("name=ok"), "name: runs/ok already holds a run"),
    (run_set("logdir=5"), "logdir: expected a non-empty string, got 5"),
    (run_set('logdir=""'), "logdir: expected a non-empty string"),
    (run_set("space=5"), "space: expected a table"),
    (run_set("space.lr=[1.0, 0.1]"), "space.lr: expected finite bounds with 0 < low < high"),
    (run_set("space.lr=[0, 1]"), "space.lr: expected finite bounds with 0 < low < high"),
    (run_set("space.lr=[1e-3, 1e300]"), "space.lr: expected bounds with high <= 1e+06"),
    (run_set("space.lr=[1e-3, inf]"), "space.lr: expected finite bounds"),
    (run_set("space.lr=[0.1]"), "space.lr: expected a pair (low, high) of numbers"),
    (run_set('space.lr=["a", "b"]'), "space.lr: expected a pair (low, high) of numbers"),
    (run_set("space.lr=x"), "space.lr: expected a sequence, got 'x'"),
    (run_set("space.batch_size=[]"), "space.batch_size: expected a non-empty ladder"),
    (run_set("space.batch_size=[64, 32]"), "space.batch_size: expected a strictly increasing ladder"),
    (
        run_set("space.batch_size=[0, 32]"),
        "space.batch_size: expected a non-empty ladder of positive integers",
    ),
    (run_set("space.batch_size=[1.5]"), "space.batch_size: expected a non-empty ladder of positive integers"),
    (run_set("space.scale_rule=cubic"), "space.scale_rule: expected one of sqrt, linear, none"),
    (run_set("space.lrr=[0.1, 1.0]"), "space.lrr: unknown key; did you mean 'lr'?"),
    (run_set("space.extra.wd=[1, 0]"), "space.extra.wd: expected finite bounds with low < high"),
    (run_set('space.extra.wd=[1e-5, 1, "cubic"]'), "space.extra.wd: scale: expected one of log, linear"),
    (run_set("space.extra.wd=x"), "space.extra.wd: expected [low, high] or [low, high, scale]"),
    (run_set("space.extra.lr=[0, 1]"), "space.extra: expected names of letters, digits and _"),
    (run_set("space.extra=5"), "space.extra: expected a table"),
    (run_set("initial.lr=5.0"), "initial.lr: 5.0 is outside the bounds"),
    (run_set("initial.lr=-1"), "initial.lr: expected a positive finite number, got -1"),
    (run_set("initial.lr=x"), "initial.lr: expected a positive finite number, got 'x'"),
    (run_set("initial.batch_size=48"), "initial.batch_size: 48 is not on the ladder"),
    (run_set("initial.batch_size=0"), "initial.batch_size: expected a positive integer, got 0"),
    (run_set("initial.extra=5"), "initial.extra: expected a table"),
    (run_set("initial.extra.wd=0.1"), "initial.extra.wd: not one of the space's extras"),
    (run_set("initial.foo=1"), "initial.foo: unknown key"),
    (run_set("initial=5"), "initial: expected a table"),
]

AGENTS = [
    (run_set("agent=5"), "agent: expected a table with a type, got 5"),
    (run_set("agent.type=PPO"), "agent.type: expected one of Fixed, GridSearch"),
    (run_set("agent.type=5"), "agent.type: expected one of"),
    (agent("PBT", "quantile_fraction=0.9"), "agent.quantile_fraction: expected a value in (0, 0.5], got 0.9"),
    (agent("PBT", "quantile_fraction=0"), "agent.quantile_fraction: expected a value in (0, 0.5]"),
    (agent("PBT", "quantile_fraction=x"), "agent.quantile_fraction: expected a number, got 'x'"),
    (agent("PBT", "quantile_fraction=nan"), "agent.quantile_fraction: expected a value in (0, 0.5], got nan"),
    (agent("PBT", "quantile_fractoin=0.2"), "did you mean 'quantile_fraction'?"),
    (agent("PBT", "perturbation_interval=0"), "agent.perturbation_interval: expected an integer >= 1"),
    (agent("PBT", "perturbation_interval=1.5"), "agent.perturbation_interval: expected an integer >= 1"),
    (agent("PBT", "perturbation_interval=x"), "agent.perturbation_interval: expected an integer, got 'x'"),
    (agent("PBT", "burn_in=-1"), "agent.burn_in: expected an integer >= 0, got -1"),
    (agent("PBT", "resample_probability=2"), "agent.resample_probability: expected a value in [0, 1], got 2"),
    (agent("PBT", "resample_probability=x"), "agent.resample_probability: expected a number"),
    (agent("PBT", "perturbation_factors=5"), "agent.perturbation_factors: expected a list, got 5"),
    (agent("PBT", "perturbation_factors=[1]"), "agent.perturbation_factors: expected two positive finite"),
    (agent("PBT", "perturbation_factors=[0, 1]"), "agent.perturbation_factors: expected two positive finite"),
    (agent("PBT", 'perturbation_factors=["a", "b"]'), "agent.perturbation_factors: expected two positive"),
    (agent("PBT", "perturbation_factors=[1, inf]"), "agent.perturbation_factors: expected two positive"),
    (agent("PBT", "explore=nope"), "agent.explore: expected 'perturb' or an Explorer"),
    (agent("PBT", "explore=5"), "agent.explore: expected a string, got 5"),
    (agent("PBT", 'explore={type="PBT"}'), "agent.explore: expected 'perturb' or an Explorer"),
    (agent("PBT", "init=x"), "agent.init: expected 'sample' or 'fixed', got 'x'"),
    (agent("PBT", "scale_lr=yes"), "agent.scale_lr: expected true or false, got 'yes'"),
    (agent("PB2", "candidates=inf"), "agent.candidates: expected an integer in [1, 100000], got inf"),
    (agent("PB2", "candidates=1e8"), "agent.candidates: expected an integer in [1, 100000], got 100000000.0"),
    (agent("PB2", "candidates=100001"), "agent.candidates: expected an integer in [1, 100000], got 100001"),
    (agent("PB2", "candidates=0"), "agent.candidates: expected an integer in [1, 100000], got 0"),
    (agent("PB2", "candidates=x"), "agent.candidates: expected an integer, got 'x'"),
    (agent("PB2", "explore=perturb"), "agent.explore: unknown key"),
    (agent("Fixed", "schedule=5"), "agent.schedule: expected one of constant, cosine, step, onecycle, wsd"),
    (agent("Fixed", "schedule=linear"), "agent.schedule: expected one of constant, cosine"),
    (
        agent("Fixed", 'schedule={kind="cosine", warmup=2}'),
        "agent.schedule.warmup: expected a value in [0, 1]",
    ),
    (
        agent("Fixed", 'schedule={kind="cosine", warmup="x"}'),
        "agent.schedule.warmup: expected a value in [0, 1]",
    ),
    (agent("Fixed", 'schedule={kind="zigzag"}'), "agent.schedule: expected one of constant"),
    (agent("Fixed", 'schedule={kind="cosine", foo=1}'), "agent.schedule.foo: unknown key"),
    (agent("Fixed", "schedule=[1, 2]"), "agent.schedule: expected one of constant"),
    (agent("RandomSearch", "schedule=5"), "agent.schedule: expected one of constant"),
    (agent("GridSearch"), "agent.lr: required for GridSearch"),
    (agent("GridSearch", "lr=[0.1, 0.2]"), "agent.batch_size: required for GridSearch"),
    (
        agent("GridSearch", "lr=[5.0, 0.1]", "batch_size=[32]"),
        "agent.lr: 5.0 is outside the space's lr bounds",
    ),
    (
        agent("GridSearch", "lr=[0.1, 0.2]", "batch_size=[48]"),
        "agent.batch_size: 48 is not on the space's ladder",
    ),
    (agent("GridSearch", "lr=[0.1]", "batch_size=[32]"), "agent: the grid has 1 points but population is 2"),
    (
        agent("GridSearch", "lr=x", "batch_size=[32]"),
        "agent.lr: expected a non-empty list of positive numbers",
    ),
    (
        agent("GridSearch", "lr=[]", "batch_size=[32]"),
        "agent.lr: expected a non-empty list of positive numbers",
    ),
    (agent("GridSearch", "lr=[-1, 1]", "batch_size=[32]"), "agent.lr: expected a non-empty list of positive"),
    (agent("GridSearch", "lr=[0.1, 0.2]", "batch_size=[0]"), "agent.batch_size: expected a non-empty list"),
    (
        agent("GridSearch", "lr=[0.1, 0.2]", "batch_size=[32]", "extra={wd=[0.1]}"),
        "agent.extra.wd: not one of the space's extras (none)",
    ),
    (
        agent("GridSearch", f"lr={[0.01] * 100}", f"batch_size={list(range(1, 101))}"),
        "agent.lr: the grid of lr x batch_size (x extra) has 10000 points, more than the largest population",
    ),
    (agent("ProbeCosine", "probe_fraction=0.7"), "agent.probe_fraction: expected a fraction in (0, 0.5)"),
    (agent("ProbeCosine", "probe_fraction=x"), "agent.probe_fraction: expected a number, got 'x'"),
    (agent("ProbeCosine", "batch=x"), "agent.batch: expected one of fixed, noise"),
    (agent("Controller", "path=missing.pt"), "controller: no such file 'missing.pt'"),
    (agent("Controller", "path=nan-controller.pt"), "has a non-finite or non-tensor weight"),
    (agent("Controller", "path=shape-controller.pt"), "does not fit this rlsched's network"),
    (agent("Controller", "path=bare-controller.pt"), "lacks its metadata or state_dict table"),
    (agent("Controller", "path=garbage-controller.pt"), "is not a readable controller file"),
    (agent("Controller", "path=5"), "agent.path: expected a string, got 5"),
]

FILESYSTEM = [
    (run_set("logdir=afile"), "logdir: ", "afile is a file, not a directory"),
    (run_set("logdir=afile/sub"), "afile is a file, not a directory, so"),
    (run_set("logdir=/dev/null"), "logdir: /dev/null is a device, pipe or socket, not a directory"),
    (run_set("logdir=/dev/null/runs"), "logdir: /dev/null is a device, pipe or socket"),
    (
        run_set(f"logdir={LONG}"),
        "logdir: aaaa",
        "is 300 bytes, over this file system's file-name limit of 255",
    ),
    (run_set(f"logdir=runs/{LONG}/x"), "is 300 bytes, over this file system's file-name limit"),
    (run_set("logdir=" + "/d" * 2100), "logdir: ", "bytes of path, over the limit of 4095 (PATH_MAX)"),
    (run_set("logdir=/proc/rlsched-test"), "logdir: cannot make /proc/rlsched-test"),
    (run_set("logdir=.", "name=afile"), "name: ", "afile is a file, not a directory"),
    (run_set("logdir=a\0b"), "logdir: expected a non-empty string"),
    (["compare", "compare.toml", "--set", "logdir=afile"], "logdir: ", "afile is a file"),
    (["compare", "compare.toml", "--set", "name=afile", "--set", "logdir=."], "name: ", "afile is a file"),
    (["compare", "compare.toml", "--set", f"name={LONG}"], "name: 300 bytes, over the file-name limit"),
    (["train-controller", "meta.toml", "--set", "out=afile/c.pt"], "out: ", "afile is a file"),
    (["train-controller", "meta.toml", "--set", "out=exists.pt"], "out: exists.pt already exists"),
    (["train-controller", "meta.toml", "--set", "out=card.pt"], "out: card.md already exists"),
    (["train-controller", "meta.toml", "--set", f"out={LONG}.pt"], "out: aaaa", "over this file system's"),
    (["train-controller", "meta.toml", "--set", "logdir=/dev/null"], "logdir: /dev/null is a device"),
    (["init", "good.toml"], "PATH: good.toml already exists"),
    (["init", "notes"], "PATH: notes already exists"),
    (["init", "afile/x.toml"], "PATH: ", "afile is a file"),
    (["init", f"{LONG}.toml"], "PATH: aaaa", "over this file system's file-name limit"),
    (["init", "/dev/null"], "PATH: /dev/null already exists"),
    (["init", "/proc/rlsched-test/x.toml"], "PATH: cannot write"),
] + (
    []
    if ROOT
    else [
        (run_set("logdir=ro/runs"), "logdir: cannot write in", "(read-only or no permission)"),
        (["init", "ro/x.toml"], "PATH: cannot write in"),
    ]
)

META_CASES = [
    (["train-controller", "meta.toml", "--set", "gamma=x"], "gamma: expected a value in [0, 1], got 'x'"),
    (["train-controller", "meta.toml", "--set", "gamma=1.5"], "gamma: expected a value in [0, 1], got 1.5"),
    (
        ["train-controller", "meta.toml", "--set", "seed=-1"],
        "seed: expected an integer in [0, 4294967295], got -1",
    ),
    (["train-controller", "meta.toml", "--set", "num_envs=0"], "num_envs: expected an integer in [1, 256]"),
    (
        ["train-controller", "meta.toml", "--set", "num_envs=1000"],
        "num_envs: expected an integer in [1, 256]",
    ),
    (["train-controller", "meta.toml", "--set", "total_steps=0"], "total_steps: expected an integer"),
    (
        ["train-controller", "meta.toml", "--set", "learning_rate=0"],
        "learning_rate: expected a value in (0, 1]",
    ),
    (
        ["train-controller", "meta.toml", "--set", "learning_rate=x"],
        "learning_rate: expected a value in (0, 1]",
    ),
    (["train-controller", "meta.toml", "--set", "ent_coef=-1"], "ent_coef: expected a value in [0, 1]"),
    (["train-controller", "meta.toml", "--set", "version=3"], "version: expected 1 or 2, got 3"),
    (["train-controller", "meta.toml", "--set", "version=true"], "version: expected 1 or 2, got True"),
    (["train-controller", "meta.toml", "--set", "asynchronous=yes"], "asynchronous: expected true or false"),
    (["train-controller", "meta.toml", "--set", "max_minutes=-1"], "max_minutes: expected a number >= 0"),
    (["train-controller", "meta.toml", "--set", "max_minutes=inf"], "max_minutes: expected a number >= 0"),
    (
        ["train-controller", "meta.toml", "--set", "episodes_per_task=0"],
        "episodes_per_task: expected an integer",
    ),
    (["train-controller", "meta.toml", "--set", "eval_tasks=x"], "eval_tasks: expected an integer"),
    (["train-controller", "meta.toml", "--set", "out=5"], "out: expected a non-empty path, got 5"),
    (["train-controller", "meta.toml", "--set", "bogus=1"], "bogus: unknown key"),
]

COMPARE_CASES = [
    (["compare", "compare-empty.toml"], "agents: expected at least one [agents.<label>] table"),
    (["compare", "compare.toml", "--set", "agents.a.type=Nope"], "agents.a.type: expected one of"),
    (["compare", "compare.toml", "--set", "agents.a=5"], "agents.a: expected a table with a type, got 5"),
    (
        ["compare", "compare.toml", "--set", "agents.a.population=0"],
        "agents.a.population: expected an integer",
    ),
    (["compare", "compare.toml", "--set", "seeds=[]"], "seeds: expected a list of 1 to 1000 different"),
    (["compare", "compare.toml", "--set", "seeds=[-1]"], "seeds: expected a list of 1 to 1000 different"),
    (["compare", "compare.toml", "--set", "seeds=[1, 1]"], "seeds: expected a list of 1 to 1000 different"),
    (["compare", "compare.toml", "--set", "seeds=x"], "seeds: expected a list"),
    (["compare", "compare.toml", "--set", "population=0"], "population: expected an integer in [1, 4096]"),
    (["compare", "compare.toml", "--set", "seed=1"], "seed: unknown key; did you mean 'seeds'?"),
    (
        ["compare", "compare.toml", "--set", "agents.a.type=GridSearch", "--set", "agents.a.lr=[9.0, 0.1]"],
        "agents.a.batch_size: required for GridSearch",
    ),
    (
        ["compare", "compare.toml", "--set", "agents.a.type=PB2", "--set", "agents.a.candidates=inf"],
        "agents.a.candidates: expected an integer in [1, 100000]",
    ),
    (["compare", "compare-dupe.toml"], "agents.a-b: its directory 'a-b' is also agents.a b's"),
]

RUN_DIRS = [
    (["resume", "notes"], "RUN_DIR: 'notes' is not an rlsched run directory"),
    (["resume", "nowhere"], "RUN_DIR: 'nowhere' is not an rlsched run directory"),
    (["resume", "afile"], "RUN_DIR: 'afile' is not an rlsched run directory"),
    (["resume", LONG], "is not an rlsched run directory"),
    (["resume", "a\0b"], "is not an rlsched run directory"),
    (["replay", "emptydir"], "RUN_DIR: 'emptydir' is not an rlsched run directory"),
    (["replay", "/dev/null"], "is not an rlsched run directory"),
]
EXPECT = {  # what the one line says for each tampered run directory
    "no-space": "run.json lacks 'space'",
    "no-population": "run.json lacks 'population'",
    "no-initial": "run.json lacks 'initial'",
    "bogus-agent-arg": "run.json: agent.bogus: unknown key",
    "bad-agent-type": "run.json: agent.type: expected one of",
    "agent-not-table": "run.json: agent: expected a table with a type, got 5",
    "population-1e9": "run.json: population: expected an integer in [1, 4096], got 1000000000",
    "population-str": "run.json: population: expected an integer in [1, 4096], got 'two'",
    "decisions-0": "run.json: decisions: expected an integer in [1, 10000], got 0",
    "decisions-1e9": "run.json: decisions: expected an integer in [1, 10000], got 1000000000",
    "budget-str": "run.json: budget_samples: expected at least one example per decision",
    "seed-neg": "run.json: seed: expected an integer >= 0, got -1",
    "space-bad": "run.json: lr: expected finite bounds with 0 < low < high",
    "space-key": "run.json: space: expected a table of lr, batch_size, scale_rule, extra",
    "space-list": "run.json: space: expected a table",
    "initial-outside": "run.json: initial.lr: 50.0 is outside the bounds",
    "initial-str": "run.json: hyperparams: expected a table with lr, batch_size",
    "task-unknown": "task: unknown task 'mnist2d'",
    "task-int": "run.json: task: expected a string or null, got 5",
    "format-wrong": "is not an rlsched run file (expected format 'rlsched.run/1')",
    "run-json-list": "is not an rlsched run file",
    "run-json-garbage": "run.json is not valid JSON",
    "run-json-deep": "run.json is not valid JSON",
    "run-pt-format-only": "run.pt is not a complete run checkpoint (lacks 'members')",
    "run-pt-garbage": "run.pt is not a readable rlsched checkpoint",
    "run-pt-decision-str": "run.pt is not a complete run checkpoint (decision: expected an integer >= 0",
    "run-pt-decision-late": "run.pt is not a complete run checkpoint (members: expected each history to end",
    "run-pt-one-seed": "run.pt is not a complete run checkpoint (members, seeds, origins: expected one each",
    "run-pt-no-members": "run.pt is not a complete run checkpoint (members, seeds, origins",
    "run-pt-member-no-history": "run.pt is not a complete run checkpoint (lacks 'history')",
    "run-pt-rng": "run.pt is not a complete run checkpoint",
    "run-pt-agent-state": "holds an agent state that does not fit its PBT (KeyError: 'explorer')",
    "run-pt-lineage-count": "lineage.jsonl ends early, but the newest checkpoint covers 1000000 events",
    "member-format-only": "member-01.pt is not member 1's checkpoint",
    "member-missing": "lacks member-01.pt (an incomplete generation)",
    "member-garbage": "member-00.pt is not a readable rlsched checkpoint",
    "member-shapes": "member-00.pt does not fit this run's job (RuntimeError: Error(s) in loading state_dict",
    "member-job-keys": "member-00.pt does not fit this run's job (KeyError: 'optimizer')",
    "member-job-format": "member-00.pt does not fit this run's job (ValueError: state.format: expected",
    "legacy-checkpoint": "is a single-file checkpoint of an older rlsched",
    "finished-early": "has result.json but its newest checkpoint is decision 2 of 3",
    "result-empty": "result.json lacks 'best_member'",
    "result-garbage": "result.json is not valid JSON",
    "result-list": "result.json is not a table",
    "result-best-out": "result.json best_member: expected a member id below 2, got 9",
    "result-seed-str": "result.json seed_of_best_origin: expected an integer >= 0, got 'x'",
    "result-no-metrics": "result.json best.metrics: expected a table with the best member's loss",
    "lineage-empty": "lineage.jsonl is empty",
    "lineage-garbage": "lineage.jsonl line 1 is not an event",
    "lineage-missing": "lineage.jsonl is missing",
    "lineage-cut": "intervals; the run is not finished or the file was cut",
    "lineage-no-trains": "lineage.jsonl holds 0 of member",
    "lineage-no-ancestor": "lacks a training event of member",
    "lineage-bad-event": "lineage.jsonl line 1 is not an event (lineage: unknown event 'boom'",
    "lineage-unhashable": "lineage.jsonl line 1 is not an event (unhashable type: 'list')",
}
EXPECT_RESUME = {  # resume reads the checkpoint, not the whole lineage or the result
    "lineage-missing": "lineage.jsonl ends early, but the newest checkpoint covers",
    "lineage-cut": "lineage.jsonl ends early, but the newest checkpoint covers",
}
for name in TAMPER:
    if name not in REPLAY_ONLY:
        RUN_DIRS.append((["resume", f"runs/t-{name}", "--quiet"], EXPECT_RESUME.get(name, EXPECT[name])))
    if name not in RESUME_ONLY:
        RUN_DIRS.append((["replay", f"runs/t-{name}"], EXPECT[name]))

NO_QUIET = [  # a progress bar must not print before the error: it appears only once training starts
    (["run", "--set", "population=0"], "population: expected an integer in [1, 4096], got 0"),
    (
        ["run", "good.toml", "--set", "name=fresh", "--set", "agent.type=GridSearch"]
        + ["--set", "agent.lr=[5.0, 0.1]", "--set", "agent.batch_size=[32]"],
        "agent.lr: 5.0 is outside the space's lr bounds [0.001, 1]",
    ),
    (
        ["run", "good.toml", "--set", "name=fresh", "--set", "logdir=/proc/rlsched-test"],
        "logdir: cannot make",
    ),
    (["resume", "runs/t-member-shapes"], "member-00.pt does not fit this run's job"),
    (["compare", "compare.toml", "--set", "logdir=afile"], "afile is a file"),
]

CASES = NO_QUIET + FLAGS + CONFIG_FILES + KEYS + AGENTS + FILESYSTEM + META_CASES + COMPARE_CASES + RUN_DIRS


def test_the_corpus_is_large():
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c[0])[:90].replace("\0", "NUL") for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(work, monkeypatch, capsys, case):
    argv, *expected = case
    monkeypatch.chdir(work)
    before = tree(work)
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].strip(), err
    assert lines[0].startswith("rlsched") and "Traceback" not in err, lines
    for part in expected:
        assert part in lines[0], lines[0]
    assert tree(work) == before


@pytest.mark.skipif(ROOT, reason="root writes through a directory's mode bits")
def test_a_read_only_run_directory_is_refused_before_resuming(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    shutil.copytree(work / "runs" / "ok", work / "ro-run")
    (work / "ro-run" / "result.json").unlink()
    (work / "ro-run").chmod(0o555)
    try:
        before = tree(work)
        assert main(["resume", "ro-run", "--quiet"]) == 2
        assert "RUN_DIR: cannot write in" in capsys.readouterr().err
        assert tree(work) == before
    finally:
        (work / "ro-run").chmod(0o755)
        shutil.rmtree(work / "ro-run")


EXECUTABLE = [
    (["run", "good.toml", "--set", "population=0"], "population: expected an integer in [1, 4096], got 0"),
    (["run", "good.toml", "--set", "logdir=afile"], "afile is a file, not a directory"),
    (["resume", "runs/t-run-pt-format-only"], "is not a complete run checkpoint"),
    (["replay", "runs/t-lineage-empty"], "lineage.jsonl is empty"),
    (["run", "good.toml", "--threads", "0"], "--threads: expected an integer in [1, 1024]"),
]


@pytest.mark.parametrize("case", EXECUTABLE, ids=[" ".join(a) for a, _ in EXECUTABLE])
def test_the_rlsched_executable_says_one_line(work, case):
    argv, expected = case
    executable = Path(sys.executable).with_name("rlsched")
    if not executable.is_file():
        pytest.skip("the rlsched console script is not installed beside this Python")
    before = tree(work)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # warnings would be lines too
    done = subprocess.run(
        [str(executable), *argv],
        capture_output=True,
        text=True,
        cwd=work,
        env={**env, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and expected in done.stderr, done.stderr
    assert done.stdout == ""
    assert tree(work) == before


# -- honest records: a member whose job raised is reported so, and the summary still prints ------
USER_JOB = '''
from rlsched.envs.tasks import get_task
from rlsched.population.runner import job_seed

TASK = get_task("synthetic")
FAILING = {"every": {1, 2, 3, 4}, "odd": {1, 3}}


class Job:
    """The synthetic task's job; member 1's raises in the calls of ``train`` that MODE names."""

    mode = "every"

    def __init__(self, seed):
        self.job, self.failing, self.calls = TASK.build(seed), seed == job_seed(0, 1), 0

    def train(self, hp, samples):
        self.calls += 1
        if self.failing and self.calls in FAILING[self.mode]:
            raise RuntimeError("injected failure")
        return self.job.train(hp, samples)

    def evaluate(self):
        return self.job.evaluate()

    def state_dict(self):
        return {"job": self.job.state_dict(), "calls": self.calls, "failing": self.failing}

    def load_state_dict(self, state):
        self.job.load_state_dict(state["job"])
        self.calls, self.failing = state["calls"], state["failing"]


def every(seed):
    return Job(seed)


def odd(seed):
    job = Job(seed)
    job.mode = "odd"
    return job
'''


@pytest.mark.parametrize("mode, failed, diverged", [("every", [0, 1, 2, 3], True), ("odd", [0, 2], False)])
def test_a_member_whose_job_raised_is_recorded_so(tmp_path, monkeypatch, capsys, mode, failed, diverged):
    (tmp_path / "userjob.py").write_text(USER_JOB)
    (tmp_path / "fixed.toml").write_text(
        f'task = "userjob.py:{mode}"\nname = "fixed"\npopulation = 2\nbudget_samples = 4000\ndecisions = 4\n'
        "[space]\nlr = [0.001, 1.0]\nbatch_size = [16, 32]\n[initial]\nlr = 0.05\nbatch_size = 32\n"
        '[agent]\ntype = "Fixed"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "fixed.toml", "--quiet"]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "runs" / "fixed" / "result.json").read_text())
    member = result["members"][1]
    assert [f["decision"] for f in member["failed_intervals"]] == failed
    assert all(f["error"] == "RuntimeError: injected failure" for f in member["failed_intervals"])
    assert member["diverged"] is diverged
    assert result["members"][0]["failed_intervals"] == [] and result["members"][0]["diverged"] is False
    assert len(member["trajectory"]) == 4 - len(failed)  # only the intervals that trained
    row = next(line for line in out.splitlines() if re.match(r" *\d+ +1 ", line))  # member 1's row
    assert f"job raised in intervals {', '.join(map(str, failed))}" in row
    assert ("diverged" in row) is diverged
    lineage = [json.loads(line) for line in (tmp_path / "runs" / "fixed" / "lineage.jsonl").open()]
    raised = [e["decision"] for e in lineage if e["event"] == "train" and e.get("error")]
    assert raised == failed


def test_an_unwritable_or_unreadable_place_is_refused_for_root_too(work, monkeypatch, capsys):
    """Root writes through mode bits, so the permission answers are simulated: the refusals are the same."""
    monkeypatch.chdir(work)
    before = tree(work)
    access, read_bytes = os.access, Path.read_bytes
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "emptydir" and access(p, mode))

    def unreadable(path: Path) -> bytes:
        if path.name == "broken.toml":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    cases = [
        (run_set("logdir=emptydir/runs"), "logdir: cannot write in", "emptydir (read-only or no permission)"),
        (["init", "emptydir/x.toml"], "PATH: cannot write in", "emptydir"),
        (["train-controller", "meta.toml", "--set", "out=emptydir/c.pt"], "out: cannot write in"),
        (["run", "broken.toml"], "config: cannot read broken.toml (Permission denied)"),
    ]
    for argv, *expected in cases:
        assert main(argv) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert all(part in line for part in expected), line
    monkeypatch.undo()
    assert tree(work) == before
