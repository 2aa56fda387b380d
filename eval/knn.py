"""The exact nearest-neighbour engine behind the OOD detectors (``eval.ood``).

What is out of distribution is ``eval.ood``'s business; this module finds the distances fast,
and exactly, so that an OOD rate never depends on an approximate index. Two engines:

- ``BruteForceEngine`` (backend ``"torch"``): every query against every data row, by blocks
  of one matrix product each, on the CPU or a GPU; it also answers the k-nearest queries of
  the state-conditioned detector (``k_nearest``).
- ``ClusterEngine`` (backend ``"cluster"``, CPU): the rows split into k-means clusters, each
  query searching only the clusters that a triangle-inequality bound cannot rule out. On
  points far from the data it was measured at 1.1 s where scipy's cKDTree took 144 s.

``make_engine`` picks one by ``backend`` (default ``"by-size"``: the cluster engine from
``CLUSTER_MIN_ROWS`` rows on the CPU, else brute force; no timing decides, so a rerun takes
the same path) and ``nearest_neighbour_distance`` is the one-call form. Other exact engines
(scipy's k-d tree, faiss, and a chooser that times them) are kept as baselines for the
benchmarks in ``benchmarks/knn_baselines.py``.
"""

from __future__ import annotations

import bisect
import contextlib
import math
from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch

from ramac.errors import UserError

Backend = Literal["by-size", "torch", "cluster"]
BACKENDS = ("by-size", "torch", "cluster")
Precision = Literal["mixed", "float64"]

DEFAULT_CHUNK_BYTES = 256 * 2**20
CLUSTER_MIN_ROWS = 50_000  # backend="by-size" takes the cluster engine from this many rows
_QUERY_TILE = 2048  # preferred rows per query tile; more when the data is small
_BLOCK_ELEMS = 2048 * 8192  # distance-block size that measured fastest (64 MiB in float32)
_CLUSTERS_PER_ROOT_N = 4  # the cluster engine splits n rows into about 4 sqrt(n) clusters
_KMEANS_ITERS = 2  # Lloyd steps per k-means fit (the bound is valid for any partition)
_KMEANS_SAMPLE = 64  # rows sampled per centroid for a k-means fit
_PAIR_BUDGET = 2**20  # bounds or candidate (query, cluster) pairs held at once
_CENTRED_CHUNK = 65536  # data rows centred in float64 at a time while building the index
_ASSIGN_CHUNK = 16384  # rows assigned to their nearest centroid per matrix product


# --------------------------------------------------------------------------- inputs


def as_matrix(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """A float64 [rows, features] copy-or-view of ``x``; rejects other shapes and NaN/inf.

    Every engine works in float64 on contiguous rows, and a NaN would silently make a
    distance (and so an OOD flag) meaningless, so inputs are checked once here."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [rows, features], got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: has zero features")
    if not np.all(np.isfinite(arr)):
        raise UserError(f"{name}: contains NaN or infinite values")
    return arr


def check_self_index(self_index: np.ndarray, n: int, m: int) -> np.ndarray:
    """``self_index`` as int64 [m], each a data row in [0, n) that its query must skip.

    Leave-one-out searches exclude the query's own row by index (not by value, so an exact
    duplicate still counts); an index out of range would exclude nothing, silently."""
    idx = np.asarray(self_index, dtype=np.int64)
    if idx.shape != (m,) or (m and (idx.min() < 0 or idx.max() >= n)):
        raise ValueError(f"self_index must hold {m} indices in [0, {n})")
    if n < 2:
        raise UserError("leave-one-out needs at least 2 data points")
    return idx


def _max_block_elements(chunk_bytes: int, precision: Precision) -> int:
    """Distance-block elements that fit in ``chunk_bytes`` (float32 or float64), so that the
    caller's memory bound holds whatever the precision."""
    elements = int(chunk_bytes) // (4 if precision == "mixed" else 8)
    if elements < 1:
        raise ValueError(f"chunk_bytes={chunk_bytes} is smaller than one matrix element")
    return elements


def _check_precision(precision: Precision) -> torch.dtype:
    """The working dtype of a precision: float32 for ``"mixed"`` (the winner's distance is
    recomputed in float64 anyway), float64 for ``"float64"``."""
    if precision not in ("mixed", "float64"):
        raise ValueError(f"precision must be 'mixed' or 'float64', got '{precision}'")
    return torch.float32 if precision == "mixed" else torch.float64


def _with_ones_column(rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rows [q, 1] in ``dtype``: with data rows [-2x, ||x||^2] one matrix product gives
    ``||x||^2 - 2 q.x``, the squared distance less the per-query constant ``||q||^2``."""
    return torch.cat([rows, torch.ones_like(rows[:, :1])], dim=1).to(dtype)


def _mask_excluded(block: torch.Tensor, excluded: torch.Tensor, start: int, stop: int) -> None:
    """Set each query's excluded entry to +inf, where that row lies in data rows [start, stop).

    By index, so that an exact duplicate of the query still counts as a neighbour."""
    queries = ((excluded >= start) & (excluded < stop)).nonzero().squeeze(1)
    if queries.numel():
        block[queries, excluded[queries] - start] = math.inf


# --------------------------------------------------------------------------- brute force


class BruteForceEngine:
    """Exact 1-NN (and k-NN) search over a fixed data matrix with chunked matrix products.

    The data is centred on its mean first (distances are translation invariant, and small
    norms keep the rounding error of ||q||^2 + ||x||^2 - 2 q.x small). For each tile of
    queries it walks the data in tiles and computes ``||x||^2 - 2 q.x`` as one matrix product
    of augmented rows [q, 1] . [-2x, ||x||^2] into a reused buffer, keeping the running
    minimum with ``amin``; the arg-min (several times slower than ``amin``) is then taken
    inside each query's best tile only. ``||q||^2`` is constant per query, so it is never
    added. The winner's distance is recomputed in float64 from the difference ``q - x``, so
    every returned value is an exact distance to a data point.
    """

    def __init__(
        self,
        data: np.ndarray,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        precision: Precision = "mixed",
        device: str | torch.device = "cpu",
    ) -> None:
        self.dtype = _check_precision(precision)
        self.max_elems = _max_block_elements(chunk_bytes, precision)
        self.device = torch.device(device)
        self.center = data.mean(axis=0)
        self.centred_data = torch.from_numpy(data - self.center).to(self.device)  # float64
        data_sq_norms = self.centred_data.square().sum(dim=1, keepdim=True)
        # rows [-2x, ||x||^2] in the working precision: [n, d + 1]
        self.augmented_data = torch.cat([-2.0 * self.centred_data, data_sq_norms], dim=1).to(
            self.dtype
        )

    @property
    def n(self) -> int:
        return self.centred_data.shape[0]

    def tiles(self, m: int) -> tuple[int, int]:
        """(query rows, data rows) per distance block, their product <= the block budget:
        ``min(chunk_bytes, 2048 x 8192 elements)`` (larger blocks fall out of cache)."""
        budget = min(self.max_elems, _BLOCK_ELEMS)
        preferred = min(_QUERY_TILE, math.isqrt(budget))  # square-ish when the budget is small
        query_rows = max(1, min(m, budget, max(preferred, budget // self.n)))
        data_rows = min(self.n, max(1, budget // query_rows))
        return query_rows, data_rows

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact 1-NN (distances, indices) of each query; ``self_index[i]`` is excluded for i."""
        m = queries.shape[0]
        centred_queries = torch.from_numpy(queries - self.center).to(self.device)
        excluded = self._excluded(self_index)
        distances = np.empty(m, dtype=np.float64)
        nearest = np.empty(m, dtype=np.int64)
        query_rows, data_rows = self.tiles(m)
        block_bounds = [*range(0, self.n, data_rows), self.n]
        buffer = torch.empty(query_rows * data_rows, dtype=self.dtype, device=self.device)
        for q0 in range(0, m, query_rows):
            q1 = min(m, q0 + query_rows)
            augmented = _with_ones_column(centred_queries[q0:q1], self.dtype)
            tile_excluded = None if excluded is None else excluded[q0:q1]
            rows = self._nearest_in_tile(augmented, tile_excluded, block_bounds, buffer)
            diff = centred_queries[q0:q1] - self.centred_data[rows]
            distances[q0:q1] = diff.square().sum(dim=1).sqrt().cpu().numpy()
            nearest[q0:q1] = rows.cpu().numpy()
        return distances, nearest

    def k_nearest(
        self, queries: np.ndarray, k: int, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact k-NN: (distances, indices), both [m, k], nearest first; ``self_index[i]``
        is excluded for query i. Needs k <= the rows left to search (n, or n - 1).

        The same blocks as ``search``, keeping each query's k least ``||x||^2 - 2 q.x``
        (``topk`` per block, merged with the running best), then the k distances recomputed
        in float64 from ``q - x`` and sorted. The set found is the true k nearest up to ties
        within the working precision's rounding at the k-th place (``"float64"`` makes that
        the float64 rounding).
        """
        m = queries.shape[0]
        centred_queries = torch.from_numpy(queries - self.center).to(self.device)
        excluded = self._excluded(self_index)
        distances = np.empty((m, k), dtype=np.float64)
        nearest = np.empty((m, k), dtype=np.int64)
        query_rows, data_rows = self.tiles(m)
        buffer = torch.empty(query_rows * data_rows, dtype=self.dtype, device=self.device)
        for q0 in range(0, m, query_rows):
            q1 = min(m, q0 + query_rows)
            tile = centred_queries[q0:q1]
            augmented = _with_ones_column(tile, self.dtype)
            tile_excluded = None if excluded is None else excluded[q0:q1]
            best = torch.full((q1 - q0, k), math.inf, dtype=self.dtype, device=self.device)
            best_rows = torch.zeros((q1 - q0, k), dtype=torch.long, device=self.device)
            for start in range(0, self.n, data_rows):
                stop = min(self.n, start + data_rows)
                block = self._distance_block(augmented, tile_excluded, start, stop, buffer)
                values, rows = block.topk(min(k, stop - start), dim=1, largest=False, sorted=False)
                values = torch.cat([best, values], dim=1)
                rows = torch.cat([best_rows, rows + start], dim=1)
                best, keep = values.topk(k, dim=1, largest=False, sorted=False)
                best_rows = rows.gather(1, keep)
            exact = (tile[:, None, :] - self.centred_data[best_rows]).square().sum(dim=2).sqrt()
            exact, order = exact.sort(dim=1, stable=True)
            distances[q0:q1] = exact.cpu().numpy()
            nearest[q0:q1] = best_rows.gather(1, order).cpu().numpy()
        return distances, nearest

    def _excluded(self, self_index: np.ndarray | None) -> torch.Tensor | None:
        """``self_index`` on the engine's device (None: nothing is excluded)."""
        return None if self_index is None else torch.as_tensor(self_index, device=self.device)

    def _nearest_in_tile(
        self,
        augmented: torch.Tensor,
        excluded: torch.Tensor | None,
        block_bounds: list[int],
        buffer: torch.Tensor,
    ) -> torch.Tensor:
        """Index of each (augmented) query's nearest data row: the cheap ``amin`` over every
        data block finds each query's best block, the costly arg-min runs in that one only."""
        tile_rows = augmented.shape[0]
        best = torch.full((tile_rows,), math.inf, dtype=self.dtype, device=self.device)
        best_block = torch.zeros(tile_rows, dtype=torch.long, device=self.device)
        for b in range(len(block_bounds) - 1):
            block = self._distance_block(
                augmented, excluded, block_bounds[b], block_bounds[b + 1], buffer
            )
            block_min = block.amin(dim=1)
            better = block_min < best
            best = torch.where(better, block_min, best)
            best_block = torch.where(better, b, best_block)
        return self._argmin_in_blocks(augmented, excluded, best_block, block_bounds, buffer)

    def _argmin_in_blocks(
        self,
        augmented: torch.Tensor,
        excluded: torch.Tensor | None,
        best_block: torch.Tensor,
        block_bounds: list[int],
        buffer: torch.Tensor,
    ) -> torch.Tensor:
        """Arg-min of each query inside the data block that holds its minimum, one product
        per block for all the queries whose minimum it holds."""
        nearest = torch.empty(augmented.shape[0], dtype=torch.long, device=self.device)
        for b in torch.unique(best_block).tolist():
            queries = (best_block == b).nonzero().squeeze(1)
            block_excluded = None if excluded is None else excluded[queries]
            start, stop = block_bounds[b], block_bounds[b + 1]
            block = self._distance_block(augmented[queries], block_excluded, start, stop, buffer)
            nearest[queries] = block.argmin(dim=1) + start
        return nearest

    def _distance_block(
        self,
        augmented: torch.Tensor,
        excluded: torch.Tensor | None,
        start: int,
        stop: int,
        buffer: torch.Tensor,
    ) -> torch.Tensor:
        """||x||^2 - 2 q.x for data rows [start, stop), written into ``buffer`` (no
        allocation per block); each query's excluded entry is +inf."""
        tile_rows, width = augmented.shape[0], stop - start
        block = buffer[: tile_rows * width].view(tile_rows, width)
        torch.mm(augmented, self.augmented_data[start:stop].T, out=block)
        if excluded is not None:
            _mask_excluded(block, excluded, start, stop)
        return block


# --------------------------------------------------------------------------- clustering


@contextlib.contextmanager
def _one_thread():
    """Run torch on one intra-op thread inside the block, then restore the caller's count.

    The cluster engine runs thousands of small operations (per-cluster products of tens of
    microseconds, k-means steps on small cells). Intra-op threads add a barrier to each;
    when a core is shared with another process a descheduled thread stalls that barrier for
    a time slice, which measured 2-4x slower overall than one thread on this project's
    2-core machines with a background job.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _nearest_centroid(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of each row's nearest centroid (float32 matrix products, 16384 rows at a time
    to bound the block's memory)."""
    centroid_sq_norms = centroids.square().sum(dim=1)
    labels = torch.empty(x.shape[0], dtype=torch.long)
    for i in range(0, x.shape[0], _ASSIGN_CHUNK):
        rows = x[i : i + _ASSIGN_CHUNK]
        labels[i : i + _ASSIGN_CHUNK] = torch.addmm(
            centroid_sq_norms, rows, centroids.T, alpha=-2
        ).argmin(1)
    return labels


def _grouped_argmin(block: torch.Tensor, group: int) -> torch.Tensor:
    """``block.argmin(1)`` (a first minimum) for a block whose width is a multiple of
    ``group``: minima of groups of columns (``amin`` is ~10x faster than ``argmin``), then
    the arg-min of the winning group only."""
    rows, width = block.shape
    groups = block.view(rows, width // group, group)
    best = groups.amin(2).argmin(1)
    within = groups[torch.arange(rows), best].argmin(1)
    return best * group + within


def _kmeans(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """``k`` centroids of the rows of ``x`` (k <= rows): a seeded random pick of rows, then
    ``_KMEANS_ITERS`` Lloyd steps (a centroid that loses all its rows stays where it is).
    Few steps suffice: the bound holds for any partition, a better one only prunes more."""
    centroids = x[torch.randperm(x.shape[0], generator=gen)[:k]].clone()
    for _ in range(_KMEANS_ITERS):
        labels = _nearest_centroid(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


def _cluster_labels(x: torch.Tensor, n_clusters: int, gen: torch.Generator) -> torch.Tensor:
    """A label in [0, ~n_clusters) per row of ``x`` (float32): two-level k-means, ~sqrt(C)
    coarse cells, then each cell split into clusters in proportion to its size. Every step
    fits on a sample of ``_KMEANS_SAMPLE`` rows per centroid and the assignments cost
    O(n sqrt(C) d) instead of O(n C d). Some labels may end up unused."""
    n = x.shape[0]
    n_cells = max(1, math.isqrt(n_clusters))
    sample = x[torch.randperm(n, generator=gen)[: _KMEANS_SAMPLE * n_cells]]
    coarse = _kmeans(sample, min(sample.shape[0], n_cells), gen)
    cells = _nearest_centroid(x, coarse)
    by_cell = torch.argsort(cells, stable=True)
    labels = torch.empty(n, dtype=torch.long)
    start = next_label = 0
    for size in torch.bincount(cells, minlength=coarse.shape[0]).tolist():
        rows = by_cell[start : start + size]
        start += size
        if size == 0:
            continue
        k = max(1, min(size, round(n_clusters * size / n)))
        points = x[rows]
        fit_on = points[torch.randperm(size, generator=gen)[: _KMEANS_SAMPLE * k]]
        labels[rows] = _nearest_centroid(points, _kmeans(fit_on, k, gen)) + next_label
        next_label += k
    return labels


class ClusterEngine:
    """Exact 1-NN that searches only the clusters a triangle-inequality bound cannot rule out.

    Index: the (centred) data is split into C ~ ``_CLUSTERS_PER_ROOT_N`` sqrt(n) clusters by
    a cheap two-level k-means (``_cluster_labels``) and stored sorted by cluster, as rows
    [-2x, ||x||^2] like ``BruteForceEngine``; each cluster keeps its mean c and its radius
    r = max ||x - c|| over its rows, both in float64. Inside the engine a data row is named
    by its *sorted position* (``order`` maps it back to the caller's row index).

    Bound: for x in cluster c, ||q - x|| >= ||q - c|| - ||x - c|| >= ||q - c|| - r. So once
    some data row lies at distance u from q, a cluster with ||q - c|| - r >= u holds no row
    nearer than u and is skipped. The test is made as dc < u + r <=> -2 q.c - 2 u r + ||c||^2
    - r^2 < u^2 - ||q||^2, one matrix product of rows [q, u, 1] and [-2c, -2r, ||c||^2 - r^2]
    per block of clusters, with a margin above its worst rounding error (``_bound_margin``),
    so that rounding can only add clusters to search, never drop one.

    Search: (1) each query's nearest centroid's cluster is searched in full; the winner's
    distance, recomputed in float64, is u (or ||q|| + max(||c|| + r), a bound on every
    row, when that cluster held only the excluded row); (2) every other cluster with
    dc - r < u is searched, by blocks of clusters, each cluster with one matrix product over
    the queries that need it; (3) queries that found a better row in (2) get its index with
    an arg-min inside that one cluster. Winners are then recomputed in float64 from the
    difference q - x, as in ``BruteForceEngine``. Since u is the exact distance to a real
    row, every row nearer than u is searched and the result has the same guarantee as the
    brute-force engine (the float32 pass can pick a row that ties the true nearest within
    float32 rounding). Data of a high intrinsic dimension (isotropic noise) defeats the
    bound; the search then visits every cluster, which is brute force plus overhead.

    Memory: a reference to ``data`` (not a copy: it must not change while the engine lives)
    plus, per row, (d + 1) x 4 bytes (8 under ``precision="float64"``) and 8 bytes (the
    order; 8 more after a search with ``self_index``), plus O(C d). Building also holds a
    float32 copy of the data and O(n) labels for a while. A search holds its queries
    (O(m d)), one distance block of at most ``min(chunk_bytes, 2048 x 8192 elements)``, and
    blocks of at most ``_PAIR_BUDGET`` bounds or candidate pairs (~40 bytes each): under
    ~150 MB in all. Measured for 2,000,000 x 23 rows: 215 MB of index (+15 MB after a
    leave-one-out search), a build peak of ~340 MB above the data, and no further peak
    during a 50,000-query search (plus the caller's float64 data, 368 MB).
    """

    def __init__(
        self,
        data: np.ndarray,
        *,
        n_clusters: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        precision: Precision = "mixed",
        seed: int = 0,
    ) -> None:
        self.dtype = _check_precision(precision)
        self.block_elems = min(_max_block_elements(chunk_bytes, precision), _BLOCK_ELEMS)
        self.data = data
        self.center = data.mean(axis=0)
        n = data.shape[0]
        if n_clusters is None:
            n_clusters = round(_CLUSTERS_PER_ROOT_N * math.sqrt(n))
        self._sorted_position: torch.Tensor | None = None  # data row -> sorted position
        with _one_thread():
            labels = self._partition(n_clusters, torch.Generator().manual_seed(seed))
            self.sizes = torch.bincount(labels)
            self.starts = torch.cat([torch.zeros(1, dtype=torch.long), self.sizes.cumsum(0)])
            self.order = torch.argsort(labels, stable=True)  # sorted position -> data row
            self._build_rows(labels)

    @property
    def n(self) -> int:
        return self.order.shape[0]

    @property
    def n_clusters(self) -> int:
        return self.sizes.shape[0]

    # ----------------------------------------------------------------------- index

    def _centred_chunks(
        self, order: np.ndarray | None = None
    ) -> Iterable[tuple[int, torch.Tensor]]:
        """(i, float64 ``data[rows] - center``) for rows i, i + 1, ... of the data, or of
        ``data[order]``, 65536 rows at a time (no float64 copy of the whole data)."""
        for i in range(0, self.data.shape[0], _CENTRED_CHUNK):
            if order is None:
                rows = self.data[i : i + _CENTRED_CHUNK]
            else:
                rows = np.take(self.data, order[i : i + _CENTRED_CHUNK], axis=0)
            yield i, torch.from_numpy(rows - self.center)

    def _partition(self, n_clusters: int, gen: torch.Generator) -> torch.Tensor:
        """Cluster label per data row, 0 .. C - 1, every label used (renumbered so that no
        cluster is empty)."""
        x32 = torch.empty(self.data.shape, dtype=torch.float32)
        for i, x in self._centred_chunks():
            x32[i : i + len(x)] = x
        labels = _cluster_labels(x32, n_clusters, gen)
        used = torch.bincount(labels) > 0
        return (torch.cumsum(used, 0) - 1)[labels]

    def _build_rows(self, labels: torch.Tensor) -> None:
        """Centroids (means), radii and the sorted [-2x, ||x||^2] rows, in float64 by chunks."""
        n, d = self.data.shape
        centroids = torch.zeros(self.n_clusters, d, dtype=torch.float64)
        for i, x in self._centred_chunks():
            centroids.index_add_(0, labels[i : i + len(x)], x)
        centroids /= self.sizes[:, None]
        radius = torch.zeros(self.n_clusters, dtype=torch.float64)
        self.rows = torch.empty(n, d + 1, dtype=self.dtype)
        sorted_labels = labels[self.order]
        for i, x in self._centred_chunks(self.order.numpy()):
            chunk_labels = sorted_labels[i : i + len(x)]
            to_centroid = (x - centroids[chunk_labels]).square().sum(1).sqrt()
            radius.scatter_reduce_(0, chunk_labels, to_centroid, "amax")
            self.rows[i : i + len(x), :d] = -2.0 * x
            self.rows[i : i + len(x), d] = x.square().sum(1)
        centroid_sq_norms = centroids.square().sum(1, keepdim=True)
        # [-2c, ||c||^2], padded with rows [0, +inf] (never nearest) to whole argmin groups
        self.group = 32 * math.ceil(math.sqrt(self.n_clusters) / 32)
        padded = self.group * math.ceil(self.n_clusters / self.group)
        self.centroid_rows = torch.zeros(padded, d + 1, dtype=self.dtype)
        self.centroid_rows[:, d] = math.inf
        self.centroid_rows[: self.n_clusters] = torch.cat(
            [-2.0 * centroids, centroid_sq_norms], dim=1
        )
        bound = [
            -2.0 * centroids,
            -2.0 * radius[:, None],
            centroid_sq_norms - radius[:, None].square(),
        ]
        self.bound_rows = torch.cat(bound, dim=1).to(self.dtype)
        # >= every ||x||: the distance bound when a query's first cluster held only itself
        self.norm_bound = float((centroid_sq_norms.squeeze(1).sqrt() + radius).max())

    def _excluded_positions(self, self_index: np.ndarray | None) -> torch.Tensor | None:
        """Sorted position of each query's excluded data row (None: nothing is excluded)."""
        if self_index is None:
            return None
        if self._sorted_position is None:
            self._sorted_position = torch.empty_like(self.order)
            self._sorted_position[self.order] = torch.arange(self.n)
        return self._sorted_position[torch.as_tensor(self_index, dtype=torch.long)]

    # ----------------------------------------------------------------------- search

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact 1-NN (distances, indices) of each query; ``self_index[i]`` is excluded for i."""
        with _one_thread():
            centred, augmented, excluded = self._prepare(queries, self_index)
            first_cluster, first_value, nearest = self._search_first(augmented, excluded)
            upper = self._upper_bound(centred, first_value, nearest)
            best, best_cluster = self._search_candidates(
                augmented, centred, upper, first_cluster, excluded
            )
            improved = (best < first_value).nonzero().squeeze(1)
            if improved.numel():
                nearest[improved] = self._search_pairs(
                    augmented, improved, best_cluster[improved], excluded, True
                )[1]
            distances = self._exact_distances(centred, nearest)
            return distances.numpy(), self.order[nearest].numpy()

    def searched_fraction(self, queries: np.ndarray, self_index: np.ndarray | None = None) -> float:
        """Fraction of the brute-force distance evaluations that ``search(queries)`` makes:
        a cheap estimate of its cost (it runs steps 1 and 2 of the search without step 2's
        products)."""
        if len(queries) == 0:
            return 0.0
        with _one_thread():
            centred, augmented, excluded = self._prepare(queries, self_index)
            first_cluster, first_value, nearest = self._search_first(augmented, excluded)
            evaluated = int(self.sizes[first_cluster].sum())
            upper = self._upper_bound(centred, first_value, nearest)
            for c0, clusters, _ in self._candidate_blocks(centred, upper, first_cluster):
                evaluated += int(self.sizes[clusters + c0].sum())
        return evaluated / (len(queries) * self.n)

    def _prepare(
        self, queries: np.ndarray, self_index: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Centred float64 queries, their rows [q, 1] in the working precision, and the
        sorted position of each query's excluded row (None without ``self_index``)."""
        centred = torch.from_numpy(queries - self.center)
        augmented = _with_ones_column(centred, self.dtype)
        return centred, augmented, self._excluded_positions(self_index)

    def _search_first(
        self, augmented: torch.Tensor, excluded: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step (1): each query's nearest centroid's cluster, and the least ||x||^2 - 2 q.x
        over it (+inf if it held only the excluded row) with that row's sorted position."""
        first_cluster = self._nearest_clusters(augmented)
        every_query = torch.arange(len(augmented))
        value, nearest = self._search_pairs(
            augmented, every_query, first_cluster, excluded, with_row=True
        )
        return first_cluster, value, nearest

    def _nearest_clusters(self, augmented: torch.Tensor) -> torch.Tensor:
        """Each query's nearest centroid, by blocks of at most ``_PAIR_BUDGET`` distances."""
        nearest = torch.empty(augmented.shape[0], dtype=torch.long)
        queries_per_block = max(1, _PAIR_BUDGET // self.n_clusters)
        for i in range(0, augmented.shape[0], queries_per_block):
            block = torch.mm(augmented[i : i + queries_per_block], self.centroid_rows.T)
            nearest[i : i + queries_per_block] = _grouped_argmin(block, self.group)
        return nearest

    def _upper_bound(
        self, centred: torch.Tensor, value: torch.Tensor, nearest: torch.Tensor
    ) -> torch.Tensor:
        """u per query: the float64 distance to the row found, or a bound on every row's
        distance, ||q|| + max(||c|| + r), where none was (its only row was excluded)."""
        found = torch.isfinite(value)
        beyond_every_row = centred.square().sum(1).sqrt() + self.norm_bound
        found_distance = self._exact_distances(centred, torch.where(found, nearest, 0))
        return torch.where(found, found_distance, beyond_every_row)

    def _exact_distances(self, centred: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Float64 distance from each query to its data row (by sorted position)."""
        rows = np.take(self.data, self.order[positions].numpy(), axis=0)
        x = torch.from_numpy(rows - self.center)
        return (centred - x).square().sum(dim=1).sqrt()

    def _bound_margin(self, centred: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """Slack above the rounding error of the bound test. The product sums d + 2 terms
        whose magnitudes total at most (||q|| + u + ||c|| + r)^2; rounding the inputs, the
        sum and the right-hand side costs at most (d + 6) unit roundoffs of that (doubled)."""
        unit_roundoff = torch.finfo(self.dtype).eps / 2
        magnitude = centred.square().sum(1).sqrt() + upper + self.norm_bound
        return 2 * (centred.shape[1] + 6) * unit_roundoff * magnitude.square()

    def _candidate_blocks(
        self, centred: torch.Tensor, upper: torch.Tensor, first_cluster: torch.Tensor
    ) -> Iterable[tuple[int, torch.Tensor, torch.Tensor]]:
        """(c0, cluster - c0, query) pairs, grouped by cluster, of every cluster other than
        the query's first whose bound dc - r < u, by blocks of clusters [c0, c1)."""
        m = centred.shape[0]
        bound_queries = torch.cat(
            [centred, upper[:, None], torch.ones_like(upper[:, None])], dim=1
        ).to(self.dtype)
        threshold = upper.square() - centred.square().sum(1) + self._bound_margin(centred, upper)
        threshold = threshold.to(self.dtype)
        by_first = torch.argsort(first_cluster)
        sorted_first = first_cluster[by_first]
        clusters_per_block = max(1, _PAIR_BUDGET // max(1, m))
        for c0 in range(0, self.n_clusters, clusters_per_block):
            c1 = min(self.n_clusters, c0 + clusters_per_block)
            candidate = torch.mm(self.bound_rows[c0:c1], bound_queries.T) < threshold  # [c, m]
            lo, hi = torch.searchsorted(sorted_first, torch.tensor([c0, c1])).tolist()
            candidate[sorted_first[lo:hi] - c0, by_first[lo:hi]] = False  # searched in (1)
            clusters, queries = candidate.nonzero(as_tuple=True)
            if queries.numel():
                yield c0, clusters, queries

    def _search_candidates(
        self,
        augmented: torch.Tensor,
        centred: torch.Tensor,
        upper: torch.Tensor,
        first_cluster: torch.Tensor,
        excluded: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step (2): per query, the least ||x||^2 - 2 q.x over the candidate clusters (+inf
        if none) and the cluster that holds it."""
        best = torch.full((augmented.shape[0],), math.inf, dtype=self.dtype)
        best_cluster = torch.zeros(augmented.shape[0], dtype=torch.long)
        for c0, clusters, queries in self._candidate_blocks(centred, upper, first_cluster):
            value = self._scan(augmented, queries, clusters + c0, excluded, with_row=False)[0]
            best.scatter_reduce_(0, queries, value, "amin")
            won = value == best[queries]
            best_cluster[queries[won]] = clusters[won] + c0
        return best, best_cluster

    def _search_pairs(
        self,
        augmented: torch.Tensor,
        queries: torch.Tensor,
        clusters: torch.Tensor,
        excluded: torch.Tensor | None,
        with_row: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``_scan`` for (query, cluster) pairs in any order; results in the given order."""
        by_cluster = torch.argsort(clusters, stable=True)
        value, row = self._scan(
            augmented, queries[by_cluster], clusters[by_cluster], excluded, with_row
        )
        value = torch.empty_like(value).index_copy_(0, by_cluster, value)
        if row is not None:
            row = torch.empty_like(row).index_copy_(0, by_cluster, row)
        return value, row

    def _scan(
        self,
        augmented: torch.Tensor,
        queries: torch.Tensor,
        clusters: torch.Tensor,
        excluded: torch.Tensor | None,
        with_row: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """For (query, cluster) pairs sorted by cluster: the least ||x||^2 - 2 q.x over the
        cluster's rows (+inf if its only row is the query's own) and, with ``with_row``, the
        sorted position of that row. One matrix product per cluster (split by rows to keep
        the block under ``block_elems``)."""
        value = torch.empty(queries.shape[0], dtype=self.dtype)
        row = torch.empty(queries.shape[0], dtype=torch.long) if with_row else None
        if queries.numel() == 0:
            return value, row
        cluster_ids, pair_counts = torch.unique_consecutive(clusters, return_counts=True)
        hit_pairs, hit_rows = self._excluded_hits(queries, clusters, excluded)
        hit_list = hit_pairs.tolist()
        starts = self.starts.tolist()
        sizes = self.sizes[cluster_ids]
        pairs_per_product = (self.block_elems // sizes).clamp(min=1)
        largest = int((torch.minimum(pairs_per_product, pair_counts) * sizes).max())
        buffer = torch.empty(largest, dtype=self.dtype)
        first_pair = 0  # pairs of cluster c: [first_pair, first_pair + count)
        for c, count, step in zip(
            cluster_ids.tolist(), pair_counts.tolist(), pairs_per_product.tolist(), strict=True
        ):
            row_start, row_stop = starts[c], starts[c + 1]
            width = row_stop - row_start
            for p0 in range(first_pair, first_pair + count, step):
                p1 = min(first_pair + count, p0 + step)
                block = buffer[: (p1 - p0) * width].view(p1 - p0, width)
                torch.mm(
                    augmented.index_select(0, queries[p0:p1]),
                    self.rows[row_start:row_stop].T,
                    out=block,
                )
                h0, h1 = bisect.bisect_left(hit_list, p0), bisect.bisect_left(hit_list, p1)
                if h1 > h0:
                    block[hit_pairs[h0:h1] - p0, hit_rows[h0:h1] - row_start] = math.inf
                if with_row:
                    torch.min(block, 1, out=(value[p0:p1], row[p0:p1]))
                    row[p0:p1] += row_start
                else:
                    torch.amin(block, 1, out=value[p0:p1])
            first_pair += count
        return value, row

    def _excluded_hits(
        self, queries: torch.Tensor, clusters: torch.Tensor, excluded: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions of the pairs whose cluster holds the query's excluded row, and that
        row's sorted position: the entries ``_scan`` must set to +inf."""
        if excluded is None:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        rows = excluded[queries]
        inside = (rows >= self.starts[clusters]) & (rows < self.starts[clusters + 1])
        hits = inside.nonzero().squeeze(1)
        return hits, rows[hits]


# --------------------------------------------------------------------------- public API


def make_engine(
    data: np.ndarray,
    backend: Backend,
    chunk_bytes: int,
    precision: Precision,
    device: str | torch.device,
) -> BruteForceEngine | ClusterEngine:
    """The exact engine of ``backend`` over ``data`` (float64 [n, d]): ``"torch"``,
    ``"cluster"`` (CPU only), or ``"by-size"`` (cluster from ``CLUSTER_MIN_ROWS`` rows on the
    CPU, else torch: decided by size, never by timing, so a rerun takes the same path)."""
    if backend == "torch":
        return BruteForceEngine(data, chunk_bytes=chunk_bytes, precision=precision, device=device)
    if backend == "cluster":
        if torch.device(device).type != "cpu":
            raise ValueError(f"backend 'cluster' runs on the CPU only, got device '{device}'")
        return ClusterEngine(data, chunk_bytes=chunk_bytes, precision=precision)
    if backend == "by-size":
        cpu = torch.device(device).type == "cpu"
        by_size = "cluster" if cpu and data.shape[0] >= CLUSTER_MIN_ROWS else "torch"
        return make_engine(data, by_size, chunk_bytes, precision, device)
    raise ValueError(
        f"backend must be one of {BACKENDS}, got '{backend}' (the k-d tree, faiss and 'auto' "
        "engines are benchmark baselines: benchmarks/knn_baselines.py)"
    )


def nearest_neighbour_distance(
    data: np.ndarray | torch.Tensor,
    queries: np.ndarray | torch.Tensor,
    *,
    exclude_self: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    backend: Backend = "by-size",
    precision: Precision = "mixed",
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Exact Euclidean distance from each query [m, d] to its nearest row of ``data`` [n, d].

    ``exclude_self=True`` is leave-one-out: queries must be the data itself (m == n) and
    query i ignores data row i by index, so an exact duplicate of i still counts (distance 0).

    Memory: the torch backend's distance block holds at most ``chunk_bytes`` bytes (it uses
    min(chunk_bytes, 2048 x 8192 elements): float32 under ``precision="mixed"``, float64
    under ``"float64"``); beyond it the engine keeps the data (float64 plus one working copy
    with an extra column) and O(m) results. The cluster backend keeps the same block bound
    and a float32 copy with an extra column plus bounded working sets (``ClusterEngine``:
    about 210 MB of index and under 150 MB per search for 2,000,000 x 23 rows).

    Exactness: every returned value is the float64 distance to an actual data row, so it is
    never below the true 1-NN distance. Under ``"mixed"`` that row is chosen by a float32
    pass on centred data and can differ from the true nearest row only when two rows tie
    within float32 rounding, e = (d + 4) * 2^-24 * (R^2 + 2 |q| R) with R the largest
    centred data norm; the returned squared distance then exceeds the true one by at most
    2e. ``"float64"`` makes the pass in float64 (e with 2^-53; slower). The cluster backend
    gives the same guarantee: it skips only clusters that provably hold no row nearer than
    a row already found, then makes the same float32 pass over the rest.

    Backends, all exact: ``"torch"`` (``BruteForceEngine``; ``device="cuda"`` runs it on a
    GPU), ``"cluster"`` (``ClusterEngine``, CPU: the rows split into ~4 sqrt(n) k-means
    clusters, each query searching only the clusters that a triangle-inequality bound cannot
    rule out; on 2,000,000 logged (state, action) rows ~30x faster than ``"torch"``, and up
    to ~2x slower on isotropic noise, where the bound rules out nothing) and ``"by-size"``
    (the default: ``"cluster"`` from 50,000 rows on the CPU, else ``"torch"``; no timing is
    involved, so a rerun takes the same path). Both keep to ``chunk_bytes``. scipy's k-d
    tree, faiss and a timed chooser are benchmark baselines (``benchmarks/knn_baselines.py``).
    """
    x = as_matrix(data, "data")
    q = as_matrix(queries, "queries")
    if x.shape[0] == 0:
        raise UserError("data: has no rows; a nearest neighbour needs at least one")
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features, data has {x.shape[1]}")
    self_index = None
    if exclude_self:
        if q.shape[0] != x.shape[0]:
            raise ValueError("exclude_self=True needs the queries to be the data (same rows)")
        self_index = check_self_index(np.arange(x.shape[0]), x.shape[0], q.shape[0])
    if q.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    engine = make_engine(x, backend, chunk_bytes, precision, device)
    return engine.search(q, self_index)[0]
