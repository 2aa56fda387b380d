"""Shared agent pieces: RADAC's risk term, the eta schedule, EMA, per-critic clipping, the
distributional critic update."""

import pytest
import torch
from torch import nn

from ramac.agents import make_agent
from ramac.agents.common import (
    clip_grad_norm_per_member,
    ema_tick,
    eta_at,
    grad_step,
    iqn_critic_loss,
)
from ramac.data.dataset import Batch
from ramac.nets.iqn import IQNEnsemble


class LevelCritic(nn.Module):
    """A stand-in critic whose quantile function is the level itself: Z(s, a; tau) = tau.

    The second member is 1 higher, so the ensemble minimum is the first one.
    """

    n_critics = 2

    def forward(self, obs, actions, taus):
        z = taus.expand(obs.shape[0], -1)
        return torch.stack([z, z + 1.0])


@pytest.mark.parametrize(
    "risk, param, expected",
    [("cvar", 0.1, 0.05), ("cvar", 0.25, 0.125), ("neutral", None, 0.5)],
)
def test_radac_risk_term_is_the_distorted_mean(risk, param, expected):
    agent = make_agent(
        "radac",
        1,
        2,
        1.0,
        overrides={
            "risk": risk,
            "risk_param": param,
            "n_quantiles": 32,
            "actor_hidden": 8,
            "critic_hidden": 8,
            "embed_dim": 8,
            "head_hidden": 8,
        },
    )
    agent.critic = LevelCritic()
    obs, actions = torch.zeros(512, 1), torch.zeros(512, 2)
    # The mean of U(0, alpha) is alpha / 2; 16k draws give a standard error ~ alpha / 440.
    risk = agent.risk_term(obs, actions).item()
    assert risk == pytest.approx(expected, abs=0.01 * expected + 1e-3)


def test_normalised_risk_term_is_scale_free():
    agent = make_agent(
        "radac",
        1,
        2,
        1.0,
        overrides={
            "normalize_q": True,
            "actor_hidden": 8,
            "critic_hidden": 8,
            "embed_dim": 8,
            "head_hidden": 8,
        },
    )
    agent.critic = LevelCritic()
    # Z = tau >= 0, so mean Z / mean |Z| = 1 whatever alpha is.
    assert agent.risk_term(torch.zeros(64, 1), torch.zeros(64, 2)).item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "step, warmup, ramp, expected",
    [
        (0, 0, 0, 0.05),  # no warmup, no ramp: full at once (RADAC halfcheetah)
        (299_999, 300_000, 0, 0.0),  # hopper / walker2d: 3e5 warmup
        (300_000, 300_000, 0, 0.05),
        (2_000_000, 300_000, 0, 0.05),
        (350, 300, 100, 0.025),  # half-way up a 100-step ramp
        (400, 300, 100, 0.05),
        (10_000, 300, 100, 0.05),
    ],
)
def test_eta_schedule(step, warmup, ramp, expected):
    assert eta_at(step, 0.05, warmup, ramp) == pytest.approx(expected)


def test_ema_copies_before_start_then_averages():
    model, ema = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        ema.weight.fill_(0.0)
        model.weight.fill_(1.0)
    ema_tick(ema, model, step=3, start=10, every=5, decay=0.9)  # not a tick: unchanged
    assert ema.weight.item() == 0.0
    ema_tick(ema, model, step=5, start=10, every=5, decay=0.9)  # before start: a copy
    assert ema.weight.item() == 1.0
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema_tick(ema, model, step=10, start=10, every=5, decay=0.9)  # after: 0.9 * 1 + 0.1 * 2
    assert ema.weight.item() == pytest.approx(1.1)


def test_each_critic_is_clipped_on_its_own():
    w = nn.Parameter(torch.zeros(2, 3))
    w.grad = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]])  # norms 5 and 0.5
    clip_grad_norm_per_member([w], 2, max_norm=1.0)
    assert w.grad[0].norm().item() == pytest.approx(1.0, rel=1e-4)
    assert torch.allclose(w.grad[1], torch.tensor([0.3, 0.4, 0.0]))


def test_stacked_members_are_clipped_on_their_own():
    """[K seeds, E critics, ...] gradients: each of the K * E members is clipped alone."""
    w = nn.Parameter(torch.zeros(2, 2, 3))
    w.grad = torch.tensor([[[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]], [[0.0, 0.6, 0.8], [0.0, 6.0, 8.0]]])
    clip_grad_norm_per_member([w], 4, max_norm=1.0)
    assert torch.allclose(w.grad.norm(dim=-1), torch.tensor([[1.0, 0.5], [1.0, 1.0]]), atol=1e-5)
    assert torch.allclose(w.grad[1, 1], torch.tensor([0.0, 0.6, 0.8]), atol=1e-5)
    with pytest.raises(ValueError, match="leading"):
        clip_grad_norm_per_member([w], 3, max_norm=1.0)


def test_iqn_update_recovers_the_quantiles_of_a_reward():
    """Terminal transitions with r ~ U(0, 20): Z(s, a; tau) should approach 20 tau.

    The scale keeps most errors beyond the Huber threshold (kappa = 1), where the loss
    estimates quantiles; within it, it would estimate expectiles.
    """
    torch.manual_seed(0)
    critic = IQNEnsemble(1, 1, n_critics=2, hidden=32, embed_dim=32, n_cos=16, head_hidden=32)
    target = IQNEnsemble(1, 1, n_critics=2, hidden=32, embed_dim=32, n_cos=16, head_hidden=32)
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    n, zeros = 64, torch.zeros(64, 1)
    for _ in range(300):
        batch = Batch(zeros, zeros, 20.0 * torch.rand(n, 1), zeros, zeros)  # not_done = 0
        loss, _ = iqn_critic_loss(critic, target, batch, zeros, 0.99, 16)
        grad_step(opt, loss, critic.parameters(), 10.0, per_member=2)
    taus = torch.tensor([0.1, 0.5, 0.9])
    z = critic(torch.zeros(1, 1), torch.zeros(1, 1), taus).detach()  # [2, 1, 3]
    assert torch.allclose(z, 20.0 * taus.expand_as(z), atol=1.2), z


def test_leaky_critic_has_the_same_parameters_as_the_relu_one():
    args = (3, 2, 2, 8, 8, 4, 8)
    relu, leaky = IQNEnsemble(*args), IQNEnsemble(*args, activation="leaky_relu")
    leaky.load_state_dict(relu.state_dict())
    obs, act, taus = torch.randn(5, 3), torch.randn(5, 2), torch.rand(5, 4)
    assert leaky(obs, act, taus).shape == (2, 5, 4)
    assert not torch.allclose(leaky(obs, act, taus), relu(obs, act, taus))
    with pytest.raises(ValueError, match="activation"):
        IQNEnsemble(*args, activation="tanh")
