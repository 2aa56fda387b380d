"""RAFMAC's risk weight must not drown BC in the policy that is evaluated.

A one-state problem whose critic prefers the action corner (reward 100 * a_0, so Q spans
about +-100 like a clipped D4RL critic) and whose data sits at the origin (std 0.1). With
RAFMAC's configured weight (RADAC's eta on the raw CVaR term) the Euler policy stays on
the data; with the public code's weight (eta 1000 on a normalised term), which there
trained only an unused student, the same policy saturates at the corner. The second case
shows the check can fail.
"""

import torch

from ramac.agents import make_agent
from ramac.data.dataset import Batch

TINY = dict(
    batch_size=64,
    actor_hidden=32,
    critic_hidden=32,
    embed_dim=16,
    head_hidden=32,
    n_cos=16,
    n_quantiles=8,
    n_steps=5,
    ema_start=0,
)


def corner_batch(n: int, g: torch.Generator) -> Batch:
    actions = (0.1 * torch.randn(n, 2, generator=g)).clamp(-1, 1)
    rewards = 100.0 * actions[:, :1]
    zeros = torch.zeros(n, 1)
    return Batch(zeros, actions, rewards, zeros, zeros)  # terminal: not_done 0


def saturated_share(overrides: dict, steps: int = 300) -> float:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    agent = make_agent("rafmac", 1, 2, 1.0, "halfcheetah-medium-expert-v2", TINY | overrides)
    for _ in range(steps):
        agent.update(corner_batch(TINY["batch_size"], g))
    actions = agent.act(torch.zeros(1000, 1), generator=torch.Generator().manual_seed(1))
    return (actions.abs() >= 0.99).float().mean().item()


def test_configured_weight_keeps_the_policy_on_the_data():
    assert saturated_share({}) < 0.05


def test_public_weight_drowns_bc():
    assert saturated_share({"eta": 1000.0, "normalize_q": True}) > 0.5


def test_public_variant_trains_only_its_student_with_the_q_term():
    """rafmac_public: the Q term's gradient reaches the student, never the Euler policy."""

    def after_updates(eta: float) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        agent = make_agent("rafmac_public", 1, 2, 1.0, overrides=TINY | {"eta": eta})
        for _ in range(3):
            agent.update(corner_batch(TINY["batch_size"], g))
        return {"actor": agent.actor.state_dict(), "student": agent.student.state_dict()}

    with_q, without_q = after_updates(1000.0), after_updates(0.0)
    for name, value in with_q["actor"].items():
        assert torch.equal(value, without_q["actor"][name]), name
    assert any(
        not torch.equal(value, without_q["student"][name])
        for name, value in with_q["student"].items()
    )
