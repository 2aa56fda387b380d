"""The 1-NN OOD detectors: exact distances, leave-one-out, chunking, kappa thresholds, the
joint and the state-conditioned feature spaces."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from eval.ood import (
    DEFAULT_CHUNK_BYTES,
    OODDetector,
    StateConditionedDetector,
    _faiss_available,
    _TorchEngine,
    fit_detector,
    nearest_neighbour_distance,
)
from ramac.errors import UserError


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


def test_detector_reference_scale_in_standardised_units():
    # Coordinates 0..4 have std sqrt(2): the unit spacing is 1/sqrt(2) standardised units.
    # The y axis is stretched x10; standardisation makes it the same grid.
    det = OODDetector().fit(grid(spacing=(1.0, 10.0)))
    assert det.ref_distance == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    state = det.state()
    np.testing.assert_allclose(state["mean"], [2.0, 20.0])
    np.testing.assert_allclose(state["std"], [math.sqrt(2), 10 * math.sqrt(2)])
    assert state["n"] == 25 and state["loo_points"] == 25 and state["dim"] == 2


def test_is_ood_at_the_right_kappa():
    det = OODDetector().fit(grid(spacing=(1.0, 10.0)))
    # In grid units (= multiples of the reference scale): 0.5, 3.5, 6 and 0 spacings away.
    queries = np.array([[2.0, 25.0], [2.0, 75.0], [10.0, 40.0], [1.0, 10.0]])
    np.testing.assert_allclose(det.distances(queries) / det.ref_distance, [0.5, 3.5, 6, 0])
    assert det.is_ood(queries, kappa=1).tolist() == [False, True, True, False]
    assert det.is_ood(queries, kappa=3).tolist() == [False, True, True, False]
    assert det.is_ood(queries, kappa=5).tolist() == [False, False, True, False]
    assert det.is_ood(queries, kappa=10).tolist() == [False, False, False, False]
    assert det.ood_rate(queries, kappa=3) == 0.5
    assert det.sweep(queries, (1, 3, 5, 10)) == {1.0: 0.5, 3.0: 0.5, 5.0: 0.25, 10.0: 0.0}


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
    engine = _TorchEngine(np.random.default_rng(0).normal(size=(1000, 3)), chunk_bytes=chunk_bytes)
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


@pytest.mark.skipif(not _faiss_available(), reason="faiss-cpu not installed")
def test_faiss_backend_matches():
    rng = np.random.default_rng(4)
    x, q = rng.normal(size=(500, 5)), rng.normal(size=(50, 5))
    np.testing.assert_allclose(
        nearest_neighbour_distance(x, q, backend="faiss"), cdist(q, x).min(axis=1), rtol=1e-6
    )
    dup = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    got = nearest_neighbour_distance(dup, dup, exclude_self=True, backend="faiss")
    np.testing.assert_allclose(got, [0, 0, 5])


def test_loo_subsample_is_seeded():
    x = np.random.default_rng(5).normal(size=(400, 3))
    full = OODDetector().fit(x, loo_sample=None).ref_distance
    a = OODDetector().fit(x, loo_sample=100, seed=7)
    b = OODDetector().fit(x, loo_sample=100, seed=7)
    c = OODDetector().fit(x, loo_sample=100, seed=8)
    assert a.ref_distance == b.ref_distance != c.ref_distance
    assert a.state()["loo_points"] == 100 and a.state()["loo_sample"] == 100
    assert a.ref_distance == pytest.approx(full, rel=0.15)
    assert OODDetector().fit(x, loo_sample=10_000).ref_distance == pytest.approx(full, rel=1e-12)


def test_constant_feature_is_floored_not_divided_by_zero():
    x = np.c_[np.arange(10.0), np.zeros(10)]
    det = OODDetector(std_floor=1e-6).fit(x)
    assert det.state()["std"][1] == 1e-6
    assert det.is_ood(np.array([[4.0, 1.0]]), kappa=3).tolist() == [True]


def test_errors():
    with pytest.raises(UserError):
        OODDetector().fit(np.zeros((1, 2)))
    with pytest.raises(UserError):
        OODDetector().fit(np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(UserError, match="duplicate"):
        OODDetector().fit(np.zeros((5, 2)))
    det = OODDetector()
    with pytest.raises(RuntimeError):
        det.distances(np.zeros((1, 2)))
    det.fit(grid())
    with pytest.raises(ValueError):
        det.distances(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        det.is_ood(np.zeros((1, 2)), kappa=0)
    with pytest.raises(ValueError):
        nearest_neighbour_distance(grid(), grid()[:3], exclude_self=True)
    with pytest.raises(ValueError):
        nearest_neighbour_distance(np.zeros(5), np.zeros(5))
    assert math.isnan(det.ood_rate(np.zeros((0, 2))))


def test_state_is_json_ready():
    import json

    state = OODDetector().fit(grid()).state()
    assert json.loads(json.dumps(state)) == state
    assert {"mean", "std", "ref_distance", "n", "loo_sample"} <= set(state)


@pytest.mark.parametrize("backend", ["kdtree", "auto"])
def test_kdtree_and_auto_backends_match(backend):
    rng = np.random.default_rng(6)
    x, q = rng.normal(size=(600, 4)) + 3.0, rng.normal(size=(80, 4))
    got = nearest_neighbour_distance(x, q, backend=backend)
    np.testing.assert_allclose(got, cdist(q, x).min(axis=1), rtol=1e-9)
    dup = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    loo = nearest_neighbour_distance(dup, dup, exclude_self=True, backend=backend)
    np.testing.assert_allclose(loo, [0, 0, 5])


def test_auto_picks_the_tree_on_low_dimensional_data():
    from eval.ood import _AutoEngine

    rng = np.random.default_rng(7)
    x, q = rng.random((40_000, 2)), rng.random((5000, 2))
    engine = _AutoEngine(x)
    dist, _ = engine.search(q)
    assert engine.last_choice == "kdtree"  # ~100x faster than 40k-row brute force in 2-D
    np.testing.assert_allclose(dist, cdist(q[:200], x).min(axis=1).tolist() + list(dist[200:]))
    assert engine.search(q[:10])[0].shape == (10,) and engine.last_choice == "torch"
    with pytest.raises(ValueError, match="backend"):
        nearest_neighbour_distance(x[:5], q[:5], backend="annoy")


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
    from eval.ood import _ClusterEngine

    return _ClusterEngine(np.ascontiguousarray(x, dtype=np.float64), **kwargs)


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
    ref_dist, ref_idx = _TorchEngine(x).search(q)
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
    from eval import ood

    rng = np.random.default_rng(18)
    x = curves(ood._CLUSTER_MIN_N, 6, rng)
    engine = ood._AutoEngine(x)
    q = curves(ood._AUTO_MIN_QUERIES, 6, rng)
    dist, _ = engine.search(q)
    assert engine.last_choice == "cluster"
    np.testing.assert_array_equal(dist[:300], _TorchEngine(x).search(q[:300])[0])
    assert engine.search(q[:10])[0].shape == (10,) and engine.last_choice == "cluster"


def test_auto_keeps_brute_force_on_isotropic_data():
    from eval import ood

    rng = np.random.default_rng(19)
    x = rng.normal(size=(ood._CLUSTER_MIN_N, 16))
    engine = ood._AutoEngine(x)
    q = rng.normal(size=(ood._AUTO_MIN_QUERIES, 16))
    dist, _ = engine.search(q)
    assert engine.cluster.searched_fraction(q[:256]) > ood._CLUSTER_MAX_FRACTION  # ~1
    assert engine.last_choice in ("torch", "kdtree")
    np.testing.assert_allclose(dist[:100], cdist(q[:100], x).min(axis=1), rtol=1e-6)


def test_default_backend_picks_by_size_without_timing():
    from eval.ood import _ClusterEngine, _make_engine, _TorchEngine

    rng = np.random.default_rng(0)
    small = _make_engine(rng.normal(size=(1000, 3)), "by-size", 1 << 24, "mixed", "cpu")
    large = _make_engine(rng.normal(size=(50_000, 3)), "by-size", 1 << 24, "mixed", "cpu")
    assert isinstance(small, _TorchEngine) and isinstance(large, _ClusterEngine)
    data, queries = rng.normal(size=(60_000, 3)), rng.normal(size=(50, 3))
    expected = nearest_neighbour_distance(data, queries, backend="torch")
    np.testing.assert_allclose(nearest_neighbour_distance(data, queries), expected, rtol=1e-12)


def test_rate_columns_equal_separate_rate_and_sweep():
    rng = np.random.default_rng(1)
    detector = OODDetector().fit(rng.normal(size=(500, 3)))
    queries = rng.normal(size=(200, 3)) * 2.0
    columns = detector.rate_columns(queries, 3.0, [1, 5])
    assert columns == {
        "ood_rate": detector.ood_rate(queries, 3.0),
        "ood_rate_k1": detector.sweep(queries, [1])[1.0],
        "ood_rate_k5": detector.sweep(queries, [5])[5.0],
    }
    assert 0.0 < columns["ood_rate_k1"] and columns["ood_rate_k5"] <= columns["ood_rate"]


# --------------------------------------------------------------------------- k-NN and the
# state-conditioned detector


@pytest.mark.parametrize("precision", ["mixed", "float64"])
@pytest.mark.parametrize("chunk_bytes", [8 * 40, DEFAULT_CHUNK_BYTES])
def test_k_nearest_matches_cdist(precision, chunk_bytes):
    rng = np.random.default_rng(20)
    x = rng.normal(size=(700, 5)) + 10.0
    q = rng.normal(size=(60, 5)) * 2 + 10.0
    engine = _TorchEngine(x, precision=precision, chunk_bytes=chunk_bytes)
    dist, idx = engine.k_nearest(q, 7)
    full = cdist(q, x)
    expected = np.sort(full, axis=1)[:, :7]
    np.testing.assert_allclose(dist, expected, rtol=1e-9)
    np.testing.assert_allclose(full[np.arange(60)[:, None], idx], dist, rtol=1e-12)
    # leave-one-out: each point's own row is skipped by index, so a duplicate still counts
    x = np.vstack([x, x[:3]])
    own = np.arange(len(x))
    loo_dist, loo_idx = _TorchEngine(x, precision=precision).k_nearest(x, 4, own)
    full = cdist(x, x)
    full[own, own] = np.inf
    np.testing.assert_allclose(loo_dist, np.sort(full, axis=1)[:, :4], rtol=1e-9, atol=1e-12)
    assert not np.any(loo_idx == own[:, None])
    assert np.all(loo_dist[:3, 0] == 0) and np.all(loo_dist[-3:, 0] == 0)


def line_data():
    """Three states on a line (0, 1, 3; 1-D) with actions 0, 0.5 and 2 (1-D). No ties:
    state 0's nearest other state is 1, state 1's is 0 (1 < 2), state 3's is 1 (2 < 3)."""
    return np.array([[0.0], [1.0], [3.0]]), np.array([[0.0], [0.5], [2.0]])


def test_state_conditioned_on_hand_made_points():
    states, actions = line_data()
    det = StateConditionedDetector(neighbours=1, action_scale="raw").fit(states, actions)
    # left out one at a time, k = 1: |0 - 0.5|, |0.5 - 0|, |2 - 0.5| -> mean 2.5 / 3
    assert det.ref_distance == pytest.approx(5 / 6, rel=1e-12)
    # a state near the second one (1.1: nearest state 1) -> compared with action 0.5
    queries = np.array([[1.1, 0.5], [1.1, 1.5], [1.1, -0.5], [2.9, 2.0], [2.9, 0.5]])
    np.testing.assert_allclose(det.distances(queries), [0.0, 1.0, 1.0, 0.0, 1.5], atol=1e-12)
    # thresholds by hand: kappa = 1 -> 5/6 (1.0 flagged), kappa = 1.5 -> 1.25 (1.0 is not)
    assert det.is_ood(queries, kappa=1).tolist() == [False, True, True, False, True]
    assert det.is_ood(queries, kappa=1.5).tolist() == [False, False, False, False, True]
    assert det.is_ood(queries, kappa=3).tolist() == [False] * 5  # 3 x 5/6 = 2.5
    assert det.rate_columns(queries, 1.0, [1.5, 3]) == {
        "ood_rate": 0.6,
        "ood_rate_k1.5": 0.2,
        "ood_rate_k3": 0.0,
    }


def test_state_conditioned_with_more_neighbours_and_action_std():
    states, actions = line_data()
    det = StateConditionedDetector(neighbours=2, action_scale="raw").fit(states, actions)
    # k = 2, left out: state 0 sees actions {0.5, 2} -> 0.5; state 1 {0, 2} -> 0.5;
    # state 3 {0.5, 0} -> 1.5; mean 5/6 again. Query state 1.1 sees states 1 and 0.
    assert det.ref_distance == pytest.approx(5 / 6, rel=1e-12)
    np.testing.assert_allclose(det.distances(np.array([[1.1, -0.3], [1.1, 0.3]])), [0.3, 0.2])
    # action_scale="std": every action distance divided by the data's action std
    std = actions.std()
    scaled = StateConditionedDetector(neighbours=2).fit(states, actions)
    assert scaled.ref_distance == pytest.approx(5 / 6 / std, rel=1e-12)
    np.testing.assert_allclose(scaled.distances(np.array([[1.1, -0.3]])), [0.3 / std])
    # states are standardised: stretching them changes no neighbour and no distance
    stretched = StateConditionedDetector(neighbours=2).fit(states * 100 + 7, actions)
    assert stretched.ref_distance == pytest.approx(scaled.ref_distance, rel=1e-12)


def deterministic_policy_data(rng, n):
    """(states [n, 17], actions [n, 6]): states made of 12 smooth functions of a 2-D latent
    plus 5 pure-noise features; actions a deterministic function of the latent."""
    latent = rng.uniform(0, 2 * np.pi, size=(n, 2))
    freqs = np.random.default_rng(0).integers(1, 3, size=(12, 2))
    phase = np.random.default_rng(1).uniform(0, 2 * np.pi, 12)
    states = np.hstack([np.sin(latent @ freqs.T + phase), rng.normal(size=(n, 5))])
    weights = np.random.default_rng(2).normal(size=(4, 6))
    actions = np.tanh(np.hstack([np.sin(latent), np.cos(latent)]) @ weights)
    return states, actions


def test_random_actions_are_seen_by_the_state_conditioned_detector_only():
    # Issue 11 in miniature: the joint detector's 17 standardised state features swamp the
    # 6 action ones, so random actions at dataset states pass; conditioning on the state
    # flags them.
    rng = np.random.default_rng(21)
    states, actions = deterministic_policy_data(rng, 3500)
    fit_states, fit_actions = states[:3000], actions[:3000]
    held_out = np.hstack([states[3000:], actions[3000:]])
    random = np.hstack([states[3000:], rng.uniform(-1, 1, size=(500, 6))])
    joint = fit_detector("joint", fit_states, fit_actions, loo_sample=None)
    conditioned = fit_detector(
        "state_conditioned", fit_states, fit_actions, neighbours=5, loo_sample=None
    )
    assert joint.name == "joint" and conditioned.name == "state_conditioned"
    assert joint.ood_rate(random) < 0.05  # the failure mode: random actions unseen
    assert conditioned.ood_rate(random) > 0.9
    # held-out pairs of the same policy stay in distribution, up to the tail of their
    # distances (2-4% over seeds here; the calibration on real data is the benchmark's)
    assert conditioned.ood_rate(held_out) <= 0.05


def test_state_conditioned_subsample_state_and_errors():
    rng = np.random.default_rng(22)
    states, actions = deterministic_policy_data(rng, 800)
    full = StateConditionedDetector(neighbours=3).fit(states, actions, loo_sample=None)
    a = StateConditionedDetector(neighbours=3).fit(states, actions, loo_sample=200, seed=4)
    b = StateConditionedDetector(neighbours=3).fit(states, actions, loo_sample=200, seed=4)
    assert a.ref_distance == b.ref_distance == pytest.approx(full.ref_distance, rel=0.2)
    state = a.state()
    assert json.loads(json.dumps(state)) == state
    assert state["neighbours"] == 3 and state["loo_points"] == 200 and state["n"] == 800
    assert state["features"] == "state_conditioned" and state["action_scale"] == "std"
    with pytest.raises(UserError, match="more than k"):
        StateConditionedDetector(neighbours=3).fit(states[:3], actions[:3])
    with pytest.raises(ValueError, match="columns"):
        a.distances(states)  # states without their actions
    with pytest.raises(ValueError):
        StateConditionedDetector(neighbours=0)
    with pytest.raises(ValueError):
        StateConditionedDetector(action_scale="unit")
    with pytest.raises(RuntimeError):
        StateConditionedDetector().distances(np.zeros((1, 23)))
    with pytest.raises(UserError, match="duplicate"):
        StateConditionedDetector(neighbours=1).fit(np.arange(4.0)[:, None], np.zeros((4, 1)))
    with pytest.raises(UserError, match="state_conditioned"):
        fit_detector("actions_only", states, actions)
    assert math.isnan(a.ood_rate(np.zeros((0, 23))))
