"""Leaderboard tables from tidy aggregated records: CSV, LaTeX (booktabs), Markdown, HTML.

The layout follows the paper's main table (docs/reference-code.md, "The paper"): one row per
dataset x metric (Mean, CVaR), one column per algorithm, the best value of a row in bold and
the runner-up marked. Bold rule: the best point estimate of the row (highest, or lowest for a
lower-is-better metric such as an OOD rate), compared at the precision shown; every
algorithm tied with it is bold too, and the runner-up is the next distinct value. Intervals
are drawn but do not enter the rule. No interval is drawn from fewer than
``MIN_SEEDS_FOR_INTERVAL`` seeds: such a cell shows its per-seed values instead. The CSV is
the canonical output; the other formats are derived from the same ``Table``, so no two
formats can disagree. Each format has its own caption (``caption_for(..., fmt=...)``),
naming the marking that format uses.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from eval.bootstrap import bootstrap_ci, standard_error
from eval.metrics import OURS_OOD, PAPER_OOD
from ramac.errors import UserError
from ramac.io import atomic_to_csv, atomic_write_text
from reports.budget import NOT_PAPER, budget_of
from reports.html import TABLE_CSS, html_caption

CSV_COLUMNS = ["dataset", "metric", "algo", "value", "low", "high", "is_best", "is_runner_up"]
SEED_COLUMNS = ["n_seeds", "seed_values"]  # added when the records give per-seed values
MIN_SEEDS_FOR_INTERVAL = 3  # fewer seeds: the per-seed values, never an interval
FORMATS = ("csv", "latex", "markdown", "html")
METRIC_LABELS = {
    "mean": "Mean",
    "cvar": "CVaR",
    "cvar_pooled": "CVaR (pooled)",
    "risky_rate": "Risky rate",
    "ood_rate": "OOD rate (%)",
}


def ood_labels(kappa: float = 3.0, percent: bool = True) -> dict[str, str]:
    """The row labels of the two OOD rates, named so that neither is taken for the other:
    the paper's 1-NN detector on joint (state, action) pairs, and ours, state-conditioned."""
    unit = " (%)" if percent else ""
    return {
        PAPER_OOD: f"OOD, 1-NN (paper), κ = {kappa:g}{unit}",
        OURS_OOD: f"OOD, state-conditioned{unit}",
    }


RULE_TEXT = {
    "ceil": "the mean of the worst ceil(alpha N) of a seed's N episode returns",
    "floor": "the mean of the worst floor(alpha N) of a seed's N episode returns",
    "interpolated": "the exact CVaR of a seed's empirical return distribution "
    "(fractional weight on the boundary episode)",
}
RUNNER_UP_WORDS = {"latex": "underlined", "markdown": "in italics", "html": "shaded"}
DASH = "–"


@dataclass
class Table:
    """A leaderboard: tidy ``cells`` plus the display order and format.

    ``cells`` has the CSV_COLUMNS (and the SEED_COLUMNS when the records gave per-seed
    values: ``seed_values`` is a tuple, and a cell from fewer than ``min_seeds`` seeds has
    no low / high); ``rows`` lists (dataset, metric) in display order. ``interval`` is "ci"
    (cells show "[low, high]") or "pm" (cells show "± (high - value)", for symmetric
    intervals such as a standard error).
    """

    cells: pd.DataFrame
    rows: list[tuple[str, str]]
    algos: list[str]
    dataset_labels: dict[str, str] = field(default_factory=dict)
    metric_labels: dict[str, str] = field(default_factory=dict)
    decimals: int = 2
    interval: str = "ci"
    min_seeds: int = MIN_SEEDS_FOR_INTERVAL

    def cell(self, dataset: str, metric: str, algo: str) -> pd.Series:
        """The cells row for one (dataset, metric, algo)."""
        c = self.cells
        hit = c[(c["dataset"] == dataset) & (c["metric"] == metric) & (c["algo"] == algo)]
        return hit.iloc[0]

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(metric for _, metric in self.rows))

    def dataset_label(self, dataset: str) -> str:
        return self.dataset_labels.get(dataset, dataset)

    def metric_label(self, metric: str) -> str:
        return self.metric_labels.get(metric, METRIC_LABELS.get(metric, metric))


# --------------------------------------------------------------------------- building


def _dataset_order(frame: pd.DataFrame, rows: Sequence[str] | Mapping[str, str] | None):
    """(datasets in display order, their labels) from a list, a {dataset: label} or None."""
    present = list(dict.fromkeys(frame["dataset"]))
    if rows is None:
        return present, {}
    labels = dict(rows) if isinstance(rows, Mapping) else {}
    order = list(rows)
    missing = [d for d in order if d not in present]
    if missing:
        raise UserError(f"leaderboard: no records for dataset(s) {', '.join(missing)}")
    return order, labels


def _algo_order(frame: pd.DataFrame, algo_order: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(frame["algo"]))
    if algo_order is None:
        return present
    missing = [a for a in algo_order if a not in present]
    if missing:
        raise UserError(f"leaderboard: no records for algorithm(s) {', '.join(missing)}")
    return list(algo_order)


def mark_best(values: Sequence[float], higher_is_better: bool, decimals: int) -> tuple[list, list]:
    """(is_best, is_runner_up) flags: best and next-best point estimate at ``decimals``.

    NaN values are never marked; ties (equal after rounding) share the mark.
    """
    shown = [round(v, decimals) if math.isfinite(v) else math.nan for v in values]
    distinct = sorted({v for v in shown if math.isfinite(v)}, reverse=higher_is_better)
    best = distinct[0] if distinct else math.nan
    second = distinct[1] if len(distinct) > 1 else math.nan
    return [v == best for v in shown], [v == second for v in shown]


def _check_one_suite(frame: pd.DataFrame) -> None:
    if "suite" in frame and frame["suite"].nunique() > 1:
        suites = ", ".join(sorted(map(str, frame["suite"].unique())))
        raise ValueError(f"leaderboard: records from several suites ({suites}); filter to one")


def _value(row: pd.Series | None, column: str) -> float:
    return float(row[column]) if row is not None and column in row else math.nan


def _seed_values(row: pd.Series | None, metric: str) -> tuple[float, ...] | None:
    """The per-seed values of a cell (``<metric>_seeds``: a sequence), when recorded."""
    if row is None or f"{metric}_seeds" not in row:
        return None
    values = row[f"{metric}_seeds"]
    if values is None or (isinstance(values, float) and math.isnan(values)):
        return None
    return tuple(float(v) for v in values)


def _n_seeds(row: pd.Series | None, values: tuple[float, ...] | None) -> float:
    if values is not None:
        return float(len(values))
    return _value(row, "n_seeds")


def _row_cells(
    frame: pd.DataFrame,
    dataset: str,
    metric: str,
    algos: list[str],
    higher: bool,
    decimals: int,
    min_seeds: int,
) -> list[dict]:
    """The cells of one (dataset, metric) row, with the best / runner-up flags set; a cell
    from fewer than ``min_seeds`` seeds keeps its per-seed values and drops its interval."""
    lookup = frame[frame["dataset"] == dataset].set_index("algo")
    cells = []
    for algo in algos:
        row = lookup.loc[algo] if algo in lookup.index else None
        values = _seed_values(row, metric)
        n_seeds = _n_seeds(row, values)
        low, high = _value(row, f"{metric}_low"), _value(row, f"{metric}_high")
        if math.isfinite(n_seeds) and n_seeds < min_seeds:
            low = high = math.nan
        cells.append(
            {"dataset": dataset, "metric": metric, "algo": algo}
            | {"value": _value(row, metric), "low": low, "high": high}
            | {"n_seeds": n_seeds, "seed_values": values}
        )
    best, runner = mark_best([c["value"] for c in cells], higher, decimals)
    for c, b, r in zip(cells, best, runner, strict=True):
        c["is_best"], c["is_runner_up"] = b, r
    return cells


def leaderboard(
    aggregated: pd.DataFrame,
    *,
    rows: Sequence[str] | Mapping[str, str] | None = None,
    metrics: Sequence[str] = ("mean", "cvar"),
    algo_order: Sequence[str] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    metric_labels: Mapping[str, str] | None = None,
    decimals: int = 2,
    interval: str = "ci",
    min_seeds: int = MIN_SEEDS_FOR_INTERVAL,
) -> Table:
    """The paper-layout table from ``eval.metrics.aggregate`` output (one suite).

    ``rows`` gives the datasets in order (a {dataset: label} mapping also relabels them);
    each metric m reads columns m, m_low, m_high, and m_seeds (its per-seed values) or
    n_seeds when present: a cell from fewer than ``min_seeds`` seeds shows its per-seed
    values instead of an interval. ``higher_is_better`` defaults to True per metric.
    Algorithms not in ``algo_order`` and datasets not in ``rows`` are left out; missing
    (dataset, algo) records show as a dash and are never marked.
    """
    if interval not in ("ci", "pm"):
        raise ValueError(f"interval must be 'ci' or 'pm', got '{interval}'")
    _check_one_suite(aggregated)
    if aggregated.duplicated(["dataset", "algo"]).any():
        raise ValueError("leaderboard: more than one record per (dataset, algo)")
    datasets, labels = _dataset_order(aggregated, rows)
    algos = _algo_order(aggregated, algo_order)
    missing = [m for m in metrics if m not in aggregated]
    if missing:
        raise UserError(f"leaderboard: aggregated records lack metric column(s) {missing}")
    higher = {m: True for m in metrics} | dict(higher_is_better or {})
    cells = [
        cell
        for d in datasets
        for m in metrics
        for cell in _row_cells(aggregated, d, m, algos, higher[m], decimals, min_seeds)
    ]
    frame = pd.DataFrame(cells, columns=CSV_COLUMNS + SEED_COLUMNS)
    if frame["n_seeds"].isna().all():  # the records said nothing about seeds
        frame = frame[CSV_COLUMNS]
    return Table(
        cells=frame,
        rows=[(d, m) for d in datasets for m in metrics],
        algos=algos,
        dataset_labels=labels,
        metric_labels=dict(metric_labels or {}),
        decimals=decimals,
        interval=interval,
        min_seeds=min_seeds,
    )


def ood_table(
    seed_summary: pd.DataFrame,
    *,
    rows: Sequence[str] | Mapping[str, str] | None = None,
    algo_order: Sequence[str] | None = None,
    columns: Sequence[str] = (OURS_OOD,),
    kappa: float = 3.0,
    interval: str = "se",
    percent: bool = True,
    reps: int = 2000,
    seed: int = 0,
    decimals: int = 2,
    min_seeds: int = MIN_SEEDS_FOR_INTERVAL,
) -> Table:
    """OOD-rate table (docs/reference-code.md, "The paper"): rows = datasets, columns = algorithms,
    cells = mean over seeds of the per-seed rate (in % when ``percent``) with ± s.e. across
    seeds (``interval="se"``) or a 95% percentile bootstrap CI across seeds (``"ci"``;
    ``eval.bootstrap``, scipy.stats.bootstrap); from fewer than ``min_seeds`` seeds, the
    per-seed rates instead. Lower is better, so the lowest rate is bold.

    ``columns``: the rates shown, one row each per dataset, in this order (``PAPER_OOD``,
    the paper's 1-NN rate at ``kappa``; ``OURS_OOD``, the state-conditioned one), labelled
    by ``ood_labels``; a run that lacks a rate leaves its cell empty."""
    if interval not in ("se", "ci"):
        raise ValueError(f"interval must be 'se' or 'ci', got '{interval}'")
    missing = [column for column in columns if column not in seed_summary]
    if missing or not columns:
        raise UserError(f"OOD table: seed summary has no '{', '.join(missing)}' column")
    _check_one_suite(seed_summary)
    scale = 100.0 if percent else 1.0
    cells: dict[tuple[str, str], dict] = {}
    for column in columns:
        frame = seed_summary.dropna(subset=[column])
        for (dataset, algo), group in frame.groupby(["dataset", "algo"], sort=False):
            values = scale * group[column].to_numpy(dtype=np.float64)
            point, low, high = bootstrap_ci(values, np.mean, reps=reps, seed=seed)
            if interval == "se":
                se = standard_error(values)
                low, high = point - se, point + se
            cell = cells.setdefault((dataset, algo), {"dataset": dataset, "algo": algo})
            cell |= {column: point, f"{column}_low": low, f"{column}_high": high}
            cell[f"{column}_seeds"] = tuple(values)
    labels = ood_labels(kappa, percent)
    frame = pd.DataFrame(list(cells.values()))
    frame = frame.assign(**{c: math.nan for c in columns if c not in frame})  # never recorded
    return leaderboard(
        frame,
        rows=rows,
        metrics=tuple(columns),
        algo_order=algo_order,
        higher_is_better=dict.fromkeys(columns, False),
        metric_labels={column: labels.get(column, column) for column in columns},
        decimals=decimals,
        interval="pm" if interval == "se" else "ci",
        min_seeds=min_seeds,
    )


# --------------------------------------------------------------------------- captions


def check_format(fmt: str) -> str:
    """``fmt`` when it is one of FORMATS (a caption is written for one format)."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got '{fmt}'")
    return fmt


def marks_sentence(fmt: str, best: str = "best point estimate of the row") -> str:
    """How ``fmt`` marks the best and the runner-up of a row, in that format's own terms."""
    ties = "ties at the shown precision all"
    if check_format(fmt) == "csv":
        return (
            f"is_best: the {best} ({ties} marked); is_runner_up: the next distinct value "
            f"(the other formats show them bold and {RUNNER_UP_WORDS['latex']} / "
            f"{RUNNER_UP_WORDS['markdown']} / {RUNNER_UP_WORDS['html']})."
        )
    runner = RUNNER_UP_WORDS[fmt][0].upper() + RUNNER_UP_WORDS[fmt][1:]
    return f"Bold: {best} ({ties} bold). {runner}: runner-up."


def interval_sentence(fmt: str, interval: str, n_seeds: int | None, pm: bool = False) -> str:
    """What a cell's interval means in ``fmt``, and the rule for cells from fewer than
    MIN_SEEDS_FOR_INTERVAL seeds (stated when the table has such cells: ``n_seeds``, the
    fewest seeds of any cell, is below it)."""
    where = {
        "csv": "Columns low / high (the value minus / plus it)" if pm else "Columns low / high",
        "latex": "± " if pm else "Brackets",
        "markdown": "± " if pm else "Brackets",
        "html": "± " if pm else "Brackets",
    }[check_format(fmt)].strip()
    few = n_seeds is not None and n_seeds < MIN_SEEDS_FOR_INTERVAL
    if not few:
        return f"{where}: {interval}."
    if fmt == "csv":
        instead = "those rows leave low / high empty and list the per-seed values in seed_values"
    else:
        instead = 'those cells give the per-seed values in parentheses, e.g. "(seeds: a, b)"'
    return (
        f"{where}: {interval}, only where a cell has {MIN_SEEDS_FOR_INTERVAL} or more seeds; "
        f"no interval is drawn from fewer seeds: {instead}."
    )


def caption_for(
    n_seeds: int,
    episodes_per_seed: int,
    alpha: float,
    rule: str,
    interval: str = (
        "95% stratified bootstrap CI across seeds (percentile method, scipy.stats.bootstrap; "
        "each dataset's seeds resampled on their own)"
    ),
    checkpoint: str = "final",
    fmt: str = "latex",
) -> str:
    """The sentence every score table carries: seeds, episodes per seed, alpha, the CVaR
    estimator, what the interval means (and that fewer than 3 seeds give none), the
    checkpoint rule and the bold rule, in ``fmt``'s own marking (plain text; ``to_latex``
    escapes it)."""
    if rule not in RULE_TEXT:
        raise ValueError(f"rule must be one of {list(RULE_TEXT)}, got '{rule}'")
    return (
        f"Mean return and CVaR at alpha = {alpha:g} over {n_seeds} seeds x "
        f"{episodes_per_seed} evaluation episodes per seed ({checkpoint} checkpoint). "
        f"CVaR is {RULE_TEXT[rule]}, computed per seed and then averaged over seeds. "
        f"{interval_sentence(fmt, interval, n_seeds)} {marks_sentence(fmt)}"
    )


def budget_sentence(summary: pd.DataFrame, out: str | os.PathLike | None = None) -> str:
    """What budget produced a table (``reports.budget``): the profile, updates per run,
    seeds and evaluation draws per seed, against the paper profile's, saying NOT the
    paper's budget (and that schedules were scaled with it) when they differ. Reads the
    per-run records; ``out`` (the records folder) lets it find the runs' profile."""
    return budget_of(summary, Path(out) if out is not None else None).sentence()


def ood_caption_for(
    n_seeds: int,
    kappa: float = 3.0,
    interval: str = "standard error across seeds",
    fmt: str = "latex",
    detector: str = "joint",
    neighbours: int | None = None,
    paper: bool = False,
) -> str:
    """The sentence for an OOD-rate table: the detector(s), kappa, seeds, the ± and bold
    rules in ``fmt``'s own marking. ``detector`` is the feature space of the ``ood_rate``
    rows as the runs recorded it (``eval.ood``: ``joint`` or ``state_conditioned``, whose
    ``neighbours`` is its k); ``paper``: the table also has the paper's 1-NN rows
    (``ood_rate_1nn``), and the caption then says which row is which."""
    if detector == "state_conditioned":
        what = (
            f"the 1-NN state-conditioned detector, k = {neighbours}, kappa = {kappa:g} (an "
            f"action is flagged when its distance to the nearest of the actions of the "
            f"dataset's k nearest states, actions standardised by the dataset's action std, "
            f"exceeds kappa times the dataset's mean leave-one-out distance of the same kind)"
        )
    elif detector == "joint":
        what = (
            f"the 1-NN detector (features standardised by the dataset; flagged when the "
            f"distance to the nearest dataset point exceeds kappa = {kappa:g} times the "
            f"dataset's mean leave-one-out 1-NN distance)"
        )
    else:
        what = f"the 1-NN detector(s) {detector}, kappa = {kappa:g}"
    if paper:
        labels = ood_labels(kappa, percent=False)
        what = (
            f'two detectors, one row each. "{labels[PAPER_OOD]}": the paper\'s detector, '
            f"the 1-NN distance of the (state, action) pair to the dataset's pairs, every "
            f"feature standardised by the dataset's mean and std (the paper publishes no "
            f"normalisation; this is ours), flagged above kappa = {kappa:g} times the "
            f"dataset's mean leave-one-out 1-NN distance; the rows to hold against the "
            f'paper\'s OOD table. "{labels[OURS_OOD]}": ours, calibrated on held-out and '
            f"random actions (docs/fidelity.md), {what}"
        )
    return (
        f"Percentage of evaluation actions flagged out-of-distribution by {what}, mean over "
        f"{n_seeds} seeds. {interval_sentence(fmt, interval, n_seeds, pm=True)} Lower is "
        f"better. {marks_sentence(fmt, 'lowest rate of the row')}"
    )


def ood_detector_of(summary: pd.DataFrame) -> dict:
    """``detector`` and ``neighbours`` for ``ood_caption_for`` from the per-run records
    (records from before the ``ood_detector`` column used the joint detector)."""
    if "ood_detector" not in summary:
        return {"detector": "joint", "neighbours": None}
    names = sorted(set(summary["ood_detector"].fillna("joint")))
    ks = sorted({int(k) for k in summary.get("ood_neighbours", pd.Series()).dropna()})
    if len(names) > 1 or len(ks) > 1:  # runs evaluated under different settings
        return {"detector": f"{' / '.join(names)} (mixed; k = {ks})", "neighbours": None}
    return {"detector": names[0], "neighbours": ks[0] if ks else None}


# --------------------------------------------------------------------------- writers


def _fmt(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}" if math.isfinite(x) else DASH


def _seeds_text(cell: pd.Series, table: Table) -> str:
    """ "(seeds: 0.99, 0.98)" for a cell from fewer than ``table.min_seeds`` seeds ("(1
    seed)" for one, whose value is the cell's), "" for a cell that may carry an interval."""
    n_seeds = float(cell["n_seeds"]) if "n_seeds" in cell else math.nan
    if not (math.isfinite(n_seeds) and n_seeds < table.min_seeds):
        return ""
    values = cell["seed_values"] if "seed_values" in cell else None
    if n_seeds == 1:
        return "(1 seed)"
    if not isinstance(values, tuple) or not values:
        return f"({int(n_seeds)} seeds)"
    return f"(seeds: {', '.join(_fmt(v, table.decimals) for v in values)})"


def _cell_text(cell: pd.Series, table: Table) -> tuple[str, str, str]:
    """(value, extra, kind): ``extra`` is the interval ("[low, high]" or "± x", kind
    "interval" / "pm"), the per-seed values of a cell from too few seeds (kind "seeds"),
    or "" when unknown."""
    value, low, high = float(cell["value"]), float(cell["low"]), float(cell["high"])
    if not math.isfinite(value):
        return DASH, "", ""
    text = _fmt(value, table.decimals)
    seeds = _seeds_text(cell, table)
    if seeds:
        return text, seeds, "seeds"
    if not (math.isfinite(low) and math.isfinite(high)):
        return text, "", ""
    if table.interval == "pm":
        return text, f"± {_fmt(high - value, table.decimals)}", "pm"
    return text, f"[{_fmt(low, table.decimals)}, {_fmt(high, table.decimals)}]", "interval"


def _row_label(table: Table, i: int) -> list[str]:
    """Label columns of row i: the dataset (first row of its group only) and the metric."""
    dataset, metric = table.rows[i]
    first = i == 0 or table.rows[i - 1][0] != dataset
    label = table.dataset_label(dataset) if first else ""
    return [label, table.metric_label(metric)] if len(table.metrics) > 1 else [label]


def _header(table: Table) -> list[str]:
    return ["Dataset", "Metric"] if len(table.metrics) > 1 else ["Dataset"]


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "κ": r"$\kappa$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _latex_number(text: str) -> str:
    return text.replace("-", "$-$") if text != DASH else "--"


def _latex_cell(cell: pd.Series, table: Table) -> str:
    value, extra, kind = _cell_text(cell, table)
    value = _latex_number(value)
    if cell["is_best"]:
        value = rf"\textbf{{{value}}}"
    elif cell["is_runner_up"]:
        value = rf"\underline{{{value}}}"
    if kind == "pm":
        extra = r"$\pm$ " + _latex_number(extra[2:])
    elif kind == "seeds":
        extra = r"{\scriptsize " + _latex_number(latex_escape(extra)) + "}"
    elif extra:
        extra = r"{\scriptsize " + _latex_number(extra) + "}"
    return f"{value} {extra}".strip()


def _latex_caption(caption: str) -> str:
    """The escaped caption with the not-the-paper's-budget warning in bold."""
    escaped = latex_escape(caption)
    return escaped.replace(latex_escape(NOT_PAPER), rf"\textbf{{{latex_escape(NOT_PAPER)}}}")


def to_latex(table: Table, caption: str, label: str, *, escape_caption: bool = True) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``); best value
    ``\\textbf``, runner-up ``\\underline``; a cell from too few seeds for an interval
    gives its per-seed values in small type."""
    head = _header(table)
    spec = "l" * len(head) + "c" * len(table.algos)
    lines = [
        "% requires \\usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_caption(caption) if escape_caption else caption}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in [*head, *table.algos]) + r" \\",
        r"\midrule",
    ]
    for i, (dataset, metric) in enumerate(table.rows):
        labels = [latex_escape(x) for x in _row_label(table, i)]
        cells = [_latex_cell(table.cell(dataset, metric, a), table) for a in table.algos]
        lines.append(" & ".join([*labels, *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


def _md_cell(cell: pd.Series, table: Table) -> str:
    value, extra, _ = _cell_text(cell, table)
    if cell["is_best"]:
        value = f"**{value}**"
    elif cell["is_runner_up"]:
        value = f"_{value}_"
    return f"{value} {extra}".strip()


def to_markdown(table: Table, note: str = "") -> str:
    """A GitHub pipe table (best **bold**, runner-up _italic_), then ``note`` as a paragraph
    (its not-the-paper's-budget warning in bold)."""
    head = _header(table)
    lines = [
        "| " + " | ".join(_md_escape(h) for h in [*head, *table.algos]) + " |",
        "|" + "---|" * len(head) + "---:|" * len(table.algos),
    ]
    for i, (dataset, metric) in enumerate(table.rows):
        labels = [_md_escape(x) for x in _row_label(table, i)]
        cells = [_md_cell(table.cell(dataset, metric, a), table) for a in table.algos]
        lines.append("| " + " | ".join([*labels, *cells]) + " |")
    text = "\n".join(lines) + "\n"
    if f"**{NOT_PAPER}" not in note:
        note = note.replace(NOT_PAPER, f"**{NOT_PAPER}**")
    return text + (f"\n{note}\n" if note else "")


def _html_cell(cell: pd.Series, table: Table) -> str:
    value, extra, kind = _cell_text(cell, table)
    cls = "best" if cell["is_best"] else "runner-up" if cell["is_runner_up"] else ""
    attr = f' class="{cls}"' if cls else ""
    span_class = "seeds" if kind == "seeds" else "interval"
    span = f' <span class="{span_class}">{html.escape(extra)}</span>' if extra else ""
    return f'<td{attr}><span class="value">{html.escape(value)}</span>{span}</td>'


def to_html(table: Table, caption: str = "") -> str:
    """An HTML ``<table class="leaderboard">`` fragment; best cells have class "best", the
    runner-up "runner-up", an interval is a ``span.interval`` and the per-seed values of a
    cell from too few seeds a ``span.seeds`` (styled by ``reports.html``)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _header(table)) + "".join(
        f'<th class="algo">{html.escape(a)}</th>' for a in table.algos
    )
    body = []
    for i, (dataset, metric) in enumerate(table.rows):
        labels = "".join(f"<th>{html.escape(x)}</th>" for x in _row_label(table, i))
        cells = "".join(_html_cell(table.cell(dataset, metric, a), table) for a in table.algos)
        body.append(f"<tr>{labels}{cells}</tr>")
    cap = f"<caption>{html_caption(caption)}</caption>" if caption else ""
    return (
        f'<table class="leaderboard">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def write_csv(table: Table, path: str | os.PathLike) -> Path:
    """The canonical tidy CSV (CSV_COLUMNS, then SEED_COLUMNS when the records gave per-seed
    values: ``seed_values`` joined by "; "), display order, written atomically."""
    columns = CSV_COLUMNS + [c for c in SEED_COLUMNS if c in table.cells]
    frame = table.cells[columns].copy()
    if "n_seeds" in frame:
        frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    if "seed_values" in frame:
        frame["seed_values"] = frame["seed_values"].map(
            lambda values: (
                "; ".join(f"{v:.10g}" for v in values) if isinstance(values, tuple) else ""
            )
        )
    return atomic_to_csv(frame, path)


Caption = str | Callable[[str], str]


def write_tables(
    table: Table,
    directory: str | os.PathLike,
    stem: str,
    *,
    caption: Caption,
    label: str,
    note: str | None = None,
) -> dict[str, Path]:
    """Write ``stem``.csv/.tex/.md/.html into ``directory`` (each atomically); returns the
    paths by format.

    ``caption`` is one string for every format, or a function of the format ("csv",
    "latex", "markdown", "html") that writes each its own caption, naming that format's
    marking; then the CSV's caption goes beside it, in ``stem``.caption.txt. ``note``
    (default: the Markdown caption) goes under the Markdown table. The .html fragment
    carries the table styles, so its marking shows when it is opened on its own.
    """
    text = caption if callable(caption) else (lambda fmt: caption)
    out = Path(directory)
    paths = {
        "csv": write_csv(table, out / f"{stem}.csv"),
        "tex": atomic_write_text(out / f"{stem}.tex", to_latex(table, text("latex"), label)),
        "md": atomic_write_text(out / f"{stem}.md", to_markdown(table, note or text("markdown"))),
        "html": atomic_write_text(
            out / f"{stem}.html",
            f"<style>{TABLE_CSS}</style>\n{to_html(table, text('html'))}\n",
        ),
    }
    if callable(caption):
        paths["caption"] = atomic_write_text(out / f"{stem}.caption.txt", text("csv") + "\n")
    return paths


# ------------------------------------------------------------- plain tables (studies)


def latex_table(table: pd.DataFrame, caption: str, label: str) -> str:
    """``table`` as a booktabs LaTeX table (text columns left, the rest right)."""
    columns = list(table.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{ll" + "r" * (len(columns) - 2) + "}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in columns) + r" \\",
        r"\midrule",
    ]
    lines += [
        " & ".join(latex_escape(str(v)) for v in row) + r" \\"
        for row in table.itertuples(index=False)
    ]
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def markdown_table(table: pd.DataFrame, caption: str) -> str:
    """``table`` as a Markdown table, ``caption`` below it."""
    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" if i < 2 else "---:" for i in range(len(table.columns))) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body, "", caption]) + "\n"


def html_table(table: pd.DataFrame) -> str:
    """``table`` as an HTML fragment with the leaderboards' styles' class."""
    return table.to_html(index=False, classes="leaderboard", escape=True, border=0)


def interval_text(point: float, low: float, high: float) -> str:
    """``point [low, high]``, two decimals: a cell of the studies' tables."""
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def write_frame_tables(
    table: pd.DataFrame, directory: str | os.PathLike, stem: str, caption: str, label: str
) -> dict[str, Path]:
    """A plain table (no per-cell marking: the frontier's and the calibration's) as
    ``stem``.csv/.tex/.md/.html and its caption as ``stem``.caption.txt, each atomically."""
    out = Path(directory)
    paths = {
        "csv": atomic_to_csv(table, out / f"{stem}.csv"),
        "tex": atomic_write_text(out / f"{stem}.tex", latex_table(table, caption, label)),
        "md": atomic_write_text(out / f"{stem}.md", markdown_table(table, caption)),
        "html": atomic_write_text(out / f"{stem}.html", html_table(table) + "\n"),
    }
    paths["caption"] = atomic_write_text(out / f"{stem}.caption.txt", caption + "\n")
    return paths
