"""Bandit update cost: one seed stack (5 seeds) of each method at a bandit profile's settings.

Cases, alternated block by block per method (each figure is the median block, so background
load hits both alike):

- ``sampled``: the seed stack as before: under vmap it cannot look at ``not_done``, so it
  samples target actions (a whole no-grad diffusion / flow chain for RADAC, RAFMAC,
  Diffusion-QL, ORAAC-Diff., ORAAC-Flow) and runs the target critics, only to multiply
  them by zero: every bandit transition is terminal.
- ``shortcut``: the stack checks its batch once, outside vmap, and skips both
  (``ramac.agents.common.no_bootstrap``); the TD target is r either way.

It also prints what the profile's training then costs: the sum over methods of (seconds per
stack update x steps), and that sum spread over ``--workers`` processes (training only; the
profile's wall time adds evaluation, start-up and the busiest worker's imbalance).

    python benchmarks/bench_bandit.py [--profile quick] [--algos radac rafmac] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ramac.agents.common as common  # noqa: E402
import ramac.seed_parallel as seed_parallel  # noqa: E402
from pipeline.bandit import SUITE_FILE, SUITE_KEYS, bandit_spec  # noqa: E402
from pipeline.runs import load_suite, profile_budget, profile_overrides  # noqa: E402
from ramac.data.dataset import BatchSampler  # noqa: E402
from ramac.envs.bandit import make_dataset  # noqa: E402
from ramac.runtime import keep_freed_memory  # noqa: E402
from ramac.seed_parallel import SeedStack  # noqa: E402
from ramac.train import build_agent  # noqa: E402


def _sampled_targets(all_terminal: bool = False):
    """The stack's old behaviour: never tell the losses that the batch is all terminal."""
    return common.seed_batched(False)


CASES = {"sampled": _sampled_targets, "shortcut": common.seed_batched}


def time_blocks(update, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        update()
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--algos", nargs="*", default=None)
    parser.add_argument("--seeds", type=int, default=None, help="default: the profile's")
    parser.add_argument("--iters", type=int, default=4, help="updates per block")
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks per case")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as each worker of the pool runs
    keep_freed_memory()

    suite = load_suite(SUITE_FILE, SUITE_KEYS)
    budget = profile_budget(suite, args.profile, SUITE_FILE)
    n_seeds = args.seeds or budget["seeds"]
    dataset, _ = make_dataset(bandit_spec(suite), suite["data_seed"])
    print(
        f"bandit, {args.profile} profile: {budget['steps']} updates, {n_seeds} seeds per stack, "
        f"1 thread; ms per stack update (median of {args.rounds} blocks of {args.iters})"
    )
    print(f"  {'method':14s} {'sampled':>9s} {'shortcut':>9s} {'ratio':>6s}")
    totals = dict.fromkeys(CASES, 0.0)
    for algo in args.algos or suite["algos"]:
        overrides = profile_overrides(algo, budget.get("overrides") or {})
        agents = [build_agent(algo, dataset, seed, overrides) for seed in range(n_seeds)]
        batch = agents[0].config.batch_size
        samplers = [BatchSampler(dataset, batch, seed=seed) for seed in range(n_seeds)]
        stack = SeedStack(agents)

        def update(stack=stack, samplers=samplers) -> None:
            stack.update([sampler.sample() for sampler in samplers])

        times: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(args.rounds):
            for name, context in CASES.items():
                seed_parallel.seed_batched = context
                update()  # warm-up of this case's path
                times[name].append(time_blocks(update, args.iters))
        seed_parallel.seed_batched = common.seed_batched
        ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
        for name in CASES:
            totals[name] += ms[name] / 1000 * budget["steps"]
        print(
            f"  {algo:14s} {ms['sampled']:9.1f} {ms['shortcut']:9.1f} "
            f"{ms['sampled'] / ms['shortcut']:5.2f}x"
        )
    for name, seconds in totals.items():
        print(
            f"  training, {name}: {seconds / 60:5.1f} min in one process, "
            f"{seconds / 60 / args.workers:5.1f} min over {args.workers} workers"
        )


if __name__ == "__main__":
    main()
