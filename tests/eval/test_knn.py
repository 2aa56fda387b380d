"""The exact nearest-neighbour engine of the OOD detectors (``eval.knn``): exact distances,
leave-one-out, chunking, the cluster-pruned search, k-NN, and the baselines kept for the
benchmarks (``benchmarks/knn_baselines.py``) agreeing with it."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from eval.knn import (
    CLUSTER_MIN_ROWS,
    DEFAULT_CHUNK_BYTES,
    BruteForceEngine,
    ClusterEngine,
    make_engine,
    nearest_neighbour_distance,
)
from eval.ood import OODDetector

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from knn_baselines import (  # noqa: E402
    AUTO_MIN_QUERIES,
    CLUSTER_MAX_FRACTION,
    AutoEngine,
    FaissEngine,
    KDTreeEngine,
    faiss_available,
)


def grid(spacing=(1.0, 1.0), size=5):
    """size x size grid with the given spacing per axis."""
    a, b = np.meshgrid(np.arange(size) * spacing[0], np.arange(size) * spacing[1])
    return np.stack([a.ravel(), b.ravel()], axis=1)


def test_unit_grid_leave_one_out_distance_is_one():
    d = nearest_neighbour_distance(grid(), grid(), exclude_self=True)
    np.testing.assert_allclose(d, 1.0, rtol=0, atol=1e-12)


def test_queries_at_known_distances():
    queries = np.array([[2.0, 2.5], [2.0, 7.5], [10.0, 4.0], [1.0, 1.0]])
    d = nearest_neighbour_distance(grid(), queries)
    np.testing.assert_allclose(d, [0.5, 3.5, 6.0, 0.0], atol=1e-12)


def test_exclude_self_keeps_duplicates():
    data = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(nearest_neighbour_distance(data, data), [0, 0, 0])
    np.testing.assert_allclose(nearest_neighbour_distance(data, data, exclude_self=True), [0, 0, 5])


@pytest.mark.parametrize("chunk_bytes", [64, 4 * 45, 4 * 1000])
def test_chunking_matches_one_block(chunk_bytes):
    rng = np.random.default_rng(1)
    x, q = rng.normal(size=(120, 4)), rng.normal(size=(37, 4))
    one = nearest_neighbour_distance(x, q)
    np.testing.assert_array_equal(nearest_neighbour_distance(x, q, chunk_bytes=chunk_bytes), one)
    loo = nearest_neighbour_distance(x, x, exclude_self=True)
    small = nearest_neighbour_distance(x, x, exclude_self=True, chunk_bytes=chunk_bytes)
    np.testing.assert_array_equal(small, loo)


@pytest.mark.parametrize("chunk_bytes", [4, 100, 4096, 2**20])
def test_distance_block_respects_chunk_bytes(chunk_bytes):
    engine = BruteForceEngine(
        np.random.default_rng(0).normal(size=(1000, 3)), chunk_bytes=chunk_bytes
    )
    for m in (1, 7, 1000, 5000):
        tq, tx = engine.tiles(m)
        assert 1 <= tq <= m and 1 <= tx <= 1000
        assert tq * tx * 4 <= max(chunk_bytes, 4)


@pytest.mark.parametrize("precision", ["mixed", "float64"])
def test_exact_against_cdist(precision):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 6)) * [1, 2, 3, 4, 5, 6] + 50.0  # offset: centring matters
    q = rng.normal(size=(300, 6)) * 3 + 50.0
    expected = cdist(q, x).min(axis=1)
    got = nearest_neighbour_distance(x, q, precision=precision, chunk_bytes=2**16)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    full = cdist(x, x)
    np.fill_diagonal(full, np.inf)
    loo = nearest_neighbour_distance(x, x, exclude_self=True, precision=precision)
    np.testing.assert_allclose(loo, full.min(axis=1), rtol=1e-6)


def test_accepts_torch_tensors_and_float32():
    rng = np.random.default_rng(3)
    x, q = rng.normal(size=(100, 3)).astype(np.float32), rng.normal(size=(10, 3))
    expected = cdist(q, x.astype(np.float64)).min(axis=1)
    got = nearest_neighbour_distance(torch.from_numpy(x), torch.from_numpy(q))
    np.testing.assert_allclose(got, expected, rtol=1e-9)


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed")
def test_faiss_baseline_matches():
    rng = np.random.default_rng(4)
    x, q = rng.normal(size=(500, 5)), rng.normal(size=(50, 5))
    np.testing.assert_allclose(FaissEngine(x).search(q)[0], cdist(q, x).min(axis=1), rtol=1e-6)
    dup = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    got = FaissEngine(dup).search(dup, np.arange(3))[0]
    np.testing.assert_allclose(got, [0, 0, 5])


@pytest.mark.parametrize("engine", [KDTreeEngine, AutoEngine])
def test_kdtree_and_auto_baselines_match(engine):
    rng = np.random.default_rng(6)
    x, q = rng.normal(size=(600, 4)) + 3.0, rng.normal(size=(80, 4))
    got = engine(x).search(q)[0]
    np.testing.assert_allclose(got, cdist(q, x).min(axis=1), rtol=1e-9)
    dup = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    loo = engine(dup).search(dup, np.arange(3))[0]
    np.testing.assert_allclose(loo, [0, 0, 5])


def test_auto_picks_the_tree_on_low_dimensional_data():
    rng = np.random.default_rng(7)
    x, q = rng.random((40_000, 2)), rng.random((5000, 2))
    engine = AutoEngine(x)
    dist, _ = engine.search(q)
    assert engine.last_choice == "kdtree"  # ~100x faster than 40k-row brute force in 2-D
    np.testing.assert_allclose(dist, cdist(q[:200], x).min(axis=1).tolist() + list(dist[200:]))
    assert engine.search(q[:10])[0].shape == (10,) and engine.last_choice == "torch"


def test_unknown_backend_is_rejected():
    rng = np.random.default_rng(7)
    x, q = rng.random((40, 2)), rng.random((40, 2))
    with pytest.raises(ValueError, match="backend"):
        nearest_neighbour_distance(x[:5], q[:5], backend="annoy")
    for baseline in ("kdtree", "auto", "faiss"):  # benchmark baselines, not backends
        with pytest.raises(ValueError, match="knn_baselines"):
            nearest_neighbour_distance(x[:5], q[:5], backend=baseline)


# --------------------------------------------------------------------------- cluster engine


def brute_force(x, q, exclude=None):
    """(distances, indices) of each query's nearest row by float64 cdist; ``exclude[i]``
    (a row index) is skipped for query i."""
    full = cdist(q, x)
    if exclude is not None:
        full[np.arange(len(q)), exclude] = np.inf
    idx = full.argmin(axis=1)
    return full[np.arange(len(q)), idx], idx


def assert_nearest(dist, idx, x, q, exclude=None, same_rows=0.99):
    """The documented guarantee: ``dist`` is the float64 distance to row ``idx`` (never the
    excluded one), and that row is a nearest one up to ties within float32 rounding:
    squared distance <= the true one + 2 (d + 4) 2^-24 (R^2 + 2 |q| R), centred norms.
    At least ``same_rows`` of the rows are cdist's (ties aside, all of them)."""
    expected, expected_idx = brute_force(x, q, exclude)
    np.testing.assert_allclose(dist, np.linalg.norm(q - x[idx], axis=1), rtol=1e-12, atol=1e-12)
    center = x.mean(axis=0)
    r = np.linalg.norm(x - center, axis=1).max()
    qn = np.linalg.norm(q - center, axis=1)
    tie = 2 * (x.shape[1] + 4) * 2.0**-24 * (r**2 + 2 * qn * r)
    assert np.all(dist >= expected * (1 - 1e-12))
    assert np.all(dist**2 <= expected**2 * (1 + 1e-12) + tie)
    assert np.mean(idx == expected_idx) >= same_rows
    if exclude is not None:
        assert not np.any(idx == exclude)


def curves(n, dim, rng, noise=0.01):
    """Rows on a few random smooth closed curves in ``dim`` dimensions plus noise: a small
    stand-in for logged trajectories (low intrinsic dimension)."""
    t = rng.uniform(0, 2 * np.pi, n)
    which = rng.integers(0, 5, n)
    freqs = np.arange(1, 4)
    basis = np.concatenate([np.sin(np.outer(t, freqs)), np.cos(np.outer(t, freqs))], axis=1)
    maps = rng.normal(size=(5, basis.shape[1], dim))
    x = np.einsum("nk,nkd->nd", basis, maps[which])
    return x + noise * rng.normal(size=(n, dim))


def cluster_engine(x, **kwargs):
    return ClusterEngine(np.ascontiguousarray(x, dtype=np.float64), **kwargs)


@pytest.mark.parametrize("n_clusters", [None, 7, 400])
def test_cluster_engine_exact_on_gaussian_data(n_clusters):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(3000, 8)) * [1, 2, 3, 4, 1, 1, 1, 1] + 20.0
    q = np.vstack([rng.normal(size=(300, 8)) * 3 + 20.0, x[:50] + 1e-3])
    dist, idx = cluster_engine(x, n_clusters=n_clusters).search(q)
    assert_nearest(dist, idx, x, q)
    assert dist.dtype == np.float64 and idx.dtype == np.int64


def test_cluster_engine_matches_torch_engine_on_curves():
    rng = np.random.default_rng(11)
    x = curves(20000, 12, rng)
    q = curves(2000, 12, rng)
    q[::10] += 0.5 * rng.normal(size=(200, 12))  # some queries off the data
    engine = cluster_engine(x)
    dist, idx = engine.search(q)
    assert_nearest(dist, idx, x, q)
    ref_dist, ref_idx = BruteForceEngine(x).search(q)
    same = idx == ref_idx
    assert same.mean() > 0.99  # the same float32 values; only exact ties may differ
    np.testing.assert_array_equal(dist[same], ref_dist[same])  # same float64 recomputation
    assert engine.searched_fraction(q) < 0.2  # the bound prunes on such data


def test_cluster_engine_leave_one_out():
    rng = np.random.default_rng(12)
    x = curves(5000, 6, rng, noise=0.05)
    points = rng.choice(len(x), 1500, replace=False)
    engine = cluster_engine(x)
    dist, idx = engine.search(x[points], points)
    assert_nearest(dist, idx, x, x[points], exclude=points)
    # the same through the public API, against the torch engine
    got = nearest_neighbour_distance(x, x, exclude_self=True, backend="cluster")
    ref = nearest_neighbour_distance(x, x, exclude_self=True, backend="torch")
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_cluster_engine_duplicates_and_queries_on_data():
    rng = np.random.default_rng(13)
    base = rng.normal(size=(400, 3))
    x = np.vstack([base, base[:100], base[:100], np.zeros((5, 3))])  # triplicates, 5 zeros
    engine = cluster_engine(x, n_clusters=30)
    dist, idx = engine.search(x)
    np.testing.assert_array_equal(dist, 0.0)
    np.testing.assert_array_equal(x[idx], x)
    loo, loo_idx = engine.search(x, np.arange(len(x)))
    assert_nearest(loo, loo_idx, x, x, exclude=np.arange(len(x)), same_rows=0)  # ties
    assert np.all(loo[:100] == 0) and np.all(loo[400:] == 0)  # duplicates still count


def test_cluster_engine_ties_on_a_grid():
    d = nearest_neighbour_distance(
        grid(size=30), grid(size=30), exclude_self=True, backend="cluster"
    )
    np.testing.assert_array_equal(d, 1.0)


@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_cluster_engine_tiny_data(n):
    rng = np.random.default_rng(14)
    x, q = rng.normal(size=(n, 4)), rng.normal(size=(25, 4))
    for n_clusters in (None, 1, 3 * n):  # more clusters asked for than rows
        engine = cluster_engine(x, n_clusters=n_clusters)
        assert 1 <= engine.n_clusters <= n
        assert_nearest(*engine.search(q), x, q)
        if n >= 2:
            own = np.arange(n)
            assert_nearest(*engine.search(x, own), x, x, exclude=own)


def test_cluster_engine_far_queries():
    rng = np.random.default_rng(15)
    x = curves(4000, 5, rng)
    q = np.vstack([np.full((1, 5), 1e4), -np.full((1, 5), 1e3), rng.normal(size=(3, 5)) * 50])
    dist, idx = cluster_engine(x).search(q)
    assert_nearest(dist, idx, x, q)
    np.testing.assert_array_equal(idx, brute_force(x, q)[1])


def test_cluster_engine_options_and_threads():
    rng = np.random.default_rng(16)
    x, q = curves(3000, 7, rng), curves(200, 7, rng)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for kwargs in ({"precision": "float64"}, {"chunk_bytes": 4 * 50}, {"seed": 3}):
            assert_nearest(*cluster_engine(x, **kwargs).search(q), x, q)
            assert torch.get_num_threads() == 2  # the engine restores the caller's count
    finally:
        torch.set_num_threads(threads)
    assert cluster_engine(x).search(q[:0])[0].shape == (0,)


def test_detector_with_cluster_backend_matches_torch():
    rng = np.random.default_rng(17)
    x, q = curves(6000, 5, rng, noise=0.05), curves(500, 5, rng) * 1.3
    torch_det = OODDetector(backend="torch").fit(x, loo_sample=2000)
    cluster_det = OODDetector(backend="cluster").fit(x, loo_sample=2000)
    assert cluster_det.ref_distance == pytest.approx(torch_det.ref_distance, rel=1e-6)
    np.testing.assert_allclose(cluster_det.distances(q), torch_det.distances(q), rtol=1e-5)
    assert cluster_det.state()["backend"] == "cluster"


def test_auto_uses_the_cluster_engine_when_its_bound_prunes():
    rng = np.random.default_rng(18)
    x = curves(CLUSTER_MIN_ROWS, 6, rng)
    engine = AutoEngine(x)
    q = curves(AUTO_MIN_QUERIES, 6, rng)
    dist, _ = engine.search(q)
    assert engine.last_choice == "cluster"
    np.testing.assert_array_equal(dist[:300], BruteForceEngine(x).search(q[:300])[0])
    assert engine.search(q[:10])[0].shape == (10,) and engine.last_choice == "cluster"


def test_auto_keeps_brute_force_on_isotropic_data():
    rng = np.random.default_rng(19)
    x = rng.normal(size=(CLUSTER_MIN_ROWS, 16))
    engine = AutoEngine(x)
    q = rng.normal(size=(AUTO_MIN_QUERIES, 16))
    dist, _ = engine.search(q)
    assert engine.cluster.searched_fraction(q[:256]) > CLUSTER_MAX_FRACTION  # ~1
    assert engine.last_choice in ("torch", "kdtree")
    np.testing.assert_allclose(dist[:100], cdist(q[:100], x).min(axis=1), rtol=1e-6)


def test_default_backend_picks_by_size_without_timing():
    rng = np.random.default_rng(0)
    small = make_engine(rng.normal(size=(1000, 3)), "by-size", 1 << 24, "mixed", "cpu")
    large = make_engine(rng.normal(size=(50_000, 3)), "by-size", 1 << 24, "mixed", "cpu")
    assert isinstance(small, BruteForceEngine) and isinstance(large, ClusterEngine)
    data, queries = rng.normal(size=(60_000, 3)), rng.normal(size=(50, 3))
    expected = nearest_neighbour_distance(data, queries, backend="torch")
    np.testing.assert_allclose(nearest_neighbour_distance(data, queries), expected, rtol=1e-12)


# --------------------------------------------------------------------------- k-NN


@pytest.mark.parametrize("precision", ["mixed", "float64"])
@pytest.mark.parametrize("chunk_bytes", [8 * 40, DEFAULT_CHUNK_BYTES])
def test_k_nearest_matches_cdist(precision, chunk_bytes):
    rng = np.random.default_rng(20)
    x = rng.normal(size=(700, 5)) + 10.0
    q = rng.normal(size=(60, 5)) * 2 + 10.0
    engine = BruteForceEngine(x, precision=precision, chunk_bytes=chunk_bytes)
    dist, idx = engine.k_nearest(q, 7)
    full = cdist(q, x)
    expected = np.sort(full, axis=1)[:, :7]
    np.testing.assert_allclose(dist, expected, rtol=1e-9)
    np.testing.assert_allclose(full[np.arange(60)[:, None], idx], dist, rtol=1e-12)
    # leave-one-out: each point's own row is skipped by index, so a duplicate still counts
    x = np.vstack([x, x[:3]])
    own = np.arange(len(x))
    loo_dist, loo_idx = BruteForceEngine(x, precision=precision).k_nearest(x, 4, own)
    full = cdist(x, x)
    full[own, own] = np.inf
    np.testing.assert_allclose(loo_dist, np.sort(full, axis=1)[:, :4], rtol=1e-9, atol=1e-12)
    assert not np.any(loo_idx == own[:, None])
    assert np.all(loo_dist[:3, 0] == 0) and np.all(loo_dist[-3:, 0] == 0)


# --------------------------------------------------------------------------- exact agreement


def integer_case(rng, far):
    """(data [400, 3], queries) of small integers, the data symmetric about 0 so that its
    mean is exactly 0: every squared distance and every ||x||^2 - 2 q.x is then an integer
    below 2^24, exact in float32 and float64 whatever the order of summation, so an engine
    must agree with brute force to the last bit. Queries: on and near the data (exact
    duplicates and many equidistant rows: ties) and ``far`` away."""
    half = rng.integers(-8, 9, size=(197, 3)).astype(np.float64)
    half = np.vstack([half, half[:3]])  # exact duplicates in the data
    x = np.vstack([half, -half])
    near = np.vstack([x[::7], rng.integers(-10, 11, size=(120, 3)).astype(np.float64)])
    q = np.vstack([near, far])
    return x, q


def brute_force_squared(x, q):
    """Squared distances [m, n] by numpy broadcasting (exact on the integer case)."""
    return np.square(q[:, None, :] - x[None, :, :]).sum(axis=2)


def torch_sqrt(squared):
    """The float64 square root the engines take (torch's): on some CPUs (AVX-512, torch
    2.13) it differs from numpy's correctly rounded one by an ulp, e.g. at sqrt(2)."""
    return torch.from_numpy(np.ascontiguousarray(squared)).sqrt().numpy()


FAR_MIXED = np.array([[1000.0, 0, 0], [-1000, 1000, 500], [0, 0, -999], [700, -700, 700]])
FAR_FLOAT64 = np.vstack([FAR_MIXED, [[1e6, -1e6, 3e5], [-2e6, 0, 0]]])


@pytest.mark.parametrize("precision", ["mixed", "float64"])
@pytest.mark.parametrize("engine_kind", ["brute_force", "cluster"])
def test_engines_agree_exactly_with_brute_force(precision, engine_kind):
    rng = np.random.default_rng(30)
    x, q = integer_case(rng, FAR_MIXED if precision == "mixed" else FAR_FLOAT64)
    sq = brute_force_squared(x, q)
    loo_sq = brute_force_squared(x, x)
    np.fill_diagonal(loo_sq, np.inf)
    own = np.arange(len(x))
    if engine_kind == "brute_force":
        engine = BruteForceEngine(x, precision=precision, chunk_bytes=4 * 3000)  # many blocks
    else:
        engine = ClusterEngine(x, precision=precision, n_clusters=20)
    for (dist, idx), squared, exclude in (
        (engine.search(q), sq, None),
        (engine.search(x, own), loo_sq, own),
    ):
        rows = np.arange(len(squared))
        np.testing.assert_array_equal(dist, torch_sqrt(squared.min(axis=1)))  # bit for bit
        np.testing.assert_array_equal(squared[rows, idx], squared.min(axis=1))  # a nearest
        if exclude is not None:
            assert not np.any(idx == exclude)
        if engine_kind == "brute_force":  # ties go to the first row, as numpy's argmin
            np.testing.assert_array_equal(idx, squared.argmin(axis=1))
        else:  # the cluster engine may pick another of the tied rows
            unique = (squared == squared.min(axis=1, keepdims=True)).sum(axis=1) == 1
            np.testing.assert_array_equal(idx[unique], squared.argmin(axis=1)[unique])
    assert np.sum(sq == sq.min(axis=1, keepdims=True)) > len(q)  # the case has ties
    assert np.all(np.sqrt(sq.min(axis=1))[-len(FAR_MIXED) :] > 500)  # and far queries


@pytest.mark.parametrize("precision", ["mixed", "float64"])
def test_k_nearest_agrees_exactly_with_brute_force(precision):
    rng = np.random.default_rng(31)
    x, q = integer_case(rng, FAR_MIXED if precision == "mixed" else FAR_FLOAT64)
    sq = brute_force_squared(x, q)
    engine = BruteForceEngine(x, precision=precision, chunk_bytes=4 * 3000)
    dist, idx = engine.k_nearest(q, 6)
    np.testing.assert_array_equal(dist, torch_sqrt(np.sort(sq, axis=1)[:, :6]))  # bit for bit
    np.testing.assert_array_equal(torch_sqrt(sq[np.arange(len(q))[:, None], idx]), dist)
    assert all(len(set(row)) == 6 for row in idx.tolist())  # six distinct rows
