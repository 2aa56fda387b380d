"""CQL standardises states as CORL does: statistics from the data, used in training and at
evaluation, and stored with the run (ramac.agents.cql, docs/fidelity.md)."""

import numpy as np
import torch
from tiny_data import tiny_dataset

from ramac.agents import make_agent
from ramac.data.dataset import Batch
from ramac.train import TrainSettings, build_agent, load_trained, train

TINY = dict(batch_size=8, actor_hidden=16, critic_hidden=16, cql_n_actions=3)
MEAN, STD = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 4.0])


def _pair():
    """A standardising CQL with known statistics, and a plain one with the same weights."""
    torch.manual_seed(0)
    normed = make_agent("cql", 3, 2, 1.0, overrides=TINY)
    normed.state_norm.mean.copy_(MEAN)
    normed.state_norm.std.copy_(STD)
    plain = make_agent("cql", 3, 2, 1.0, overrides=TINY | {"normalize_states": False})
    for name, net in plain.nets.items():
        net.load_state_dict(normed.nets[name].state_dict())
    plain.frozen["critic_target"].load_state_dict(normed.frozen["critic_target"].state_dict())
    assert set(normed.frozen) == {"critic_target", "state_norm"} and plain.state_norm is None
    return normed, plain


def test_stored_statistics_are_applied_at_evaluation():
    normed, plain = _pair()
    obs = torch.randn(5, 3) * 3
    expected = plain.act((obs - MEAN) / STD)
    assert torch.allclose(normed.act(obs), expected)
    assert not torch.allclose(plain.act(obs), expected)  # the statistics matter here
    # a fresh agent fitted to other data, then loaded: acts with the stored statistics
    loaded = build_agent("cql", tiny_dataset(), 1, TINY)
    assert not torch.allclose(loaded.state_norm.mean, MEAN)
    loaded.load_state_dict(normed.state_dict())
    assert torch.equal(loaded.state_norm.mean, MEAN) and torch.equal(loaded.state_norm.std, STD)
    assert torch.allclose(loaded.act(obs), expected)


def test_training_sees_standardised_states_and_next_states():
    normed, plain = _pair()
    obs, next_obs = torch.randn(8, 3) * 3, torch.randn(8, 3) * 3
    batch = Batch(obs, torch.rand(8, 2) * 2 - 1, torch.randn(8, 1), next_obs, torch.ones(8, 1))
    seen = normed.observe(batch)
    assert torch.allclose(seen.obs, (obs - MEAN) / STD)
    assert torch.allclose(seen.next_obs, (next_obs - MEAN) / STD)
    # one update of each, with the same noise: the same weights after it
    torch.manual_seed(1)
    normed.update(batch)
    torch.manual_seed(1)
    plain.update(batch._replace(obs=(obs - MEAN) / STD, next_obs=(next_obs - MEAN) / STD))
    for name, net in plain.nets.items():
        for a, b in zip(net.parameters(), normed.nets[name].parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-6), name


def test_build_agent_fits_corl_statistics_and_the_checkpoint_carries_them(tmp_path):
    """mean and std + 1e-3 of the data's states (CORL compute_mean_std, numpy's population
    std); evaluation (load_trained, handed other data) gets the training data's."""
    data = tiny_dataset()
    data = data.replace(observations=data.observations * [1.0, 3.0, 0.1] + [5.0, 0.0, -1.0])
    agent = build_agent("cql", data, 0, TINY)
    obs = data.observations.astype(np.float64)
    assert np.allclose(agent.state_norm.mean.numpy(), obs.mean(0), rtol=1e-6)
    assert np.allclose(agent.state_norm.std.numpy(), obs.std(0) + 1e-3, rtol=1e-6)
    assert agent.state_norm.std.numpy()[1] > 2.0  # the scaled feature: not the identity

    settings = TrainSettings(steps=2, seed=0, checkpoint_every=2, log_every=1, progress=False)
    train("cql", data, tmp_path, settings, TINY)
    evaluated, step = load_trained("cql", tiny_dataset(), tmp_path, TINY)
    assert step == 2
    assert torch.equal(evaluated.state_norm.mean, agent.state_norm.mean)
    assert torch.equal(evaluated.state_norm.std, agent.state_norm.std)
