"""The Stochastic-D4RL leaderboards, figures and HTML report, from the records alone.

Reads ``episodes.csv``, ``summary.csv`` and ``train_logs.csv`` (written by
``pipeline.suite.gather_records``) and writes, into the same folder:
  leaderboard.{csv,tex,md,html}  paper Table 1 layout: dataset x {Mean, CVaR} rows
  ood.{csv,tex,md,html}          the OOD-rate table (kappa = 3, mean ± s.e. over seeds)
  figures/{frontier,ood,learning_curves,returns}.{png,pdf}
  report.html                    all of it on one self-contained page
Nothing here trains or rolls out a model, so ``make tables`` takes seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from eval.metrics import aggregate, summarise_seeds
from ramac.agents.base import AGENTS, _load_all
from ramac.errors import UserError
from reports.html import write_report
from reports.leaderboard import (
    caption_for,
    leaderboard,
    ood_caption_for,
    ood_table,
    to_html,
    write_tables,
)

LEARNING_CURVE_METRIC = "critic_loss"


def dataset_label(name: str) -> str:
    """``halfcheetah-medium-expert`` -> ``HalfCheetah-M-E`` (the paper's row labels)."""
    task, kind = name.split("-", 1)
    tasks = {"halfcheetah": "HalfCheetah", "hopper": "Hopper", "walker2d": "Walker2d"}
    short = "-".join(part[0].upper() for part in kind.split("-"))
    return f"{tasks.get(task, task)}-{short}"


def read_records(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(episodes, summary, train_logs) of a suite folder; one clear line when missing."""
    frames = []
    for name in ("episodes.csv", "summary.csv", "train_logs.csv"):
        path = out / name
        if not path.exists():
            raise UserError(f"{path}: no records; run 'reproduce.py train' and 'evaluate' first")
        frames.append(pd.read_csv(path))
    return frames[0], frames[1], frames[2]


def _order(values: pd.Series, preferred: list[str] | None) -> list[str]:
    present = list(dict.fromkeys(values))
    return [v for v in preferred or present if v in present]


def write_suite_reports(
    out: Path,
    eval_cfg: dict[str, Any],
    algos: list[str] | None = None,
    datasets: list[str] | None = None,
) -> Path:
    """Every table and figure of a suite folder, then ``report.html``; returns its path."""
    from figures.d4rl import plot_frontier, plot_learning_curves, plot_ood_bars, plot_return_ecdfs

    _load_all()
    episodes, summary, logs = read_records(out)
    alpha, rule = eval_cfg["alpha"], eval_cfg["cvar_rule"]
    algos = _order(episodes["algo"], algos)
    datasets = _order(episodes["dataset"], datasets)
    names = {a: AGENTS[a].display_name for a in algos}
    rows = {d: dataset_label(d) for d in datasets}

    seeds = summarise_seeds(episodes, alpha, rule)
    agg = aggregate(seeds, episodes, alpha, rule, reps=eval_cfg["bootstrap_reps"])
    checkpoint = "; ".join(sorted(set(summary["checkpoint"])))
    n_seeds, per_seed = int(agg["n_seeds"].min()), int(agg["episodes_per_seed"].min())
    caption = caption_for(n_seeds, per_seed, alpha, rule, checkpoint=checkpoint)
    main = leaderboard(
        agg.assign(algo=agg["algo"].map(names)), rows=rows, algo_order=list(names.values())
    )
    write_tables(main, out, "leaderboard", caption=caption, label="tab:stochastic-d4rl")

    ood = ood_table(
        summary.assign(algo=summary["algo"].map(names)), rows=rows, algo_order=list(names.values())
    )
    ood_caption = ood_caption_for(
        int(summary.groupby("algo")["seed"].nunique().min()), eval_cfg["kappa"]
    )
    write_tables(ood, out, "ood", caption=ood_caption, label="tab:ood")

    fig_dir = out / "figures"
    common = {"datasets": datasets, "algos": algos, "labels": names}
    ood_frame = summary.groupby(["dataset", "algo"], sort=False)["ood_rate"].mean().reset_index()
    figures = {
        "Risk-return frontier": plot_frontier(agg, fig_dir / "frontier", **common),
        "OOD action rate": plot_ood_bars(ood_frame, fig_dir / "ood", **common),
        "Learning curves (critic loss)": plot_learning_curves(
            logs, fig_dir / "learning_curves", LEARNING_CURVE_METRIC, **common
        ),
        "Return distributions": plot_return_ecdfs(
            episodes, fig_dir / "returns", alpha=alpha, rule=rule, **common
        ),
    }
    sections = [
        ("Stochastic-D4RL leaderboard", to_html(main, caption)),
        ("Out-of-distribution actions", to_html(ood, ood_caption)),
    ]
    sections += [(title, paths[0]) for title, paths in figures.items()]
    return write_report(out / "report.html", "ramac: Stochastic-D4RL", sections)
