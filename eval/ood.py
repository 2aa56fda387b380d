"""The 1-nearest-neighbour detectors of out-of-distribution actions.

RAMAC reports the fraction of evaluation actions that are "OOD" under a nearest-neighbour
detector with kappa = 3, but does not publish its feature space, scaling or threshold rule
(ref: paper-tables.md §1.2, §7). The choices made here, all recorded by ``state()``:

- two feature spaces (``FEATURE_SPACES``): ``joint`` (``OODDetector``: 2-D bandit actions,
  or whole (state, action) rows, standardised with the dataset's per-feature mean and std,
  std floored at ``std_floor``) and ``state_conditioned`` (``StateConditionedDetector``: an
  action's distance to the actions of the dataset's k nearest states, in the data's action
  scale), the default for MuJoCo data (``DEFAULT_FEATURES``; see that class for why);
- the reference scale is the dataset's mean leave-one-out distance, measured the same way;
- a query is OOD when its distance exceeds ``kappa`` times that scale.

Distances are exact (brute force over chunked matrix products, a search that skips clusters
of rows by a triangle-inequality bound, or an exact k-d tree, chosen by ``backend``;
see ``nearest_neighbour_distance`` for the backends and the precise guarantee), so the rates
do not depend on an approximate index.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import time
from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch

from ramac.errors import UserError

Backend = Literal["by-size", "torch", "cluster", "kdtree", "auto", "faiss"]
BACKENDS = ("by-size", "torch", "cluster", "kdtree", "auto", "faiss")
Precision = Literal["mixed", "float64"]

DEFAULT_CHUNK_BYTES = 256 * 2**20
_QUERY_TILE = 2048  # preferred rows per query tile; more when the data is small
_BLOCK_ELEMS = 2048 * 8192  # distance-block size that measured fastest (64 MiB in float32)
_AUTO_MIN_QUERIES = 4096  # backend="auto" probes only searches at least this large ...
_AUTO_PROBE = 256  # ... on this many queries
_CLUSTER_MIN_N = 50_000  # backend="auto" considers the cluster engine from this many rows ...
_CLUSTER_MAX_FRACTION = 0.6  # ... when it searches at most this share / torch threads
_CLUSTERS_PER_ROOT_N = 4  # the cluster engine splits n rows into about 4 sqrt(n) clusters
_KMEANS_ITERS = 2  # Lloyd steps per k-means fit (the bound is valid for any partition)
_KMEANS_SAMPLE = 64  # rows sampled per centroid for a k-means fit
_PAIR_BUDGET = 2**20  # bounds or candidate (query, cluster) pairs held at once


# --------------------------------------------------------------------------- inputs


def _as_matrix(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """A float64 [rows, features] copy-or-view of ``x``; rejects other shapes and NaN/inf."""
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


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- engines


def _max_elems(chunk_bytes: int, precision: Precision) -> int:
    """Distance-block elements that fit in ``chunk_bytes`` (float32 or float64)."""
    elems = int(chunk_bytes) // (4 if precision == "mixed" else 8)
    if elems < 1:
        raise ValueError(f"chunk_bytes={chunk_bytes} is smaller than one matrix element")
    return elems


class _TorchEngine:
    """Exact 1-NN search over a fixed data matrix with chunked matrix products.

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
        if precision not in ("mixed", "float64"):
            raise ValueError(f"precision must be 'mixed' or 'float64', got '{precision}'")
        self.dtype = torch.float32 if precision == "mixed" else torch.float64
        self.max_elems = _max_elems(chunk_bytes, precision)
        self.device = torch.device(device)
        self.center = data.mean(axis=0)
        self.x64 = torch.from_numpy(data - self.center).to(self.device)
        xsq = self.x64.square().sum(dim=1, keepdim=True)
        self.xa = torch.cat([-2.0 * self.x64, xsq], dim=1).to(self.dtype)  # [n, d + 1]

    @property
    def n(self) -> int:
        return self.x64.shape[0]

    def tiles(self, m: int) -> tuple[int, int]:
        """(query rows, data rows) per distance block, their product <= the block budget:
        ``min(chunk_bytes, 2048 x 8192 elements)`` (larger blocks fall out of cache)."""
        budget = min(self.max_elems, _BLOCK_ELEMS)
        preferred = min(_QUERY_TILE, math.isqrt(budget))  # square-ish when the budget is small
        tq = max(1, min(m, budget, max(preferred, budget // self.n)))
        tx = min(self.n, max(1, budget // tq))
        return tq, tx

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact 1-NN (distances, indices) of each query; ``self_index[i]`` is excluded for i."""
        m = queries.shape[0]
        q64 = torch.from_numpy(queries - self.center).to(self.device)
        selfs = None if self_index is None else torch.as_tensor(self_index, device=self.device)
        dist = np.empty(m, dtype=np.float64)
        arg = np.empty(m, dtype=np.int64)
        tq, tx = self.tiles(m)
        bounds = [*range(0, self.n, tx), self.n]
        buffer = torch.empty(tq * tx, dtype=self.dtype, device=self.device)
        for q0 in range(0, m, tq):
            q1 = min(m, q0 + tq)
            qa = torch.cat([q64[q0:q1], torch.ones_like(q64[q0:q1, :1])], dim=1).to(self.dtype)
            s = None if selfs is None else selfs[q0:q1]
            idx = self._tile_argmin(qa, s, bounds, buffer)
            diff = q64[q0:q1] - self.x64[idx]
            dist[q0:q1] = diff.square().sum(dim=1).sqrt().cpu().numpy()
            arg[q0:q1] = idx.cpu().numpy()
        return dist, arg

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
        queries_centred = torch.from_numpy(queries - self.center).to(self.device)
        selfs = None if self_index is None else torch.as_tensor(self_index, device=self.device)
        dist = np.empty((m, k), dtype=np.float64)
        arg = np.empty((m, k), dtype=np.int64)
        query_rows, data_rows = self.tiles(m)
        buffer = torch.empty(query_rows * data_rows, dtype=self.dtype, device=self.device)
        for q0 in range(0, m, query_rows):
            q1 = min(m, q0 + query_rows)
            tile = queries_centred[q0:q1]
            augmented = torch.cat([tile, torch.ones_like(tile[:, :1])], dim=1).to(self.dtype)
            own = None if selfs is None else selfs[q0:q1]
            best = torch.full((q1 - q0, k), math.inf, dtype=self.dtype, device=self.device)
            best_rows = torch.zeros((q1 - q0, k), dtype=torch.long, device=self.device)
            for x0 in range(0, self.n, data_rows):
                x1 = min(self.n, x0 + data_rows)
                block = self._block(augmented, own, x0, x1, buffer)
                values, rows = block.topk(min(k, x1 - x0), dim=1, largest=False, sorted=False)
                values = torch.cat([best, values], dim=1)
                rows = torch.cat([best_rows, rows + x0], dim=1)
                best, keep = values.topk(k, dim=1, largest=False, sorted=False)
                best_rows = rows.gather(1, keep)
            exact = (tile[:, None, :] - self.x64[best_rows]).square().sum(dim=2).sqrt()
            exact, order = exact.sort(dim=1, stable=True)
            dist[q0:q1] = exact.cpu().numpy()
            arg[q0:q1] = best_rows.gather(1, order).cpu().numpy()
        return dist, arg

    def _tile_argmin(
        self, qa: torch.Tensor, selfs: torch.Tensor | None, bounds: list[int], buffer: torch.Tensor
    ) -> torch.Tensor:
        """Index of each (augmented) query's nearest data row."""
        mq = qa.shape[0]
        best = torch.full((mq,), math.inf, dtype=self.dtype, device=self.device)
        best_block = torch.zeros(mq, dtype=torch.long, device=self.device)
        for b in range(len(bounds) - 1):
            low = self._block(qa, selfs, bounds[b], bounds[b + 1], buffer).amin(dim=1)
            better = low < best
            best = torch.where(better, low, best)
            best_block = torch.where(better, b, best_block)
        return self._argmin_in_blocks(qa, selfs, best_block, bounds, buffer)

    def _argmin_in_blocks(
        self,
        qa: torch.Tensor,
        selfs: torch.Tensor | None,
        best_block: torch.Tensor,
        bounds: list[int],
        buffer: torch.Tensor,
    ) -> torch.Tensor:
        """Arg-min of each query inside the data block that holds its minimum."""
        arg = torch.empty(qa.shape[0], dtype=torch.long, device=self.device)
        for b in torch.unique(best_block).tolist():
            rows = (best_block == b).nonzero().squeeze(1)
            sub_selfs = None if selfs is None else selfs[rows]
            block = self._block(qa[rows], sub_selfs, bounds[b], bounds[b + 1], buffer)
            arg[rows] = block.argmin(dim=1) + bounds[b]
        return arg

    def _block(
        self, qa: torch.Tensor, selfs: torch.Tensor | None, x0: int, x1: int, buffer: torch.Tensor
    ) -> torch.Tensor:
        """||x||^2 - 2 q.x for data rows [x0, x1), written into ``buffer``; self entries +inf."""
        block = buffer[: qa.shape[0] * (x1 - x0)].view(qa.shape[0], x1 - x0)
        torch.mm(qa, self.xa[x0:x1].T, out=block)
        if selfs is not None:
            _mask_self(block, selfs, x0, x1)
        return block


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


def _nearest_rows(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of each row's nearest centroid (float32 matrix products, 16384 rows at a time)."""
    csq = centroids.square().sum(dim=1)
    labels = torch.empty(x.shape[0], dtype=torch.long)
    for i in range(0, x.shape[0], 16384):
        labels[i : i + 16384] = torch.addmm(csq, x[i : i + 16384], centroids.T, alpha=-2).argmin(1)
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
    ``_KMEANS_ITERS`` Lloyd steps (a centroid that loses all its rows stays where it is)."""
    centroids = x[torch.randperm(x.shape[0], generator=gen)[:k]].clone()
    for _ in range(_KMEANS_ITERS):
        labels = _nearest_rows(x, centroids)
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
    sample = x[torch.randperm(n, generator=gen)[: _KMEANS_SAMPLE * max(1, math.isqrt(n_clusters))]]
    coarse = _kmeans(sample, min(sample.shape[0], max(1, math.isqrt(n_clusters))), gen)
    cells = _nearest_rows(x, coarse)
    order = torch.argsort(cells, stable=True)
    labels = torch.empty(n, dtype=torch.long)
    start = next_label = 0
    for size in torch.bincount(cells, minlength=coarse.shape[0]).tolist():
        rows = order[start : start + size]
        start += size
        if size == 0:
            continue
        k = max(1, min(size, round(n_clusters * size / n)))
        points = x[rows]
        fit_on = points[torch.randperm(size, generator=gen)[: _KMEANS_SAMPLE * k]]
        labels[rows] = _nearest_rows(points, _kmeans(fit_on, k, gen)) + next_label
        next_label += k
    return labels


class _ClusterEngine:
    """Exact 1-NN that searches only the clusters a triangle-inequality bound cannot rule out.

    Index: the (centred) data is split into C ~ ``_CLUSTERS_PER_ROOT_N`` sqrt(n) clusters by
    a cheap two-level k-means (``_cluster_labels``) and stored sorted by cluster, as rows
    [-2x, ||x||^2] like ``_TorchEngine``; each cluster keeps its mean c and its radius
    r = max ||x - c|| over its rows, both in float64.

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
    difference q - x, as in ``_TorchEngine``. Since u is the exact distance to a real row,
    every row nearer than u is searched and the result has the same guarantee as the
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
        if precision not in ("mixed", "float64"):
            raise ValueError(f"precision must be 'mixed' or 'float64', got '{precision}'")
        self.dtype = torch.float32 if precision == "mixed" else torch.float64
        self.block_elems = min(_max_elems(chunk_bytes, precision), _BLOCK_ELEMS)
        self.data = data
        self.center = data.mean(axis=0)
        n = data.shape[0]
        if n_clusters is None:
            n_clusters = round(_CLUSTERS_PER_ROOT_N * math.sqrt(n))
        self._inverse: torch.Tensor | None = None
        with _one_thread():
            labels = self._partition(n_clusters, torch.Generator().manual_seed(seed))
            self.sizes = torch.bincount(labels)
            self.starts = torch.cat([torch.zeros(1, dtype=torch.long), self.sizes.cumsum(0)])
            self.order = torch.argsort(labels, stable=True)  # sorted row -> data row
            self._build_rows(labels)

    @property
    def n(self) -> int:
        return self.order.shape[0]

    @property
    def n_clusters(self) -> int:
        return self.sizes.shape[0]

    def _centred_chunks(
        self, order: np.ndarray | None = None
    ) -> Iterable[tuple[int, torch.Tensor]]:
        """(i, float64 ``data[rows] - center``) for rows i, i + 1, ... of the data, or of
        ``data[order]``, 65536 rows at a time."""
        for i in range(0, self.data.shape[0], 65536):
            if order is None:
                rows = self.data[i : i + 65536]
            else:
                rows = np.take(self.data, order[i : i + 65536], axis=0)
            yield i, torch.from_numpy(rows - self.center)

    def _partition(self, n_clusters: int, gen: torch.Generator) -> torch.Tensor:
        """Cluster label per data row, 0 .. C - 1, every label used."""
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
            lab = sorted_labels[i : i + len(x)]
            radius.scatter_reduce_(0, lab, (x - centroids[lab]).square().sum(1).sqrt(), "amax")
            self.rows[i : i + len(x), :d] = -2.0 * x
            self.rows[i : i + len(x), d] = x.square().sum(1)
        csq = centroids.square().sum(1, keepdim=True)
        # [-2c, ||c||^2], padded with rows [0, +inf] (never nearest) to whole argmin groups
        self.group = 32 * math.ceil(math.sqrt(self.n_clusters) / 32)
        padded = self.group * math.ceil(self.n_clusters / self.group)
        self.centroid_rows = torch.zeros(padded, d + 1, dtype=self.dtype)
        self.centroid_rows[:, d] = math.inf
        self.centroid_rows[: self.n_clusters] = torch.cat([-2.0 * centroids, csq], dim=1)
        bound = [-2.0 * centroids, -2.0 * radius[:, None], csq - radius[:, None].square()]
        self.bound_rows = torch.cat(bound, dim=1).to(self.dtype)
        self.reach = float((csq.squeeze(1).sqrt() + radius).max())  # >= every ||x||

    def _self_rows(self, self_index: np.ndarray | None) -> torch.Tensor | None:
        """Sorted-row position of each query's excluded data row."""
        if self_index is None:
            return None
        if self._inverse is None:
            self._inverse = torch.empty_like(self.order)
            self._inverse[self.order] = torch.arange(self.n)
        return self._inverse[torch.as_tensor(self_index, dtype=torch.long)]

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact 1-NN (distances, indices) of each query; ``self_index[i]`` is excluded for i."""
        with _one_thread():
            q64, qa, own = self._prepare(queries, self_index)
            first, value, row = self._search_first(qa, own)
            u = self._upper_bound(q64, value, row)
            best, cluster = self._search_candidates(qa, q64, u, first, own)
            better = (best < value).nonzero().squeeze(1)
            if better.numel():
                row[better] = self._search_pairs(qa, better, cluster[better], own, True)[1]
            return self._distances(q64, row).numpy(), self.order[row].numpy()

    def searched_fraction(self, queries: np.ndarray, self_index: np.ndarray | None = None) -> float:
        """Fraction of the brute-force distance evaluations that ``search(queries)`` makes:
        a cheap estimate of its cost (it runs steps 1 and 2 of the search without step 2's
        products)."""
        if len(queries) == 0:
            return 0.0
        with _one_thread():
            q64, qa, own = self._prepare(queries, self_index)
            first, value, row = self._search_first(qa, own)
            evaluated = int(self.sizes[first].sum())
            u = self._upper_bound(q64, value, row)
            for c0, clusters, _ in self._candidate_blocks(q64, u, first):
                evaluated += int(self.sizes[clusters + c0].sum())
        return evaluated / (len(queries) * self.n)

    def _prepare(
        self, queries: np.ndarray, self_index: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Centred float64 queries, their rows [q, 1] in the working precision, and the
        sorted position of each query's excluded row (None without ``self_index``)."""
        q64 = torch.from_numpy(queries - self.center)
        qa = torch.cat([q64, torch.ones_like(q64[:, :1])], dim=1).to(self.dtype)
        return q64, qa, self._self_rows(self_index)

    def _search_first(
        self, qa: torch.Tensor, own: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step (1): each query's nearest centroid's cluster, and the least ||x||^2 - 2 q.x
        over it (+inf if it held only the excluded row) with that row's sorted position."""
        first = self._nearest_clusters(qa)
        value, row = self._search_pairs(qa, torch.arange(len(qa)), first, own, with_row=True)
        return first, value, row

    def _nearest_clusters(self, qa: torch.Tensor) -> torch.Tensor:
        """Each query's nearest centroid, by blocks of at most ``_PAIR_BUDGET`` distances."""
        nearest = torch.empty(qa.shape[0], dtype=torch.long)
        step = max(1, _PAIR_BUDGET // self.n_clusters)
        for i in range(0, qa.shape[0], step):
            block = torch.mm(qa[i : i + step], self.centroid_rows.T)
            nearest[i : i + step] = _grouped_argmin(block, self.group)
        return nearest

    def _upper_bound(
        self, q64: torch.Tensor, value: torch.Tensor, row: torch.Tensor
    ) -> torch.Tensor:
        """u per query: the float64 distance to the row found, or a bound on every row's
        distance, ||q|| + max(||c|| + r), where none was (its only row was excluded)."""
        found = torch.isfinite(value)
        far = q64.square().sum(1).sqrt() + self.reach
        return torch.where(found, self._distances(q64, torch.where(found, row, 0)), far)

    def _distances(self, q64: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        """Float64 distance from each query to its data row (by sorted position)."""
        x = torch.from_numpy(np.take(self.data, self.order[row].numpy(), axis=0) - self.center)
        return (q64 - x).square().sum(dim=1).sqrt()

    def _bound_margin(self, q64: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Slack above the rounding error of the bound test. The product sums d + 2 terms
        whose magnitudes total at most (||q|| + u + ||c|| + r)^2; rounding the inputs, the
        sum and the right-hand side costs at most (d + 6) unit roundoffs of that (doubled)."""
        unit = torch.finfo(self.dtype).eps / 2
        reach = q64.square().sum(1).sqrt() + u + self.reach
        return 2 * (q64.shape[1] + 6) * unit * reach.square()

    def _candidate_blocks(
        self, q64: torch.Tensor, u: torch.Tensor, first: torch.Tensor
    ) -> Iterable[tuple[int, torch.Tensor, torch.Tensor]]:
        """(c0, cluster - c0, query) pairs, grouped by cluster, of every cluster other than
        the query's first whose bound dc - r < u, by blocks of clusters [c0, c1)."""
        m = q64.shape[0]
        qb = torch.cat([q64, u[:, None], torch.ones_like(u[:, None])], dim=1).to(self.dtype)
        rhs = (u.square() - q64.square().sum(1) + self._bound_margin(q64, u)).to(self.dtype)
        by_first = torch.argsort(first)
        firsts = first[by_first]
        step = max(1, _PAIR_BUDGET // max(1, m))
        for c0 in range(0, self.n_clusters, step):
            c1 = min(self.n_clusters, c0 + step)
            candidate = torch.mm(self.bound_rows[c0:c1], qb.T) < rhs  # [c1 - c0, m]
            i0, i1 = torch.searchsorted(firsts, torch.tensor([c0, c1])).tolist()
            candidate[firsts[i0:i1] - c0, by_first[i0:i1]] = False
            clusters, queries = candidate.nonzero(as_tuple=True)
            if queries.numel():
                yield c0, clusters, queries

    def _search_candidates(
        self,
        qa: torch.Tensor,
        q64: torch.Tensor,
        u: torch.Tensor,
        first: torch.Tensor,
        own: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step (2): per query, the least ||x||^2 - 2 q.x over the candidate clusters (+inf
        if none) and the cluster that holds it."""
        best = torch.full((qa.shape[0],), math.inf, dtype=self.dtype)
        cluster = torch.zeros(qa.shape[0], dtype=torch.long)
        for c0, clusters, queries in self._candidate_blocks(q64, u, first):
            value = self._scan(qa, queries, clusters + c0, own, with_row=False)[0]
            best.scatter_reduce_(0, queries, value, "amin")
            won = value == best[queries]
            cluster[queries[won]] = clusters[won] + c0
        return best, cluster

    def _search_pairs(
        self,
        qa: torch.Tensor,
        queries: torch.Tensor,
        clusters: torch.Tensor,
        own: torch.Tensor | None,
        with_row: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``_scan`` for (query, cluster) pairs in any order; results in the given order."""
        by_cluster = torch.argsort(clusters, stable=True)
        value, row = self._scan(qa, queries[by_cluster], clusters[by_cluster], own, with_row)
        value = torch.empty_like(value).index_copy_(0, by_cluster, value)
        if row is not None:
            row = torch.empty_like(row).index_copy_(0, by_cluster, row)
        return value, row

    def _scan(
        self,
        qa: torch.Tensor,
        queries: torch.Tensor,
        clusters: torch.Tensor,
        own: torch.Tensor | None,
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
        ids, counts = torch.unique_consecutive(clusters, return_counts=True)
        hits, cols = self._own_hits(queries, clusters, own)
        hit_list = hits.tolist()
        starts = self.starts.tolist()
        sizes = self.sizes[ids]
        steps = (self.block_elems // sizes).clamp(min=1)  # query rows per product
        buffer = torch.empty(int((torch.minimum(steps, counts) * sizes).max()), dtype=self.dtype)
        p0 = 0
        for c, count, step in zip(ids.tolist(), counts.tolist(), steps.tolist(), strict=True):
            s, e = starts[c], starts[c + 1]
            for r0 in range(p0, p0 + count, step):
                r1 = min(p0 + count, r0 + step)
                block = buffer[: (r1 - r0) * (e - s)].view(r1 - r0, e - s)
                torch.mm(qa.index_select(0, queries[r0:r1]), self.rows[s:e].T, out=block)
                h0, h1 = bisect.bisect_left(hit_list, r0), bisect.bisect_left(hit_list, r1)
                if h1 > h0:
                    block[hits[h0:h1] - r0, cols[h0:h1] - s] = math.inf
                if with_row:
                    torch.min(block, 1, out=(value[r0:r1], row[r0:r1]))
                    row[r0:r1] += s
                else:
                    torch.amin(block, 1, out=value[r0:r1])
            p0 += count
        return value, row

    def _own_hits(
        self, queries: torch.Tensor, clusters: torch.Tensor, own: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions of the pairs whose cluster holds the query's excluded row, and that row."""
        if own is None:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        rows = own[queries]
        inside = (rows >= self.starts[clusters]) & (rows < self.starts[clusters + 1])
        hits = inside.nonzero().squeeze(1)
        return hits, rows[hits]


def _mask_self(block: torch.Tensor, selfs: torch.Tensor, x0: int, x1: int) -> None:
    """Set each query's own entry (by index, so duplicates still count) to +inf."""
    rows = ((selfs >= x0) & (selfs < x1)).nonzero().squeeze(1)
    if rows.numel():
        block[rows, selfs[rows] - x0] = math.inf


def _pick_non_self(found: np.ndarray, self_index: np.ndarray | None) -> np.ndarray:
    """From k = 2 neighbour indices per query, the first that is not the query itself
    (at least one of two is not; an exact duplicate of the query counts as a neighbour)."""
    if self_index is None:
        return found[:, 0].astype(np.int64)
    return np.where(found[:, 0] == self_index, found[:, 1], found[:, 0]).astype(np.int64)


class _KDTreeEngine:
    """Exact 1-NN with scipy's ``cKDTree`` in float64 (``workers`` = torch's thread count).

    Fast when the data has a low intrinsic dimension (logged trajectories), very slow when it
    has not; its memory (the tree, about the data's size again) is not bounded by
    ``chunk_bytes``.
    """

    def __init__(self, data: np.ndarray) -> None:
        from scipy.spatial import cKDTree

        self.center = data.mean(axis=0)
        self.x64 = data - self.center
        self.tree = cKDTree(self.x64)

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q64 = queries - self.center
        k = 1 if self_index is None else 2
        _, found = self.tree.query(q64, k=k, workers=torch.get_num_threads())
        arg = _pick_non_self(np.asarray(found).reshape(len(q64), k), self_index)
        dist = np.sqrt(((q64 - self.x64[arg]) ** 2).sum(axis=1))
        return dist, arg


class _AutoEngine:
    """Chooses, per search, among the exact engines: cluster, chunked torch and k-d tree.

    All are exact, so the choice changes only the time taken. With at least
    ``_CLUSTER_MIN_N`` data rows (and ``device`` on the CPU) it builds the cluster engine on
    the first search of at least ``_AUTO_MIN_QUERIES`` queries and uses it for this and
    later searches unless, on a seeded probe of ``_AUTO_PROBE`` queries, its bound leaves
    more than ``_CLUSTER_MAX_FRACTION`` / (torch threads) of the brute-force work. (It runs
    on one thread at ~1.7x brute force's cost per distance, so brute force wins on data of
    a high intrinsic dimension, the sooner the more threads it has.) That test counts
    distances, so this choice does not depend on timing. Otherwise, for a search of at
    least ``_AUTO_MIN_QUERIES`` queries it times the torch engine on a seeded probe of
    ``_AUTO_PROBE`` queries, then the tree (built once, on first need) on 16 of them and, if
    still competitive, on the whole probe, and runs the rest with the faster one. The tree
    is probed on few queries first because it can be orders of magnitude slower (data of a
    high intrinsic dimension, queries far from the data). Smaller searches use torch.
    Engines are built on first need and kept.
    """

    def __init__(self, data: np.ndarray, **torch_kwargs) -> None:
        self.data = data
        self.torch_kwargs = torch_kwargs
        self._torch: _TorchEngine | None = None
        self.cluster: _ClusterEngine | None = None
        self.kdtree: _KDTreeEngine | None = None
        self.last_choice = "torch"

    @property
    def torch_engine(self) -> _TorchEngine:
        if self._torch is None:
            self._torch = _TorchEngine(self.data, **self.torch_kwargs)
        return self._torch

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        m = queries.shape[0]
        if self._cluster_pays(queries, self_index):
            self.last_choice = "cluster"
            return self.cluster.search(queries, self_index)
        self.last_choice = "torch"
        if m >= _AUTO_MIN_QUERIES and self._tree_is_faster(queries, self_index):
            self.last_choice = "kdtree"
            return self.kdtree.search(queries, self_index)
        return self.torch_engine.search(queries, self_index)

    def _cluster_pays(self, queries: np.ndarray, self_index: np.ndarray | None) -> bool:
        device = torch.device(self.torch_kwargs.get("device", "cpu"))
        if self.data.shape[0] < _CLUSTER_MIN_N or device.type != "cpu":
            return False
        if self.cluster is None:
            if queries.shape[0] < _AUTO_MIN_QUERIES:
                return False
            kwargs = {k: v for k, v in self.torch_kwargs.items() if k != "device"}
            self.cluster = _ClusterEngine(self.data, **kwargs)
        probe = np.random.default_rng(0).choice(
            len(queries), min(len(queries), _AUTO_PROBE), replace=False
        )
        sub_self = None if self_index is None else self_index[probe]
        share = self.cluster.searched_fraction(queries[probe], sub_self)
        return share <= _CLUSTER_MAX_FRACTION / torch.get_num_threads()

    def _tree_is_faster(self, queries: np.ndarray, self_index: np.ndarray | None) -> bool:
        probe = np.random.default_rng(0).choice(len(queries), _AUTO_PROBE, replace=False)
        sub_self = None if self_index is None else self_index[probe]
        torch_cost = _seconds(self.torch_engine.search, queries[probe], sub_self) / _AUTO_PROBE
        if self.kdtree is None:
            self.kdtree = _KDTreeEngine(self.data)
        few = probe[:16]
        few_self = None if self_index is None else self_index[few]
        if _seconds(self.kdtree.search, queries[few], few_self) / few.size > torch_cost:
            return False
        return _seconds(self.kdtree.search, queries[probe], sub_self) / _AUTO_PROBE < torch_cost


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


class _FaissEngine:
    """Exact 1-NN with faiss ``IndexFlatL2`` (float32), winners recomputed in float64.

    faiss blocks its own work, so ``chunk_bytes`` does not bound its memory.
    """

    def __init__(self, data: np.ndarray) -> None:
        import faiss

        self.center = data.mean(axis=0)
        self.x64 = data - self.center
        self.index = faiss.IndexFlatL2(data.shape[1])
        self.index.add(np.ascontiguousarray(self.x64, dtype=np.float32))

    @property
    def n(self) -> int:
        return self.x64.shape[0]

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q64 = queries - self.center
        k = 1 if self_index is None else 2
        _, found = self.index.search(np.ascontiguousarray(q64, dtype=np.float32), k)
        arg = _pick_non_self(found, self_index)
        dist = np.sqrt(((q64 - self.x64[arg]) ** 2).sum(axis=1))
        return dist, arg


def _make_engine(
    data: np.ndarray,
    backend: Backend,
    chunk_bytes: int,
    precision: Precision,
    device: str | torch.device,
) -> _TorchEngine | _ClusterEngine | _KDTreeEngine | _AutoEngine | _FaissEngine:
    torch_kwargs = {"chunk_bytes": chunk_bytes, "precision": precision, "device": device}
    if backend == "torch":
        return _TorchEngine(data, **torch_kwargs)
    if backend == "cluster":
        if torch.device(device).type != "cpu":
            raise ValueError(f"backend 'cluster' runs on the CPU only, got device '{device}'")
        return _ClusterEngine(data, chunk_bytes=chunk_bytes, precision=precision)
    if backend == "kdtree":
        return _KDTreeEngine(data)
    if backend == "by-size":  # deterministic: no timing decides which engine runs
        cpu = torch.device(device).type == "cpu"
        by_size = "cluster" if cpu and data.shape[0] >= _CLUSTER_MIN_N else "torch"
        return _make_engine(data, by_size, chunk_bytes, precision, device)
    if backend == "auto":
        return _AutoEngine(data, **torch_kwargs)
    if backend == "faiss":
        if not _faiss_available():
            raise UserError("backend 'faiss' needs the faiss-cpu package (pip install faiss-cpu)")
        return _FaissEngine(data)
    raise ValueError(f"backend must be one of {BACKENDS}, got '{backend}'")


def _check_self_index(self_index: np.ndarray, n: int, m: int) -> np.ndarray:
    idx = np.asarray(self_index, dtype=np.int64)
    if idx.shape != (m,) or (m and (idx.min() < 0 or idx.max() >= n)):
        raise ValueError(f"self_index must hold {m} indices in [0, {n})")
    if n < 2:
        raise UserError("leave-one-out needs at least 2 data points")
    return idx


# --------------------------------------------------------------------------- public API


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
    and a float32 copy with an extra column plus bounded working sets (``_ClusterEngine``:
    about 210 MB of index and under 150 MB per search for 2,000,000 x 23 rows).

    Exactness: every returned value is the float64 distance to an actual data row, so it is
    never below the true 1-NN distance. Under ``"mixed"`` that row is chosen by a float32
    pass on centred data and can differ from the true nearest row only when two rows tie
    within float32 rounding, e = (d + 4) * 2^-24 * (R^2 + 2 |q| R) with R the largest
    centred data norm; the returned squared distance then exceeds the true one by at most
    2e. ``"float64"`` makes the pass in float64 (e with 2^-53; slower). The cluster backend
    gives the same guarantee: it skips only clusters that provably hold no row nearer than
    a row already found, then makes the same float32 pass over the rest.

    Backends, all exact: ``"torch"`` (the chunked engine above; ``device="cuda"`` runs it on
    a GPU), ``"cluster"`` (``_ClusterEngine``, CPU: the rows split into ~4 sqrt(n) k-means
    clusters, each query searching only the clusters that a triangle-inequality bound cannot
    rule out; on 2,000,000 logged (state, action) rows ~30x faster than ``"torch"``, and up
    to ~2x slower on isotropic noise, where the bound rules out nothing), ``"kdtree"``
    (scipy ``cKDTree`` in float64: much faster on data of a low intrinsic dimension such as
    logged trajectories, much slower on data that is not), ``"by-size"`` (the default:
    ``"cluster"`` from 50,000 rows on the CPU, else ``"torch"``; no timing is involved, so a
    rerun takes the same path), ``"auto"`` (``"cluster"`` from 50,000 rows when its bound
    prunes most of the work on a probe of the queries, else ``"torch"`` or ``"kdtree"``,
    whichever is faster on a timed probe; see ``_AutoEngine``), ``"faiss"``
    (``IndexFlatL2``; needs faiss-cpu). Only ``"torch"`` and ``"cluster"`` keep to
    ``chunk_bytes``.
    """
    x = _as_matrix(data, "data")
    q = _as_matrix(queries, "queries")
    if x.shape[0] == 0:
        raise UserError("data: has no rows; a nearest neighbour needs at least one")
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features, data has {x.shape[1]}")
    self_index = None
    if exclude_self:
        if q.shape[0] != x.shape[0]:
            raise ValueError("exclude_self=True needs the queries to be the data (same rows)")
        self_index = _check_self_index(np.arange(x.shape[0]), x.shape[0], q.shape[0])
    if q.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    engine = _make_engine(x, backend, chunk_bytes, precision, device)
    return engine.search(q, self_index)[0]


class _KappaRule:
    """The threshold rule shared by the detectors: a query is OOD when its ``distances``
    value exceeds kappa x ``ref_distance``. Subclasses define both, and ``state()``."""

    name = ""  # the feature space, as configs and records name it

    def distances(self, queries: np.ndarray | torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict:
        raise NotImplementedError

    @property
    def ref_distance(self) -> float:
        """The reference scale: the mean leave-one-out distance of the dataset's points."""
        return self.state()["ref_distance"]

    def is_ood(self, queries: np.ndarray | torch.Tensor, kappa: float = 3.0) -> np.ndarray:
        """Boolean [m]: distance > kappa * reference scale."""
        return self.distances(queries) > _check_kappa(kappa) * self.ref_distance

    def ood_rate(self, queries: np.ndarray | torch.Tensor, kappa: float = 3.0) -> float:
        """Fraction of queries flagged OOD at ``kappa`` (NaN for no queries)."""
        flags = self.is_ood(queries, kappa)
        return float(flags.mean()) if flags.size else math.nan

    def sweep(
        self, queries: np.ndarray | torch.Tensor, kappas: Iterable[float] = (1, 3, 5, 10)
    ) -> dict[float, float]:
        """OOD rate at each kappa, from one distance computation."""
        dist = self.distances(queries)
        ref = self.ref_distance
        return {
            float(k): float((dist > _check_kappa(k) * ref).mean()) if dist.size else math.nan
            for k in kappas
        }

    def rate_columns(
        self,
        queries: np.ndarray | torch.Tensor,
        kappa: float = 3.0,
        kappa_sweep: Iterable[float] = (1, 3, 5, 10),
    ) -> dict[str, float]:
        """Record columns from one search: ``ood_rate`` at ``kappa`` and ``ood_rate_k<k>``
        for each k of the sweep."""
        kappa_sweep = [float(k) for k in kappa_sweep]
        rates = self.sweep(queries, [float(kappa), *kappa_sweep])
        return {"ood_rate": rates[float(kappa)]} | {
            f"ood_rate_k{k:g}": rates[k] for k in kappa_sweep
        }


class OODDetector(_KappaRule):
    """Flags queries whose standardised 1-NN distance to a dataset exceeds kappa x its scale.

    The ``joint`` feature space: on MuJoCo data the features are whole (state, action) rows,
    on the bandit the actions alone (one dummy state). With many state features the state
    part dominates the distance (see ``StateConditionedDetector``).

    ``fit`` standardises the features by the dataset's mean and std (std floored at
    ``std_floor``) and sets the reference scale to the mean leave-one-out 1-NN distance of the
    dataset's points. Each point's distance is exact (against all other n - 1 points); when
    n > ``loo_sample`` the mean is taken over a seeded random subsample of ``loo_sample``
    points (drawn without replacement), which estimates the full mean without bias. The std
    is the population std (ddof=0). ``chunk_bytes``, ``backend``, ``precision`` and
    ``device`` configure the search as in ``nearest_neighbour_distance``.
    """

    name = "joint"

    def __init__(
        self,
        *,
        std_floor: float = 1e-6,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        backend: Backend = "by-size",
        precision: Precision = "mixed",
        device: str | torch.device = "cpu",
    ) -> None:
        if not std_floor > 0:
            raise ValueError(f"std_floor must be > 0, got {std_floor}")
        self.std_floor = float(std_floor)
        self._engine_args = (backend, int(chunk_bytes), precision, device)
        self._engine: (
            _TorchEngine | _ClusterEngine | _KDTreeEngine | _AutoEngine | _FaissEngine | None
        ) = None
        self._state: dict | None = None

    def fit(
        self, data: np.ndarray | torch.Tensor, *, loo_sample: int | None = 20000, seed: int = 0
    ) -> OODDetector:
        """Standardise by ``data`` [n, d] and set the reference scale; returns self."""
        x = _as_matrix(data, "data")
        n = x.shape[0]
        if n < 2:
            raise UserError(f"OOD detector: needs at least 2 data points, got {n}")
        _check_loo_sample(loo_sample)
        mean = x.mean(axis=0)
        std = np.maximum(x.std(axis=0), self.std_floor)
        z = (x - mean) / std
        self._engine = _make_engine(z, *self._engine_args)
        points = _loo_points(n, loo_sample, seed)
        loo = self._engine.search(z[points], _check_self_index(points, n, points.size))[0]
        ref = _reference_scale(loo)
        self._state = {
            "features": self.name,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "std_floor": self.std_floor,
            "ref_distance": ref,
            "n": n,
            "dim": x.shape[1],
            "loo_sample": loo_sample,
            "loo_points": int(points.size),
            "seed": seed,
            "backend": self._engine_args[0],
            "precision": self._engine_args[2],
        }
        return self

    @property
    def ref_distance(self) -> float:
        """The reference scale: mean leave-one-out 1-NN distance in standardised units."""
        return self.state()["ref_distance"]

    def distances(self, queries: np.ndarray | torch.Tensor) -> np.ndarray:
        """Exact 1-NN distance of each query [m, d] to the dataset, in standardised units."""
        state = self.state()
        q = _as_matrix(queries, "queries")
        if q.shape[1] != state["dim"]:
            raise ValueError(f"queries have {q.shape[1]} features, the detector {state['dim']}")
        if q.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        z = (q - np.asarray(state["mean"])) / np.asarray(state["std"])
        return self._engine.search(z)[0]

    def state(self) -> dict:
        """The fitted numbers for records: mean, std, ref_distance, n, dim, loo_sample, ..."""
        if self._state is None:
            raise RuntimeError("OODDetector: call fit(data) first")
        return dict(self._state)


ActionScale = Literal["std", "raw"]
ACTION_SCALES = ("std", "raw")
# k of the state-conditioned detector: chosen with benchmarks/bench_ood_calibration.py
# (--neighbours 5 10 20 50 100) by the rule stated in StateConditionedDetector.
DEFAULT_NEIGHBOURS = 50


class StateConditionedDetector(_KappaRule):
    """Flags an action that is far from every action the dataset took in similar states.

    Why: in the joint (state, action) space of HalfCheetah the 17 standardised state
    features outweigh the 6 action ones, so the joint detector flagged 0.55% of uniformly
    random actions at dataset states (issue 11). Here the state only chooses which data to
    compare against, and the distance is measured between actions alone.

    For a query (s, a): the dataset's ``neighbours`` (k) nearest states to s, in states
    standardised by the dataset's mean and std; the query's distance is the Euclidean
    distance from a to the nearest of those k states' actions. The reference scale is the
    same quantity for the dataset's own points left out one at a time (point i: the
    distance from its action to the actions of its k nearest *other* states), averaged over
    ``loo_sample`` seeded points as in ``OODDetector``; a query is OOD when its distance
    exceeds kappa times that mean, so kappa means what it means for the joint detector.
    The state's own novelty is not measured: a query far from every dataset state is
    judged against the actions of the nearest ones.

    Action scale (``action_scale``): ``"std"`` (default) divides each action coordinate by
    the dataset's action std (floored at ``std_floor``), as the joint detector does, so
    the two detectors weigh action coordinates alike and no environment's action units
    enter; ``"raw"`` keeps the env's units ([-1, 1] on MuJoCo). On the six generated
    datasets the two give rates within about 1 point of each other (their per-coordinate
    action stds differ by at most ~1.4x; ``bench_ood_calibration.py --action-scale raw``).

    k (``neighbours``): k = 1 compares with one sampled action of the nearest state, too
    few for a stochastic behaviour policy (the left-out distance is then large, and the
    threshold loose); a larger k sees more of the action distribution near s but a less
    local one. Rule used for the default: among k in {10, 20, 50, 100} that flag at most 2%
    of held-out dataset pairs on each of the six generated datasets, those within 1 point of
    the highest mean rate on random actions at dataset states; the smallest of them (the
    most local). Measured with 6,000 held-out rows (at 2,000 the 2% test is within sampling
    error, ~0.3 points): mean random rate 34.6 / 37.4 / 40.0 / 40.3% for k = 10 / 20 / 50 /
    100, worst held-out rate 1.9% at k = 50, so k = 50 (``benchmarks/bench_ood_calibration.py
    --detectors state_conditioned --neighbours 10 20 50 100 --held-out 6000 --no-episodes``).
    No k reaches 90% on random actions anywhere: see that benchmark for why.

    The paper gives no detector details beyond "1-NN, kappa = 3" (arXiv 2510.02695); this
    feature space is the toolkit's choice.

    Queries are (state, action) rows, as for the joint detector (``rate_columns(pairs)``
    takes the same pairs). Searches are exact k-NN over the standardised states with the
    chunked engine (``_TorchEngine.k_nearest``), in float64 by default so that the k
    states found are the exact k nearest (float32 swapped ~0.07% of k-th neighbours on
    generated Walker2d): about 2.5 s per 2,000 queries against 200,000 states on one core,
    whether or not the queries lie on the data (a k-d tree took 1.6-3.6 s on data-like
    queries, 4-11 s on states one std off the data).
    """

    name = "state_conditioned"

    def __init__(
        self,
        *,
        neighbours: int = DEFAULT_NEIGHBOURS,
        action_scale: ActionScale = "std",
        std_floor: float = 1e-6,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        precision: Precision = "float64",
        device: str | torch.device = "cpu",
    ) -> None:
        if int(neighbours) != neighbours or neighbours < 1:
            raise ValueError(f"neighbours must be a positive integer, got {neighbours}")
        if action_scale not in ACTION_SCALES:
            raise ValueError(f"action_scale must be one of {ACTION_SCALES}, got '{action_scale}'")
        if not std_floor > 0:
            raise ValueError(f"std_floor must be > 0, got {std_floor}")
        self.neighbours = int(neighbours)
        self.action_scale = action_scale
        self.std_floor = float(std_floor)
        self._engine_kwargs = {"chunk_bytes": int(chunk_bytes), "precision": precision}
        self._engine_kwargs["device"] = device
        self._engine: _TorchEngine | None = None
        self._actions: np.ndarray | None = None  # [n, action_dim], divided by the scale
        self._state: dict | None = None

    def fit(
        self,
        states: np.ndarray | torch.Tensor,
        actions: np.ndarray | torch.Tensor,
        *,
        loo_sample: int | None = 20000,
        seed: int = 0,
    ) -> StateConditionedDetector:
        """Index ``states`` [n, ds] with their ``actions`` [n, da] and set the reference
        scale; returns self. Needs more than ``neighbours`` rows."""
        s = _as_matrix(states, "states")
        a = _as_matrix(actions, "actions")
        n, k = s.shape[0], self.neighbours
        if a.shape[0] != n:
            raise ValueError(f"states have {n} rows, actions {a.shape[0]}")
        if n <= k:
            raise UserError(
                f"state-conditioned OOD detector: needs more than k = {k} data points, got {n}"
            )
        _check_loo_sample(loo_sample)
        state_mean = s.mean(axis=0)
        state_std = np.maximum(s.std(axis=0), self.std_floor)
        if self.action_scale == "std":
            scale = np.maximum(a.std(axis=0), self.std_floor)
        else:
            scale = np.ones(a.shape[1])
        z = (s - state_mean) / state_std
        self._engine = _TorchEngine(z, **self._engine_kwargs)
        self._actions = a / scale
        points = _loo_points(n, loo_sample, seed)
        near = self._engine.k_nearest(z[points], k, _check_self_index(points, n, points.size))[1]
        ref = _reference_scale(self._nearest_action_distance(self._actions[points], near))
        self._state = {
            "features": self.name,
            "neighbours": k,
            "action_scale": self.action_scale,
            "state_mean": state_mean.tolist(),
            "state_std": state_std.tolist(),
            "action_divisor": scale.tolist(),
            "std_floor": self.std_floor,
            "ref_distance": ref,
            "n": n,
            "state_dim": s.shape[1],
            "action_dim": a.shape[1],
            "loo_sample": loo_sample,
            "loo_points": int(points.size),
            "seed": seed,
            "precision": self._engine_kwargs["precision"],
        }
        return self

    @property
    def ref_distance(self) -> float:
        """The reference scale: the mean leave-one-out action distance (action units of
        ``action_scale``)."""
        return self.state()["ref_distance"]

    def distances(self, queries: np.ndarray | torch.Tensor) -> np.ndarray:
        """Distance of each query's action to the nearest action of the dataset's k
        nearest states to its state; queries are rows [state, action] (ds + da columns)."""
        state = self.state()
        q = _as_matrix(queries, "queries")
        ds, da = state["state_dim"], state["action_dim"]
        if q.shape[1] != ds + da:
            raise ValueError(
                f"queries have {q.shape[1]} columns, the detector takes {ds} state + {da} "
                f"action columns"
            )
        if q.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        z = (q[:, :ds] - np.asarray(state["state_mean"])) / np.asarray(state["state_std"])
        near = self._engine.k_nearest(z, self.neighbours)[1]
        return self._nearest_action_distance(q[:, ds:] / np.asarray(state["action_divisor"]), near)

    def _nearest_action_distance(self, actions: np.ndarray, near: np.ndarray) -> np.ndarray:
        """Per row i: min over j of ||actions[i] - dataset action near[i, j]|| (scaled)."""
        out = np.empty(actions.shape[0], dtype=np.float64)
        step = max(1, 2**22 // (near.shape[1] * actions.shape[1]))  # ~32 MB of differences
        for i in range(0, actions.shape[0], step):
            diff = actions[i : i + step, None, :] - self._actions[near[i : i + step]]
            out[i : i + step] = np.sqrt(np.square(diff).sum(axis=2)).min(axis=1)
        return out

    def state(self) -> dict:
        """The fitted numbers for records: neighbours, scales, ref_distance, n, ..."""
        if self._state is None:
            raise RuntimeError("StateConditionedDetector: call fit(states, actions) first")
        return dict(self._state)


FEATURE_SPACES = ("joint", "state_conditioned")
DEFAULT_FEATURES = "state_conditioned"  # see benchmarks/bench_ood_calibration.py


def fit_detector(
    features: str,
    states: np.ndarray | torch.Tensor,
    actions: np.ndarray | torch.Tensor,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    action_scale: ActionScale = "std",
    loo_sample: int | None = 20000,
    seed: int = 0,
) -> OODDetector | StateConditionedDetector:
    """The fitted detector of a feature space (``FEATURE_SPACES``) for a dataset's
    (state, action) pairs; its queries are rows [state, action] either way. ``neighbours``
    and ``action_scale`` configure the state-conditioned detector (the joint one ignores
    them)."""
    if features == "joint":
        return OODDetector().fit(np.hstack([states, actions]), loo_sample=loo_sample, seed=seed)
    if features == "state_conditioned":
        detector = StateConditionedDetector(neighbours=neighbours, action_scale=action_scale)
        return detector.fit(states, actions, loo_sample=loo_sample, seed=seed)
    raise UserError(f"OOD features must be one of {list(FEATURE_SPACES)}, got '{features}'")


def _loo_points(n: int, loo_sample: int | None, seed: int) -> np.ndarray:
    """All indices when n <= loo_sample (or None), else a seeded subsample, sorted."""
    if loo_sample is None or n <= loo_sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=loo_sample, replace=False))


def _check_loo_sample(loo_sample: int | None) -> None:
    if loo_sample is not None and loo_sample < 1:
        raise ValueError(f"loo_sample must be >= 1 or None, got {loo_sample}")


def _reference_scale(loo: np.ndarray) -> float:
    """Mean of the leave-one-out distances; an error when it is 0 (no scale to set kappa
    against)."""
    ref = float(loo.mean())
    if not ref > 0:
        raise UserError(
            "OOD detector: the mean leave-one-out distance is 0 (every sampled point has an "
            "exact duplicate), so there is no scale to set kappa against"
        )
    return ref


def _check_kappa(kappa: float) -> float:
    kappa = float(kappa)
    if not (kappa > 0 and math.isfinite(kappa)):
        raise ValueError(f"kappa must be a positive finite number, got {kappa}")
    return kappa
