"""TensorBoard after kills and resumes equals an unbroken run's, for every loader: the
``EventAccumulator``, the Python loader (``tensorboard --load_fast=false``: the plugin event
multiplexer) and the Rust data server (``--load_fast=true``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from google.protobuf.json_format import MessageToDict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from tensorboard_data_server import server_binary
from test_tensorboard import get
from torch.utils.tensorboard import SummaryWriter

import rlsched
from rlsched.agents import PBT
from rlsched.report.server import tensorboard_server
from rlsched.report.tensorboard import event_files, rewind_run

SETTINGS = dict(population=3, seed=3, budget_samples=9000, decisions=6, checkpoint_every=2)

# Killed by SIGKILL inside a Persistence hook, with TensorBoard's hook for it already run (it
# comes first): ``checkpoint`` after TensorBoard flushed and before the checkpoint is written,
# ``generation`` before the lineage is appended, ``finished`` before result.json.
SCRIPT = """
import os, signal, sys
import rlsched
from rlsched.agents import PBT
from rlsched.population.persistence import Persistence

logdir, hook, decision, action = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
original = getattr(Persistence, hook)

def killed(self, state, *args):
    if state.decision == decision:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, state, *args)

setattr(Persistence, hook, killed)
if action == "run":
    rlsched.run("synthetic", PBT(), logdir=logdir, name="run", **{settings})
else:
    rlsched.resume(os.path.join(logdir, "run"))
raise SystemExit("not killed")
"""


def killed(logdir, hook, decision, action="run"):
    script = SCRIPT.format(settings=SETTINGS)
    proc = subprocess.run([sys.executable, "-c", script, str(logdir), hook, str(decision), action])
    assert proc.returncode == -9, "the run was not killed where it should have been"


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("unbroken")
    rlsched.run("synthetic", PBT(), logdir=logdir, name="run", **SETTINGS)
    return logdir


def runs(logdir):
    return sorted({str(p.parent.relative_to(logdir)) for p in logdir.rglob("*tfevents*")})


def accumulated(logdir):
    """Every run's scalars, tensors (text, HParams, layout) and images as ``EventAccumulator`` reads them."""
    out = {}
    for run in runs(logdir):
        ea = EventAccumulator(str(logdir / run), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
        ea.Reload()
        tags = ea.Tags()
        out[run] = {
            "scalars": {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in tags["scalars"]},
            "tensors": {
                t: [(e.step, e.tensor_proto.SerializeToString()) for e in ea.Tensors(t)]
                for t in tags["tensors"]
            },
            "images": {t: [e.step for e in ea.Images(t)] for t in tags["images"]},
        }
    return out


def multiplexed(logdir, mux=None):
    """Every run's time series as the Python loader (``--load_fast=false``) serves them; ``mux``:
    one that has read the directory before (a live server's), reloaded."""
    mux = mux or EventMultiplexer(tensor_size_guidance={"scalars": 0, "text": 0, "images": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    out = {}
    for run in sorted(mux.Runs()):
        tags = mux.Runs()[run]["tensors"]
        out[run] = {
            t: (
                content(mux.SummaryMetadata(run, t).plugin_data),
                [(e.step, e.tensor_proto.SerializeToString()) for e in mux.Tensors(run, t)],
            )
            for t in tags
            if t != "schedules"  # the figure: PNG bytes differ with matplotlib's clock
        }
    return out


def content(plugin_data):
    """A time series' plugin content; HParams' as a dict (a protobuf map's bytes have no fixed order)."""
    if plugin_data.plugin_name == "hparams":
        return json.dumps(MessageToDict(HParamsPluginData.FromString(plugin_data.content)), sort_keys=True)
    return plugin_data.content


def assert_same_board(resumed, unbroken):
    assert runs(resumed) == runs(unbroken)
    assert repr(accumulated(resumed)) == repr(accumulated(unbroken))  # NaN-safe
    assert repr(multiplexed(resumed)) == repr(multiplexed(unbroken))


@pytest.mark.parametrize(
    "hook, decision",
    [
        ("checkpoint", 0),  # before the first checkpoint: starts over
        ("generation", 3),  # a generation past the checkpoint of decision 2
        ("checkpoint", 4),  # mid-checkpoint: decisions 3 and 4 flushed, resumed from 2
        ("finished", 6),  # past the final checkpoint: test metrics and the best run written
    ],
)
def test_a_killed_run_resumes_to_the_unbroken_board(tmp_path, unbroken, hook, decision):
    killed(tmp_path, hook, decision)
    rlsched.resume(tmp_path / "run")
    assert_same_board(tmp_path, unbroken)
    for m in range(3):  # the rewound file and the resumed attempt's; the killed one's emptied
        assert len([p for p in event_files(tmp_path / "run" / f"member-{m:02d}") if p.stat().st_size]) <= 2


@pytest.mark.skipif(server_binary() is None, reason="the tensorboard-data-server binary is not installed")
def test_twice_killed_run_equals_the_unbroken_one_in_every_loader(tmp_path, unbroken):
    live = EventMultiplexer(tensor_size_guidance={"scalars": 0, "text": 0, "images": 0})
    killed(tmp_path, "checkpoint", 4)
    multiplexed(tmp_path, live)  # a Python loader reading all along
    killed(tmp_path, "checkpoint", 6, action="resume")  # resumed from 2, killed again mid-checkpoint
    multiplexed(tmp_path, live)
    rlsched.resume(tmp_path / "run")
    assert_same_board(tmp_path, unbroken)
    assert repr(multiplexed(tmp_path, live)) == repr(multiplexed(unbroken))
    for load_fast in (True, False):
        assert repr(served(tmp_path, load_fast)) == repr(served(unbroken, load_fast))


STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def served(logdir, load_fast):
    """Scalars, texts and HParams sessions as a real ``tensorboard`` serves them (wall times left out)."""
    with tensorboard_server(logdir, load_fast=load_fast) as base:
        deadline = time.time() + 60
        while time.time() < deadline and "run/best" not in get(base, "/data/runs"):
            time.sleep(0.3)
        out = {}
        for run, tags in sorted(get(base, "/data/plugin/scalars/tags").items()):
            for tag in sorted(tags):
                query = urllib.parse.urlencode({"run": run, "tag": tag})
                out[run, tag] = [p[1:] for p in get(base, f"/data/plugin/scalars/scalars?{query}")]
        for run, tags in sorted(get(base, "/data/plugin/text/tags").items()):
            for tag in sorted(tags):
                query = urllib.parse.urlencode({"run": run, "tag": tag})
                out[run, tag] = [(t["step"], t["text"]) for t in get(base, f"/data/plugin/text/text?{query}")]
        groups = get(
            base,
            "/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "startIndex": 0,
                "sliceSize": 100,
                "colParams": [],
                "allowedStatuses": STATUSES,
            },
        )
        out["hparams"] = sorted(
            (g["name"], json.dumps(g["hparams"], sort_keys=True), len(g["sessions"]))
            for g in groups["sessionGroups"]
        )
        return out


def test_rewinding_is_idempotent_after_a_kill_between_its_rename_and_its_emptying(tmp_path, unbroken):
    """A kill may leave the rewound file's sources whole beside it: the next rewind ignores them."""
    killed(tmp_path, "checkpoint", 4)
    member = tmp_path / "run" / "member-01"
    (old,) = event_files(member)
    kept = old.read_bytes()
    assert rewind_run(member, 3000)  # the checkpoint of decision 2
    (_, rewound) = event_files(member)
    events = rewound.read_bytes()
    old.write_bytes(kept)  # as if killed before the rewound file's source was emptied
    assert rewind_run(member, 3000)
    assert event_files(member) == [old, rewound] and old.stat().st_size == 0
    assert rewound.read_bytes() == events
    steps = [Event.FromString(r).step for r in RawEventFileLoader(str(rewound)).Load()]
    assert steps[:2] == [0, 0] and max(steps) == 3000  # a START at 0 first; nothing after 3000
    assert not rewind_run(member, None) and rewound.stat().st_size == 0


def test_rewinding_keeps_the_probe_and_drops_test_metrics_and_what_came_after(tmp_path):
    with SummaryWriter(str(tmp_path), purge_step=0) as w:
        for k in range(5):  # the LR probe's own axis: kept whatever the checkpoint
            w.add_scalar("probe/lr", 10.0**k, k)
        for step in (0, 1, 2000, 2001, 4000):
            w.add_scalar("sched/lr", 0.1, step)
        w.add_text("events/pbt", "copied", 2001)
        w.add_scalar("test/loss", 0.5, 2000)  # logged at the end: the end comes again
    assert rewind_run(tmp_path, 2000)
    ea = EventAccumulator(str(tmp_path))
    ea.Reload()
    assert [e.step for e in ea.Scalars("probe/lr")] == [0, 1, 2, 3, 4]
    assert [e.step for e in ea.Scalars("sched/lr")] == [0, 1, 2000]
    assert "test/loss" not in ea.Tags()["scalars"] and ea.Tags()["tensors"] == []
