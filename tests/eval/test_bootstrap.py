"""Stratified percentile bootstrap: hand-checked cases, stratification, coverage, seeding."""

import warnings

import numpy as np
import pytest
from scipy import stats

from eval.bootstrap import _RNG_KEYWORD, bootstrap_ci, standard_error


def test_constant_sample_has_zero_width():
    assert bootstrap_ci(np.full(7, 3.5)) == (3.5, 3.5, 3.5)
    assert bootstrap_ci(np.full((4, 3), -2.0), statistic=np.median) == (-2.0, -2.0, -2.0)


def test_single_run_has_zero_width():
    assert bootstrap_ci([42.0]) == (42.0, 42.0, 42.0)
    assert bootstrap_ci([[1.0, 3.0]]) == (2.0, 2.0, 2.0)  # one run of two tasks


def test_two_values_by_hand():
    # Means of 2 draws from {0, 1}: 0 (p=1/4), 0.5 (1/2), 1 (1/4): the 95% interval is [0, 1].
    assert bootstrap_ci([0.0, 1.0], reps=4000) == (0.5, 0.0, 1.0)
    # An 80% interval cuts 10% per side, inside the 25% atoms at 0 and 1: still [0, 1];
    # a 40% interval (30%..70%) falls inside the atom at 0.5.
    assert bootstrap_ci([0.0, 1.0], reps=4000, ci=0.4) == (0.5, 0.5, 0.5)


def test_tiny_matrix_by_hand():
    # Two runs x two tasks. Per task the mean of two draws is {lo, mid, hi} with p 1/4, 1/2,
    # 1/4; the whole-matrix mean is their average, at least (1 + 10)/2 and at most (3 + 30)/2,
    # each extreme with p = 1/16 > 2.5%, so the 95% interval is exactly [5.5, 16.5].
    scores = np.array([[1.0, 10.0], [3.0, 30.0]])
    assert bootstrap_ci(scores, reps=4000) == (11.0, 5.5, 16.5)


def test_runs_are_resampled_within_each_task():
    scores = np.array([[1.0, 10.0], [3.0, 30.0]])
    seen = []

    def record(sample):
        seen.append(sample.copy())
        return float(sample.mean())

    bootstrap_ci(scores, statistic=record, reps=500)
    samples = np.stack(seen[:-1])  # the last call is the point estimate
    assert samples.shape == (500, 2, 2)
    assert set(np.unique(samples[:, :, 0])) == {1.0, 3.0}
    assert set(np.unique(samples[:, :, 1])) == {10.0, 30.0}
    # Stratified: task columns are drawn independently, so (1, 30) can share a row.
    assert any(((s[:, 0] == 1.0) & (s[:, 1] == 30.0)).any() for s in samples)


def test_tasks_never_mix():
    # Task 0 is constant, task 1 is {10, 30}: a stratified replicate's mean is 1/2 + (task-1
    # mean)/2 in {5.5, 10.5, 15.5}. Pooling the cells (an unstratified bootstrap) would give
    # others, e.g. all four cells 1 -> 1. Each extreme has p = 1/4: the interval is [5.5, 15.5].
    scores = np.array([[1.0, 10.0], [1.0, 30.0]])
    seen = []

    def record(sample):
        seen.append(float(sample.mean()))
        return seen[-1]

    assert bootstrap_ci(scores, statistic=record, reps=2000, seed=1) == (10.5, 5.5, 15.5)
    assert set(seen) == {5.5, 10.5, 15.5}
    assert bootstrap_ci(scores, reps=2000, seed=1) == (10.5, 5.5, 15.5)


def test_constant_tasks_with_different_values_have_zero_width():
    # Every resample within a task is the task itself; pooled, the cells 1 and 10 would mix.
    scores = np.array([[1.0, 10.0]] * 3)
    assert bootstrap_ci(scores) == (5.5, 5.5, 5.5)
    assert bootstrap_ci(scores, statistic=np.median) == (5.5, 5.5, 5.5)


def test_one_task_is_scipy_percentile_bootstrap():
    x = np.random.default_rng(2).normal(size=12)
    ours = bootstrap_ci(x, reps=700, ci=0.9, seed=4)
    res = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=700,
        confidence_level=0.9,
        method="percentile",
        **{_RNG_KEYWORD: np.random.default_rng(4)},
    )
    assert ours == (float(x.mean()), res.confidence_interval.low, res.confidence_interval.high)


def test_custom_statistic_matches_vectorised_mean():
    x = np.random.default_rng(0).normal(size=(10, 3))
    fast = bootstrap_ci(x, np.mean, reps=300, seed=3)
    slow = bootstrap_ci(x, lambda s: float(np.mean(s)), reps=300, seed=3)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)


def test_custom_statistic_matches_vectorised_median():
    x = np.random.default_rng(5).normal(size=(7, 4))
    fast = bootstrap_ci(x, np.median, reps=300, seed=3)
    slow = bootstrap_ci(x, lambda s: float(np.median(s)), reps=300, seed=3)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    one = x[:, 0]
    fast = bootstrap_ci(one, np.median, reps=300, seed=3)
    np.testing.assert_allclose(fast, bootstrap_ci(one, lambda s: float(np.median(s)), 300, seed=3))


def test_degenerate_cases_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci(np.full((5, 2), 0.25)) == (0.25, 0.25, 0.25)
        assert bootstrap_ci(np.ones((1, 3))) == (1.0, 1.0, 1.0)
        point, low, high = bootstrap_ci([0.0, 1.0], reps=1)
        assert point == 0.5 and low == high and low in (0.0, 0.5, 1.0)

        def nan_when_tied(s):
            return float("nan") if s[0] == s[1] else float(s.mean())

        # Half the replicates are NaN: the bounds are NaN (as np.percentile gives), quietly.
        point, low, high = bootstrap_ci([0.0, 1.0], statistic=nan_when_tied, reps=100)
        assert point == 0.5 and np.isnan(low) and np.isnan(high)


def test_deterministic_given_seed():
    x = np.random.default_rng(1).normal(size=20)
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)


def test_coverage_of_the_mean():
    rng = np.random.default_rng(123)
    hits = 0
    for i in range(200):
        _, low, high = bootstrap_ci(rng.normal(size=50), reps=1000, seed=i)
        hits += low <= 0.0 <= high
    # Percentile intervals under-cover slightly at n = 50 (~94%); s.e. of the rate is 1.5%.
    assert 0.88 <= hits / 200 <= 0.99


def test_standard_error():
    assert standard_error([1.0, 3.0]) == pytest.approx(1.0)
    assert np.isnan(standard_error([1.0]))


def test_bad_arguments():
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, np.nan])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], ci=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], reps=0)
