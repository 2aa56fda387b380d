"""Time hazard relabelling of a D4RL-sized dataset (2,000,000 transitions; target < 5 s).

    python benchmarks/bench_relabel.py [--rows 2000000] [--repeats 3]

Relabelling is vectorised over the stored next observations, so its cost is a column read,
one uniform per row and a few array operations; dataset arrays are shared, not copied.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ramac.data.dataset import OfflineDataset, Provenance  # noqa: E402
from ramac.envs.hazards import load_hazard, relabel  # noqa: E402


def synthetic(rows: int, obs_dim: int = 17, act_dim: int = 6) -> OfflineDataset:
    """Random float32 arrays of HalfCheetah's sizes (velocity ~ N(0, 6) so the hazard fires)."""
    rng = np.random.default_rng(0)
    next_obs = rng.standard_normal((rows, obs_dim), dtype=np.float32)
    next_obs[:, 8] *= 6.0
    return OfflineDataset(
        observations=rng.standard_normal((rows, obs_dim), dtype=np.float32),
        actions=rng.uniform(-1, 1, (rows, act_dim)).astype(np.float32),
        rewards=rng.standard_normal(rows, dtype=np.float32),
        next_observations=next_obs,
        terminals=np.zeros(rows, bool),
        timeouts=np.zeros(rows, bool),
        provenance=Provenance(source="synthetic", id=f"bench-{rows}"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = synthetic(args.rows)
    for spec_set, dataset in [
        ("ramac-v2", "halfcheetah-medium-expert"),
        ("ramac-v2", "walker2d-medium-expert"),
        ("oraac-v0", "halfcheetah-medium"),
    ]:
        spec = load_hazard(spec_set, dataset)
        times = []
        for seed in range(args.repeats):
            start = time.perf_counter()
            out = relabel(data, spec, seed=seed)
            times.append(time.perf_counter() - start)
        print(
            f"relabel {args.rows:,} rows with {spec.name}: best {min(times):.3f} s, "
            f"worst {max(times):.3f} s (risky {out.risky.mean():.3f})"
        )


if __name__ == "__main__":
    main()
