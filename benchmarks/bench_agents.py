"""Update throughput of several agents in one run: CQL and CODAC against RADAC by default.

Each agent is built at its own halfcheetah-medium-expert-v2 config (obs 17, act 6; all
three train on batches of 256) and updated on the same random batches. The agents
alternate block by block and each figure is the median block, so the drift of a shared
machine's speed hits every agent alike and the ratios hold up (see bench_train.py).

    python benchmarks/bench_agents.py [--algos cql codac radac] [--iters 5] [--rounds 5]
"""

from __future__ import annotations

import argparse

import torch
from bench_train import ACT, BATCH, OBS, interleaved_its

from ramac.agents.base import make_agent, make_config
from ramac.runtime import keep_freed_memory

DATASET = "halfcheetah-medium-expert-v2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=["cql", "codac", "radac"])
    parser.add_argument("--iters", type=int, default=5, help="updates per block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per agent")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--default-allocator", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.default_allocator:
        keep_freed_memory()
    for algo in args.algos:  # the shared batches are BATCH rows: say so if a config differs
        size = make_config(algo, DATASET).batch_size
        if size != BATCH:
            print(f"note: {algo}'s config trains on batches of {size}, timed here on {BATCH}")
    torch.manual_seed(0)
    updates = {algo: make_agent(algo, OBS, ACT, 1.0, dataset=DATASET).update for algo in args.algos}
    rates = interleaved_its(updates, args.iters, args.rounds)
    allocator = "default allocator" if args.default_allocator else "freed memory kept"
    print(
        f"update throughput, {DATASET} configs, batch {BATCH}, {args.threads} threads, "
        f"{allocator}; median of {args.rounds} alternating blocks of {args.iters} updates"
    )
    reference = args.algos[-1]
    for algo, rate in rates.items():
        print(
            f"  {algo:8s} {rate:6.2f} it/s  {1000 / rate:7.1f} ms/update  "
            f"{rate / rates[reference]:5.2f}x {reference}"
        )


if __name__ == "__main__":
    main()
