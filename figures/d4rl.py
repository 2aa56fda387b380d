"""The D4RL figures: risk-return frontier, OOD-rate bars, learning curves and return ECDFs.

Drawn from the tidy records alone (``eval.metrics.aggregate`` output, OOD rates, training
logs and ``episodes.csv`` rows). Every figure has one panel per dataset, gives each algorithm
the same colour in every figure (pass the same ``algos`` list to each call for that),
and is written as ``<stem>.png`` and ``<stem>.pdf`` with atomic writes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ramac.errors import UserError  # noqa: E402
from ramac.io import atomic_savefig  # noqa: E402
from ramac.risk import cvar_estimate, tail_count  # noqa: E402

PANEL_COLS = 3  # panels per row at most
PANEL_SIZE = (3.4, 2.9)  # inches per panel
DPI = 150

FRONTIER_COLUMNS = ["dataset", "algo", "mean", "mean_low", "mean_high"]
FRONTIER_COLUMNS += ["cvar", "cvar_low", "cvar_high", "alpha"]
OOD_KEYS = ["dataset", "algo"]  # plus the rate column drawn (plot_ood_bars)
LOG_COLUMNS = ["dataset", "algo", "seed", "step"]
EPISODE_COLUMNS = ["dataset", "algo", "seed", "episode", "return"]


# --------------------------------------------------------------------------- helpers


# After tab10's ten: colours far from all of them (the suite has 12 methods), then a cycle.
EXTRA_COLOURS = ("#000000", "#b5a100", "#00429d", "#93003a", "#4dac26", "#7b3294")


def algo_colours(algos: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """Map each algorithm to a colour by its position in ``algos``: tab10's ten, then
    ``EXTRA_COLOURS``, cycling after 16.

    One mapping for every figure keeps an algorithm's colour the same across figures.
    """
    palette = [plt.get_cmap("tab10")(i) for i in range(10)]
    palette += [matplotlib.colors.to_rgba(c) for c in EXTRA_COLOURS]
    return {algo: palette[i % len(palette)] for i, algo in enumerate(dict.fromkeys(algos))}


def var_threshold(returns: np.ndarray | Sequence[float], alpha: float) -> float:
    """Empirical value-at-risk: the largest of the worst ceil(alpha * n) returns.

    The tail count is ``ramac.risk.tail_count(n, alpha, "ceil")``, so float error in
    alpha * n (0.1 * 30) does not add a sample, and it matches the CVaR ``ceil`` rule.
    """
    x = np.sort(np.asarray(returns, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("returns: the sample is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("returns: the sample contains NaN or infinite values")
    return float(x[tail_count(x.size, alpha, "ceil") - 1])


def seed_band(logs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-step mean and min..max band across seeds of one (dataset, algo)'s training logs.

    Rows with a missing ``metric`` are dropped first; the seeds are those that logged the
    metric at least once, and only steps where every such seed has a value are kept (seeds
    may log different steps). Returns columns step, mean, low, high, n_seeds, sorted by step;
    empty when nothing is left.
    """
    values = logs.loc[logs[metric].notna(), ["seed", "step", metric]]
    columns = ["step", "mean", "low", "high", "n_seeds"]
    if values.empty:
        return pd.DataFrame(columns=columns)
    dup = values.duplicated(["seed", "step"])
    if dup.any():
        row = values.loc[dup, ["seed", "step"]].iloc[0].to_dict()
        raise UserError(f"logs: '{metric}' logged twice for one seed and step: {row}")
    wide = values.pivot(index="step", columns="seed", values=metric).dropna().sort_index()
    out = pd.DataFrame(
        {
            "step": wide.index.to_numpy(),
            "mean": wide.mean(axis=1).to_numpy(),
            "low": wide.min(axis=1).to_numpy(),
            "high": wide.max(axis=1).to_numpy(),
            "n_seeds": wide.shape[1],
        }
    )
    return out[columns]


def _check_frame(df: pd.DataFrame, required: Iterable[str], name: str) -> None:
    """Raise UserError if ``df`` lacks a required column or has no rows."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{name}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise UserError(f"{name}: no rows")


def _check_unique(df: pd.DataFrame, keys: list[str], name: str) -> None:
    """Raise UserError if two rows share ``keys`` (one point or bar per key is drawn)."""
    dup = df.duplicated(keys)
    if dup.any():
        row = df.loc[dup, keys].iloc[0].to_dict()
        raise UserError(f"{name}: more than one row for {row}")


def _order(present: pd.Series, given: Sequence[str] | None) -> list[str]:
    """``given`` if passed (duplicates dropped), else the order of first appearance."""
    return list(dict.fromkeys(present if given is None else given))


def _select(
    df: pd.DataFrame, datasets: Sequence[str] | None, algos: Sequence[str] | None
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The rows of the chosen datasets and algorithms, with both orders resolved.

    Every requested dataset must have rows (it gets a panel); a requested algo may be absent
    (it still holds its colour, so one ``algos`` list can serve every figure).
    """
    df = df.assign(dataset=df["dataset"].astype(str), algo=df["algo"].astype(str))
    dataset_order = _order(df["dataset"], datasets)
    absent = [d for d in dataset_order if d not in set(df["dataset"])]
    if absent:
        raise UserError(f"datasets: no rows for {', '.join(absent)}")
    algo_order = _order(df["algo"], algos)
    keep = df["dataset"].isin(dataset_order) & df["algo"].isin(algo_order)
    return df.loc[keep], dataset_order, algo_order


def _panels(datasets: list[str]) -> tuple[Figure, list[plt.Axes]]:
    """A figure with one titled panel per dataset (unused grid cells hidden)."""
    n = len(datasets)
    cols = min(PANEL_COLS, n)
    rows = math.ceil(n / cols)
    size = (PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows + 0.5)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    flat = list(axes.ravel())
    for ax, dataset in zip(flat, datasets, strict=False):
        ax.set_title(dataset, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _label(algo: str, labels: dict[str, str] | None) -> str:
    """The display name of ``algo`` (itself when ``labels`` has none)."""
    return (labels or {}).get(algo, algo)


def _legend(fig: Figure, axes: list[plt.Axes]) -> None:
    """One legend under the panels with each label once, in the order first drawn."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if not entries:
        fig.tight_layout()
        return
    ncol = min(len(entries), 6)
    legend_rows = math.ceil(len(entries) / ncol)
    bottom = 0.35 * legend_rows / fig.get_figheight()
    fig.legend(
        list(entries.values()),
        list(entries.keys()),
        loc="lower center",
        ncol=ncol,
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout(rect=(0, bottom, 1, 1))


def _save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` atomically, close the figure, return the paths.

    The suffixes are appended, not substituted, so a stem such as ``frontier_a0.1`` is kept.
    """
    stem = Path(stem)
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"]
    try:
        for path in paths:
            atomic_savefig(fig, path, dpi=DPI)
    finally:
        plt.close(fig)
    return paths


def _whiskers(point: pd.Series, low: pd.Series, high: pd.Series) -> np.ndarray:
    """Asymmetric error-bar lengths [2, n] from an interval; missing bounds give none."""
    below = (point - low).to_numpy(dtype=np.float64)
    above = (high - point).to_numpy(dtype=np.float64)
    return np.clip(np.nan_to_num(np.vstack([below, above]), nan=0.0), 0.0, None)


def _single_alpha(agg: pd.DataFrame) -> float:
    """The one CVaR level of ``agg``; several levels cannot share an axis label."""
    alphas = pd.to_numeric(agg["alpha"], errors="coerce").dropna().unique()
    if len(alphas) != 1:
        raise UserError(f"agg: expected one alpha, found {sorted(alphas.tolist())}")
    return float(alphas[0])


# --------------------------------------------------------------------------- figures


def plot_frontier(
    agg: pd.DataFrame,
    stem: str | Path,
    *,
    datasets: Sequence[str] | None = None,
    algos: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
) -> list[Path]:
    """Risk-return frontier: x = CVaR_alpha (per-seed CVaR averaged), y = mean return.

    ``agg`` is ``eval.metrics.aggregate`` output (one row per dataset and algo); whiskers on
    both axes are its ``*_low``/``*_high`` intervals. Writes ``<stem>.png``/``.pdf``.
    """
    _check_frame(agg, FRONTIER_COLUMNS, "agg")
    _check_unique(agg, ["dataset", "algo"], "agg")
    alpha = _single_alpha(agg)
    df, dataset_order, algo_order = _select(agg, datasets, algos)
    colours = algo_colours(algo_order)
    fig, axes = _panels(dataset_order)
    for ax, dataset in zip(axes, dataset_order, strict=True):
        panel = df[df["dataset"] == dataset]
        for algo in algo_order:
            row = panel[panel["algo"] == algo]
            if row.empty:
                continue
            ax.errorbar(
                row["cvar"],
                row["mean"],
                xerr=_whiskers(row["cvar"], row["cvar_low"], row["cvar_high"]),
                yerr=_whiskers(row["mean"], row["mean_low"], row["mean_high"]),
                fmt="o",
                ms=5,
                capsize=2,
                lw=1,
                color=colours[algo],
                label=_label(algo, labels),
            )
        ax.set_xlabel(f"CVaR$_{{{alpha:g}}}$ of return", fontsize=8)
        ax.set_ylabel("mean return", fontsize=8)
        ax.grid(alpha=0.3, lw=0.5)
    _legend(fig, axes)
    return _save(fig, stem)


def plot_ood_bars(
    ood: pd.DataFrame,
    stem: str | Path,
    *,
    datasets: Sequence[str] | None = None,
    algos: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
    column: str = "ood_rate",
    ylabel: str = "OOD actions (%)",
) -> list[Path]:
    """Bars of the OOD-action rate in percent, one bar per algo in each dataset's panel.

    ``column`` (``ood_rate``, or the paper's ``ood_rate_1nn``: one figure per detector, its
    name in ``ylabel``, so the two rates are never drawn on one unnamed axis) and the
    optional ``ood_low``/``ood_high`` interval, used as whiskers when both are present, are
    fractions in [0, 1], drawn times 100. Writes ``<stem>.png``/``.pdf``.
    """
    _check_frame(ood, [*OOD_KEYS, column], "ood")
    _check_unique(ood, OOD_KEYS, "ood")
    rates = pd.to_numeric(ood[column], errors="coerce")
    if not rates.between(0.0, 1.0).all():
        raise UserError(f"ood: '{column}' must be a fraction in [0, 1], not missing or in percent")
    has_ci = {"ood_low", "ood_high"} <= set(ood.columns)
    df, dataset_order, algo_order = _select(ood, datasets, algos)
    colours = algo_colours(algo_order)
    fig, axes = _panels(dataset_order)
    for ax, dataset in zip(axes, dataset_order, strict=True):
        panel = df[df["dataset"] == dataset].set_index("algo")
        shown = [a for a in algo_order if a in panel.index]
        rows = panel.loc[shown]
        height = 100.0 * rows[column].astype(float)
        err = None
        if has_ci:
            err = _whiskers(height, 100.0 * rows["ood_low"], 100.0 * rows["ood_high"])
        x = np.arange(len(shown))
        bars = ax.bar(x, height, yerr=err, capsize=2, color=[colours[a] for a in shown])
        for bar, algo in zip(bars, shown, strict=True):
            bar.set_label(_label(algo, labels))
        ax.set_xticks(x, [_label(a, labels) for a in shown], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3, lw=0.5)
    _legend(fig, axes)
    return _save(fig, stem)


def plot_learning_curves(
    logs: pd.DataFrame,
    stem: str | Path,
    metric: str,
    *,
    datasets: Sequence[str] | None = None,
    algos: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
) -> list[Path]:
    """Training curves of ``metric``: per algo the mean over seeds at each step as a line and
    a shaded band from the minimum to the maximum across seeds (no band with one seed).

    Only steps logged by every seed of that (dataset, algo) are drawn (see ``seed_band``); an
    algo whose ``metric`` is all missing is left out of that panel, and a metric missing for
    every algo is a UserError. Writes ``<stem>.png``/``.pdf``.
    """
    _check_frame(logs, [*LOG_COLUMNS, metric], "logs")
    values = pd.to_numeric(logs[metric], errors="coerce")
    if values.isna().all():
        raise UserError(f"logs: metric '{metric}' has no values")
    logs = logs.assign(**{metric: values})
    df, dataset_order, algo_order = _select(logs, datasets, algos)
    colours = algo_colours(algo_order)
    fig, axes = _panels(dataset_order)
    for ax, dataset in zip(axes, dataset_order, strict=True):
        panel = df[df["dataset"] == dataset]
        for algo in algo_order:
            band = seed_band(panel[panel["algo"] == algo], metric)
            if band.empty:
                continue
            colour = colours[algo]
            ax.plot(band["step"], band["mean"], lw=1.2, color=colour, label=_label(algo, labels))
            if band["n_seeds"].iloc[0] > 1:
                ax.fill_between(band["step"], band["low"], band["high"], color=colour, alpha=0.2)
        ax.set_xlabel("training step", fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.grid(alpha=0.3, lw=0.5)
    _legend(fig, axes)
    return _save(fig, stem)


def _draw_ecdf(
    ax: plt.Axes, returns: np.ndarray, alpha: float, rule: str, colour, label: str
) -> None:
    """One algo's ECDF step curve, its tail up to the VaR shaded, a marker at its CVaR."""
    x = np.sort(returns)
    y = np.arange(1, x.size + 1) / x.size
    ax.step(np.r_[x[0], x], np.r_[0.0, y], where="post", color=colour, lw=1.2, label=label)
    k = tail_count(x.size, alpha, "ceil")  # x[k - 1] == var_threshold(x, alpha)
    ax.fill_between(x[:k], 0.0, y[:k], step="post", color=colour, alpha=0.25, lw=0)
    cvar = cvar_estimate(x, alpha, rule)
    ax.plot([cvar], [alpha], marker="D", ms=4, color=colour, mec="k", mew=0.5, zorder=5)


def plot_return_ecdfs(
    episodes: pd.DataFrame,
    stem: str | Path,
    *,
    alpha: float = 0.1,
    rule: str = "ceil",
    datasets: Sequence[str] | None = None,
    algos: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
) -> list[Path]:
    """Empirical CDFs of evaluation returns pooled over seeds, one curve per algo per panel.

    Each algo's lower tail is shaded up to its value-at-risk (``var_threshold``) and a
    diamond on the dashed y = alpha line marks its pooled CVaR
    (``ramac.risk.cvar_estimate(returns, alpha, rule)``). Writes ``<stem>.png``/``.pdf``.
    """
    _check_frame(episodes, EPISODE_COLUMNS, "episodes")
    returns = pd.to_numeric(episodes["return"], errors="coerce")
    if not np.all(np.isfinite(returns.to_numpy(dtype=np.float64))):
        raise UserError("episodes: 'return' has missing, non-numeric or infinite values")
    df, dataset_order, algo_order = _select(episodes.assign(**{"return": returns}), datasets, algos)
    colours = algo_colours(algo_order)
    fig, axes = _panels(dataset_order)
    for ax, dataset in zip(axes, dataset_order, strict=True):
        panel = df[df["dataset"] == dataset]
        for algo in algo_order:
            pooled = panel.loc[panel["algo"] == algo, "return"].to_numpy(dtype=np.float64)
            if pooled.size:
                _draw_ecdf(ax, pooled, alpha, rule, colours[algo], _label(algo, labels))
        ax.axhline(alpha, color="0.4", ls="--", lw=0.8)
        ax.set_xlabel("episode return", fontsize=8)
        ax.set_ylabel("fraction of episodes $\\leq$ return", fontsize=8)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3, lw=0.5)
    _legend(fig, axes)
    return _save(fig, stem)
