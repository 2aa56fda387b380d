"""Train the dynamics ensemble on a generated HalfCheetah dataset; print its held-out
one-step error against the no-change baseline, and the training time.

    python benchmarks/bench_dynamics.py                      # full: 200000 rows, paper settings
    python benchmarks/bench_dynamics.py --size 3000 --max-epochs 5 --min-epochs 0   # a check

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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ramac.data.generate import ensure_dataset, load_generated  # noqa: E402
from ramac.models.dynamics import DynamicsConfig, train_dynamics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200_000, help="rows of the generated data")
    parser.add_argument("--max-epochs", type=int, default=DynamicsConfig.max_epochs)
    parser.add_argument("--min-epochs", type=int, default=DynamicsConfig.min_epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    ensure_dataset("halfcheetah", "medium-expert", args.size, seed=0)
    data = load_generated("halfcheetah", "medium-expert", size=args.size, seed=0)
    config = dataclasses.replace(
        DynamicsConfig(),
        max_epochs=args.max_epochs,
        min_epochs=min(args.min_epochs, args.max_epochs),
    )
    start = time.perf_counter()
    model, info = train_dynamics(data, args.seed, config, args.device, log=print)
    seconds = time.perf_counter() - start
    # The held-out rows: the same split train_dynamics drew from the seed.
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))
    hold = perm[: info["n_holdout"]]
    obs = torch.as_tensor(data.observations[hold.numpy()], device=args.device)
    act = torch.as_tensor(data.actions[hold.numpy()], device=args.device)
    nxt = torch.as_tensor(data.next_observations[hold.numpy()], device=args.device)
    with torch.no_grad():
        mean, _ = model.predict(obs, act)
    pred = obs + mean[model.elites, :, :-1].mean(dim=0)
    model_mse = (pred - nxt).pow(2).mean().item()
    no_change = (obs - nxt).pow(2).mean().item()
    print(f"rows {len(data)} (held out {info['n_holdout']}), epochs {info['epochs']}")
    print(f"held-out one-step MSE of s': model {model_mse:.4f}, no change {no_change:.4f}")
    print(f"  ratio {model_mse / no_change:.3f}; standardised MSE per member {info['heldout_mse']}")
    print(f"training time {seconds:.1f} s")


if __name__ == "__main__":
    main()
