"""Seed-parallel throughput: K seeds stacked in one update vs K separate agents, one process.

Same config as bench_train.py (RADAC, halfcheetah-medium-expert: N = 32, batch 256).
"Sequential" updates K ordinary agents one after the other, as K runs in a row would;
"stacked" is one ramac.seed_parallel.SeedStack of the same K seeds. The two alternate
block by block, and each figure is the median block, so background load hits both alike.

    python benchmarks/bench_seed_parallel.py [--seeds 5] [--algo radac] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_train import ACT, OBS, random_batch

from ramac.agents.base import make_agent
from ramac.runtime import keep_freed_memory
from ramac.seed_parallel import SeedStack

DATASET = "halfcheetah-medium-expert-v2"


def seconds_per_round(update, rounds: int, iters: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iters):
            update()
        times.append((time.perf_counter() - start) / iters)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--algo", default="radac")
    parser.add_argument("--iters", type=int, default=3, help="updates per block")
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks per case")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--default-allocator", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.default_allocator:
        keep_freed_memory()

    def agents():
        return [make_agent(args.algo, OBS, ACT, 1.0, dataset=DATASET) for _ in range(args.seeds)]

    separate, stack = agents(), SeedStack(agents())
    batches = [random_batch() for _ in range(args.seeds)]

    def sequential() -> None:
        for agent, batch in zip(separate, batches, strict=True):
            agent.update(batch)

    def stacked() -> None:
        stack.update(batches)

    cases = {"sequential": sequential, "stacked": stacked}
    for update in cases.values():
        update()  # warm-up
    times = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, update in cases.items():
            times[name] += seconds_per_round(update, 1, args.iters)
    rate = {name: args.seeds / statistics.median(t) for name, t in times.items()}
    allocator = "default allocator" if args.default_allocator else "freed memory kept"
    print(f"{args.algo}, {args.seeds} seeds, {DATASET} config, {args.threads} threads, {allocator}")
    print(f"  {args.seeds} sequential agents: {rate['sequential']:6.2f} seed-updates/s")
    print(
        f"  one seed stack:        {rate['stacked']:6.2f} seed-updates/s   "
        f"ratio {rate['stacked'] / rate['sequential']:.2f}x"
    )


if __name__ == "__main__":
    main()
