"""The bandit's behaviour models learn its two modes (a scaled-down version of the acceptance
check in the README), ORAAC's bandit VAE keeps both modes, and the pieces behind them.

Data: the bandit's own behaviour dataset (centre N(0, 0.1^2 I), ring of radius 0.8). "On the
modes" = within 3 std of the centre or of the ring (``ramac.envs.bandit.mode_fractions``).
Each behavioural check also trains the setting it replaces and asserts that it fails, so the
threshold is shown to separate the two.
"""

import dataclasses

import numpy as np
import pytest
import torch

from ramac.agents.base import make_agent, make_config
from ramac.agents.common import make_actor, no_bootstrap, seed_batched
from ramac.data.dataset import Batch, BatchSampler
from ramac.envs.bandit import BanditSpec, make_dataset, mode_fractions, ring_bins_covered
from ramac.nets.common import TimeConditionedMLP
from ramac.nets.vae import VAE

torch.set_num_threads(1)

SPEC = BanditSpec()
QUICK_BATCH = 128  # the quick profile's batch (configs/suites/bandit.yaml)


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(SPEC, 0)[0]


def fit_behaviour(kind: str, config, lr: float, dataset, steps: int) -> np.ndarray:
    """Train the actor a bandit config describes by BC alone; 2,000 of its samples."""
    torch.manual_seed(0)
    actor = make_actor(kind, 1, 2, 1.0, config)
    optimizer = torch.optim.Adam(actor.parameters(), lr=lr)
    sampler = BatchSampler(dataset, QUICK_BATCH, seed=0)
    for _ in range(steps):
        b = sampler.sample()
        loss = actor.loss(b.actions, b.obs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return actor.sample(torch.zeros(2000, 1), torch.Generator().manual_seed(1)).numpy()


@pytest.mark.parametrize(
    ("algo", "kind", "lr_key"), [("bc", "diffusion", "lr"), ("rafmac", "flow", "lr_actor")]
)
def test_bandit_behaviour_models_learn_both_modes(dataset, algo, kind, lr_key):
    config = make_config(algo, "bandit")
    lr = getattr(config, lr_key)
    actions = fit_behaviour(kind, config, lr, dataset, steps=2000)
    modes = mode_fractions(actions, SPEC)
    assert 1.0 - modes["between_frac"] >= 0.85, modes  # the acceptance asks 0.90 by 3,000
    assert modes["centre_frac"] >= 0.3 and modes["ring_frac"] >= 0.3, modes
    assert ring_bins_covered(actions, SPEC) >= 10

    # The same model with nn.Linear's default initialisation stays at the best linear
    # denoiser / velocity: half of its samples between the modes.
    plain = dataclasses.replace(config, actor_action_gain=1.0)
    modes = mode_fractions(fit_behaviour(kind, plain, lr, dataset, steps=2000), SPEC)
    assert modes["between_frac"] > 0.3, modes


def fit_oraac_prior(dataset, overrides: dict, steps: int) -> dict[str, float]:
    """Train ORAAC's prior alone (its own loss and Adam); mode shares of 2,000 of its samples."""
    torch.manual_seed(0)
    agent = make_agent("oraac", 1, 2, 1.0, "bandit", {"batch_size": QUICK_BATCH, **overrides})
    sampler = BatchSampler(dataset, QUICK_BATCH, seed=0)
    for _ in range(steps):
        b = sampler.sample()
        loss, _ = agent.prior_loss(b)
        agent.optims["prior"].zero_grad()
        loss.backward()
        agent.optims["prior"].step()
    with torch.no_grad():
        actions = agent.prior.sample(torch.zeros(2000, 1), torch.Generator().manual_seed(1))
    return mode_fractions(actions.numpy(), SPEC)


def test_oraac_bandit_vae_keeps_both_modes(dataset):
    modes = fit_oraac_prior(dataset, {}, steps=1500)
    assert modes["centre_frac"] >= 0.3 and modes["ring_frac"] >= 0.25, modes

    # O-RAAC's published VAE settings (KL weight 0.5, latent clipped to +-0.5) drop the ring.
    published = fit_oraac_prior(dataset, {"kl_weight": 0.5, "latent_clip": 0.5}, steps=1500)
    assert published["centre_frac"] > 0.95 and published["ring_frac"] < 0.02, published


def test_vae_latent_clip_is_a_setting():
    torch.manual_seed(0)
    obs = torch.zeros(50, 1)
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    unclipped = VAE(1, 2, hidden=16, latent_clip=None)
    out = unclipped.decode(obs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, unclipped.decode(obs, z))
    clipped = VAE(1, 2, hidden=16, latent_clip=0.2)
    clipped.load_state_dict(unclipped.state_dict())
    out = clipped.decode(obs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, clipped.decode(obs, z.clamp(-0.2, 0.2)))
    with pytest.raises(ValueError, match="latent_clip"):
        VAE(1, 2, hidden=16, latent_clip=0.0)


def test_action_gain_scales_only_the_action_inputs_initial_weights():
    torch.manual_seed(0)
    plain = TimeConditionedMLP(3, 2, hidden=8, n_layers=2, time_dim=4)
    torch.manual_seed(0)
    gained = TimeConditionedMLP(3, 2, hidden=8, n_layers=2, time_dim=4, action_gain=20.0)
    first, first_gained = plain.net[0].weight, gained.net[0].weight
    torch.testing.assert_close(first_gained[:, :2], 20.0 * first[:, :2])
    torch.testing.assert_close(first_gained[:, 2:], first[:, 2:])  # time and state columns
    pairs = zip(plain.named_parameters(), gained.parameters(), strict=True)
    for (name, p), q in pairs:
        if name != "net.0.weight":  # every other parameter is drawn exactly as before
            assert torch.equal(p, q), name


def test_diffusion_ql_acts_with_one_sample_on_the_bandit_only():
    assert make_config("diffusion_ql", "bandit").act_candidates == 1
    assert make_config("diffusion_ql", "halfcheetah-medium-expert-v2").act_candidates == 50


def test_terminal_batches_skip_target_actions_inside_seed_stacks():
    zeros = torch.zeros(4, 1)
    terminal = Batch(zeros, torch.zeros(4, 2), zeros, zeros, zeros)
    bootstrapping = terminal._replace(not_done=torch.ones(4, 1))
    assert no_bootstrap(terminal) and not no_bootstrap(bootstrapping)
    with seed_batched(all_terminal=True):  # values cannot be read under vmap: the stack's word
        assert no_bootstrap(bootstrapping)
    with seed_batched():
        assert not no_bootstrap(terminal)
