"""Exact 1-NN engines that the pipeline does not use, kept as baselines for the benchmarks.

The OOD detectors search with ``eval.knn`` (``BruteForceEngine``, ``ClusterEngine``). These
engines answer the same question with other tools, so ``bench_knn.py`` can time them against
it and the tests can check that every exact engine agrees:

- ``KDTreeEngine``: scipy's ``cKDTree`` in float64;
- ``FaissEngine``: faiss ``IndexFlatL2`` (needs the faiss-cpu package);
- ``AutoEngine``: a chooser among the cluster engine, brute force and the k-d tree that
  times the latter two on a probe of the queries (so which engine ran can change between
  runs; the distances cannot, all being exact).

Each has the engines' interface: ``search(queries, self_index=None) -> (distances,
indices)``, with the data and queries float64 [rows, features] and ``self_index[i]`` the
data row query i must skip (leave-one-out). Import it as the benchmarks do, with the
benchmarks folder on ``sys.path``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from eval.knn import CLUSTER_MIN_ROWS, BruteForceEngine, ClusterEngine
from ramac.errors import UserError

AUTO_MIN_QUERIES = 4096  # AutoEngine probes only searches at least this large ...
AUTO_PROBE = 256  # ... on this many queries
CLUSTER_MAX_FRACTION = 0.6  # ... and takes the cluster engine when it searches at most
# this share of brute force's distances / torch threads


def faiss_available() -> bool:
    """Whether faiss can be imported (it is an optional extra, and absent on most machines)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _first_other_neighbour(found: np.ndarray, self_index: np.ndarray | None) -> np.ndarray:
    """From k = 2 neighbour indices per query, the first that is not the query itself
    (at least one of two is not; an exact duplicate of the query counts as a neighbour).

    The k-d tree and faiss cannot skip a row by index, so a leave-one-out search asks them
    for two neighbours and drops the query's own row here."""
    if self_index is None:
        return found[:, 0].astype(np.int64)
    return np.where(found[:, 0] == self_index, found[:, 1], found[:, 0]).astype(np.int64)


class KDTreeEngine:
    """Exact 1-NN with scipy's ``cKDTree`` in float64 (``workers`` = torch's thread count).

    Fast when the data has a low intrinsic dimension (logged trajectories), very slow when it
    has not (on points far from the data it was measured at 144 s where the cluster engine
    took 1.1 s); its memory (the tree, about the data's size again) is not bounded by a
    ``chunk_bytes``.
    """

    def __init__(self, data: np.ndarray) -> None:
        from scipy.spatial import cKDTree

        self.center = data.mean(axis=0)
        self.centred_data = data - self.center
        self.tree = cKDTree(self.centred_data)

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        centred = queries - self.center
        k = 1 if self_index is None else 2
        _, found = self.tree.query(centred, k=k, workers=torch.get_num_threads())
        nearest = _first_other_neighbour(np.asarray(found).reshape(len(centred), k), self_index)
        distances = np.sqrt(((centred - self.centred_data[nearest]) ** 2).sum(axis=1))
        return distances, nearest


class FaissEngine:
    """Exact 1-NN with faiss ``IndexFlatL2`` (float32), winners recomputed in float64.

    faiss blocks its own work, so no ``chunk_bytes`` bounds its memory.
    """

    def __init__(self, data: np.ndarray) -> None:
        if not faiss_available():
            raise UserError("FaissEngine needs the faiss-cpu package (pip install faiss-cpu)")
        import faiss

        self.center = data.mean(axis=0)
        self.centred_data = data - self.center
        self.index = faiss.IndexFlatL2(data.shape[1])
        self.index.add(np.ascontiguousarray(self.centred_data, dtype=np.float32))

    @property
    def n(self) -> int:
        return self.centred_data.shape[0]

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        centred = queries - self.center
        k = 1 if self_index is None else 2
        _, found = self.index.search(np.ascontiguousarray(centred, dtype=np.float32), k)
        nearest = _first_other_neighbour(found, self_index)
        distances = np.sqrt(((centred - self.centred_data[nearest]) ** 2).sum(axis=1))
        return distances, nearest


def _seconds(fn, *args) -> float:
    """Wall-clock seconds of one call (the chooser's probes)."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


class AutoEngine:
    """Chooses, per search, among the exact engines: cluster, brute force and k-d tree.

    All are exact, so the choice changes only the time taken. With at least
    ``CLUSTER_MIN_ROWS`` data rows (and ``device`` on the CPU) it builds the cluster engine
    on the first search of at least ``AUTO_MIN_QUERIES`` queries and uses it for this and
    later searches unless, on a seeded probe of ``AUTO_PROBE`` queries, its bound leaves
    more than ``CLUSTER_MAX_FRACTION`` / (torch threads) of the brute-force work. (It runs
    on one thread at ~1.7x brute force's cost per distance, so brute force wins on data of
    a high intrinsic dimension, the sooner the more threads it has.) That test counts
    distances, so this choice does not depend on timing. Otherwise, for a search of at
    least ``AUTO_MIN_QUERIES`` queries it times brute force on a seeded probe of
    ``AUTO_PROBE`` queries, then the tree (built once, on first need) on 16 of them and, if
    still competitive, on the whole probe, and runs the rest with the faster one. The tree
    is probed on few queries first because it can be orders of magnitude slower (data of a
    high intrinsic dimension, queries far from the data). Smaller searches use brute force.
    Engines are built on first need and kept. ``last_choice`` names the engine of the last
    search: ``"cluster"``, ``"torch"`` (brute force) or ``"kdtree"``.

    The pipeline does not use it: a timed choice can differ between reruns, so it takes
    ``eval.knn.make_engine``'s size rule (``"by-size"``) instead.
    """

    def __init__(self, data: np.ndarray, **brute_force_kwargs) -> None:
        self.data = data
        self.brute_force_kwargs = brute_force_kwargs  # chunk_bytes, precision, device
        self._brute_force: BruteForceEngine | None = None
        self.cluster: ClusterEngine | None = None
        self.kdtree: KDTreeEngine | None = None
        self.last_choice = "torch"

    @property
    def brute_force(self) -> BruteForceEngine:
        """The brute-force engine, built on first use."""
        if self._brute_force is None:
            self._brute_force = BruteForceEngine(self.data, **self.brute_force_kwargs)
        return self._brute_force

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        m = queries.shape[0]
        if self._cluster_pays(queries, self_index):
            self.last_choice = "cluster"
            return self.cluster.search(queries, self_index)
        self.last_choice = "torch"
        if m >= AUTO_MIN_QUERIES and self._tree_is_faster(queries, self_index):
            self.last_choice = "kdtree"
            return self.kdtree.search(queries, self_index)
        return self.brute_force.search(queries, self_index)

    def _cluster_pays(self, queries: np.ndarray, self_index: np.ndarray | None) -> bool:
        """Whether the cluster engine's bound leaves little enough of brute force's work on
        a probe of the queries (counted, not timed)."""
        device = torch.device(self.brute_force_kwargs.get("device", "cpu"))
        if self.data.shape[0] < CLUSTER_MIN_ROWS or device.type != "cpu":
            return False
        if self.cluster is None:
            if queries.shape[0] < AUTO_MIN_QUERIES:
                return False
            kwargs = {k: v for k, v in self.brute_force_kwargs.items() if k != "device"}
            self.cluster = ClusterEngine(self.data, **kwargs)
        probe = np.random.default_rng(0).choice(
            len(queries), min(len(queries), AUTO_PROBE), replace=False
        )
        probe_excluded = None if self_index is None else self_index[probe]
        share = self.cluster.searched_fraction(queries[probe], probe_excluded)
        return share <= CLUSTER_MAX_FRACTION / torch.get_num_threads()

    def _tree_is_faster(self, queries: np.ndarray, self_index: np.ndarray | None) -> bool:
        """Whether the k-d tree beats brute force per query on a timed probe (first on 16
        queries, so a very slow tree costs little to rule out)."""
        probe = np.random.default_rng(0).choice(len(queries), AUTO_PROBE, replace=False)
        probe_excluded = None if self_index is None else self_index[probe]
        brute_force_cost = (
            _seconds(self.brute_force.search, queries[probe], probe_excluded) / AUTO_PROBE
        )
        if self.kdtree is None:
            self.kdtree = KDTreeEngine(self.data)
        few = probe[:16]
        few_excluded = None if self_index is None else self_index[few]
        if _seconds(self.kdtree.search, queries[few], few_excluded) / few.size > brute_force_cost:
            return False
        tree_cost = _seconds(self.kdtree.search, queries[probe], probe_excluded) / AUTO_PROBE
        return tree_cost < brute_force_cost
