"""Stratified percentile bootstrap: hand-checked cases, stratification, coverage, seeding."""

import numpy as np
import pytest

from eval.bootstrap import bootstrap_ci, standard_error


def test_constant_sample_has_zero_width():
    assert bootstrap_ci(np.full(7, 3.5)) == (3.5, 3.5, 3.5)
    assert bootstrap_ci(np.full((4, 3), -2.0), statistic=np.median) == (-2.0, -2.0, -2.0)


def test_single_run_has_zero_width():
    assert bootstrap_ci([42.0]) == (42.0, 42.0, 42.0)


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


def test_custom_statistic_matches_vectorised_mean():
    x = np.random.default_rng(0).normal(size=(10, 3))
    fast = bootstrap_ci(x, np.mean, reps=300, seed=3)
    slow = bootstrap_ci(x, lambda s: float(np.mean(s)), reps=300, seed=3)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)


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
