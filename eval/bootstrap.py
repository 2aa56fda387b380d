"""Percentile bootstrap intervals, stratified over tasks like rliable's, via scipy.

For a [runs, tasks] score matrix, each bootstrap replicate resamples the runs (seeds) with
replacement *within each task* and applies the statistic to the whole resampled matrix:
rliable's ``StratifiedBootstrap`` with ``task_bootstrap=False`` behind
``library.get_interval_estimates`` (google-research/rliable; Agarwal et al. 2021, "Deep RL
at the Edge of the Statistical Precipice", arXiv 2108.13264). The resampling and the
percentile interval are ``scipy.stats.bootstrap`` with one sample per task and
``paired=False`` (each task's runs are resampled independently of the others') and
``method="percentile"``. A 1-D array is one task. The generator is a numpy ``Generator``
seeded with ``seed``, so an interval is a pure function of (scores, statistic, reps, ci,
seed). 2,000 replicates is the default: enough for a 95% interval and fast inside sweeps
(rliable's ``get_interval_estimates`` defaults to 50,000; its ``create_performance_profile``
uses 2,000).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
from scipy import stats

Statistic = Callable[[np.ndarray], float]

# scipy >= 1.15 names the generator ``rng``; older releases (the floor is 1.11) call it
# ``random_state``. Both take a numpy Generator and draw the same indices from it.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


def _check_scores(scores: np.ndarray | list) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"scores: expected [runs] or [runs, tasks], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"scores: empty array of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("scores: contain NaN or infinite values")
    return x


def bootstrap_ci(
    scores: np.ndarray | list,
    statistic: Statistic = np.mean,
    reps: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(point, low, high): ``statistic(scores)`` and its percentile bootstrap interval.

    ``scores`` is [runs] or [runs, tasks]; the statistic always receives an array of the
    input's shape ([runs] stays 1-D). With one run, or when every task's runs are equal,
    every resample is the data itself and the interval has zero width at the point. A
    statistic that returns NaN on some resample gives a NaN bound, without a warning.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    one_d = np.ndim(scores) == 1
    x = _check_scores(scores)
    if x.shape[0] == 1 or np.all(x == x[0]):
        # scipy needs two runs per sample, and a degenerate bootstrap distribution is exact.
        point = float(statistic(x[:, 0] if one_d else x))
        return point, point, point
    # NaN replicates make scipy warn (DegenerateDataWarning) and return NaN bounds, as
    # np.percentile did; with reps=1 its bootstrap standard error (ddof=1) divides by 0.
    one_rep = np.errstate(invalid="ignore", divide="ignore") if reps == 1 else nullcontext()
    with warnings.catch_warnings(), one_rep:
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.filterwarnings("ignore", "Degrees of freedom", RuntimeWarning)
        res = stats.bootstrap(
            tuple(x.T),  # one sample per task: its runs
            _on_matrix(statistic, one_d),
            n_resamples=reps,
            vectorized=True,
            paired=False,
            axis=0,
            confidence_level=ci,
            method="percentile",
            **{_RNG_KEYWORD: np.random.default_rng(seed)},
        )
    point = float(statistic(x[:, 0] if one_d else x))
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)


def _on_matrix(statistic: Statistic, one_d: bool) -> Callable[..., np.ndarray]:
    """The statistic as scipy calls it: one resampled array per task (runs along ``axis``,
    replicates along the other axes) -> the statistic of each replicate's [runs, tasks]
    matrix ([runs] when ``one_d``); vectorised for np.mean and np.median."""

    def on_columns(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
        m = np.stack([np.moveaxis(c, axis, -1) for c in columns], axis=-1)  # [..., runs, tasks]
        if statistic is np.mean:
            return m.mean(axis=(-2, -1))
        if statistic is np.median:
            return np.median(m.reshape(*m.shape[:-2], -1), axis=-1)
        flat = m.reshape(-1, *m.shape[-2:])
        if one_d:
            flat = flat[..., 0]
        return np.array([float(statistic(s)) for s in flat]).reshape(m.shape[:-2])

    return on_columns


def standard_error(values: np.ndarray | list) -> float:
    """Standard error of the mean, std (ddof=1) / sqrt(n); NaN for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size < 2:
        return math.nan
    return float(x.std(ddof=1) / math.sqrt(x.size))
