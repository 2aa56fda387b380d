"""The 1-NN OOD detector: exact distances, leave-one-out, chunking, kappa thresholds."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from eval.ood import OODDetector, _faiss_available, _TorchEngine, nearest_neighbour_distance
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
