"""The bandit leaderboard: per-method metrics across seeds, with bootstrap intervals.

Rows are the metrics (mean reward, CVaR_0.1, share of actions in the safe centre mode and
on the risky ring, OOD rate), columns the methods, like the paper's main table; each cell
is the mean over seeds with a 95% stratified bootstrap interval across seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eval.bootstrap import bootstrap_ci
from ramac.agents.base import AGENTS, _load_all
from reports.leaderboard import budget_sentence, leaderboard, write_tables

# summary column -> (table metric, scale, higher is better)
METRICS = {
    "mean_reward": ("mean", 1.0, True),
    "cvar": ("cvar", 1.0, True),
    "centre_frac": ("centre", 100.0, True),
    "ring_frac": ("ring", 100.0, False),
    "ood_rate": ("ood_rate", 100.0, False),
}
LABELS = {
    "mean": "Mean reward",
    "cvar": "CVaR",
    "centre": "Centre (%)",
    "ring": "Ring (%)",
    "ood_rate": "OOD (%)",
}


def aggregate_bandit(summary: pd.DataFrame, reps: int, seed: int = 0) -> pd.DataFrame:
    """One row per method: each metric's mean over seeds and its bootstrap interval."""
    rows = []
    for algo, group in summary.groupby("algo", sort=False):
        row: dict[str, Any] = {"dataset": "bandit", "algo": AGENTS[algo].display_name}
        for column, (metric, scale, _) in METRICS.items():
            values = scale * group[column].to_numpy(dtype=np.float64)
            point, low, high = bootstrap_ci(values, np.mean, reps=reps, seed=seed)
            row |= {metric: point, f"{metric}_low": low, f"{metric}_high": high}
        rows.append(row)
    return pd.DataFrame(rows)


def bandit_caption(n_seeds: int, n_actions: int, eval_cfg: dict[str, Any]) -> str:
    return (
        f"2-D risky bandit: {n_actions} actions sampled from each trained policy per seed, "
        f"rewards drawn from the true reward model; mean over {n_seeds} seed(s) with a 95% "
        f"stratified bootstrap interval across seeds in brackets. CVaR at alpha = "
        f"{eval_cfg['alpha']:g} over each seed's sampled rewards (the worst "
        f"{eval_cfg['cvar_rule']}(alpha n) rewards). Centre / Ring: share of actions in the safe "
        f"centre mode / on the risky ring. OOD: share of actions whose 1-NN distance to the "
        f"data exceeds kappa = {eval_cfg['kappa']:g} times the data's mean leave-one-out 1-NN "
        f"distance. Bold: best point estimate of the row (higher for mean, CVaR and centre; "
        f"lower for ring and OOD); runner-up underlined (LaTeX), in italics (Markdown) or "
        f"shaded (HTML). Final checkpoint."
    )


def write_bandit_leaderboards(
    out: Path, summary: pd.DataFrame, eval_cfg: dict[str, Any], algo_order: list[str]
) -> dict[str, Path]:
    """``leaderboard.{csv,tex,md,html}`` in ``out`` from the per-seed ``summary``."""
    _load_all()
    aggregated = aggregate_bandit(summary, reps=eval_cfg["bootstrap_reps"])
    table = leaderboard(
        aggregated,
        rows={"bandit": "Risky bandit"},
        metrics=tuple(metric for metric, _, _ in METRICS.values()),
        algo_order=[AGENTS[a].display_name for a in algo_order],
        higher_is_better={metric: higher for metric, _, higher in METRICS.values()},
        metric_labels=LABELS,
    )
    n_seeds = int(summary.groupby("algo")["seed"].nunique().min())
    caption = bandit_caption(n_seeds, int(summary["n_actions"].min()), eval_cfg)
    caption += " " + budget_sentence(summary)
    return write_tables(table, out, "leaderboard", caption=caption, label="tab:bandit")
