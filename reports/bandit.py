"""The bandit's leaderboards and its report: per-method metrics across seeds.

Rows are the metrics (mean reward, CVaR_0.1, share of actions in the safe centre mode and
on the risky ring, OOD rate), columns the methods, like the paper's main table; each cell
is the mean over seeds with a 95% percentile bootstrap interval across seeds
(``eval.bootstrap``: scipy.stats.bootstrap), or its per-seed values when there are fewer
than 3 seeds. ``report.html`` puts the table, the figure and the budget on one
self-contained page.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from eval.bootstrap import bootstrap_ci
from ramac.agents.base import AGENTS, _load_all
from ramac.envs.bandit import BanditSpec
from reports.budget import Budget, budget_of
from reports.html import (
    Figure,
    budget_html,
    companion_links,
    html_caption,
    table_block,
    write_report,
)
from reports.leaderboard import (
    MIN_SEEDS_FOR_INTERVAL,
    interval_sentence,
    leaderboard,
    marks_sentence,
    to_html,
    write_tables,
)

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
            row[f"{metric}_seeds"] = tuple(values)
        rows.append(row)
    return pd.DataFrame(rows)


def bandit_caption(
    n_seeds: int, n_actions: int, eval_cfg: dict[str, Any], fmt: str = "latex"
) -> str:
    """The table's caption in ``fmt``'s own marking ("csv", "latex", "markdown", "html")."""
    interval = "95% percentile bootstrap interval across seeds (scipy.stats.bootstrap)"
    return (
        f"2-D risky bandit: {n_actions} actions sampled from each trained policy per seed, "
        f"rewards drawn from the true reward model; mean over {n_seeds} "
        f"seed{'s' if n_seeds != 1 else ''}. {interval_sentence(fmt, interval, n_seeds)} "
        f"CVaR at alpha = {eval_cfg['alpha']:g} over each seed's sampled rewards (the worst "
        f"{eval_cfg['cvar_rule']}(alpha n) rewards). Centre / Ring: share of actions in the "
        f"safe centre mode / on the risky ring. OOD: share of actions whose 1-NN distance to "
        f"the data exceeds kappa = {eval_cfg['kappa']:g} times the data's mean leave-one-out "
        f"1-NN distance. Higher is better for mean, CVaR and centre, lower for ring and OOD. "
        f"{marks_sentence(fmt)} Final checkpoint."
    )


def write_bandit_leaderboards(
    out: Path, summary: pd.DataFrame, eval_cfg: dict[str, Any], algo_order: list[str]
) -> dict[str, Path]:
    """``leaderboard.{csv,tex,md,html}`` (each with its own caption, the CSV's in
    ``leaderboard.caption.txt``), the figure ``bandit.{png,pdf}`` and ``report.html`` in
    ``out``, from the per-seed ``summary`` and the runs' records alone."""
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
    n_actions = int(summary["n_actions"].min())
    budget = budget_of(summary, out)

    def caption(fmt: str) -> str:
        return f"{bandit_caption(n_seeds, n_actions, eval_cfg, fmt)} {budget.sentence()}"

    paths = write_tables(table, out, "leaderboard", caption=caption, label="tab:bandit")
    figure = draw_figure(out, summary, algo_order, budget)
    sections: list[tuple[str, Any]] = [
        ("Leaderboard", table_block(to_html(table), html_caption(caption("html"))))
    ]
    if figure is not None:
        sections.append(("Actions of each trained policy (paper Figure 3)", figure))
    else:
        sections.append(
            (
                "Figure",
                "<p>Not drawn: the runs' config.yaml (the data's spec) "
                "or actions.npz were not found.</p>",
            )
        )
    sections.append(("Records", _records_html(out, summary, budget)))
    links = companion_links(out)
    if links:
        sections.append(("More pages", links))
    paths["report"] = write_report(
        out / "report.html", "ramac: 2-D risky bandit", sections, lead=budget_html(budget)
    )
    return paths


def _first_config(out: Path, summary: pd.DataFrame) -> dict[str, Any] | None:
    for algo, run in zip(summary["algo"], summary["run"], strict=True):
        path = out / "runs" / str(algo) / str(run) / "config.yaml"
        if path.is_file():
            return yaml.safe_load(path.read_text())
    return None


def draw_figure(
    out: Path, summary: pd.DataFrame, algo_order: list[str], budget: Budget
) -> Figure | None:
    """Draw ``bandit.{png,pdf}`` (``figures.bandit``) with the data's spec and seed as the
    runs recorded them; None when the records lack them. The caption ends with the
    budget."""
    from figures.bandit import PANEL_POINTS, plot_bandit

    config = _first_config(out, summary)
    extra = ((config or {}).get("dataset") or {}).get("extra") or {}
    if "spec" not in extra or "seed" not in extra:
        return None
    runs = summary.apply(lambda r: out / "runs" / r["algo"] / r["run"] / "actions.npz", axis=1)
    if not all(path.is_file() for path in runs):
        return None
    spec = BanditSpec(**extra["spec"])
    png = plot_bandit(out, spec, int(extra["seed"]), algo_order, summary)[0]
    caption = (
        f"(a) The behaviour data ({spec.n_samples:,} actions; purple: the rewards replaced by "
        f"the penalty). Then each method's sampled actions (red; its seeds pooled, at most "
        f"{PANEL_POINTS:,} drawn) over the data (grey); panel titles give the pooled share "
        f"in the centre mode and on the ring. Dotted circle: the ring (radius "
        f"{spec.ring_radius:g}); dashed: the edge of the centre's reward zone (radius "
        f"{spec.zone_radius:g}). {budget.short()}"
    )
    return Figure(png, caption)


def _records_html(out: Path, summary: pd.DataFrame, budget: Budget) -> str:
    config = _first_config(out, summary) or {}
    versions = config.get("versions") or {}
    listed = ", ".join(f"{html.escape(k)} {html.escape(str(v))}" for k, v in versions.items())
    few = (
        f" Fewer than {MIN_SEEDS_FOR_INTERVAL} seeds: the table gives per-seed values, "
        f"no intervals."
        if budget.seeds < MIN_SEEDS_FOR_INTERVAL
        else ""
    )
    return (
        f"<p>{len(summary)} runs (method x seed), one row each in <code>summary.csv</code>; "
        f"each run's folder <code>runs/&lt;algo&gt;/seed&lt;k&gt;-&lt;config hash&gt;/</code> "
        f"holds its resolved <code>config.yaml</code> (seed, profile, dataset spec), "
        f"<code>train_log.csv</code>, <code>actions.npz</code> and "
        f"<code>metrics.json</code>.{few}" + (f" Versions: {listed}." if listed else "") + "</p>"
    )
