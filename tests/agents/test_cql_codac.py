"""CQL and CODAC: their penalties and the CODAC actor's risk objective against hand-computed
values, the tanh-Gaussian actor's density, and the penalty's effect on a one-state problem."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

from ramac.agents import make_agent, make_config
from ramac.agents.codac import distorted_value
from ramac.agents.cql import conservative_gap
from ramac.data.dataset import Batch
from ramac.errors import UserError
from ramac.nets.gaussian import TanhGaussianActor
from ramac.risk import make_distortion

TINY_CQL = dict(batch_size=8, actor_hidden=16, critic_hidden=16, cql_n_actions=4)
TINY_CODAC = dict(
    batch_size=8,
    actor_hidden=16,
    critic_hidden=16,
    n_cos=8,
    head_hidden=16,
    n_quantiles=8,
    cql_n_actions=4,
)


def one_row_batch(obs_dim: int, action: float) -> Batch:
    zeros = torch.zeros(1, obs_dim)
    return Batch(zeros, torch.tensor([[action]]), torch.zeros(1, 1), zeros, torch.zeros(1, 1))


# -- the CQL(H) term --------------------------------------------------------------------


def test_conservative_gap_on_hand_made_values():
    # 2-D actions on [-1, 1]^2: a uniform action has density 1/4, so its Q is weighted
    # by exp(Q + ln 4). Q(uniform) = 0 -> 4; Q(pi(s')) = ln 3 at log pi = ln 3 -> 1;
    # Q(pi(s)) = ln 2 at log pi = -ln 2 -> 4. Sum 9; the data action's Q is 1.
    q = torch.tensor([[0.0, math.log(3.0), math.log(2.0)]])
    log_density = torch.tensor([[-math.log(4.0), math.log(3.0), -math.log(2.0)]])
    data = torch.tensor([1.0])
    assert conservative_gap(q, log_density, data).item() == pytest.approx(math.log(9.0) - 1.0)
    # Temperature 2: 2 log(exp(ln4 / 2) + exp(0) + exp(ln4 / 2)) = 2 ln 5.
    gap_t2 = conservative_gap(q, log_density, data, temperature=2.0).item()
    assert gap_t2 == pytest.approx(2.0 * math.log(5.0) - 1.0)


class LinearQ(nn.Module):
    """Stand-in twin critic: Q_e(s, a) = (e + 1) * a for 1-D actions, shape [2, ...]."""

    def forward(self, obs, actions):
        a = actions[..., 0]
        return torch.stack([a, 2.0 * a])


def test_cql_agent_scores_the_sampled_actions_at_the_batch_state():
    agent = make_agent("cql", 3, 1, 2.0, overrides=TINY_CQL)
    # Hand-made action set: a uniform draw -1 (density 1/4 on [-2, 2]), a pi(s') action 0
    # at log pi = 0, a pi(s) action 1 at log pi = ln 2.
    actions = torch.tensor([[[-1.0], [0.0], [1.0]]])
    log_density = torch.tensor([[-math.log(4.0), 0.0, math.log(2.0)]])
    agent.penalty_actions = lambda b: (actions, log_density)
    agent.critic = LinearQ()
    batch = one_row_batch(3, 0.5)
    q_data = agent.critic(batch.obs, batch.actions)  # [[0.5], [1.0]]
    gap = agent.cql_gap(batch, q_data)
    e = math.e
    expected = [
        math.log(4.0 / e + 1.0 + e / 2.0) - 0.5,  # Q_0 = a: exp(-1 + ln 4), exp(0), exp(1 - ln 2)
        math.log(4.0 / e**2 + 1.0 + e**2 / 2.0) - 1.0,  # Q_1 = 2a
    ]
    torch.testing.assert_close(gap, torch.tensor(expected))


def test_penalty_actions_carry_their_sampling_densities():
    torch.manual_seed(0)
    agent = make_agent("cql", 3, 2, 2.0, overrides=TINY_CQL)
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(5, 3, generator=g)
    batch = Batch(obs, torch.zeros(5, 2), torch.zeros(5, 1), obs, torch.ones(5, 1))
    actions, log_density = agent.penalty_actions(batch)
    m = TINY_CQL["cql_n_actions"]
    assert actions.shape == (5, 3 * m, 2) and log_density.shape == (5, 3 * m)
    assert actions.abs().max() <= 2.0
    # uniform on [-2, 2]^2: density 1/16
    torch.testing.assert_close(log_density[:, :m], torch.full((5, m), -math.log(16.0)))
    # pi(. | s) actions: the density of max_action * tanh(N(mu, sigma^2)), per state
    mean, log_std = agent.actor.distribution(obs)
    dist = TransformedDistribution(
        Normal(mean.unsqueeze(1), log_std.exp().unsqueeze(1)),
        [TanhTransform(), AffineTransform(0.0, 2.0)],
    )
    expected = dist.log_prob(actions[:, 2 * m :]).sum(-1)
    torch.testing.assert_close(log_density[:, 2 * m :], expected, rtol=1e-4, atol=1e-3)


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = TanhGaussianActor(4, 3, 1.5, hidden=16, n_layers=2, log_std_offset=-1.0)
    obs = torch.randn(64, 4)
    actions, log_prob = actor.sample(obs)
    mean, log_std = actor.distribution(obs)
    dist = TransformedDistribution(
        Normal(mean, log_std.exp()), [TanhTransform(), AffineTransform(0.0, 1.5)]
    )
    torch.testing.assert_close(log_prob, dist.log_prob(actions).sum(-1), rtol=1e-4, atol=1e-3)
    assert torch.equal(actor.deterministic(obs), 1.5 * torch.tanh(mean))


# -- CODAC's penalty on quantiles and its actor objective --------------------------------


class QuantileStandIn(nn.Module):
    """Stand-in twin quantile critic: Z_e(s, a; tau) = (e + 1) * a * tau, shape [2, R, N]."""

    def forward(self, obs, actions, taus):
        z = actions[..., :1] * taus
        return torch.stack([z, 2.0 * z])


def test_codac_penalty_on_hand_made_quantiles():
    agent = make_agent("codac", 3, 1, 1.0, overrides=TINY_CODAC)
    actions = torch.tensor([[[-1.0], [0.0], [1.0]]])
    log_density = torch.tensor([[math.log(2.0), 0.0, 0.0]])
    agent.penalty_actions = lambda b: (actions, log_density)
    agent.critic = QuantileStandIn()
    batch = one_row_batch(3, 0.5)
    taus = torch.tensor([[0.5, 1.0]])  # two penalty levels
    gap = agent.quantile_gap(batch, taus)
    e = math.e

    def level(scale: float, tau: float) -> float:
        # log[exp(-scale tau - ln 2) + exp(0) + exp(scale tau)] - scale * 0.5 * tau
        s = scale * tau
        return math.log(math.exp(-s) / 2.0 + 1.0 + math.exp(s)) - 0.5 * s

    expected = [
        (level(1.0, 0.5) + level(1.0, 1.0)) / 2,
        (level(2.0, 0.5) + level(2.0, 1.0)) / 2,
    ]
    # spelled out once: critic 0 at tau = 1 is log(e^-1 / 2 + 1 + e) - 0.5
    assert level(1.0, 1.0) == pytest.approx(math.log(1 / (2 * e) + 1 + e) - 0.5)
    torch.testing.assert_close(gap, torch.tensor(expected))


class ShiftedQuantiles(nn.Module):
    """Stand-in twin critic with a known quantile function: Z_0 = a + tau, Z_1 = a + tau + 1."""

    def forward(self, obs, actions, taus):
        z = actions[..., :1] + taus
        return torch.stack([z, z + 1.0])


def test_distorted_value_is_the_cvar_of_a_known_quantile_function():
    obs, actions = torch.zeros(3, 2), torch.tensor([[-0.5], [0.0], [0.7]])
    u = ((torch.arange(10) + 0.5) / 10).expand(3, 10)  # midpoints: exact for a linear Z
    value = distorted_value(ShiftedQuantiles(), obs, actions, u, make_distortion("cvar", 0.1))
    # CVaR_0.1 of a + U(0, 1) is a + 0.05; the min over the critics picks Z_0.
    torch.testing.assert_close(value, actions[:, 0] + 0.05)


@pytest.mark.parametrize(
    "risk, param, expected",
    [
        ("cvar", 0.1, 0.05),
        ("cvar", 0.5, 0.25),
        ("neutral", None, 0.5),
        # Wang: E[Phi(Phi^-1(U) + eta)] = P(X < Y + eta), X, Y ~ N(0, 1) = Phi(eta / sqrt 2)
        ("wang", -0.75, 0.5 * (1 + math.erf(-0.75 / 2.0))),
    ],
)
def test_codac_actor_objective_is_the_distorted_mean_of_a_stand_in_critic(risk, param, expected):
    torch.manual_seed(0)
    overrides = TINY_CODAC | dict(risk=risk, risk_param=param, n_quantiles=20000, alpha=0.0)
    agent = make_agent("codac", 2, 1, 1.0, overrides=overrides)
    agent.critic = ShiftedQuantiles()
    obs = torch.zeros(4, 2)
    actions = torch.tensor([[-0.5], [0.0], [0.3], [0.7]])
    value = agent.action_value(obs, actions)
    torch.testing.assert_close(value, actions[:, 0] + expected, rtol=0, atol=0.01)
    # The actor's loss is -E[value] at its own actions (alpha = 0 here).
    agent.actor.sample = lambda s: (actions, torch.zeros(4))
    batch = Batch(obs, actions, torch.zeros(4, 1), obs, torch.zeros(4, 1))
    loss, _ = agent.actor_loss(batch)
    assert loss.item() == pytest.approx(-(actions.mean().item() + expected), abs=0.01)


# -- behaviour on a one-state problem ----------------------------------------------------

# One state, terminal transitions, 1-D actions: data at a = -0.6 (reward 0) and a = -0.2
# (reward 1), so the fitted value slopes upward and a plain critic extrapolates it beyond
# the data: at a = 0.9, far from both, it guesses well above 1.
DATA_ACTIONS, FAR = (-0.6, -0.2), 0.9


def one_state_batch(n: int, g: torch.Generator) -> Batch:
    high = torch.rand(n, 1, generator=g) < 0.5
    actions = torch.where(high, DATA_ACTIONS[1], DATA_ACTIONS[0]) + 0.02 * torch.randn(
        n, 1, generator=g
    )
    rewards = high.float() + 0.1 * torch.randn(n, 1, generator=g)
    zeros = torch.zeros(n, 1)
    return Batch(zeros, actions, rewards, zeros, zeros)


def train_one_state(name: str, overrides: dict, steps: int):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    agent = make_agent(name, 1, 1, 1.0, overrides=overrides)
    for _ in range(steps):
        agent.update(one_state_batch(overrides["batch_size"], g))
    return agent


@pytest.mark.parametrize("weight", [10.0, 0.0])
def test_cql_penalty_pushes_an_unseen_action_below_the_data(weight):
    overrides = dict(
        batch_size=64,
        actor_hidden=32,
        critic_hidden=32,
        critic_layers=2,
        lr_critic=3e-3,
        cql_weight=weight,
    )
    agent = train_one_state("cql", overrides, steps=300)
    with torch.no_grad():
        q = agent.critic(torch.zeros(2, 1), torch.tensor([[DATA_ACTIONS[1]], [FAR]]))
    q_data, q_far = q.min(dim=0).values.tolist()
    if weight > 0:
        assert q_far < q_data - 1.0, (q_data, q_far)
    else:  # no penalty: the extrapolated value of the unseen action is the larger
        assert q_far > q_data, (q_data, q_far)


@pytest.mark.parametrize("weight", [1.0, 0.0])
def test_codac_penalty_pushes_every_quantile_of_an_unseen_action_below_the_data(weight):
    overrides = TINY_CODAC | dict(
        batch_size=64,
        actor_hidden=32,
        critic_hidden=32,
        head_hidden=32,
        n_quantiles=16,
        n_penalty_quantiles=4,
        lr_critic=3e-3,
        cql_weight=weight,
        critic_activation="leaky_relu",
    )
    agent = train_one_state("codac", overrides, steps=300)
    taus = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
    with torch.no_grad():
        z = agent.critic(torch.zeros(2, 1), torch.tensor([[DATA_ACTIONS[1]], [FAR]]), taus)
    z_data, z_far = z.min(dim=0).values  # [5] each
    if weight > 0:
        assert (z_far < z_data - 0.5).all(), (z_data, z_far)
    else:  # no penalty, no push: CODAC's LayerNorm critic extrapolates the unseen action
        # near the data's quantiles (within +-0.15 here), never 0.5 below them
        assert (z_far > z_data - 0.5).all(), (z_data, z_far)


# -- configs -----------------------------------------------------------------------------


def test_published_settings():
    cql = make_config("cql", "hopper-medium-replay-v2")
    assert (cql.cql_weight, cql.cql_lagrange, cql.lr_actor, cql.entropy_tuning) == (
        10.0,
        False,
        3e-5,
        True,
    )
    cheetah = make_config("codac", "halfcheetah-medium-expert-v2")
    assert (cheetah.cql_weight, cheetah.cql_lagrange, cheetah.lr_actor) == (0.1, False, 3e-4)
    walker = make_config("codac", "walker2d-medium-replay-v2")
    assert (walker.cql_weight, walker.cql_lagrange, walker.cql_threshold) == (1.0, True, 10.0)
    assert walker.lr_actor == walker.lr_alpha == 3e-6 and walker.entropy_tuning
    for dataset in [None, "hopper-medium-expert-v2", "bandit"]:
        config = make_config("codac", dataset)
        assert (config.risk, config.risk_param) == ("cvar", 0.1)


@pytest.mark.parametrize(
    "name, overrides, field",
    [
        ("cql", {"cql_temp": 0.0}, "cql_temp"),
        ("cql", {"cql_n_actions": 0}, "cql_n_actions"),
        ("cql", {"entropy_tuning": True, "alpha": 0.0}, "alpha"),
        ("codac", {"n_penalty_quantiles": 0}, "n_penalty_quantiles"),
        ("codac", {"risk": "optimism"}, "risk"),
        ("codac", {"cql_weight": -1.0}, "cql_weight"),
    ],
)
def test_bad_values_are_user_errors(name, overrides, field):
    with pytest.raises(UserError, match=f"config {field}"):
        make_agent(name, 3, 2, 1.0, overrides={"batch_size": 4, **overrides})
