"""The risk-return frontier figure: mean return against CVaR_0.1, one point per risk weight.

One panel per dataset. Each swept method is a line through its points in the order of its
risk weight, each point labelled with the weight and carrying its bootstrap intervals on
both axes (``reports.frontier``); the other methods of the profile's main run are grey
points with their names. The method's default weight is ringed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ramac.io import atomic_savefig  # noqa: E402

COLOURS = ("#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad")


def plot_frontier(
    out: Path, points: pd.DataFrame, x_label: str, y_label: str, stem: str = "frontier"
) -> list[Path]:
    """Draw ``stem``.png/.pdf in ``out`` from the aggregated ``points`` (one row per dataset x
    method x value, with ``mean``, ``cvar``, their ``_low`` / ``_high`` interval ends,
    ``value`` (NaN for a reference method), ``label`` and ``default``)."""
    datasets = list(dict.fromkeys(points["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.2 * len(datasets), 4.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        _panel(ax, points[points["dataset"] == dataset], x_label, y_label)
        ax.set_title(dataset)
    fig.tight_layout()
    paths = []
    try:
        for suffix in (".png", ".pdf"):
            path = out / f"{stem}{suffix}"
            atomic_savefig(fig, path, dpi=150)
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def _errorbars(ax, rows: pd.DataFrame, **style) -> None:
    ax.errorbar(
        rows["cvar"],
        rows["mean"],
        xerr=[rows["cvar"] - rows["cvar_low"], rows["cvar_high"] - rows["cvar"]],
        yerr=[rows["mean"] - rows["mean_low"], rows["mean_high"] - rows["mean"]],
        **style,
    )


def _panel(ax, points: pd.DataFrame, x_label: str, y_label: str) -> None:
    reference = points[points["value"].isna()]
    if not reference.empty:
        _errorbars(ax, reference, fmt="o", color="#999", ms=4, lw=0.8, capsize=0, zorder=1)
        for _, row in reference.iterrows():
            ax.annotate(
                row["label"], (row["cvar"], row["mean"]), fontsize=7, color="#666",
                xytext=(3, 3), textcoords="offset points",
            )  # fmt: skip
    swept = points[points["value"].notna()]
    for colour, (label, rows) in zip(COLOURS, swept.groupby("label", sort=False), strict=False):
        rows = rows.sort_values("value")
        _errorbars(ax, rows, fmt="-o", color=colour, ms=5, lw=1.2, capsize=2, label=label)
        for _, row in rows.iterrows():
            ax.annotate(
                f"{row['value']:g}", (row["cvar"], row["mean"]), fontsize=8, color=colour,
                xytext=(4, -10), textcoords="offset points",
            )  # fmt: skip
        default = rows[rows["default"]]
        ax.scatter(default["cvar"], default["mean"], s=160, facecolors="none", edgecolors=colour)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    if not swept.empty:
        ax.legend(fontsize=8, loc="best")
