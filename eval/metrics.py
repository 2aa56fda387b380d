"""Per-seed and across-seed summaries of tidy episode records.

Input is the ``episodes.csv`` schema of the README's "Records": one row per evaluation episode
with suite, dataset, algo, seed, episode, return (and optionally length, risky_steps,
terminated, truncated). CVaR is computed per seed with ``ramac.risk.cvar_estimate`` and then
averaged across seeds, which is what RAMAC's metadata calls ``per_seed_then_mean``; the
CVaR of all episodes pooled over seeds is reported beside it because the paper's wording is
ambiguous (docs/reference-code.md, "The paper").
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from eval.bootstrap import bootstrap_ci, standard_error
from ramac.errors import UserError
from ramac.risk import cvar_estimate

GROUP = ["suite", "dataset", "algo"]
SEED_KEYS = [*GROUP, "seed"]
REQUIRED = [*SEED_KEYS, "episode", "return"]
METRIC_PIPELINE = "per_seed_then_mean"
# The two OOD rates of a Stochastic-D4RL record (eval.suite_run.OODDetectors), named here
# so that records, tables and figures share the names: the paper's 1-NN detector on joint
# (state, action) pairs, and ours, state-conditioned; the tables' order, the paper's first.
PAPER_OOD, OURS_OOD = "ood_rate_1nn", "ood_rate"
OOD_RATES = (PAPER_OOD, OURS_OOD)


def check_episodes(episodes: pd.DataFrame) -> None:
    """Raise UserError naming the problem if ``episodes`` breaks the episodes.csv schema."""
    missing = [c for c in REQUIRED if c not in episodes.columns]
    if missing:
        raise UserError(f"episodes: missing column(s) {', '.join(missing)}")
    if episodes.empty:
        raise UserError("episodes: no rows")
    returns = pd.to_numeric(episodes["return"], errors="coerce")
    if not np.all(np.isfinite(returns.to_numpy(dtype=np.float64))):
        raise UserError("episodes: 'return' has missing, non-numeric or infinite values")
    dup = episodes.duplicated([*SEED_KEYS, "episode"])
    if dup.any():
        row = episodes.loc[dup, [*SEED_KEYS, "episode"]].iloc[0].to_dict()
        raise UserError(f"episodes: episode recorded twice: {row}")


def _seed_row(group: pd.DataFrame, alpha: float, rule: str) -> dict:
    returns = group["return"].to_numpy(dtype=np.float64)
    row = {
        "n_episodes": int(returns.size),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std(ddof=1)) if returns.size > 1 else math.nan,
        "cvar": cvar_estimate(returns, alpha, rule),
        "mean_length": math.nan,
        "risky_rate": math.nan,
    }
    if "length" in group:
        lengths = group["length"].to_numpy(dtype=np.float64)
        row["mean_length"] = float(lengths.mean())
        if "risky_steps" in group and lengths.sum() > 0:
            row["risky_rate"] = float(group["risky_steps"].sum() / lengths.sum())
    return row


def summarise_seeds(episodes: pd.DataFrame, alpha: float = 0.1, rule: str = "ceil") -> pd.DataFrame:
    """One row per (suite, dataset, algo, seed): n_episodes, mean_return, std_return (ddof=1),
    cvar (of this seed's episodes), mean_length, risky_rate, alpha, cvar_rule.

    ``risky_rate`` is the seed's risky steps over its steps (sum / sum), NaN without the
    length and risky_steps columns.
    """
    check_episodes(episodes)
    rows = []
    for keys, group in episodes.groupby(SEED_KEYS, sort=True):
        rows.append({**dict(zip(SEED_KEYS, keys, strict=True)), **_seed_row(group, alpha, rule)})
    out = pd.DataFrame(rows)
    out["alpha"] = float(alpha)
    out["cvar_rule"] = rule
    return out


def _check_same_estimator(seed_summary: pd.DataFrame, alpha: float, rule: str) -> None:
    if "alpha" in seed_summary and not np.allclose(seed_summary["alpha"], alpha):
        raise ValueError(f"seed_summary was computed with alpha={seed_summary['alpha'].iloc[0]}")
    if "cvar_rule" in seed_summary and (seed_summary["cvar_rule"] != rule).any():
        raise ValueError(f"seed_summary was computed with rule={seed_summary['cvar_rule'].iloc[0]}")


def _interval_columns(name: str, values: np.ndarray, reps: int, seed: int, ci: float) -> dict:
    point, low, high = bootstrap_ci(values, np.mean, reps=reps, ci=ci, seed=seed)
    return {
        name: point,
        f"{name}_low": low,
        f"{name}_high": high,
        f"{name}_se": standard_error(values),
    }


def aggregate(
    seed_summary: pd.DataFrame,
    episodes: pd.DataFrame,
    alpha: float = 0.1,
    rule: str = "ceil",
    reps: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """One row per (suite, dataset, algo) across seeds.

    Columns: n_seeds, episodes_per_seed (the fewest of any seed), episodes_per_seed_max;
    mean (mean of per-seed mean returns) with mean_low/mean_high (stratified percentile
    bootstrap CI across seeds, ``reps`` replicates, level ``ci``) and mean_se (s.e. across
    seeds); cvar (per-seed CVaR averaged over seeds) with cvar_low/cvar_high/cvar_se;
    cvar_pooled (CVaR of all episodes of all seeds together); risky_rate (mean over seeds,
    when present); and the settings alpha, cvar_rule, metric_pipeline, ci, reps, boot_seed.
    """
    _check_same_estimator(seed_summary, alpha, rule)
    check_episodes(episodes)
    pooled = {
        keys: cvar_estimate(group["return"].to_numpy(dtype=np.float64), alpha, rule)
        for keys, group in episodes.groupby(GROUP, sort=True)
    }
    rows = []
    for keys, group in seed_summary.groupby(GROUP, sort=True):
        row = dict(zip(GROUP, keys, strict=True))
        row["n_seeds"] = int(group["seed"].nunique())
        row["episodes_per_seed"] = int(group["n_episodes"].min())
        row["episodes_per_seed_max"] = int(group["n_episodes"].max())
        row |= _interval_columns("mean", group["mean_return"].to_numpy(), reps, seed, ci)
        row |= _interval_columns("cvar", group["cvar"].to_numpy(), reps, seed, ci)
        if keys not in pooled:
            raise UserError(f"episodes: no episodes for {row['dataset']}/{row['algo']}")
        row["cvar_pooled"] = pooled[keys]
        if "risky_rate" in group:
            row["risky_rate"] = float(group["risky_rate"].mean())
        rows.append(row)
    out = pd.DataFrame(rows)
    settings = {"alpha": float(alpha), "cvar_rule": rule, "metric_pipeline": METRIC_PIPELINE}
    settings |= {"ci": ci, "reps": reps, "boot_seed": seed}
    return out.assign(**settings)


def normalised_score(
    returns: float | np.ndarray, ref_min: float, ref_max: float
) -> float | np.ndarray:
    """D4RL normalised score 100 (R - min) / (max - min) (docs/reference-code.md, "D4RL").

    The reference scores are for 1000-step episodes; RAMAC's 200/500-step returns are
    reported raw, so only call this for full-horizon returns.
    """
    if not ref_max > ref_min:
        raise ValueError(f"ref_max ({ref_max}) must exceed ref_min ({ref_min})")
    scaled = 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)
    return float(scaled) if np.ndim(scaled) == 0 else scaled
