"""What a dynamics model sees of a hazard: the penalties recovered exactly from the
relabelling's seed, the fidelity figures on a stand-in model with known draws, and the
hazard share of model states."""

import numpy as np
import pytest
import torch

from ramac.data.dataset import OfflineDataset, Provenance
from ramac.envs.hazards import HazardSpec, relabel
from ramac.models.hazard_view import hazard_share, hazard_spec_of, penalties, penalty_fidelity

SPEC = HazardSpec(
    name="test/velocity", kind="velocity", obs_index=0, probability=0.25, cost=-8.0, threshold=1.0
)


def velocity_data(n: int = 400) -> OfflineDataset:
    """A dataset whose post-step velocity obs[0] is risky (|v| > 1) on about a third of rows."""
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    nxt = rng.normal(size=(n, 2)).astype(np.float32)
    return OfflineDataset(
        obs,
        rng.uniform(-1, 1, size=(n, 1)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        nxt,
        np.zeros(n, bool),
        np.zeros(n, bool),
        Provenance(source="synthetic", id="halfcheetah-velocity"),
    )


def test_penalties_are_exactly_what_relabelling_added():
    data = velocity_data()
    relabelled = relabel(data, SPEC, seed=11)
    assert hazard_spec_of(relabelled) == SPEC and hazard_spec_of(data) is None
    applied, full = penalties(relabelled, SPEC)
    np.testing.assert_allclose(applied, relabelled.rewards - data.rewards, atol=1e-5)
    assert set(np.unique(applied)) == {0.0, -8.0}
    np.testing.assert_array_equal(full, np.where(relabelled.risky, -8.0, 0.0))
    assert ((applied != 0) <= relabelled.risky).all()  # only risky rows are penalised
    # The replace_forward mode's penalty depends on the velocity: cost - v.
    forward = HazardSpec(**{**SPEC.to_dict(), "name": "t/fwd", "mode": "replace_forward"})
    relabelled = relabel(data, forward, seed=11)
    applied, full = penalties(relabelled, forward)
    np.testing.assert_allclose(applied, relabelled.rewards - data.rewards, atol=1e-5)
    expected = np.where(relabelled.risky, -8.0 - data.next_observations[:, 0], 0.0)
    np.testing.assert_allclose(full, expected, atol=1e-5)


class StandIn(torch.nn.Module):
    """A 'model' whose reward draws are given: ``drawn`` when sampled, ``mean`` otherwise."""

    def __init__(self, drawn: np.ndarray, mean: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1))
        self.drawn, self.mean = torch.tensor(drawn), torch.tensor(mean)

    def step(self, obs, actions, generator=None, sample_reward=True):
        return obs, (self.drawn if sample_reward else self.mean), None


def test_penalty_fidelity_counts_the_draws_nearer_the_penalised_reward():
    data = relabel(velocity_data(), SPEC, seed=5)
    rows = np.arange(len(data))
    risky = rows[data.risky]
    applied, _ = penalties(data, SPEC)
    base = data.rewards[risky] - applied[risky]
    # Draws: the first quarter of risky rows 5 below base (nearer -8 than 0), the rest 3 below.
    k = len(risky) // 4
    drawn = base - np.where(np.arange(len(risky)) < k, 5.0, 3.0)
    mean = base - 2.0  # a model that learnt the expected penalty p x cost = -2
    got = penalty_fidelity(StandIn(drawn, mean), data, rows, torch.Generator())
    assert got["risky_rows"] == len(risky) and got["risky_share"] == pytest.approx(
        data.risky.mean()
    )
    assert got["data_penalty_rate"] == pytest.approx(np.mean(applied[risky] != 0))
    assert got["model_penalty_rate"] == pytest.approx(k / len(risky))
    assert got["data_mean_penalty"] == pytest.approx(applied[risky].mean())
    assert got["model_mean_penalty"] == pytest.approx(-2.0, abs=1e-5)
    assert got["penalty_probability"] == 0.25
    # Without a hazard there is nothing to see.
    assert penalty_fidelity(StandIn(drawn, mean), velocity_data(), rows, None) is None


def test_hazard_share_of_model_states():
    states = torch.tensor([[0.5, 9.0], [2.0, 0.0], [-3.0, 0.0], [1.0, 0.0]])
    assert hazard_share(SPEC, states) == 0.5  # |v| > 1 on rows 2 and 3; v = 1 is not risky
    one_sided = HazardSpec(**{**SPEC.to_dict(), "absolute": False})
    assert hazard_share(one_sided, states) == 0.25
