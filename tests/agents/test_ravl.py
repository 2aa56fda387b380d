"""RAVL and RAVL (CVaR): the EDAC term by hand, the mixed batch, learning, save/load, act,
rollouts that stop at terminals, and the CVaR actor objective on a stand-in critic."""

import io
import math

import numpy as np
import pytest
import torch
from tiny_data import RAVL_TINY, RAVL_TINY_IQN, tiny_dataset, tiny_model
from torch import nn

from ramac.agents import ravl
from ramac.agents.base import make_agent
from ramac.data.dataset import Batch
from ramac.errors import UserError

OBS_DIM, ACT_DIM = 3, 2

TINY, TINY_IQN = RAVL_TINY, RAVL_TINY_IQN


def make(name: str = "ravl", max_action: float = 1.0, attach: bool = True, **extra):
    overrides = {**TINY, **(TINY_IQN if name == "ravl_cvar" else {}), **extra}
    agent = make_agent(name, OBS_DIM, ACT_DIM, max_action, overrides=overrides)
    if attach:
        agent.attach(tiny_dataset(), seed=0, dynamics=tiny_model())
    return agent


def random_batch(seed: int, n: int = 16, max_action: float = 1.0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.randn(n, OBS_DIM, generator=g),
        (torch.rand(n, ACT_DIM, generator=g) * 2 - 1) * max_action,
        torch.randn(n, 1, generator=g),
        torch.randn(n, OBS_DIM, generator=g),
        (torch.rand(n, 1, generator=g) > 0.2).float(),
    )


def test_edac_diversity_by_hand():
    # Two members with action-gradients (1, 0) and (1, 1): cos = 1/sqrt 2, and the penalty
    # sums both ordered pairs over (E - 1) = 1: 2 / sqrt 2 = sqrt 2.
    grads = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])
    assert ravl.edac_diversity(grads).item() == pytest.approx(math.sqrt(2.0), rel=1e-6)
    assert ravl.edac_diversity(grads[:1]).item() == 0.0  # one member: nothing to diversify


def test_the_agents_diversity_term_takes_each_members_own_action_gradient(monkeypatch):
    agent = make(n_critics=2)
    w = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])  # Q_e(s, a) = w_e . a: gradient w_e
    monkeypatch.setattr(agent, "member_values", lambda obs, a: (a * w).sum(-1))
    assert agent.diversity(random_batch(0)).item() == pytest.approx(math.sqrt(2.0), rel=1e-6)


@pytest.mark.parametrize("name", ["ravl", "ravl_cvar"])
def test_per_member_values_match_the_critic(name):
    """The per-member forward (one action copy per member) is the critic's own forward."""
    agent = make(name)
    b = random_batch(0)
    copies = b.actions.expand(agent.config.n_critics, -1, -1)
    if name == "ravl":
        torch.testing.assert_close(
            agent.member_values(b.obs, copies), agent.critic(b.obs, b.actions)
        )
    else:
        taus = torch.rand(16, 4)
        torch.testing.assert_close(
            ravl.iqn_per_member(agent.critic, b.obs, copies, taus),
            agent.critic(b.obs, b.actions, taus),
        )


def test_the_mixed_batch_has_the_stated_real_share():
    agent = make(dataset_ratio=0.25)
    agent.rollout()
    real = random_batch(0)
    mixed = agent.mixed_batch(real)
    assert mixed.obs.shape == (16, OBS_DIM)
    for got, want in zip(mixed, real, strict=True):
        assert torch.equal(got[:4], want[:4])  # int(0.25 x 16) = 4 real rows first
    stored = agent.buffer.data["obs"][: len(agent.buffer)]
    for row in mixed.obs[4:]:  # the other 12 come from the model buffer
        assert (stored == row).all(dim=-1).any()


def test_rollouts_fill_the_buffer_and_the_update_needs_attach():
    agent = make(attach=False)
    with pytest.raises(UserError, match="attach"):
        agent.update(random_batch(0))
    agent.attach(tiny_dataset(), seed=0, dynamics=tiny_model())
    agent.update(random_batch(0))  # step 0: rolls out first
    assert len(agent.buffer) == 8 * 2  # halfcheetah never ends: rollout_batch x steps_k
    assert agent.carry["rollout_length"] == 2.0
    agent.update(random_batch(1))
    assert len(agent.buffer) == 16  # rollout_every = 2: no rollout at step 1
    agent.update(random_batch(2))
    assert len(agent.buffer) == 32


def test_hopper_rollouts_stop_at_predicted_terminals():
    agent = make_agent("ravl", 11, ACT_DIM, 1.0, overrides={**TINY, "steps_k": 3})
    data = tiny_dataset(n=8, task="hopper", obs_dim=11)
    data.observations[:, 0] = [0.75, 1.2] * 4  # z: half fall after one step (z - 0.2 < 0.7)
    data.observations[:, 1:] = 0.0
    model = tiny_model("hopper", obs_dim=11)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head.bias[:, 0, 0] = -0.2  # z falls by 0.2 per step, nothing else moves
        model.head.bias[:, 0, 12:] = -20.0  # (almost) no noise
        model.max_logvar.fill_(100.0)
        model.min_logvar.fill_(-100.0)
    model.obs_low.fill_(-5.0)
    model.obs_high.fill_(5.0)
    agent.attach(data, seed=0, dynamics=model)
    agent.rollout()
    # step 1: 8 rows (4 end); step 2: 4 rows, z 1.0 -> 0.8, alive; step 3: 4 rows, z -> 0.6
    assert len(agent.buffer) == 16
    not_done = agent.buffer.data["not_done"][:16, 0]
    first_z = agent.buffer.data["obs"][:8, 0]
    assert torch.equal(not_done[:8] == 0, (first_z - 0.75).abs() < 1e-6)  # the z = 0.75 starts
    assert not_done[8:12].tolist() == [1.0] * 4 and not_done[12:].tolist() == [0.0] * 4
    assert (agent.buffer.data["next_obs"][:16] <= 5.0).all()


@pytest.mark.parametrize("name", ["ravl", "ravl_cvar"])
def test_an_update_changes_every_trained_parameter(name):
    agent = make(name)
    before = {
        (n, p): t.detach().clone() for n, m in agent.nets.items() for p, t in m.named_parameters()
    }
    for i in range(3):
        logs = agent.update(random_batch(i))
    assert all(np.isfinite(v) for v in logs.values()), logs
    unchanged = [
        f"{n}.{p}"
        for n, m in agent.nets.items()
        for p, t in m.named_parameters()
        if torch.equal(t, before[n, p])
    ]
    assert not unchanged
    assert not any(p.requires_grad for m in agent.frozen.values() for p in m.parameters())


@pytest.mark.parametrize("name", ["ravl", "ravl_cvar"])
def test_save_load_round_trip_gives_the_same_actions(name):
    agent = make(name)
    for i in range(3):
        agent.update(random_batch(i))
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(5)
    fresh = make(name, attach=False)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    obs = torch.randn(5, OBS_DIM)
    assert fresh.step == 3 and torch.equal(agent.act(obs), fresh.act(obs))


@pytest.mark.parametrize("name", ["ravl", "ravl_cvar"])
def test_act_stays_within_max_action(name):
    agent = make(name, max_action=0.5)
    agent.update(random_batch(0, max_action=0.5))
    obs = np.random.default_rng(0).normal(size=(7, OBS_DIM)).astype(np.float32) * 50
    actions = agent.act(obs)
    assert actions.shape == (7, ACT_DIM) and actions.abs().max() <= 0.5
    assert torch.equal(actions, agent.act(obs))  # deterministic: max_action tanh(mean)


class StandIn(nn.Module):
    """Two critics whose return quantiles ignore (s, a): member 0's Z(tau) = tau (returns
    U(0, 1)), member 1's tau + 1, so the pessimistic critic is U(0, 1)."""

    n_critics = 2

    def forward(self, obs, actions, taus):
        return torch.stack([taus, taus + 1.0])


def test_ravl_cvar_actor_objective_is_the_cvar_of_the_critics_quantiles():
    agent = make("ravl_cvar", n_quantiles=20_000)
    agent.critic = StandIn()
    value = agent.action_value(torch.zeros(3, OBS_DIM), torch.zeros(3, ACT_DIM))
    # CVaR_0.1 of U(0, 1): the mean of its worst 10%, 0.05 (Monte Carlo over 20000 levels).
    torch.testing.assert_close(value, torch.full((3,), 0.05), atol=2e-3, rtol=0)
    neutral = make("ravl_cvar", n_quantiles=20_000, risk="neutral")
    neutral.critic = StandIn()
    mean = neutral.action_value(torch.zeros(3, OBS_DIM), torch.zeros(3, ACT_DIM))
    torch.testing.assert_close(mean, torch.full((3,), 0.5), atol=1e-2, rtol=0)


def test_ravl_cvar_rollouts_sample_rewards(monkeypatch):
    agent = make("ravl_cvar")
    seen = []
    step = agent.dynamics.step

    def spy(obs, actions, generator=None, sample_reward=True):
        seen.append(sample_reward)
        return step(obs, actions, generator, sample_reward)

    monkeypatch.setattr(agent.dynamics, "step", spy)
    agent.rollout()
    assert seen and all(seen)
    assert agent.config.risk == "cvar" and agent.config.risk_param == 0.1


def test_not_seed_stackable():
    assert ravl.RAVL.seed_stackable is False and ravl.RAVLCVaR.seed_stackable is False


def test_one_model_serves_every_seed_and_both_variants(tmp_path, monkeypatch):
    """The model is trained once per dataset (model_seed), then loaded, not retrained, by
    every run seed and by RAVL (CVaR)."""
    from ramac.models import dynamics

    trained = []
    real_train = dynamics.train_dynamics

    def counting(*args, **kwargs):
        trained.append(args[1])  # the seed it trains from
        return real_train(*args, **kwargs)

    monkeypatch.setattr(dynamics, "train_dynamics", counting)
    small = dict(model_members=2, model_elites=1, model_hidden=8, model_layers=1,
                 model_max_epochs=1, model_min_epochs=0, model_batch_size=32)  # fmt: skip
    models = []
    for name, seed in (("ravl", 0), ("ravl", 1), ("ravl_cvar", 2)):
        agent = make(name, attach=False, **small)
        agent.attach(tiny_dataset(), seed=seed, cache_dir=tmp_path)
        models.append(agent.dynamics)
    assert trained == [0]  # model_seed 0, once
    assert len(list(tmp_path.glob("*.pt"))) == 1
    for other in models[1:]:
        for key, value in models[0].state_dict().items():
            assert torch.equal(value, other.state_dict()[key]), key
    # Another model seed is another model.
    make("ravl", attach=False, model_seed=1, **small).attach(tiny_dataset(), 0, cache_dir=tmp_path)
    assert trained == [0, 1]


def test_rollouts_count_the_model_states_in_the_hazard_region():
    from ramac.envs.hazards import HazardSpec, relabel, risk_mask

    spec = HazardSpec(
        name="t/v", kind="velocity", obs_index=1, probability=0.5, cost=-4.0, threshold=1.0
    )
    agent = make(attach=False)
    agent.attach(relabel(tiny_dataset(), spec, seed=0), seed=0, dynamics=tiny_model())
    agent.update(random_batch(0))
    states = agent.buffer.data["next_obs"][: len(agent.buffer), 1].numpy()
    assert 0 < agent.carry["model_hazard_rate"] < 1
    assert agent.carry["model_hazard_rate"] == pytest.approx(risk_mask(spec, states).mean())
    make().update(random_batch(0))  # data without a hazard: nothing counted
    assert "model_hazard_rate" not in make().carry
