"""Do the bandit's behaviour models learn the data? BC alone at a bandit profile's budget.

Trains the diffusion actor of the BC agent's bandit config (``diffusion``) and the flow
actor of RAFMAC's (``flow``) by behaviour cloning alone, one run per seed, and prints per
seed the share of 1,000 samples on the modes (within 3 std of the centre or of the ring,
``ramac.envs.bandit.mode_fractions``) and how many of 12 ring angle bins hold >= 3% of the
ring samples. The lr follows the config: the BC agent's ``lr_decay_steps`` (scaled to the
run, as the quick profile does) unless ``--no-decay``; RAFMAC's actor has a constant lr.

    python scripts/bandit_behaviour.py diffusion flow [--steps 3000] [--batch 128]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ramac.agents.base import make_config  # noqa: E402
from ramac.agents.common import make_actor  # noqa: E402
from ramac.data.dataset import BatchSampler  # noqa: E402
from ramac.envs.bandit import (  # noqa: E402
    BanditSpec,
    make_dataset,
    mode_fractions,
    ring_bins_covered,
)

SPEC = BanditSpec()
MODELS = {"diffusion": ("bc", "lr"), "flow": ("rafmac", "lr_actor")}
PAPER_STEPS = 20_000  # the bandit's paper profile (configs/suites/bandit.yaml)


def fit(model: str, steps: int, batch: int, seed: int, decay: bool) -> tuple[float, int]:
    """On-mode share and covered ring bins of 1,000 samples after ``steps`` BC updates."""
    algo, lr_key = MODELS[model]
    config = make_config(algo, "bandit", schedule_scale=steps / PAPER_STEPS)
    lr = getattr(config, lr_key)
    decay_steps = getattr(config, "lr_decay_steps", 0) if decay else 0
    dataset = make_dataset(SPEC, 0)[0]
    torch.manual_seed(seed)
    actor = make_actor(model, 1, 2, 1.0, config)
    optimizer = torch.optim.Adam(actor.parameters(), lr=lr)
    sampler = BatchSampler(dataset, batch, seed=seed)
    for step in range(steps):
        if decay_steps:  # Agent.schedule_learning_rates' cosine
            factor = 0.5 * (1.0 + math.cos(math.pi * min(step, decay_steps) / decay_steps))
            optimizer.param_groups[0]["lr"] = lr * factor
        b = sampler.sample()
        loss = actor.loss(b.actions, b.obs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        generator = torch.Generator().manual_seed(10_000 + seed)
        actions = actor.sample(torch.zeros(1000, 1), generator).numpy()
    return 1.0 - mode_fractions(actions, SPEC)["between_frac"], ring_bins_covered(actions, SPEC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=3000, help="the quick profile's")
    parser.add_argument("--batch", type=int, default=128, help="the quick profile's")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-decay", action="store_true", help="constant lr")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for model in args.models:
        results = [
            fit(model, args.steps, args.batch, seed, not args.no_decay)
            for seed in range(args.seeds)
        ]
        shares = " ".join(f"{share:.1%}/{bins}" for share, bins in results)
        low = min(share for share, _ in results)
        print(f"{model}: on the modes / ring bins by seed: {shares}; lowest {low:.1%}", flush=True)


if __name__ == "__main__":
    main()
