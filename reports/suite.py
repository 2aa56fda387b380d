"""The Stochastic-D4RL leaderboards, figures and HTML report, from the records alone.

Reads ``episodes.csv``, ``summary.csv`` and ``train_logs.csv`` (written by
``pipeline.suite.gather_records``) and writes, into the same folder:
  aggregate.csv                  every across-seed number (mean, per-seed and pooled CVaR,
                                 hazard rate, D4RL score for 1000-step episodes; intervals)
  leaderboard.{csv,tex,md,html}  paper Table 1 layout: dataset x {Mean, CVaR} rows
  ood.{csv,tex,md,html}          the OOD-rate table (kappa = 3, mean ± s.e. over seeds): per
                                 dataset a row for the paper's 1-NN detector and one for ours
                                 (state-conditioned); records from before the 1-NN rate have
                                 only the latter
  {leaderboard,ood}.caption.txt  the CSVs' captions (each format has its own)
  model_based.*                  model-based runs (RAVL): the dynamics model and the hazard
  figures/{frontier,ood_1nn,ood,learning_curves,returns}.{png,pdf}  (ood_1nn: the paper's
                                 detector; ood: the state-conditioned one)
  report.html                    all of it on one self-contained page, under the budget
Every caption states the budget (``reports.budget``); no interval from fewer than 3 seeds.
Nothing here trains or rolls out a model, so ``make tables`` takes seconds.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from eval.metrics import OOD_RATES, PAPER_OOD, aggregate, normalised_score, summarise_seeds
from ramac.agents.base import AGENTS, _load_all
from ramac.envs.mujoco import FULL_HORIZON
from ramac.errors import UserError
from ramac.io import atomic_to_csv, move_aside, read_table
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
    caption_for,
    leaderboard,
    ood_caption_for,
    ood_detector_of,
    ood_labels,
    ood_table,
    to_html,
    write_tables,
)
from reports.model_based import write_model_based

LEARNING_CURVE_METRICS = ("critic_loss", "bc_loss")  # the first one logged is plotted


def dataset_label(name: str) -> str:
    """``halfcheetah-medium-expert`` -> ``HalfCheetah-M-E`` (the paper's row labels); a D4RL
    version in the name is kept: ``hopper-medium-v0`` -> ``Hopper-M (v0)``."""
    version = re.search(r"-(v\d+)$", name)
    task, kind = re.sub(r"-v\d+$", "", name).split("-", 1)
    tasks = {"halfcheetah": "HalfCheetah", "hopper": "Hopper", "walker2d": "Walker2d"}
    short = "-".join(part[0].upper() for part in kind.split("-"))
    return f"{tasks.get(task, task)}-{short}" + (f" ({version.group(1)})" if version else "")


RECORDS = {  # the tables gathered from the run records, with the columns read from each
    "episodes.csv": ("dataset", "algo", "seed", "return"),
    "summary.csv": ("dataset", "algo", "seed", "run"),
    "train_logs.csv": ("dataset", "algo", "seed", "step"),
}
RUN_KEYS = ["dataset", "algo", "seed"]


def read_records(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(episodes, summary, train_logs) of a suite folder; one clear line when missing.

    A table that does not read whole (empty, cut off, without its columns), or that names
    other runs than ``summary.csv`` does (cut off at a line end), is never read as data: it
    is moved to ``corrupt/`` and the line says how to rewrite it from the run records.
    """
    frames = {}
    for name, columns in RECORDS.items():
        path = out / name
        if not path.exists():
            raise UserError(f"{path}: no records; run 'reproduce.py train' and 'evaluate' first")
        try:
            frames[name] = read_table(path, columns)
        except ValueError as exc:
            raise _unreadable(path, str(exc)) from None
    listed = _runs(frames["summary.csv"])
    for name in ("episodes.csv", "train_logs.csv"):
        found = _runs(frames[name])
        if found != listed:  # the table with fewer runs was cut off at a line end
            counts = f"summary.csv lists {len(listed)} runs, {name} {len(found)}"
            if found < listed:
                raise _unreadable(out / name, f"cut off: {counts}")
            if listed < found:
                raise _unreadable(out / "summary.csv", f"cut off: {counts}")
            raise _unreadable(out / "summary.csv", f"{counts}, not the same", out / name)
    return frames["episodes.csv"], frames["summary.csv"], frames["train_logs.csv"]


def _runs(frame: pd.DataFrame) -> set[tuple]:
    return set(frame[RUN_KEYS].drop_duplicates().itertuples(index=False, name=None))


def _unreadable(path: Path, problem: str, *more: Path) -> UserError:
    """Move the damaged table(s) to ``corrupt/`` beside them; the one-line error to raise."""
    moved = [move_aside(p, problem, quiet=True) for p in (path, *more) if p.exists()]
    where = ", ".join(str(m) for m in moved)
    return UserError(
        f"{path}: unreadable ({problem}; moved to {where}); run 'reproduce.py evaluate' with "
        f"the same options again to rewrite it from the run records (finished runs are not redone)"
    )


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
    _load_all()
    episodes, summary, logs = read_records(out)
    algos = _order(episodes["algo"], algos)
    datasets = _order(episodes["dataset"], datasets)
    names = {a: AGENTS[a].display_name for a in algos}
    alpha, rule = eval_cfg["alpha"], eval_cfg["cvar_rule"]
    per_seed = summarise_seeds(episodes, alpha, rule)
    agg = with_normalised_scores(
        aggregate(per_seed, episodes, alpha, rule, reps=eval_cfg["bootstrap_reps"]),
        summary,
    )
    atomic_to_csv(agg, out / "aggregate.csv")
    budget = budget_of(summary, out)
    sections = _write_tables(
        out, with_seed_values(agg, per_seed, summary), summary, eval_cfg, names, datasets, budget
    )
    model_based = write_model_based(out, summary, logs, names, budget.sentence(), dataset_label)
    if model_based:
        sections.append(model_based)
    # The frontier's whiskers follow the tables: none from fewer than 3 seeds.
    labelled = [_with_labels(frame) for frame in (without_thin_intervals(agg), summary, logs)]
    labelled.append(_with_labels(episodes))
    common = {"datasets": [dataset_label(d) for d in datasets], "algos": algos, "labels": names}
    figures = _write_figures(out / "figures", *labelled, eval_cfg, common)
    if (out / "curves.csv").exists():  # runs that kept a snapshot at every checkpoint
        from figures.d4rl import plot_learning_curves

        curves = _with_labels(pd.read_csv(out / "curves.csv"))
        for metric, title in (("mean_return", "mean return"), ("cvar", "CVaR")):
            stem = out / "figures" / f"{metric}_curves"
            figures[f"Learning curves ({title} per checkpoint)"] = plot_learning_curves(
                curves, stem, metric, **common
            )
    for title, paths in figures.items():
        what = FIGURE_CAPTIONS.get(paths[0].stem, "")
        sections.append((title, Figure(paths[0], f"{what} {budget.short()}".strip())))
    sections.append(("Records", records_html(out, summary)))
    links = companion_links(out)
    if links:
        sections.append(("More pages", links))
    return write_report(
        out / "report.html", "ramac: Stochastic-D4RL", sections, lead=budget_html(budget)
    )


FIGURE_CAPTIONS = {
    "frontier": "Mean return against CVaR per algorithm; whiskers: the tables' intervals "
    "(none from fewer than 3 seeds).",
    "ood_1nn": "Share of evaluation actions flagged out-of-distribution by the paper's 1-NN "
    "detector (joint standardised (state, action) pairs), mean over seeds; the rate to hold "
    "against the paper's OOD table.",
    "ood": "Share of evaluation actions flagged out-of-distribution by our state-conditioned "
    "detector (calibrated: docs/fidelity.md), mean over seeds.",
    "learning_curves": "Training curves, mean over seeds; band: minimum to maximum across seeds.",
    "returns": "Empirical distribution of episode returns, all seeds pooled; shaded: each "
    "algorithm's tail up to its value-at-risk; diamond on the dashed alpha line: its pooled "
    "CVaR.",
}


def with_seed_values(
    agg: pd.DataFrame, per_seed: pd.DataFrame, summary: pd.DataFrame
) -> pd.DataFrame:
    """``agg`` plus each metric's per-seed values (``mean_seeds``, ``cvar_seeds``,
    ``normalised_seeds``), which a table shows instead of an interval when there are fewer
    than 3 seeds."""
    out = agg.copy()
    keys = list(zip(out["dataset"], out["algo"], strict=True))
    grouped = per_seed.sort_values("seed").groupby(["dataset", "algo"], sort=False)
    for metric, column in (("mean", "mean_return"), ("cvar", "cvar")):
        values = {key: tuple(group[column]) for key, group in grouped}
        out[f"{metric}_seeds"] = [values.get(key) for key in keys]
    if "normalised" in out:
        refs = summary.groupby("dataset")[["ref_min_score", "ref_max_score"]].first()
        normalised = []
        for (dataset, _), score, seeds in zip(
            keys, out["normalised"], out["mean_seeds"], strict=True
        ):
            if seeds is None or not np.isfinite(score):
                normalised.append(None)
                continue
            low, high = refs.loc[dataset]
            normalised.append(tuple(float(normalised_score(v, low, high)) for v in seeds))
        out["normalised_seeds"] = normalised
    return out


def without_thin_intervals(agg: pd.DataFrame) -> pd.DataFrame:
    """``agg`` without the intervals of rows from fewer than MIN_SEEDS_FOR_INTERVAL seeds."""
    out = agg.copy()
    thin = out["n_seeds"] < MIN_SEEDS_FOR_INTERVAL
    for column in [c for c in out if c.endswith(("_low", "_high"))]:
        out.loc[thin, column] = np.nan
    return out


def _with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the paper's dataset labels, so figure panels are titled like table rows."""
    return frame.assign(dataset=frame["dataset"].map(dataset_label))


def env_sentence(summary: pd.DataFrame) -> str:
    """The simulator each table row was evaluated in, who chose it and why (from the
    records; records from before the simulator was recorded used the tasks' v5 envs)."""
    frame = summary.copy()
    for column in ("eval_env", "eval_env_chosen_by", "eval_env_reason"):
        if column not in frame:
            frame[column] = np.nan
    unrecorded = frame["eval_env"].isna()
    frame.loc[unrecorded, "eval_env"] = "Gymnasium v5"
    frame.loc[unrecorded, "eval_env_chosen_by"] = "not recorded"
    frame.loc[unrecorded, "eval_env_reason"] = "the default before the simulator was recorded"
    parts = []
    for (chosen_by, reason), group in frame.groupby(
        ["eval_env_chosen_by", "eval_env_reason"], sort=False, dropna=False
    ):
        envs = ", ".join(dict.fromkeys(group["eval_env"]))
        who = "the data's own" if chosen_by == "data" else str(chosen_by)
        parts.append(f"{envs} ({who}: {reason})")
    return f"Evaluation simulator: {'; '.join(parts)}."


def recorded_ood_rates(summary: pd.DataFrame) -> list[str]:
    """The OOD rates the records hold, in the tables' order: both, or only ``ood_rate`` for
    records evaluated before the paper's 1-NN rate was recorded (evaluate again to add it)."""
    rates = [c for c in OOD_RATES if c in summary and summary[c].notna().any()]
    if not rates:
        raise UserError("summary.csv: no OOD rate column (ood_rate); evaluate the runs again")
    return rates


def _write_tables(
    out: Path,
    agg: pd.DataFrame,
    summary: pd.DataFrame,
    eval_cfg: dict[str, Any],
    names: dict[str, str],
    datasets: list[str],
    budget: Budget,
) -> list[tuple[str, str]]:
    """The leaderboard and the OOD table in every format, each with its own caption; their
    HTML for the report."""
    rows = {d: dataset_label(d) for d in datasets}
    checkpoint = "; ".join(sorted(set(summary["checkpoint"])))
    n_seeds, per_seed = int(agg["n_seeds"].min()), int(agg["episodes_per_seed"].min())
    context = f"{budget.sentence()} {env_sentence(summary)}"
    rule = eval_cfg["cvar_rule"]

    def caption(fmt: str) -> str:
        text = caption_for(
            n_seeds, per_seed, eval_cfg["alpha"], rule, checkpoint=checkpoint, fmt=fmt
        )
        return f"{text} {context}"

    with_score = agg["normalised"].notna().all()
    main = leaderboard(
        agg.assign(algo=agg["algo"].map(names)),
        rows=rows,
        algo_order=list(names.values()),
        metrics=("mean", "cvar", "normalised") if with_score else ("mean", "cvar"),
        metric_labels={"normalised": "D4RL score"},
    )
    write_tables(main, out, "leaderboard", caption=caption, label="tab:stochastic-d4rl")
    rates, kappa = recorded_ood_rates(summary), eval_cfg["kappa"]
    ood = ood_table(
        summary.assign(algo=summary["algo"].map(names)),
        rows=rows,
        algo_order=list(names.values()),
        columns=rates,
        kappa=kappa,
    )
    ood_seeds = int(summary.groupby(["dataset", "algo"])["seed"].nunique().min())
    detector = ood_detector_of(summary)

    def ood_caption(fmt: str) -> str:
        text = ood_caption_for(ood_seeds, kappa, fmt=fmt, paper=PAPER_OOD in rates, **detector)
        if PAPER_OOD not in rates:
            text += " The paper's 1-NN rate is not in these records: evaluate the runs again."
        return f"{text} {context}"

    write_tables(ood, out, "ood", caption=ood_caption, label="tab:ood")
    return [
        ("Stochastic-D4RL leaderboard", table_block(to_html(main), html_caption(caption("html")))),
        (
            "Out-of-distribution actions",
            table_block(to_html(ood), html_caption(ood_caption("html"))),
        ),
    ]


def _write_figures(
    fig_dir: Path,
    agg: pd.DataFrame,
    summary: pd.DataFrame,
    logs: pd.DataFrame,
    episodes: pd.DataFrame,
    eval_cfg: dict[str, Any],
    common: dict[str, Any],
) -> dict[str, list[Path]]:
    """The figures (PNG + PDF each: frontier, one OOD figure per recorded rate, learning
    curves, returns), by report heading."""
    from figures.d4rl import plot_frontier, plot_learning_curves, plot_ood_bars, plot_return_ecdfs

    logged = [m for m in LEARNING_CURVE_METRICS if m in logs and logs[m].notna().any()]
    curve_metric = logged[0] if logged else LEARNING_CURVE_METRICS[0]
    rates = recorded_ood_rates(summary)
    ood_frame = summary.groupby(["dataset", "algo"], sort=False)[rates].mean().reset_index()
    labels = ood_labels(eval_cfg["kappa"])
    stems = {PAPER_OOD: "ood_1nn", "ood_rate": "ood"}  # ood: the figure's name before both
    alpha, rule = eval_cfg["alpha"], eval_cfg["cvar_rule"]
    ood_figures = {
        f"OOD action rate: {labels[rate]}": plot_ood_bars(
            ood_frame[["dataset", "algo", rate]].dropna(subset=[rate]),
            fig_dir / stems[rate],
            column=rate,
            ylabel=labels[rate],
            **common,
        )
        for rate in rates
    }
    return {
        "Risk-return frontier": plot_frontier(agg, fig_dir / "frontier", **common),
        **ood_figures,
        f"Learning curves ({curve_metric})": plot_learning_curves(
            logs, fig_dir / "learning_curves", curve_metric, **common
        ),
        "Return distributions": plot_return_ecdfs(
            episodes, fig_dir / "returns", alpha=alpha, rule=rule, **common
        ),
    }


def records_html(out: Path, summary: pd.DataFrame) -> str:
    """Where the numbers come from: each dataset's source, hazard and sha256, the runs'
    horizon and checkpoint, and the package versions of a run's ``config.yaml``."""
    per_dataset = summary.groupby("dataset", sort=False).first()
    rows = "".join(
        f"<tr><td>{html.escape(d)}</td><td>{html.escape(str(r['data_source']))}</td>"
        f"<td><code>{html.escape(str(r['dataset_sha256'])[:16])}</code></td>"
        f"<td>{int(r['horizon'])}</td><td>{html.escape(str(r['checkpoint']))}</td></tr>"
        for d, r in per_dataset.iterrows()
    )
    configs = sorted(out.glob("runs/*/*/*/config.yaml"))
    versions = (yaml.safe_load(configs[0].read_text()) or {}).get("versions", {}) if configs else {}
    listed = ", ".join(f"{html.escape(k)} {html.escape(str(v))}" for k, v in versions.items())
    return (
        '<table class="leaderboard"><thead><tr><th>Dataset</th><th>Source</th>'
        "<th>sha256</th><th>Horizon</th><th>Checkpoint</th></tr></thead>"
        f"<tbody>{rows}</tbody></table><p>{len(summary)} runs; each run's config.yaml holds its "
        f"resolved config, seed, hazard spec and dataset provenance. Versions: {listed}.</p>"
    )
