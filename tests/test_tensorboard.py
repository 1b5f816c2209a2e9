import json
import time
import urllib.request

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rlsched
from rlsched.agents import PBT
from rlsched.app.compare import SUMMARY, compare
from rlsched.app.config import compare_config
from rlsched.population.lineage import Clone, Start, Train
from rlsched.report.server import tensorboard_server

STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("tb")
    result = rlsched.run(
        "synthetic", PBT(), population=4, seed=0, logdir=logdir, name="pbt", decisions=6, budget_samples=12000
    )
    return logdir, result


def scalars(path, tag):
    ea = EventAccumulator(str(path))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def test_logged_values_equal_what_was_applied(finished):
    logdir, result = finished
    run_dir = logdir / "pbt"
    trains = [e for e in result.lineage if isinstance(e, Train)]
    clones = {(e.decision, e.member): e.donor for e in result.lineage if isinstance(e, Clone)}
    assert clones, "the run should have copied members"
    for m in range(4):
        path = run_dir / f"member-{m:02d}"
        lr = dict(scalars(path, "sched/lr"))
        batch = dict(scalars(path, "sched/batch_size"))
        val = dict(scalars(path, "val/loss"))
        clone = dict(scalars(path, "pbt/clone_from"))
        copied = dict(scalars(path, "pbt/copied"))
        for e in (e for e in trains if e.member == m):
            start = e.samples - 2000
            for step in (start + 1, e.samples):
                assert lr[step] == pytest.approx(e.hparams.lr, rel=1e-6)
                assert batch[step] == e.hparams.batch_size
            assert val[e.samples] == pytest.approx(e.val_loss, rel=1e-6)
            assert clone[start + 1] == clones.get((e.decision, m), -1)
            assert copied[start + 1] == ((e.decision, m) in clones)
        steps = [s for s, _ in scalars(path, "sched/lr")]
        assert steps == sorted(steps)  # no curve goes back in time


def test_clone_text_best_run_layout_hparams_and_figure(finished):
    logdir, result = finished
    run_dir = logdir / "pbt"
    donor_of = next(e for e in result.lineage if isinstance(e, Clone))
    ea = EventAccumulator(str(run_dir / f"member-{donor_of.member:02d}"))
    ea.Reload()
    texts = [t.tensor_proto.string_val[0].decode() for t in ea.Tensors("events/pbt/text_summary")]
    assert any(f"copied member {donor_of.donor}" in t for t in texts)
    assert "_hparams_/session_start_info" in ea.Tags()["tensors"]
    best = dict(scalars(run_dir / "best", "sched/lr"))
    for start, hp in result.best.trajectory:
        assert best[start + 1] == pytest.approx(hp.lr, rel=1e-6)
    root = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    root.Reload()
    assert root.Tags()["images"] == ["schedules"]
    assert (run_dir / "schedules.png").stat().st_size > 10_000


def get(base, path, body=None):
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def session_groups(base):
    body = {
        "experimentName": "",
        "startIndex": 0,
        "sliceSize": 1000,
        "colParams": [],
        "allowedStatuses": STATUSES,
    }
    return get(base, "/data/plugin/hparams/session_groups", body)["sessionGroups"]


def test_real_tensorboard_server_serves_the_run(finished):
    logdir, result = finished
    with tensorboard_server(logdir) as base:
        deadline = time.time() + 60
        runs = []
        while time.time() < deadline and "pbt/best" not in runs:
            runs = get(base, "/data/runs")
            time.sleep(0.5)
        assert {f"pbt/member-{m:02d}" for m in range(4)} | {"pbt/best"} <= set(runs)
        lr = get(base, "/data/plugin/scalars/scalars?run=pbt/member-00&tag=sched/lr")
        first = next(e for e in result.lineage if isinstance(e, Train) and e.member == 0)
        assert lr[1][1:] == [1, pytest.approx(first.hparams.lr, rel=1e-6)]  # [wall time, step, value]
        groups = session_groups(base)
        assert [[s["name"] for s in g["sessions"]] for g in groups] == [
            [f"pbt/member-{m:02d}"] for m in range(4)
        ]
        first = next(e for e in result.lineage if isinstance(e, Start) and e.member == 2)
        assert groups[2]["hparams"]["lr_initial"] == pytest.approx(first.hparams.lr)
        final = {m["name"]["tag"]: m["value"] for m in groups[2]["metricValues"]}
        assert final["sched/lr"] == pytest.approx(result.members[2].hparams.lr, rel=1e-6)
        assert final["val/loss"] == pytest.approx(result.members[2].val_loss, rel=1e-6)
        layout = get(base, "/data/plugin/custom_scalars/layout")
        assert [c["title"] for c in layout["category"]] == ["rlsched"]
        assert "copies (all members)" in [c["title"] for c in layout["category"][0]["chart"]]
    with pytest.raises(OSError):  # stopped on exit
        urllib.request.urlopen(base + "/data/runs", timeout=2)


def test_layout_hparams_config_and_sessions_show_while_the_run_runs(tmp_path):
    seen = {}

    def progress(done, total, best):
        if not seen:  # the first interval has trained: the run started, its checkpoint 0 is written
            for name, path in (("root", tmp_path / "live"), ("member", tmp_path / "live" / "member-01")):
                ea = EventAccumulator(str(path))
                ea.Reload()
                seen[name] = ea.Tags()["tensors"]

    rlsched.run(
        "synthetic", PBT(), population=2, logdir=tmp_path, name="live", decisions=2, progress=progress
    )
    assert {"custom_scalars__config__", "_hparams_/experiment"} <= set(seen["root"])
    assert "_hparams_/session_start_info" in seen["member"]


def test_compare_sessions_are_unique_and_its_summary_view_shows_each_agent(tmp_path):
    data = {
        "task": "synthetic",
        "name": "cmp",
        "logdir": str(tmp_path),
        "seeds": [0, 1],
        "population": 2,
        "budget_samples": 2000,
        "decisions": 2,
        "agents": {"PBT": {"type": "PBT"}, "alone": {"type": "Fixed", "population": 1}},
    }
    compare(*compare_config(data), quiet=True)
    root = tmp_path / "cmp"
    ranking = json.loads((root / "results.json").read_text())["ranking"]
    with tensorboard_server(root) as base:  # every run: 2 + 1 members per seed of each agent
        names = [s["name"] for g in session_groups(base) for s in g["sessions"]]
        assert len(names) == len(set(names)) == len(session_groups(base)) == 2 * 3 + 2
    with tensorboard_server(root / SUMMARY) as base:  # the view to open first: a run per agent
        assert sorted(get(base, "/data/runs")) == [".", "PBT", "alone"]
        groups = {g["name"]: g for g in session_groups(base)}
        assert sorted(groups) == ["PBT", "alone"] and groups["alone"]["hparams"]["type"] == "Fixed"
        layout = get(base, "/data/plugin/custom_scalars/layout")
        assert [c["title"] for c in layout["category"][0]["chart"]][
            0
        ] == "learning rate (each agent's best member)"
    for row in ranking:
        run = root / SUMMARY / row["agent"]
        assert scalars(run, "compare/val_loss_mean") == [(0, pytest.approx(row["val_loss_mean"], rel=1e-6))]
        assert scalars(run, "val/loss")[-1][1] == pytest.approx(min(row["val_loss"]), rel=1e-6)
