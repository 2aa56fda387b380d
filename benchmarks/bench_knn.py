"""Benchmark of the exact 1-NN engine of ``eval.knn`` at the size of a D4RL medium-expert
OOD check: 2,000,000 (state, action) rows x 23 features (HalfCheetah: 17 + 6), 50,000 queries.

It times the engines named in ``--backends`` (those of ``eval.knn``: ``torch``, the chunked
brute force, and ``cluster``, the exact search pruned by cluster bounds; those kept as
baselines in ``knn_baselines.py``: ``auto``, which picks among cluster, torch and a k-d tree,
and ``faiss``), all checked against the first on the queries they share, and, in the same
run, exact baselines: scipy ``cdist`` one query at a time (the naive approach) and scipy
``cKDTree`` (``workers`` = threads), each on a subset of the queries and extrapolated
linearly in the number of queries (cost is linear in it).
``--engine-queries`` does the same for the engines when the full run would take too long,
except those named in ``--full-backends`` (default: cluster), which always run all queries.
Data sets: ``trajectories`` (a smooth low-dimensional latent process mapped to 23 features
plus noise, a stand-in for logged MuJoCo data) and ``gaussian`` (isotropic noise).

    python benchmarks/bench_knn.py                                  # full size
    python benchmarks/bench_knn.py --backends cluster torch --engine-queries 2000
                                        # full size: cluster measured, torch extrapolated
    python benchmarks/bench_knn.py --n 200000 --queries 5000 --data gaussian
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from knn_baselines import AutoEngine, FaissEngine  # noqa: E402

from eval.knn import BruteForceEngine, ClusterEngine  # noqa: E402


def trajectories(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Episodes of 1000 steps: a periodic gait (phase, frequency, amplitude per episode) and a
    slow 3-D AR(1) drift, mapped to ``dim`` features linearly and through tanh, plus noise."""
    steps, episodes = 1000, math.ceil(n / 1000)
    t = np.arange(steps)
    phase = rng.uniform(0, 2 * np.pi, (episodes, 1)) + rng.uniform(0.1, 0.3, (episodes, 1)) * t
    amp = rng.uniform(0.5, 1.5, (episodes, 1, 1))
    gait = amp * np.stack([f(k * phase) for k in (1, 2, 3) for f in (np.sin, np.cos)], axis=-1)
    drift = np.zeros((episodes, steps, 3))
    for i in range(1, steps):
        drift[:, i] = 0.99 * drift[:, i - 1] + 0.1 * rng.normal(size=(episodes, 3))
    latent = np.concatenate([gait, drift], axis=-1).reshape(-1, 9)[:n]
    w1, w2 = rng.normal(size=(9, dim)), rng.normal(size=(9, dim))
    x = latent @ w1 + np.tanh(latent @ w2) + 0.02 * rng.normal(size=(n, dim))
    return x.astype(np.float32)


def make_data(kind: str, n: int, m: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(data [n, dim], queries [m, dim]) float32; 10% of trajectory queries are pushed off
    the data by noise, as out-of-distribution actions would be."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return (
            rng.normal(size=(n, dim)).astype(np.float32),
            rng.normal(size=(m, dim)).astype(np.float32),
        )
    rows = trajectories(n + m, dim, rng)  # queries: later episodes of the same process
    data, queries = rows[:n], rows[n:]
    off = rng.random(m) < 0.1
    queries[off] += 0.5 * data.std(axis=0) * rng.normal(size=(int(off.sum()), dim))
    return data, queries.astype(np.float32)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def cdist_baseline(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import cdist

    x = data.astype(np.float64)
    return np.array([cdist(q[None], x).min() for q in queries.astype(np.float64)])


def ckdtree_baseline(data: np.ndarray, queries: np.ndarray, workers: int):
    from scipy.spatial import cKDTree

    tree, build = timed(cKDTree, data.astype(np.float64))
    (dist, _), query = timed(tree.query, queries.astype(np.float64), k=1, workers=workers)
    return dist, build, query


def run_engines(data, queries, args, total_queries: int) -> dict[str, float]:
    """Seconds per engine (set-up + search, the search extrapolated to ``total_queries`` when
    timed on a subset); checks the distances against the first engine's on shared queries."""
    classes = {
        "torch": BruteForceEngine,
        "cluster": ClusterEngine,
        "auto": AutoEngine,
        "faiss": FaissEngine,
    }
    results, distances = {}, {}
    for name in args.backends:
        full = name in args.full_backends or not args.engine_queries
        sub = queries[: len(queries) if full else args.engine_queries].astype(np.float64)
        scale = total_queries / len(sub)
        engine, setup = timed(classes[name], data.astype(np.float64))
        (dist, _), search = timed(engine.search, sub)
        distances[name] = dist
        results[name] = setup + search * scale
        note = f" on {len(sub):,} queries x{scale:.1f}" if scale > 1 else ""
        print(
            f"  engine {name}: set-up {setup:5.1f} s + search {search:7.1f} s{note} "
            f"-> {results[name]:7.1f} s" + _engine_note(name, engine, sub)
        )
        del engine
    first = next(iter(distances))
    for name, dist in list(distances.items())[1:]:
        k = min(len(dist), len(distances[first]))
        ref = distances[first][:k]
        diff = np.abs(dist[:k] - ref) / ref.clip(1e-12)
        print(f"  {name} vs {first} on {k:,} queries: max relative difference {diff.max():.1e}")
    return results


def _engine_note(name: str, engine, queries: np.ndarray) -> str:
    if name == "auto":
        return f" (chose {engine.last_choice})"
    if name == "cluster":
        share = engine.searched_fraction(queries[:2000])
        return f" ({engine.n_clusters:,} clusters; searches {share:.2%} of brute force)"
    return ""


def run_baselines(data, queries, args, total_queries: int) -> dict[str, float]:
    sub = queries[: args.baseline_queries]
    scale = total_queries / len(sub)
    results = {}
    if "cdist" in args.baselines:
        _, secs = timed(cdist_baseline, data, sub)
        results["cdist"] = secs * scale
        print(f"  scipy cdist, one query at a time: {secs:.1f} s on {len(sub)} queries", end="")
        print(f" -> {secs * scale:.1f} s")
    if "ckdtree" in args.baselines:
        _, build, query = ckdtree_baseline(data, sub, args.threads)
        results["ckdtree"] = build + query * scale
        print(
            f"  scipy cKDTree: build {build:.1f} s + query {query:.1f} s on {len(sub)} "
            f"queries -> {build + query * scale:.1f} s"
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000, help="data rows")
    parser.add_argument("--queries", type=int, default=50_000, help="query rows")
    parser.add_argument("--dim", type=int, default=23, help="features per row")
    parser.add_argument(
        "--data", nargs="+", default=["trajectories"], choices=["trajectories", "gaussian"]
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["torch"],
        choices=["torch", "cluster", "auto", "faiss"],
        help="engines to time: eval.knn's torch and cluster, the baselines auto (picks among "
        "cluster, torch and k-d tree) and faiss",
    )
    parser.add_argument(
        "--full-backends",
        nargs="*",
        default=["cluster"],
        help="engines timed on all queries even with --engine-queries",
    )
    parser.add_argument(
        "--engine-queries",
        type=int,
        default=0,
        help="time the engines on this many queries and extrapolate (0: all)",
    )
    parser.add_argument("--baseline-queries", type=int, default=200)
    parser.add_argument(
        "--baselines", nargs="*", default=["cdist", "ckdtree"], choices=["cdist", "ckdtree"]
    )
    parser.add_argument("--threads", type=int, default=2, help="torch / scipy threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"exact 1-NN: {args.n:,} x {args.dim} float32 data, {args.queries:,} queries, "
        f"{args.threads} threads, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}"
    )
    for kind in args.data:
        data, queries = make_data(kind, args.n, args.queries, args.dim, args.seed)
        print(f"data = {kind}")
        engines = run_engines(data, queries, args, args.queries)
        baselines = run_baselines(data, queries, args, args.queries)
        for name, secs in engines.items():
            others = {**baselines, **{e: s for e, s in engines.items() if e != name}}
            ratios = ", ".join(f"{b} / {name} = {s / secs:.1f}x" for b, s in others.items())
            target = " (target <= 60 s)" if (args.n, args.queries) == (2_000_000, 50_000) else ""
            print(f"  {name}: {secs:.1f} s for all {args.queries:,} queries{target}; {ratios}")


if __name__ == "__main__":
    main()
