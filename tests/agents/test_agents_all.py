"""Every registered agent: finite logs, every trained parameter learns, exact save/load, act()."""

import io

import numpy as np
import pytest
import torch
from tiny_data import RAVL_TINY, RAVL_TINY_IQN, tiny_dataset, tiny_model

from ramac.agents import AGENTS, codac, common, make_agent
from ramac.data.dataset import Batch
from ramac.nets.iqn import IQNEnsemble, quantile_huber_loss
from ramac.nets.quantile_mlp import QuantileMlpEnsemble

OBS_DIM, ACT_DIM = 3, 2

# Tiny networks so that the whole folder runs in seconds on one core.
_IQN = dict(critic_hidden=16, embed_dim=8, n_cos=8, head_hidden=16, n_quantiles=4)
_DIFF = dict(n_steps=3, actor_hidden=16, time_dim=8)
_DQL = (
    dict(
        batch_size=16, critic_hidden=16, critic_layers=2, ema_start=2, ema_every=1, act_candidates=4
    )
    | _DIFF
)
TINY = {
    "radac": dict(batch_size=16, ema_start=2, ema_every=1, **_IQN, **_DIFF),
    "radac_public_loss": dict(batch_size=16, ema_start=2, ema_every=1, **_IQN, **_DIFF),
    "rafmac": dict(
        batch_size=16, ema_start=2, ema_every=1, critic_activation="leaky_relu", **_IQN, **_DIFF
    ),
    "rafmac_public": dict(batch_size=16, ema_start=2, ema_every=1, **_IQN, **_DIFF),
    "oraac": dict(batch_size=16, actor_hidden=[16, 16], prior_hidden=16, **_IQN),
    "oraac_published": dict(batch_size=16, actor_hidden=[16, 16], prior_hidden=16, **_IQN),
    "oraac_diff": dict(batch_size=16, actor_hidden=[16], prior_hidden=16, prior_steps=2, **_IQN),
    "oraac_flow": dict(batch_size=16, actor_hidden=[16], prior_hidden=16, prior_steps=2, **_IQN),
    "diffusion_ql": _DQL,
    "diffusion_ql_flow": _DQL,  # the same settings, the flow actor
    "diffusion_ql_annealed": _DQL,  # the same settings, the annealed lr
    "diffusion_ql_flow_annealed": _DQL,
    "cvae_ql": dict(batch_size=16, actor_hidden=16, critic_hidden=16, critic_layers=2),
    "fql": dict(
        batch_size=16,
        actor_hidden=16,
        actor_layers=2,
        critic_hidden=16,
        critic_layers=2,
        flow_steps=3,
        time_dim=8,
    ),
    "bc": dict(batch_size=16, **_DIFF),
    # Tuned temperature and the Lagrange multiplier on, so their own optimisers are covered.
    "cql": dict(
        batch_size=16,
        actor_hidden=16,
        critic_hidden=16,
        cql_n_actions=3,
        cql_lagrange=True,
        entropy_tuning=True,
    ),
    "ravl": RAVL_TINY,
    "codac": dict(
        batch_size=16,
        actor_hidden=16,
        cql_n_actions=3,
        n_penalty_quantiles=2,
        cql_lagrange=True,
        entropy_tuning=True,
        alpha=1.0,
        # CODAC's QuantileMlp: its tau embedding has the base's width (no embed_dim)
        **{k: v for k, v in _IQN.items() if k != "embed_dim"},
    ),
}
TINY["ravl_cvar"] = RAVL_TINY | RAVL_TINY_IQN
NAMES = sorted(AGENTS)


def make(name: str, max_action: float = 1.0, **extra):
    agent = make_agent(name, OBS_DIM, ACT_DIM, max_action, overrides={**TINY[name], **extra})
    if hasattr(agent, "attach"):  # a model-based agent: its data and a (tiny) model
        agent.attach(tiny_dataset(), seed=0, dynamics=tiny_model())
    return agent


def random_batch(seed: int, n: int = 16, max_action: float = 1.0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, OBS_DIM, generator=g),
        actions=(torch.rand(n, ACT_DIM, generator=g) * 2 - 1) * max_action,
        rewards=torch.randn(n, 1, generator=g),
        next_obs=torch.randn(n, OBS_DIM, generator=g),
        not_done=(torch.rand(n, 1, generator=g) > 0.2).float(),
    )


def test_every_agent_has_tiny_settings():
    assert set(TINY) == set(AGENTS)


def test_tau_weighting_is_a_setting_of_exactly_the_iqn_agents():
    """Every agent with an IQN critic (CODAC's QuantileMlp included), and only those, names its
    critic loss's weighting."""
    for name in NAMES:
        agent = make(name)
        has_iqn = isinstance(getattr(agent, "critic", None), IQNEnsemble | QuantileMlpEnsemble)
        assert hasattr(agent.config, "tau_weighting") == has_iqn, name
        if has_iqn:
            expected = "target" if name == "radac_public_loss" else "current"
            assert agent.config.tau_weighting == expected, name


@pytest.mark.parametrize("name", [n for n in NAMES if hasattr(make(n).config, "tau_weighting")])
def test_tau_weighting_reaches_the_critic_loss(name, monkeypatch):
    """``tau_weighting: target`` (the public RADAC code's bug) trains the critic with it."""
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("tau_weighting"))
        return quantile_huber_loss(*args, **kwargs)

    monkeypatch.setattr(common, "quantile_huber_loss", spy)
    monkeypatch.setattr(codac, "quantile_huber_loss", spy)
    for weighting in ("target", "current"):
        seen.clear()
        agent = make(name, tau_weighting=weighting)
        logs = agent.update(random_batch(0))
        assert seen == [weighting] and np.isfinite(logs["critic_loss"]), name


@pytest.mark.parametrize("name", NAMES)
def test_update_returns_finite_floats(name):
    agent = make(name)
    for i in range(3):
        logs = agent.update(random_batch(i))
        assert logs and all(type(v) is float and np.isfinite(v) for v in logs.values()), logs
    assert agent.step == 3


@pytest.mark.parametrize("name", NAMES)
def test_every_trained_parameter_changes(name):
    agent = make(name)
    before = {
        (net, p): t.detach().clone()
        for net, m in agent.nets.items()
        for p, t in m.named_parameters()
    }
    for i in range(4):
        agent.update(random_batch(i))
    unchanged = [
        f"{net}.{p}"
        for net, m in agent.nets.items()
        for p, t in m.named_parameters()
        if torch.equal(t, before[net, p])
    ]
    assert not unchanged, f"{name}: never updated: {unchanged}"
    for m in agent.frozen.values():  # targets / EMA copies are never trained directly
        assert not any(p.requires_grad for p in m.parameters())
    trained = {id(p) for m in agent.nets.values() for p in m.parameters()}
    assert not trained & {id(p) for m in agent.frozen.values() for p in m.parameters()}


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_is_exact(name):
    torch.manual_seed(1)
    agent = make(name)
    for i in range(3):
        agent.update(random_batch(i))
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)  # through serialisation, as the loop does
    buffer.seek(0)

    torch.manual_seed(2)  # different initial weights, all overwritten by the load
    fresh = make(name)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.step == agent.step

    obs = torch.randn(5, OBS_DIM)
    a1 = agent.act(obs, generator=torch.Generator().manual_seed(7))
    a2 = fresh.act(obs, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a1, a2)

    if not getattr(agent, "seed_stackable", True):
        return  # RAVL keeps no model buffer in its state: a loaded agent rolls out anew
    for i in range(2):  # the next updates match exactly, RNG included
        batch = random_batch(10 + i)
        state = torch.get_rng_state()
        logs1 = agent.update(batch)
        torch.set_rng_state(state)
        logs2 = fresh.update(batch)
        assert logs1 == logs2
    for net in agent.nets:
        for p1, p2 in zip(agent.nets[net].parameters(), fresh.nets[net].parameters(), strict=True):
            assert torch.equal(p1, p2)


@pytest.mark.parametrize("name", NAMES)
def test_act_shape_bounds_and_inputs(name):
    agent = make(name, max_action=0.5)
    for i in range(2):
        agent.update(random_batch(i, max_action=0.5))
    obs = np.random.default_rng(0).normal(size=(7, OBS_DIM)).astype(np.float32)
    actions = agent.act(obs)
    assert actions.shape == (7, ACT_DIM)
    assert torch.isfinite(actions).all()
    assert actions.abs().max() <= 0.5
    assert not actions.requires_grad
    assert all(m.training for m in agent.nets.values())  # act() restores train mode
    # A seeded generator makes act() repeatable.
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(agent.act(obs, generator=g1), agent.act(obs, generator=g2))
