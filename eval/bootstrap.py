"""Percentile bootstrap intervals, stratified over tasks like rliable's.

For a [runs, tasks] score matrix, each bootstrap replicate resamples the runs (seeds) with
replacement *within each task* and applies the statistic to the whole resampled matrix
(rliable's ``StratifiedBootstrap`` with ``task_bootstrap=False``; ref: ecosystem.md §2).
A 1-D array is one task. The generator is a seeded numpy ``Generator``, so an interval is
a pure function of (scores, statistic, reps, ci, seed). 2,000 replicates is the default:
enough for a 95% interval and fast inside sweeps (ref: ecosystem.md §2).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Statistic = Callable[[np.ndarray], float]


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


def stratified_resamples(runs: int, tasks: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Run indices [reps, runs, tasks]: for each replicate and task, ``runs`` draws with
    replacement from that task's runs."""
    return rng.integers(0, runs, size=(reps, runs, tasks))


def bootstrap_ci(
    scores: np.ndarray | list,
    statistic: Statistic = np.mean,
    reps: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(point, low, high): ``statistic(scores)`` and its percentile bootstrap interval.

    ``scores`` is [runs] or [runs, tasks]; the statistic always receives an array of the
    input's shape ([runs] stays 1-D). With one run the interval has zero width.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    one_d = np.ndim(scores) == 1
    x = _check_scores(scores)
    runs, tasks = x.shape
    idx = stratified_resamples(runs, tasks, reps, np.random.default_rng(seed))
    resampled = x[idx, np.arange(tasks)]  # [reps, runs, tasks]
    if one_d:
        resampled = resampled[..., 0]
    stats = _replicate_stats(resampled, statistic)
    point = float(statistic(x[:, 0] if one_d else x))
    tail = 100.0 * (1.0 - ci) / 2.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return point, float(low), float(high)


def _replicate_stats(resampled: np.ndarray, statistic: Statistic) -> np.ndarray:
    """The statistic of each replicate (first axis); vectorised for np.mean and np.median."""
    axes = tuple(range(1, resampled.ndim))
    if statistic is np.mean:
        return resampled.mean(axis=axes)
    if statistic is np.median:
        return np.median(resampled.reshape(resampled.shape[0], -1), axis=1)
    return np.array([float(statistic(sample)) for sample in resampled])


def standard_error(values: np.ndarray | list) -> float:
    """Standard error of the mean, std (ddof=1) / sqrt(n); NaN for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size < 2:
        return math.nan
    return float(x.std(ddof=1) / math.sqrt(x.size))
