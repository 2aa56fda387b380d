"""Learning sanity check on a one-state 2-D bandit: CVaR-seeking RADAC leaves the risky
point, risk-neutral Diffusion-QL goes to it.

Half the data is at a safe point paying +1, half at a risky point paying +4 w.p. 0.8 and
-8 w.p. 0.2: mean 1.6 (the risk-neutral choice), CVaR_0.1 = -8 (the CVaR choice is the
safe point). The risky mean is above the safe one on purpose, so that the two kinds of
agent must disagree. Tiny networks and a few hundred updates: the checks are on which
side of the action square the policy ends up, not on exact positions (with data at two
points only, the critics extrapolate and both agents overshoot beyond their point).
"""

import torch

from ramac.agents import make_agent
from ramac.data.dataset import Batch

SAFE, RISKY = torch.tensor([-0.5, 0.0]), torch.tensor([0.5, 0.0])


def bandit_batch(n: int, g: torch.Generator) -> Batch:
    risky = torch.rand(n, 1, generator=g) < 0.5
    actions = torch.where(risky, RISKY, SAFE) + 0.05 * torch.randn(n, 2, generator=g)
    penalty = torch.rand(n, 1, generator=g) < 0.2
    rewards = torch.where(risky, torch.where(penalty, -8.0, 4.0), torch.tensor(1.0))
    zeros = torch.zeros(n, 1)
    return Batch(zeros, actions.clamp(-1, 1), rewards, zeros, zeros)  # terminal: not_done 0


def safe_side_fraction(name: str, overrides: dict, steps: int) -> float:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    agent = make_agent(name, 1, 2, 1.0, overrides=overrides)
    for _ in range(steps):
        agent.update(bandit_batch(overrides["batch_size"], g))
    actions = agent.act(torch.zeros(500, 1), generator=torch.Generator().manual_seed(1))
    return (actions[:, 0] < 0).float().mean().item()


SMALL = dict(batch_size=64, actor_hidden=32, critic_hidden=32, n_steps=5)


def test_radac_moves_to_the_safe_point():
    overrides = dict(
        SMALL,
        embed_dim=32,
        head_hidden=32,
        n_cos=16,
        n_quantiles=16,
        lr_actor=1e-3,
        lr_critic=3e-3,
        eta=0.1,
        ema_start=0,
        critic_activation="leaky_relu",  # the ReLU critic often misses the -8 tail this fast
    )
    assert safe_side_fraction("radac", overrides, steps=250) > 0.8


def test_diffusion_ql_moves_to_the_risky_point():
    overrides = dict(SMALL, critic_layers=2, lr=1e-3, act_candidates=1, ema_start=0)
    assert safe_side_fraction("diffusion_ql", overrides, steps=150) < 0.2
