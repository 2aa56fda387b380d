"""RAFMAC's risk weight on generated HalfCheetah medium-expert: return and saturated actions.

Trains RAFMAC (3 seeds, one seed stack) at the quick profile's budget with a given risk
weight, rolls each seed out on the evaluation protocol and reports its mean return and
the share of action coordinates at |a| >= 0.99 at 5,000 dataset states (the data's share
is printed too). docs/fidelity.md lists the figures this produced:

    python scripts/rafmac_risk_weight.py --eta 0.02             # the default (RADAC's)
    python scripts/rafmac_risk_weight.py --eta 0
    python scripts/rafmac_risk_weight.py --eta 1000 --normalize-q  # the public code's weight
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.suite_run import horizon_steps, rollout_agent  # noqa: E402
from pipeline.suite import load_dataset, make_plan  # noqa: E402
from ramac.train import load_trained, train_seeds  # noqa: E402

SATURATED = 0.99


def saturated_share(actions: np.ndarray) -> float:
    return float((np.abs(actions) >= SATURATED).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eta", type=float, required=True, help="risk weight")
    parser.add_argument("--normalize-q", action="store_true", help="normalise the risk term")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/rafmac-risk-weight"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    plan = make_plan(
        "quick", algos=["rafmac"], datasets=["halfcheetah-medium-expert"], seeds=args.seeds
    )
    dataset = load_dataset(plan.data[0])
    jobs = plan.jobs
    overrides = dict(jobs[0].overrides, eta=args.eta, normalize_q=args.normalize_q)
    tag = f"eta{args.eta:g}" + ("-normalised" if args.normalize_q else "")
    dirs = [args.out / tag / f"seed{job.seed}" for job in jobs]
    train_seeds("rafmac", dataset, dirs, [job.settings for job in jobs], overrides)
    states = dataset.observations[
        np.random.default_rng(0).choice(len(dataset.observations), 5000, replace=False)
    ]
    print(f"data: {saturated_share(dataset.actions):.1%} of action coordinates saturated")
    horizon = horizon_steps("paper", "halfcheetah")
    for job, run_dir in zip(jobs, dirs, strict=True):
        agent, _ = load_trained("rafmac", dataset, run_dir, overrides, job.schedule_scale)
        actions = agent.act(states, torch.Generator().manual_seed(0)).numpy()
        episodes, _ = rollout_agent(agent, job, horizon)
        print(
            f"{tag} seed {job.seed}: mean return {episodes['return'].mean():.1f}, "
            f"saturated {saturated_share(actions):.1%}"
        )


if __name__ == "__main__":
    main()
