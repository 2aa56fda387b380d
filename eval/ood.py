"""The 1-nearest-neighbour detector of out-of-distribution actions.

RAMAC reports the fraction of evaluation actions that are "OOD" under a nearest-neighbour
detector with kappa = 3, but does not publish its feature space, scaling or threshold rule
(ref: paper-tables.md §1.2, §7). The choices made here, all recorded by ``state()``:

- features (2-D bandit actions, or (state, action) pairs of MuJoCo rollouts) are standardised
  with the dataset's per-feature mean and standard deviation (std floored at ``std_floor``);
- the reference scale is the dataset's mean leave-one-out 1-NN distance in those units;
- a query is OOD when its 1-NN distance to the dataset exceeds ``kappa`` times that scale.

Distances are exact (brute force over chunked matrix products by default, or an exact k-d
tree; see ``nearest_neighbour_distance`` for the backends and the precise guarantee), so the
rates do not depend on an approximate index.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch

from ramac.errors import UserError

Backend = Literal["torch", "kdtree", "auto", "faiss"]
BACKENDS = ("torch", "kdtree", "auto", "faiss")
Precision = Literal["mixed", "float64"]

DEFAULT_CHUNK_BYTES = 256 * 2**20
_QUERY_TILE = 2048  # preferred rows per query tile; more when the data is small
_BLOCK_ELEMS = 2048 * 8192  # distance-block size that measured fastest (64 MiB in float32)
_AUTO_MIN_QUERIES = 4096  # backend="auto" probes only searches at least this large ...
_AUTO_PROBE = 256  # ... on this many queries


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
    """Chooses, per search, the faster of the chunked torch engine and the k-d tree.

    Both are exact, so the choice changes only the time taken. For a search of at least
    ``_AUTO_MIN_QUERIES`` queries it times the torch engine on a seeded probe of
    ``_AUTO_PROBE`` queries, then the tree (built once, on first need) on 16 of them and, if
    still competitive, on the whole probe, and runs the rest with the faster one. The tree
    is probed on few queries first because it can be orders of magnitude slower (data of a
    high intrinsic dimension, queries far from the data). Smaller searches use torch.
    """

    def __init__(self, data: np.ndarray, **torch_kwargs) -> None:
        self.data = data
        self.torch = _TorchEngine(data, **torch_kwargs)
        self.kdtree: _KDTreeEngine | None = None
        self.last_choice = "torch"

    def search(
        self, queries: np.ndarray, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        m = queries.shape[0]
        self.last_choice = "torch"
        if m >= _AUTO_MIN_QUERIES and self._tree_is_faster(queries, self_index):
            self.last_choice = "kdtree"
            return self.kdtree.search(queries, self_index)
        return self.torch.search(queries, self_index)

    def _tree_is_faster(self, queries: np.ndarray, self_index: np.ndarray | None) -> bool:
        probe = np.random.default_rng(0).choice(len(queries), _AUTO_PROBE, replace=False)
        sub_self = None if self_index is None else self_index[probe]
        torch_cost = _seconds(self.torch.search, queries[probe], sub_self) / _AUTO_PROBE
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
) -> _TorchEngine | _KDTreeEngine | _AutoEngine | _FaissEngine:
    torch_kwargs = {"chunk_bytes": chunk_bytes, "precision": precision, "device": device}
    if backend == "torch":
        return _TorchEngine(data, **torch_kwargs)
    if backend == "kdtree":
        return _KDTreeEngine(data)
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
    backend: Backend = "torch",
    precision: Precision = "mixed",
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Exact Euclidean distance from each query [m, d] to its nearest row of ``data`` [n, d].

    ``exclude_self=True`` is leave-one-out: queries must be the data itself (m == n) and
    query i ignores data row i by index, so an exact duplicate of i still counts (distance 0).

    Memory: the torch backend's distance block holds at most ``chunk_bytes`` bytes (it uses
    min(chunk_bytes, 2048 x 8192 elements): float32 under ``precision="mixed"``, float64
    under ``"float64"``); beyond it the engine keeps the data (float64 plus one working copy
    with an extra column) and O(m) results.

    Exactness: every returned value is the float64 distance to an actual data row, so it is
    never below the true 1-NN distance. Under ``"mixed"`` that row is chosen by a float32
    pass on centred data and can differ from the true nearest row only when two rows tie
    within float32 rounding, e = (d + 4) * 2^-24 * (R^2 + 2 |q| R) with R the largest
    centred data norm; the returned squared distance then exceeds the true one by at most
    2e. ``"float64"`` makes the pass in float64 (e with 2^-53; slower).

    Backends, all exact: ``"torch"`` (the chunked engine above; ``device="cuda"`` runs it on
    a GPU), ``"kdtree"`` (scipy ``cKDTree`` in float64: much faster on data of a low
    intrinsic dimension such as logged trajectories, much slower on data that is not),
    ``"auto"`` (times both on a probe of the queries and uses the faster), ``"faiss"``
    (``IndexFlatL2``; needs faiss-cpu). Only ``"torch"`` keeps to ``chunk_bytes``.
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


class OODDetector:
    """Flags queries whose standardised 1-NN distance to a dataset exceeds kappa x its scale.

    ``fit`` standardises the features by the dataset's mean and std (std floored at
    ``std_floor``) and sets the reference scale to the mean leave-one-out 1-NN distance of the
    dataset's points. Each point's distance is exact (against all other n - 1 points); when
    n > ``loo_sample`` the mean is taken over a seeded random subsample of ``loo_sample``
    points (drawn without replacement), which estimates the full mean without bias. The std
    is the population std (ddof=0). ``chunk_bytes``, ``backend``, ``precision`` and
    ``device`` configure the search as in ``nearest_neighbour_distance``.
    """

    def __init__(
        self,
        *,
        std_floor: float = 1e-6,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        backend: Backend = "torch",
        precision: Precision = "mixed",
        device: str | torch.device = "cpu",
    ) -> None:
        if not std_floor > 0:
            raise ValueError(f"std_floor must be > 0, got {std_floor}")
        self.std_floor = float(std_floor)
        self._engine_args = (backend, int(chunk_bytes), precision, device)
        self._engine: _TorchEngine | _FaissEngine | None = None
        self._state: dict | None = None

    def fit(
        self, data: np.ndarray | torch.Tensor, *, loo_sample: int | None = 20000, seed: int = 0
    ) -> OODDetector:
        """Standardise by ``data`` [n, d] and set the reference scale; returns self."""
        x = _as_matrix(data, "data")
        n = x.shape[0]
        if n < 2:
            raise UserError(f"OOD detector: needs at least 2 data points, got {n}")
        if loo_sample is not None and loo_sample < 1:
            raise ValueError(f"loo_sample must be >= 1 or None, got {loo_sample}")
        mean = x.mean(axis=0)
        std = np.maximum(x.std(axis=0), self.std_floor)
        z = (x - mean) / std
        self._engine = _make_engine(z, *self._engine_args)
        points = _loo_points(n, loo_sample, seed)
        loo = self._engine.search(z[points], _check_self_index(points, n, points.size))[0]
        ref = float(loo.mean())
        if not ref > 0:
            raise UserError(
                "OOD detector: the mean leave-one-out 1-NN distance is 0 (every sampled point "
                "has an exact duplicate), so there is no scale to set kappa against"
            )
        self._state = {
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

    def state(self) -> dict:
        """The fitted numbers for records: mean, std, ref_distance, n, dim, loo_sample, ..."""
        if self._state is None:
            raise RuntimeError("OODDetector: call fit(data) first")
        return dict(self._state)


def _loo_points(n: int, loo_sample: int | None, seed: int) -> np.ndarray:
    """All indices when n <= loo_sample (or None), else a seeded subsample, sorted."""
    if loo_sample is None or n <= loo_sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=loo_sample, replace=False))


def _check_kappa(kappa: float) -> float:
    kappa = float(kappa)
    if not (kappa > 0 and math.isfinite(kappa)):
        raise ValueError(f"kappa must be a positive finite number, got {kappa}")
    return kappa
