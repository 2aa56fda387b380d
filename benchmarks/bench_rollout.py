"""Evaluation throughput: N episodes stepped together vs one episode at a time.

The policy is a RADAC-sized diffusion actor (T = 5, 3 x 256) with random weights, so the
cost per policy call is realistic; both ways roll the same seeds out.

    python benchmarks/bench_rollout.py [--task halfcheetah] [--episodes 50] [--horizon 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from eval.rollout import run_episodes
from ramac.data.behaviour import ENV_IDS
from ramac.envs.mujoco import make_env
from ramac.nets.diffusion import DiffusionActor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="halfcheetah", choices=sorted(ENV_IDS))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=1000)
    parser.add_argument("--sequential-episodes", type=int, default=5, help="timed, then scaled")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    env = make_env(args.task, None, 0, args.horizon)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    actor = DiffusionActor(obs_dim, act_dim).eval()

    @torch.no_grad()
    def policy(obs: np.ndarray) -> np.ndarray:
        return actor.sample(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    seeds = list(range(args.episodes))
    start = time.perf_counter()
    run_episodes(policy, args.task, None, seeds, args.horizon)
    batched = time.perf_counter() - start

    start = time.perf_counter()
    for seed in seeds[: args.sequential_episodes]:
        run_episodes(policy, args.task, None, [seed], args.horizon)
    sequential = (time.perf_counter() - start) * args.episodes / args.sequential_episodes
    print(f"{args.episodes} episodes x {args.horizon} steps of {args.task}, {args.threads} threads")
    print(f"  one at a time (from {args.sequential_episodes} timed): {sequential:7.1f} s")
    print(
        f"  stepped together:                 {batched:7.1f} s   ratio {sequential / batched:.1f}x"
    )


if __name__ == "__main__":
    main()
