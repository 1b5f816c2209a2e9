"""``rlsched compare``: several agents on one task at equal examples per member, over seeds.

Each agent and seed is a full run under ``<logdir>/<name>/<label>/seed-<k>/`` (its own members in
TensorBoard); ``<logdir>/<name>/`` holds the ranked table as ``results.json``, ``results.csv`` and
``comparison.png``. ``<logdir>/<name>/summary/`` is the TensorBoard view to open first: one run
per agent (its best member over the seeds: schedule and val loss along its path, mean and spread
of its best val loss, an HParams session), and at its root the table, the figure and the
custom-scalars layout. A TensorBoard of the whole ``<logdir>/<name>/`` shows a run per member of
every agent and seed (90 for 5 agents, 2 seeds, 8 members), and past 40 runs its dashboards with
a runs selector (custom scalars among them) select none by default.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from pathlib import Path
from typing import Any

from tensorboard.plugins.hparams import summary_v2 as hp_summary
from torch.utils.tensorboard import SummaryWriter

from rlsched.app.config import CompareConfig, build_agent_checked
from rlsched.app.experiment import run
from rlsched.app.progress import progress_bar
from rlsched.core.files import atomic_write_bytes, atomic_write_json
from rlsched.core.space import Hyperparams, HyperparamSpace
from rlsched.population.state import RunResult
from rlsched.report.figures import best_path
from rlsched.report.tensorboard import layout, log_path

SUMMARY = "summary"  # <logdir>/<name>/summary: the TensorBoard view of a comparison


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "agent"


def rank_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ranked by mean best val loss (NaN, i.e. every seed diverged, last)."""
    return sorted(rows, key=lambda r: (math.isnan(r["val_loss_mean"]), r["val_loss_mean"]))


def format_table(rows: list[dict[str, Any]], test_metric: str | None) -> str:
    head = f"{'rank':>4}  {'agent':<24} {'best val loss':>18} "
    head += f"{'test ' + test_metric:>14} " if test_metric else ""
    head += f"{'examples':>10} {'wall s':>8}"
    lines = [head]
    for rank, r in enumerate(rows, 1):
        line = f"{rank:>4}  {r['agent']:<24} {r['val_loss_mean']:>9.4f} +- {r['val_loss_std']:<6.4f} "
        line += f"{r['test_mean']:>14.4f} " if test_metric else ""
        line += f"{r['total_samples']:>10} {r['wall_mean']:>8.1f}"
        lines.append(line)
    return "\n".join(lines)


def compare(
    config: CompareConfig,
    space: HyperparamSpace,
    initial: Hyperparams,
    budget: int,
    decisions: int,
    *,
    quiet: bool = False,
    device: str | None = None,
) -> str:
    """Run every agent of ``config`` on every seed (the built-in tasks on ``device``) and write the
    comparison; returns its table."""
    root = Path(config.logdir) / config.name
    for label in config.agents:
        if slug(label) == SUMMARY:
            raise ValueError(
                f"agents.{label}: {SUMMARY!r} names the comparison's TensorBoard view; rename it"
            )
    rows, test_metric = [], None
    for label, table in config.agents.items():
        population = table.get("population", config.population)
        params = {k: v for k, v in table.items() if k != "population"}
        results = []
        for seed in config.seeds:
            agent = build_agent_checked(params, f"agents.{label}", population)
            update, bar = progress_bar(quiet, f"{label} seed {seed}")
            try:
                results.append(
                    run(
                        config.task,
                        agent,
                        space=space,
                        population=population,
                        budget_samples=budget,
                        decisions=decisions,
                        initial=initial,
                        logdir=root / slug(label),
                        name=f"seed-{seed}",
                        seed=seed,
                        progress=update,
                        device=device,
                    )
                )
            finally:
                if bar is not None:
                    bar.close()
        row, test_metric = _row(label, params["type"], population, config.seeds, results, test_metric)
        rows.append(row)
        _agent_board(root / SUMMARY / slug(label), row, results)
    rows = rank_rows(rows)
    text = format_table(rows, test_metric)
    _write(root, rows, text, config, space, budget, decisions)
    return text


def _row(
    label: str, kind: str, population: int, seeds: tuple[int, ...], results: list, test_metric: str | None
) -> tuple[dict[str, Any], str | None]:
    """One agent's row of the comparison (its best member per seed), and the test metric shown."""
    losses = [r.best.val_loss for r in results]
    finite = [v for v in losses if math.isfinite(v)]
    tests = [r.best.test_metrics for r in results if r.best.test_metrics]
    if tests and test_metric is None:
        test_metric = next((k for k in tests[0] if k != "loss"), "loss")
    row = {
        "agent": label,
        "type": kind,
        "population": population,
        "total_samples": results[0].total_samples,
        "seeds": list(seeds),
        "val_loss": losses,
        "val_loss_mean": statistics.mean(finite) if finite else math.nan,
        "val_loss_std": statistics.pstdev(finite) if finite else math.nan,
        "test": [t.get(test_metric, math.nan) for t in tests] if test_metric else [],
        "test_mean": statistics.mean(t.get(test_metric, math.nan) for t in tests) if tests else math.nan,
        "wall": [r.wall_seconds for r in results],
        "wall_mean": statistics.mean(r.wall_seconds for r in results),
    }
    return row, test_metric


def _agent_board(run_dir: Path, row: dict[str, Any], results: list[RunResult]) -> None:
    """An agent's run in the summary view: its best member over the seeds (schedule and val loss
    along its path), the mean and spread of its best val loss over seeds, and an HParams session."""
    k = min(range(len(results)), key=lambda j: (not math.isfinite(row["val_loss"][j]), row["val_loss"][j]))
    best = results[k].best
    initial, path = best_path(results[k].lineage, best.member_id)
    seeds = ", ".join(f"seed {s}: {v:.4g}" for s, v in zip(row["seeds"], row["val_loss"]))
    schedule = ", ".join(f"{i.start}: lr {i.hparams.lr:.3g}, batch {i.hparams.batch_size}" for i in path)
    with SummaryWriter(str(run_dir)) as w:
        log_path(w, initial, path)
        w.add_scalar("compare/val_loss_mean", row["val_loss_mean"], 0)
        w.add_scalar("compare/val_loss_std", row["val_loss_std"], 0)
        w.add_text(
            "compare/best",
            f"best val loss per seed: {seeds}. Shown: seed {row['seeds'][k]}, member {best.member_id}; "
            f"schedule: {schedule}",
            0,
        )
        session = {"agent": row["agent"], "type": row["type"], "population": row["population"]}
        w._get_file_writer().add_summary(hp_summary.hparams_pb(session, trial_id="", start_time_secs=0))


def _write(
    root: Path,
    rows: list[dict[str, Any]],
    text: str,
    config: CompareConfig,
    space: HyperparamSpace,
    budget: int,
    decisions: int,
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    summary = {
        "task": config.task,
        "seeds": list(config.seeds),
        "budget_samples": budget,
        "decisions": decisions,
    }
    atomic_write_json(root / "results.json", {**summary, "ranking": rows})
    buffer = io.StringIO()
    fields = [
        "rank",
        "agent",
        "type",
        "population",
        "total_samples",
        "val_loss_mean",
        "val_loss_std",
        "test_mean",
        "wall_mean",
    ]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for rank, r in enumerate(rows, 1):
        writer.writerow({"rank": rank, **r})
    atomic_write_bytes(root / "results.csv", lambda f: f.write(buffer.getvalue().encode()))
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.5))
    labels = [r["agent"] for r in rows][::-1]
    means = [r["val_loss_mean"] for r in rows][::-1]
    stds = [r["val_loss_std"] for r in rows][::-1]
    ax.barh(labels, means, xerr=stds, color="tab:blue", alpha=0.7)
    for r in rows:
        ax.scatter(r["val_loss"], [r["agent"]] * len(r["val_loss"]), color="black", s=12, zorder=3)
    ax.set_xlabel(f"best val loss ({config.task}, seeds {list(config.seeds)}; mean, spread, each seed)")
    fig.tight_layout()
    fig.savefig(root / "comparison.png", dpi=110)
    with SummaryWriter(str(root / SUMMARY)) as w:
        w.add_custom_scalars(layout(list(space.extra), "each agent's best member", copies=False))
        w.add_text("compare/table", "```\n" + text + "\n```", 0)
        w.add_figure("compare/figure", fig, 0)
