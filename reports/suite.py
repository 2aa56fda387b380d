"""The Stochastic-D4RL leaderboards, figures and HTML report, from the records alone.

Reads ``episodes.csv``, ``summary.csv`` and ``train_logs.csv`` (written by
``pipeline.suite.gather_records``) and writes, into the same folder:
  aggregate.csv                  every across-seed number (mean, per-seed and pooled CVaR,
                                 hazard rate, D4RL score for 1000-step episodes; intervals)
  leaderboard.{csv,tex,md,html}  paper Table 1 layout: dataset x {Mean, CVaR} rows
  ood.{csv,tex,md,html}          the OOD-rate table (kappa = 3, mean ± s.e. over seeds)
  figures/{frontier,ood,learning_curves,returns}.{png,pdf}
  report.html                    all of it on one self-contained page
Nothing here trains or rolls out a model, so ``make tables`` takes seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eval.metrics import aggregate, normalised_score, summarise_seeds
from ramac.agents.base import AGENTS, _load_all
from ramac.envs.mujoco import FULL_HORIZON
from ramac.errors import UserError
from ramac.io import atomic_to_csv
from reports.html import write_report
from reports.leaderboard import (
    caption_for,
    leaderboard,
    ood_caption_for,
    ood_table,
    to_html,
    write_tables,
)

LEARNING_CURVE_METRICS = ("critic_loss", "bc_loss")  # the first one logged is plotted


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


def with_normalised_scores(agg: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """``agg`` plus ``normalised`` (and its interval): the D4RL score of the mean return.

    Only for 1000-step episodes (the reference scores are for full episodes; RAMAC's 200 /
    500-step returns stay raw): NaN otherwise. The score is an increasing linear map of the
    return, so the interval maps over exactly.
    """
    refs = summary.groupby("dataset")[["ref_min_score", "ref_max_score", "horizon"]].first()
    out = agg.copy()
    for column in ("normalised", "normalised_low", "normalised_high"):
        out[column] = np.nan
    for dataset, (low, high, horizon) in refs.iterrows():
        if horizon != FULL_HORIZON or not np.isfinite([low, high]).all():
            continue
        rows = out["dataset"] == dataset
        for suffix in ("", "_low", "_high"):
            out.loc[rows, f"normalised{suffix}"] = normalised_score(
                out.loc[rows, f"mean{suffix}"].to_numpy(), low, high
            )
    return out


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
    agg = with_normalised_scores(
        aggregate(seeds, episodes, alpha, rule, reps=eval_cfg["bootstrap_reps"]), summary
    )
    atomic_to_csv(agg, out / "aggregate.csv")
    checkpoint = "; ".join(sorted(set(summary["checkpoint"])))
    n_seeds, per_seed = int(agg["n_seeds"].min()), int(agg["episodes_per_seed"].min())
    caption = caption_for(n_seeds, per_seed, alpha, rule, checkpoint=checkpoint)
    metrics = ("mean", "cvar", "normalised") if agg["normalised"].notna().all() else None
    main = leaderboard(
        agg.assign(algo=agg["algo"].map(names)),
        rows=rows,
        algo_order=list(names.values()),
        metrics=metrics or ("mean", "cvar"),
        metric_labels={"normalised": "D4RL score"},
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
    logged = [m for m in LEARNING_CURVE_METRICS if m in logs and logs[m].notna().any()]
    curve_metric = logged[0] if logged else LEARNING_CURVE_METRICS[0]
    common = {"datasets": datasets, "algos": algos, "labels": names}
    ood_frame = summary.groupby(["dataset", "algo"], sort=False)["ood_rate"].mean().reset_index()
    figures = {
        "Risk-return frontier": plot_frontier(agg, fig_dir / "frontier", **common),
        "OOD action rate": plot_ood_bars(ood_frame, fig_dir / "ood", **common),
        f"Learning curves ({curve_metric})": plot_learning_curves(
            logs, fig_dir / "learning_curves", curve_metric, **common
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
