"""Train the dynamics ensemble on a generated HalfCheetah dataset; print its held-out
one-step error against the no-change baseline, and the training time.

    python benchmarks/bench_dynamics.py                      # full: 200000 rows, paper settings
    python benchmarks/bench_dynamics.py --size 3000 --max-epochs 5 --min-epochs 0   # a check
    python benchmarks/bench_dynamics.py --max-epochs 150 --min-epochs 0 --hazard ramac-v2-generated

The error is measured on the model's own held-out split (20%), in data units, for the
next state: the elites' mean prediction s + mu against s' (a random elite per row is what a
rollout uses; their mean is the figure to compare), and "no change" predicts s' = s.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ramac.data.generate import ensure_dataset, load_generated  # noqa: E402
from ramac.envs.hazards import load_hazard, relabel  # noqa: E402
from ramac.models.dynamics import DynamicsConfig, train_dynamics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200_000, help="rows of the generated data")
    parser.add_argument("--max-epochs", type=int, default=DynamicsConfig.max_epochs)
    parser.add_argument("--min-epochs", type=int, default=DynamicsConfig.min_epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--hazard",
        metavar="SPEC_SET",
        help="relabel with this hazard spec set first (the suite's: ramac-v2-generated) and "
        "print what the model sees of it",
    )
    args = parser.parse_args()
    ensure_dataset("halfcheetah", "medium-expert", args.size, seed=0)
    data = load_generated("halfcheetah", "medium-expert", size=args.size, seed=0)
    if args.hazard:
        data = relabel(data, load_hazard(args.hazard, "halfcheetah-medium-expert"), seed=0)
    config = dataclasses.replace(
        DynamicsConfig(),
        max_epochs=args.max_epochs,
        min_epochs=min(args.min_epochs, args.max_epochs),
    )
    start = time.perf_counter()
    _, info = train_dynamics(data, args.seed, config, args.device, log=print)
    seconds = time.perf_counter() - start
    model, no_change = info["heldout_state_mse"], info["no_change_state_mse"]
    print(f"rows {len(data)} (held out {info['n_holdout']}), epochs {info['epochs']}")
    print(f"held-out one-step MSE of s': model {model:.4f}, no change {no_change:.4f}")
    print(f"  ratio {model / no_change:.4f}; reward MSE {info['heldout_reward_mse']:.4f}")
    print(f"  standardised MSE per member {[round(e, 5) for e in info['heldout_mse']]}")
    if info["hazard"]:
        print(f"hazard (held-out risky rows): {info['hazard']}")
    print(f"training time {seconds:.1f} s")


if __name__ == "__main__":
    main()
