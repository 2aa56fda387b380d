"""The risk-return frontier's table, figure and page, from the sweep's records alone.

``pipeline.frontier`` leaves one results folder per value of the swept setting (``sweep.json``
says which); the profile's main results folder gives the other methods' points. Per dataset,
method and value: the mean over seeds of the mean return (bandit: reward) and of the per-seed
CVaR_0.1, each with a 95% percentile bootstrap interval across seeds (``eval.bootstrap``), and
the mean OOD rate. The method's default value (the one its main run trained with, read from
that run's ``config.yaml``) is marked.

Writes into the sweep's folder: ``frontier_points.csv`` (every point, the reference methods
too), ``frontier.{csv,tex,md,html}`` (the table), ``frontier.{png,pdf}`` and
``frontier_report.html`` (figure, table and budget on one page).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml

from eval.bootstrap import bootstrap_ci
from ramac.agents.base import AGENTS, _load_all
from ramac.errors import UserError
from ramac.io import atomic_to_csv
from reports.budget import budget_of
from reports.html import Figure, budget_html, html_caption, table_block, write_report
from reports.leaderboard import html_table, interval_text, write_frame_tables

SWEEP = "sweep.json"  # in each value's folder (pipeline.frontier): {"key": ..., "value": ...}
# suite -> (summary column of the mean, of the CVaR, axis noun)
METRICS = {
    "bandit": ("mean_reward", "cvar", "reward"),
    "stochastic-d4rl": ("mean_return", "cvar", "return"),
}
REPS = 2000  # bootstrap resamples (the suites' bootstrap_reps)


class Value(NamedTuple):
    """One value of a sweep as its folder records it."""

    folder: Path
    key: str
    value: float
    summary: pd.DataFrame


def read_sweep(root: Path) -> list[Value]:
    """Every value folder under ``root`` that has records (``SWEEP`` and ``summary.csv``)."""
    found = []
    for marker in sorted(root.glob(f"*/{SWEEP}")):
        summary = marker.parent / "summary.csv"
        if summary.exists():
            record = json.loads(marker.read_text())
            found.append(
                Value(
                    marker.parent, str(record["key"]), float(record["value"]), pd.read_csv(summary)
                )
            )
    if not found:
        raise UserError(f"{root}: no frontier records; run 'reproduce.py frontier' first")
    return found


def _point(group: pd.DataFrame, mean_col: str, cvar_col: str) -> dict[str, Any]:
    row: dict[str, Any] = {"n_seeds": int(group["seed"].nunique())}
    for name, column in (("mean", mean_col), ("cvar", cvar_col)):
        values = group[column].to_numpy(dtype=np.float64)
        row[name], row[f"{name}_low"], row[f"{name}_high"] = bootstrap_ci(values, reps=REPS)
    row["ood_rate"] = float(group["ood_rate"].mean()) if "ood_rate" in group else float("nan")
    return row


def _run_config(folder: Path, row: pd.Series) -> dict[str, Any] | None:
    parts = [row["algo"], row["run"]]
    if row.get("suite") != "bandit":
        parts.insert(0, row["dataset"])
    path = folder.joinpath("runs", *map(str, parts), "config.yaml")
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def default_values(reference: pd.DataFrame, folder: Path, key: str) -> dict[tuple, float]:
    """(dataset, algo) -> the value of ``key`` the main run trained with (its config.yaml)."""
    defaults = {}
    for (dataset, algo), group in reference.groupby(["dataset", "algo"], sort=False):
        config = _run_config(folder, group.iloc[0])
        if config and key in (config.get("algo_config") or {}):
            defaults[(dataset, algo)] = float(config["algo_config"][key])
    return defaults


def frontier_points(sweep: list[Value], reference: Path | None) -> tuple[pd.DataFrame, str, str]:
    """One row per dataset x method x value of ``sweep`` (:func:`read_sweep`), and the
    reference folder's other methods (value NaN); the suite and the swept key."""
    _load_all()
    key = sweep[0].key
    suite = str(sweep[0].summary["suite"].iloc[0])
    mean_col, cvar_col, _ = METRICS[suite]
    rows = []
    for value in sweep:
        for (dataset, algo), group in value.summary.groupby(["dataset", "algo"], sort=False):
            rows.append(
                {"dataset": dataset, "algo": algo, "value": value.value}
                | _point(group, mean_col, cvar_col)
            )
    points = pd.DataFrame(rows)
    swept = set(points["algo"])
    ref_summary = None
    if reference is not None and (reference / "summary.csv").exists():
        ref_summary = pd.read_csv(reference / "summary.csv")
        ref_summary = ref_summary[ref_summary["dataset"].isin(set(points["dataset"]))]
    defaults = {}
    if ref_summary is not None and not ref_summary.empty:
        defaults = default_values(ref_summary, reference, key)
        for (dataset, algo), group in ref_summary.groupby(["dataset", "algo"], sort=False):
            if algo not in swept:
                rows.append(
                    {"dataset": dataset, "algo": algo, "value": np.nan}
                    | _point(group, mean_col, cvar_col)
                )
    points = pd.DataFrame(rows)
    points["label"] = [AGENTS[a].display_name if a in AGENTS else a for a in points["algo"]]
    points["default"] = [
        bool(np.isclose(v, defaults.get((d, a), np.nan)))
        for d, a, v in zip(points["dataset"], points["algo"], points["value"], strict=True)
    ]
    return points, suite, key


def _cell(row: pd.Series, metric: str) -> str:
    return interval_text(row[metric], row[f"{metric}_low"], row[f"{metric}_high"])


def frontier_table(points: pd.DataFrame, key: str, noun: str) -> pd.DataFrame:
    """The swept methods' points as a table: dataset, method, value (default marked), mean,
    CVaR_0.1 (each with its interval), OOD (%)."""
    swept = points[points["value"].notna()].sort_values(["dataset", "algo", "value"], kind="stable")
    return pd.DataFrame(
        {
            "Dataset": swept["dataset"],
            "Method": swept["label"],
            key: [
                f"{v:g}" + (" (default)" if d else "")
                for v, d in zip(swept["value"], swept["default"], strict=True)
            ],
            "Seeds": swept["n_seeds"],
            f"Mean {noun}": [_cell(r, "mean") for _, r in swept.iterrows()],
            "CVaR_0.1": [_cell(r, "cvar") for _, r in swept.iterrows()],
            "OOD (%)": [f"{100 * r:.1f}" for r in swept["ood_rate"]],
        }
    )


def frontier_caption(key: str, noun: str, budget_sentence: str, n_seeds: int) -> str:
    few = " (with fewer than 3 seeds: the range of the seeds)" if n_seeds < 3 else ""
    return (
        f"Risk-return frontier: each method trained at every value of its risk weight {key} "
        f"(0: no risk term). Mean {noun} and per-seed CVaR_0.1 averaged over seeds, 95% "
        f"percentile bootstrap interval across seeds{few} (scipy.stats.bootstrap); OOD: the mean "
        f"share of out-of-distribution actions. (default): the value the method's main run "
        f"uses. Final checkpoint. {budget_sentence}"
    ).strip()


def write_frontier_report(root: Path, reference: Path | None) -> dict[str, Path]:
    """Write the frontier's points, table (csv, tex, md, html), figure and page into ``root``."""
    from figures.frontier import plot_frontier

    sweep = read_sweep(root)
    points, suite, key = frontier_points(sweep, reference)
    noun = METRICS[suite][2]
    summaries = pd.concat([value.summary for value in sweep], ignore_index=True)
    budget = budget_of(summaries, sweep[0].folder)  # its profile from a folder's run configs
    n_seeds = int(points.loc[points["value"].notna(), "n_seeds"].min())
    caption = frontier_caption(key, noun, budget.sentence(), n_seeds)
    table = frontier_table(points, key, noun)
    paths = write_frame_tables(table, root, "frontier", caption, "tab:frontier")
    paths["points"] = atomic_to_csv(points, root / "frontier_points.csv")
    figure = plot_frontier(
        root, points, f"CVaR_0.1 of the {noun} (per seed, mean over seeds)", f"Mean {noun}"
    )[0]
    figure_caption = (
        f"Mean {noun} against CVaR_0.1, one point per value of {key} (labelled; ringed: the "
        f"default), bars: 95% bootstrap intervals across seeds. Grey: the other methods of "
        f"the profile's main run{f' ({reference})' if reference else ''}. "
        f"{budget.short()}"
    )
    paths["report"] = write_report(
        root / "frontier_report.html",
        f"ramac: risk-return frontier ({suite})",
        [
            ("Frontier", Figure(figure, figure_caption)),
            ("Table", table_block(html_table(table), html_caption(caption))),
        ],
        lead=budget_html(budget),
    )
    return paths
