"""Bandit update cost: one seed stack (5 seeds) of each method at a bandit profile's settings.

Cases (``--cases``), alternated block by block per method (each figure is the median block, so
background load hits both alike); each names what it puts back of an earlier version:

- ``sampled``: the stack never tells the losses that its batch is all terminal, so they
  sample target actions (a whole no-grad diffusion / flow chain for RADAC, RAFMAC,
  Diffusion-QL, ORAAC-Diff., ORAAC-Flow) and run the target critics, only to multiply them
  by zero; ``ramac.agents.common.no_bootstrap`` now checks the batch once, outside vmap.
- ``unfused``: the samplers call the whole network at every chain step (time MLP, concat,
  first layer on [x, t, s]) and use PyTorch's fused Mish kernel; now
  ``TimeConditionedMLP.along_chain`` computes the time and state shares of the first layer
  once per chain, and ``ramac.nets.mlp.Mish`` composes softplus and tanh (faster on CPU).
- ``n-targets``: the IQN losses of terminal rows compare each quantile with N equal target
  samples y_j = r; ``ramac.agents.common.terminal_targets`` now passes r once (same loss).
- ``wide-iqn``: the IQN critics of RADAC, RAFMAC and CODAC at the bandit's earlier sizes
  (embedding 64, 64 cosines, head 128; RAFMAC's embedding and head 128) instead of
  O-RAAC's (32, 32, 32), the size every bandit IQN critic now has. A model change, not
  an implementation one: its figure is what the smaller critics save.
- ``now``: the code as it is.

It also prints what the profile's training then costs: the sum over methods of (seconds per
stack update x steps), and that sum spread over ``--workers`` processes (training only; the
profile's wall time adds evaluation, start-up and the busiest worker's imbalance).

    python benchmarks/bench_bandit.py [--profile quick] [--algos radac rafmac] [--cases unfused now]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ramac.agents.codac as codac  # noqa: E402
import ramac.agents.common as common  # noqa: E402
import ramac.seed_parallel as seed_parallel  # noqa: E402
from pipeline.bandit import SUITE_FILE, BanditSuite  # noqa: E402
from pipeline.runs import profile_overrides  # noqa: E402
from ramac.data.dataset import BatchSampler  # noqa: E402
from ramac.envs.bandit import make_dataset  # noqa: E402
from ramac.nets.common import TimeConditionedMLP  # noqa: E402
from ramac.nets.mlp import Mish  # noqa: E402
from ramac.runtime import keep_freed_memory  # noqa: E402
from ramac.seed_parallel import SeedStack  # noqa: E402
from ramac.train import build_agent  # noqa: E402


def _sampled_targets(all_terminal: bool = False):
    """The stack's old behaviour: never tell the losses that the batch is all terminal."""
    return common.seed_batched(False)


def _fused_mish(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.mish(x)


def _whole_network_per_step(net: TimeConditionedMLP, times: torch.Tensor, obs: torch.Tensor):
    return lambda x, k: net(x, times[k].expand(x.shape[0]), obs)


def _n_equal_targets(rewards: torch.Tensor, n_quantiles: int, tau_weighting: str):
    return rewards.expand(-1, n_quantiles)


def undone(name: str) -> tuple[str, ...]:
    """What case ``name`` puts back: itself and every case after it but ``now``."""
    return CASES[CASES.index(name) : -1]


def use_case(name: str) -> None:
    """Put back the code paths case ``name`` undoes."""
    undo = undone(name)
    seed_parallel.seed_batched = _sampled_targets if "sampled" in undo else common.seed_batched
    unfused = "unfused" in undo
    Mish.forward = _fused_mish if unfused else COMPOSED_MISH
    TimeConditionedMLP.along_chain = _whole_network_per_step if unfused else SPLIT_CHAIN
    targets = _n_equal_targets if "n-targets" in undo else ONE_TARGET
    common.terminal_targets = codac.terminal_targets = targets


def case_overrides(name: str, algo: str) -> dict:
    """The earlier bandit critic sizes for the cases that undo ``wide-iqn``."""
    if "wide-iqn" not in undone(name) or algo not in WIDE_IQN:
        return {}
    return WIDE_IQN[algo]


COMPOSED_MISH, SPLIT_CHAIN = Mish.forward, TimeConditionedMLP.along_chain
ONE_TARGET = common.terminal_targets
WIDE_IQN = {
    "radac": {"embed_dim": 64, "n_cos": 64, "head_hidden": 128},
    "codac": {"n_cos": 64, "head_hidden": 128},
    "rafmac": {"embed_dim": 128, "head_hidden": 128},
}
CASES = ("sampled", "unfused", "n-targets", "wide-iqn", "now")


def stack_update(algo: str, dataset, n_seeds: int, overrides: dict):
    """One update of a fresh seed stack of ``algo`` (seeds 0..n_seeds-1), as a call."""
    agents = [build_agent(algo, dataset, seed, overrides) for seed in range(n_seeds)]
    batch = agents[0].config.batch_size
    samplers = [BatchSampler(dataset, batch, seed=seed) for seed in range(n_seeds)]
    stack = SeedStack(agents)
    return lambda: stack.update([sampler.sample() for sampler in samplers])


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
    parser.add_argument(
        "--cases", nargs="+", choices=CASES, default=["unfused", "now"], help="compared cases"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # as each worker of the pool runs
    keep_freed_memory()

    suite = BanditSuite.read(SUITE_FILE)
    budget = suite.profile(args.profile, SUITE_FILE)
    n_seeds = args.seeds or budget.seeds
    dataset, _ = make_dataset(suite.bandit, suite.data_seed)
    print(
        f"bandit, {args.profile} profile: {budget.steps} updates, {n_seeds} seeds per stack, "
        f"1 thread; ms per stack update (median of {args.rounds} blocks of {args.iters})"
    )
    cases = args.cases
    print(f"  {'method':14s}" + "".join(f"{name:>10s}" for name in cases) + "  first/last")
    totals = dict.fromkeys(cases, 0.0)
    for algo in args.algos or suite.algos:
        overrides = profile_overrides(algo, budget.overrides)
        updates = {
            name: stack_update(algo, dataset, n_seeds, overrides | case_overrides(name, algo))
            for name in cases
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name in cases:
                use_case(name)
                updates[name]()  # warm-up of this case's path
                times[name].append(time_blocks(updates[name], args.iters))
        use_case("now")
        ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
        for name in cases:
            totals[name] += ms[name] / 1000 * budget.steps
        row = "".join(f"{ms[name]:10.1f}" for name in cases)
        print(f"  {algo:14s}{row}  {ms[cases[0]] / ms[cases[-1]]:9.2f}x")
    for name, seconds in totals.items():
        print(
            f"  training, {name}: {seconds / 60:5.1f} min in one process, "
            f"{seconds / 60 / args.workers:5.1f} min over {args.workers} workers"
        )


if __name__ == "__main__":
    main()
