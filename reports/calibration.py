"""Tail calibration's table, figure and page, from a folder's calibration records alone.

``pipeline.calibrate`` leaves ``calibration.csv`` (one row per run x point or state) and
``calibration_curve.csv`` (per level) in a results folder. Gaps are predicted - true
(bandit: the closed form) or predicted - empirical (Stochastic-D4RL: Monte-Carlo returns
of the same policy): positive = the critic is optimistic. Per method (and bandit zone or
dataset), each seed's gaps are averaged over its points or states, then the seeds' mean is
given with a 95% percentile bootstrap interval across seeds (``eval.bootstrap``).

Writes ``calibration_table.{csv,tex,md,html}``, ``calibration_curves.{png,pdf}`` and
``calibration_report.html`` into the folder.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from eval.bootstrap import bootstrap_ci  # noqa: E402
from ramac.agents.base import AGENTS, _load_all  # noqa: E402
from ramac.errors import UserError  # noqa: E402
from ramac.io import atomic_savefig  # noqa: E402
from reports.html import Figure, html_caption, table_block, write_report  # noqa: E402
from reports.leaderboard import html_table, interval_text, write_frame_tables  # noqa: E402

REPS = 2000
PUBLIC_LOSS = (
    " RADAC (public code's loss bug): the quantile Huber weight indexed by the target sample,"
    " as the public RADAC code computes it (ramac.nets.iqn.quantile_huber_loss)."
)
# suite -> (the row's group column, the truth's name, columns: predicted, truth, gap)
LAYOUT = {
    "bandit": ("zone", "true", ("predicted_cvar", "true_cvar", "cvar_gap")),
    "stochastic-d4rl": ("dataset", "empirical", ("predicted_cvar", "empirical_cvar", "cvar_gap")),
}


def read_calibration(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    points, curve = root / "calibration.csv", root / "calibration_curve.csv"
    if not points.exists() or not curve.exists():
        raise UserError(f"{root}: no calibration records; run 'reproduce.py calibrate' first")
    return pd.read_csv(points), pd.read_csv(curve)


def _suite(points: pd.DataFrame) -> str:
    return "bandit" if "zone" in points else "stochastic-d4rl"


def _interval(values: np.ndarray) -> str:
    """The seeds' mean [95% bootstrap interval] (just the mean for one seed)."""
    point, low, high = bootstrap_ci(values, reps=REPS)
    return interval_text(point, low, high) if len(values) > 1 else f"{point:.2f}"


def calibration_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per method x zone (bandit) or dataset: predicted and true CVaR_0.1, the gap
    and (bandit) the relative gap |gap| / |true|, the mean's gap; seeds' mean [interval]."""
    _load_all()
    suite = _suite(points)
    group, truth, (pred, true, gap) = LAYOUT[suite]
    points = points.assign(
        abs_cvar_gap=points["cvar_gap"].abs(),  # per point, then averaged
        # the tail's width, mean - CVaR_0.1: its shape, whatever the value scale learned
        predicted_spread=points["predicted_mean"] - points["predicted_cvar"],
        true_spread=points["predicted_mean"]
        - points["predicted_cvar"]
        - points["mean_gap"]
        + points["cvar_gap"],
    )
    extra = ["cvar_rel_gap"] if suite == "bandit" else ["abs_cvar_gap"]
    extra += ["predicted_spread", "true_spread"]
    columns = [pred, true, gap, *extra, "mean_gap"]
    per_seed = points.groupby(["algo", group, "seed"], sort=False)[columns].mean().reset_index()
    rows = []
    for (algo, where), seeds in per_seed.groupby(["algo", group], sort=False):
        row = {
            "Method": AGENTS[algo].display_name if algo in AGENTS else algo,
            group.title(): where,
        }
        row["Seeds"] = len(seeds)
        row["Predicted CVaR_0.1"] = _interval(seeds[pred].to_numpy())
        row[f"{truth.title()} CVaR_0.1"] = _interval(seeds[true].to_numpy())
        row["CVaR gap"] = _interval(seeds[gap].to_numpy())
        if suite == "bandit":
            row["|gap| / |true| (%)"] = _interval(100 * seeds["cvar_rel_gap"].to_numpy())
        else:
            row["|CVaR gap|"] = _interval(seeds["abs_cvar_gap"].to_numpy())
        row["Mean gap"] = _interval(seeds["mean_gap"].to_numpy())
        row["Spread: predicted"] = _interval(seeds["predicted_spread"].to_numpy())
        row[f"Spread: {truth}"] = _interval(seeds["true_spread"].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def calibration_caption(points: pd.DataFrame) -> str:
    """What the table shows, in words."""
    if _suite(points) == "bandit":
        where = (
            "at the centre (0, 0) and at 8 points on the ring, against the closed-form reward "
            "distribution (no sampling)"
        )
    else:
        n = points.groupby(["dataset", "algo", "seed"]).size().min()
        where = (
            f"at {n} states per run (evaluation start states and the states the policy "
            f"reaches {int(points['start_step'].max())} steps later), against the discounted "
            f"returns of {int(points['n_returns'].min())} rollouts of the same policy per "
            f"state (hazard penalties included, truncated at {int(points['horizon'].min())} "
            f"steps: weight gamma^H = {points['discount_at_horizon'].max():.2g} dropped)"
        )
    return (
        f"Tail calibration of each trained IQN critic: the critic's CVaR_0.1 (min over the "
        f"ensemble per level) of the return of the policy's action {where}. Gap = predicted "
        f"- true: positive means the critic is optimistic about the tail. Each seed averaged "
        f"over its points, then the mean over seeds with a 95% percentile bootstrap interval "
        f"across seeds (scipy.stats.bootstrap). Spread: mean - CVaR_0.1, the width of the "
        f"lower tail, predicted and {'true' if _suite(points) == 'bandit' else 'empirical'}: "
        f"the tail's shape, whatever value scale the critic has learned."
    ) + (PUBLIC_LOSS if "radac_public_loss" in set(points["algo"]) else "")


def plot_curves(root: Path, curve: pd.DataFrame) -> Path:
    """``calibration_curves.{png,pdf}``: the gap at each level, per method (mean over seeds
    and points), one panel per bandit zone or dataset; 0 = calibrated."""
    _load_all()
    group = "zone" if "zone" in curve else "dataset"
    truth = "true" if "true" in curve else "empirical"
    panels = list(dict.fromkeys(curve[group]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        rows = curve[curve[group] == panel]
        for algo, algo_rows in rows.groupby("algo", sort=False):
            gaps = algo_rows.groupby("level")["gap"].mean()
            label = AGENTS[algo].display_name if algo in AGENTS else algo
            ax.plot(gaps.index, gaps.to_numpy(), "-o", ms=3, label=label)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_title(str(panel))
        ax.set_xlabel("level tau")
        ax.set_ylabel(f"predicted - {truth} quantile")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        paths = [root / f"calibration_curves{s}" for s in (".png", ".pdf")]
        for path in paths:
            atomic_savefig(fig, path, dpi=150)
    finally:
        plt.close(fig)
    return paths[0]


def write_calibration_report(root: Path) -> dict[str, Path]:
    """The calibration table (csv, tex, md, html), curves and page of the folder ``root``."""
    points, curve = read_calibration(root)
    table = calibration_table(points)
    caption = calibration_caption(points)
    paths = write_frame_tables(table, root, "calibration_table", caption, "tab:calibration")
    figure = plot_curves(root, curve)
    truth = "the closed form" if _suite(points) == "bandit" else "the Monte-Carlo returns"
    paths["report"] = write_report(
        root / "calibration_report.html",
        f"ramac: does the critic know the tail? ({_suite(points)})",
        [
            ("Table", table_block(html_table(table), html_caption(caption))),
            (
                "Calibration curves",
                Figure(
                    figure,
                    f"Predicted minus {truth} quantile at each level, mean over seeds and "
                    f"points; 0 = calibrated, below 0 = pessimistic.",
                ),
            ),
        ],
    )
    return paths
