"""``--compile`` (issue 24, item 4): the update's losses through ``torch.compile`` train the
same numbers as eager, up to rounding (the random draws stay eager's: ``fallback_random``).
Compiling takes minutes on a busy CPU, hence ``slow``; measuring it is another matter."""

import pytest
import torch
from tiny_data import tiny_dataset

from ramac.agents import make_agent
from ramac.data.dataset import BatchSampler
from ramac.seed_parallel import SeedStack

TINY = dict(batch_size=16, critic_hidden=8, embed_dim=8, head_hidden=8, n_quantiles=4)
TINY |= dict(actor_hidden=8, n_steps=2, ema_every=1, ema_start=2)


def losses(compiled: bool, seeds: int | None, updates: int = 4) -> list[float]:
    """The logged values of ``updates`` RADAC updates: one agent (``seeds`` None) or a
    stack, flattened in order."""
    torch.manual_seed(0)
    agents = [make_agent("radac", 3, 2, 1.0, overrides=TINY) for _ in range(seeds or 1)]
    samplers = [BatchSampler(tiny_dataset(), 16, seed=k) for k in range(len(agents))]
    update = agents[0] if seeds is None else SeedStack(agents)
    if compiled:
        update.compile_losses()
    torch.manual_seed(1)
    rows = []
    for _ in range(updates):
        batches = [s.sample() for s in samplers]
        update.train_step(batches[0] if seeds is None else batches, samplers[0].all_terminal)
        logged = update.logged()
        for row in [logged] if seeds is None else logged:
            rows += [row[name] for name in sorted(row)]
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [None, 2], ids=["agent", "stack"])
def test_compiled_updates_train_the_same_losses(seeds):
    eager, compiled = losses(False, seeds), losses(True, seeds)
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-6)
