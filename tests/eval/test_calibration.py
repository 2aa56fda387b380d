"""Tail calibration: known answers from stand-in critics whose quantile function is known,
the bandit's closed form, and the Monte-Carlo driver on a tiny horizon."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from eval.calibration import (
    BANDIT_LEVELS,
    bandit_critic_calibration,
    bandit_points,
    bandit_reward_cvar,
    bandit_reward_mean,
    bandit_reward_quantile,
    calibrate_agent,
    calibration,
    critic_atoms,
    gaussian_atom_cvar,
    gaussian_atom_quantile,
    mc_returns,
    midpoint_levels,
    policy_atoms,
    summarise_calibration,
    visited_state,
)
from eval.rollout import run_episodes
from ramac.envs.bandit import BanditSpec, sample_rewards
from ramac.envs.hazards import load_hazard
from ramac.envs.mujoco import make_env
from ramac.errors import UserError
from ramac.nets.iqn import IQNEnsemble

torch.set_num_threads(1)

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
# CVaR_0.1 of N(0, 1): -phi(Phi^-1(0.1)) / 0.1
NORMAL_CVAR = -norm.pdf(norm.ppf(0.1)) / 0.1  # -1.7550


def known_sample(n: int, mean: float = 0.0) -> np.ndarray:
    """A 'sample' of N(mean, 1) whose empirical quantiles are the true ones: Phi^-1 at the
    midpoints of n equal cells."""
    return mean + norm.ppf(midpoint_levels(n))


class GaussianCritic(nn.Module):
    """Stand-in IQN ensemble: member 0 is N(mean(a), 1) with mean(a) = shift + a[0]; member
    1 is 1 higher, so the ensemble minimum is member 0."""

    def __init__(self, shift: float = 0.0) -> None:
        super().__init__()
        self.shift = shift
        self.obs_dim = 1

    def forward(self, obs, actions, taus):
        mean = (self.shift + actions[:, :1]).expand(-1, taus.shape[-1])  # [B, N]
        z = mean + torch.special.ndtri(taus.expand_as(mean))
        return torch.stack([z, z + 1.0])


# ----------------------------------------------------------------------------- pure functions


def test_midpoint_levels():
    np.testing.assert_allclose(midpoint_levels(4), [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(midpoint_levels(2, 0.1), [0.025, 0.075])
    with pytest.raises(UserError):
        midpoint_levels(0)


def test_normal_critic_against_normal_returns_has_no_gap():
    atoms = norm.ppf(midpoint_levels(1000))  # the critic's quantile function, N(0, 1)
    summary, curve = calibration(atoms, known_sample(200_000), LEVELS)
    assert summary["predicted_cvar"] == pytest.approx(NORMAL_CVAR, abs=2e-3)
    assert summary["empirical_cvar"] == pytest.approx(NORMAL_CVAR, abs=2e-4)
    assert summary["mean_gap"] == pytest.approx(0.0, abs=1e-9)
    assert summary["cvar_gap"] == pytest.approx(0.0, abs=2e-3)
    assert summary["actor_cvar"] == summary["predicted_cvar"]  # one action
    np.testing.assert_allclose(curve["predicted"], norm.ppf(LEVELS), atol=2e-3)
    np.testing.assert_allclose(curve["gap"], 0.0, atol=2e-3)
    np.testing.assert_allclose(curve["coverage"], LEVELS, atol=1e-3)
    # A random sample of the same distribution: gaps within sampling error.
    random = np.random.default_rng(0).standard_normal(100_000)
    summary, curve = calibration(atoms, random, LEVELS)
    assert abs(summary["mean_gap"]) < 0.02 and abs(summary["cvar_gap"]) < 0.03
    np.testing.assert_allclose(curve["gap"], 0.0, atol=0.03)


def test_normal_critic_against_shifted_returns_has_gap_minus_one():
    """Returns ~ N(1, 1), critic N(0, 1): the critic under-predicts by 1 everywhere, and a
    return falls below its tau-quantile with probability Phi(Phi^-1(tau) - 1)."""
    atoms = norm.ppf(midpoint_levels(1000))
    summary, curve = calibration(atoms, known_sample(200_000, mean=1.0), LEVELS)
    assert summary["mean_gap"] == pytest.approx(-1.0, abs=1e-9)  # predicted - empirical
    assert summary["cvar_gap"] == pytest.approx(-1.0, abs=2e-3)
    np.testing.assert_allclose(curve["gap"], -1.0, atol=2e-3)
    np.testing.assert_allclose(curve["coverage"], norm.cdf(norm.ppf(LEVELS) - 1.0), atol=2e-3)


def test_actions_are_pooled_and_the_actor_cvar_averages_them():
    """Two equally likely actions with N(-1, 1) and N(1, 1) returns: the return mixes them."""
    grid = norm.ppf(midpoint_levels(2000))
    atoms = np.stack([grid - 1.0, grid + 1.0])  # [K = 2, M]
    # The mixture's CVaR_0.1: q with 0.5 Phi(q + 1) + 0.5 Phi(q - 1) = 0.1, then
    # (1 / 0.1) * 0.5 * sum_k (mu_k Phi(q - mu_k) - phi(q - mu_k)).
    from scipy.optimize import brentq

    q = brentq(lambda x: 0.5 * norm.cdf(x + 1) + 0.5 * norm.cdf(x - 1) - 0.1, -5, 5)
    mix_cvar = sum(0.5 * (m * norm.cdf(q - m) - norm.pdf(q - m)) for m in (-1, 1)) / 0.1
    summary, curve = calibration(atoms, np.zeros(10))
    assert summary["predicted_mean"] == pytest.approx(0.0, abs=1e-9)
    assert summary["predicted_cvar"] == pytest.approx(mix_cvar, abs=2e-3)  # about -2.31
    assert summary["actor_cvar"] == pytest.approx(NORMAL_CVAR, abs=2e-3)  # (-2.755 - 0.755) / 2
    assert curve.loc[curve["level"] == 0.1, "predicted"].item() == pytest.approx(q, abs=2e-3)


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserError, match="levels"):
        calibration(np.zeros(10), np.zeros(10), levels=[0.0, 0.5])
    with pytest.raises(UserError, match="empty"):
        calibration(np.zeros(10), np.array([]))
    with pytest.raises(UserError, match="NaN"):
        calibration(np.array([0.0, np.nan]), np.zeros(3))
    with pytest.raises(UserError, match="alpha"):
        calibration(np.zeros(10), np.zeros(10), alpha=1.5)


def test_summary_averages_over_states():
    atoms = norm.ppf(midpoint_levels(1000))
    rows, curves = [], []
    for seed, shift in ((0, 0.0), (1, 1.0)):
        summary, curve = calibration(atoms, known_sample(50_000, mean=shift), LEVELS)
        rows.append({"env_seed": seed, **summary})
        curves.append(curve.assign(env_seed=seed))
    import pandas as pd

    run = summarise_calibration(pd.DataFrame(rows), pd.concat(curves))
    assert run["n_states"] == 2
    assert run["mean_gap"] == pytest.approx(-0.5, abs=1e-6)
    assert run["abs_cvar_gap"] == pytest.approx(0.5, abs=2e-3)
    np.testing.assert_allclose(run["curve"]["gap"], -0.5, atol=2e-3)
    assert run["gap_sign"] == "predicted - empirical"


# ------------------------------------------------------------------------------ the critic


def test_critic_atoms_take_the_ensemble_minimum_at_midpoints():
    critic = GaussianCritic(shift=0.5)
    obs = np.zeros((2, 1), dtype=np.float32)
    actions = np.array([[[0.0], [1.0], [2.0]], [[-1.0], [0.0], [0.0]]], dtype=np.float32)
    atoms = critic_atoms(critic, obs, actions, n_levels=10)
    assert atoms.shape == (2, 3, 10)
    expected = 0.5 + actions[..., :1] + norm.ppf(midpoint_levels(10))  # member 0
    np.testing.assert_allclose(atoms, expected, atol=1e-5)
    # A real ensemble: the same as min over its members, per level.
    torch.manual_seed(0)
    iqn = IQNEnsemble(3, 2, n_critics=3, hidden=8, embed_dim=8, n_cos=4, head_hidden=8)
    obs, act = torch.randn(2, 3), torch.randn(2, 4, 2)
    atoms = critic_atoms(iqn, obs, act, n_levels=5)
    taus = torch.tensor(midpoint_levels(5), dtype=torch.float32)
    direct = iqn(obs[1:].expand(4, -1), act[1], taus).min(dim=0).values
    np.testing.assert_allclose(atoms[1], direct.detach().numpy(), rtol=1e-5, atol=1e-6)


class StandInAgent:
    """An agent with a known critic and a deterministic, state-dependent policy."""

    def __init__(self, critic: nn.Module, gamma: float = 0.9) -> None:
        self.critic = critic
        self.config = SimpleNamespace(gamma=gamma)
        self.calls = 0

    def generator(self, seed: int) -> torch.Generator:  # as Agent.generator, on the CPU
        return torch.Generator().manual_seed(seed)

    def act(self, obs, generator=None):
        self.calls += 1
        obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        return torch.tanh(obs[:, 2:5] * 5.0 + 0.3)


def test_policy_atoms_use_the_policy_actions():
    agent = StandInAgent(GaussianCritic())
    obs = np.random.default_rng(0).normal(size=(2, 11)).astype(np.float32)
    atoms = policy_atoms(agent, obs, n_actions=3, n_levels=20)
    first_action = np.tanh(obs[:, 2] * 5.0 + 0.3)  # GaussianCritic's mean is a[0]
    expected = first_action[:, None, None] + norm.ppf(midpoint_levels(20))[None, None]
    np.testing.assert_allclose(atoms, np.broadcast_to(expected, (2, 3, 20)), atol=1e-5)


# ----------------------------------------------------------------------------- Monte Carlo


def sway(obs: np.ndarray) -> np.ndarray:
    return np.tanh(np.asarray(obs)[..., 2:5] * 5.0 + 0.3)


def test_mc_returns_start_from_one_state_and_discount():
    start, rollouts = mc_returns(sway, "hopper", None, 7, n_rollouts=3, gamma=0.9, horizon=5)
    env = make_env("hopper", None, 7, 5)
    obs, _ = env.reset(seed=7)
    np.testing.assert_array_equal(start, obs)  # the evaluation episode's start state
    expected, t, done = 0.0, 0, False
    while not done:  # one rollout by hand
        obs, reward, term, trunc, _ = env.step(sway(obs[None])[0].astype(np.float32))
        expected += 0.9**t * reward
        t, done = t + 1, term or trunc
    # A deterministic policy and no hazard: every rollout is the same episode.
    np.testing.assert_allclose(rollouts["return"], expected, rtol=1e-6)
    assert (rollouts["length"] == 5).all()
    # gamma = 1: the undiscounted return of the evaluation rollout of that seed.
    _, undiscounted = mc_returns(sway, "hopper", None, 7, n_rollouts=1, gamma=1.0, horizon=5)
    episode = run_episodes(sway, "hopper", None, [7], max_episode_steps=5)
    assert undiscounted["return"].item() == pytest.approx(episode["return"].item(), rel=1e-6)
    with pytest.raises(UserError):
        mc_returns(sway, "hopper", None, 7, n_rollouts=0, gamma=0.9, horizon=5)


def test_visited_state_is_where_the_policy_is_and_rollouts_continue_from_it():
    state = visited_state(sway, "hopper", None, 7, steps=3)
    env = make_env("hopper", None, 7, 20)
    obs, _ = env.reset(seed=7)
    for _ in range(3):
        obs, *_ = env.step(sway(obs[None])[0].astype(np.float32))
    np.testing.assert_array_equal(state[0], env.unwrapped.data.qpos)
    np.testing.assert_array_equal(state[1], env.unwrapped.data.qvel)
    start, rollouts = mc_returns(sway, "hopper", None, 7, 2, 0.9, 4, start_state=state)
    np.testing.assert_allclose(start, obs)
    expected = 0.0
    for t in range(4):  # the episode's next 4 steps, discounted from the visited state
        obs, reward, *_ = env.step(sway(obs[None])[0].astype(np.float32))
        expected += 0.9**t * reward
    np.testing.assert_allclose(rollouts["return"], expected, rtol=1e-6)
    assert (rollouts["length"] == 4).all()


def narrow_hazard():
    return dataclasses.replace(
        load_hazard("ramac-v2", "hopper-medium-replay-v2"),
        low=-0.02,
        high=0.02,
        probability=0.5,
        terminate_factor=None,
    )


def test_mc_returns_differ_by_hazard_coins_and_repeat_exactly():
    hazard = narrow_hazard()
    _, first = mc_returns(sway, "hopper", hazard, 3, n_rollouts=6, gamma=0.99, horizon=30)
    _, again = mc_returns(sway, "hopper", hazard, 3, n_rollouts=6, gamma=0.99, horizon=30)
    np.testing.assert_array_equal(first["return"], again["return"])
    assert first["risky_steps"].sum() > 0
    assert first["return"].nunique() > 1  # same states and actions, different coins


def test_calibrate_agent_records_one_row_per_start_state():
    class ConstantCritic(nn.Module):
        """Predicts a point mass at 0 whatever the state, action and level."""

        def forward(self, obs, actions, taus):
            return torch.zeros(2, obs.shape[0], taus.shape[-1])

    agent = StandInAgent(ConstantCritic(), gamma=0.9)
    states, curve = calibrate_agent(
        agent, "hopper", None, [3, 7], horizon=4, n_rollouts=2, n_actions=2, n_levels=20
    )
    assert list(states["env_seed"]) == [3, 7] and len(curve) == 2 * len(LEVELS)
    assert list(states["start_step"]) == [0, 0]
    # Deterministic policy, no hazard: the return R is one number; predicted 0: gap = -R.
    np.testing.assert_allclose(states["mean_gap"], -states["empirical_mean"])
    np.testing.assert_allclose(states["cvar_gap"], -states["empirical_mean"])
    np.testing.assert_allclose(states["discount_at_horizon"], 0.9**4)
    assert set(states["gap_sign"]) == {"predicted - empirical"}
    assert set(states["quantiles"]) == {"min over the ensemble per level"}
    run = summarise_calibration(states, curve)
    assert run["n_states"] == 2
    visited, _ = calibrate_agent(
        agent, "hopper", None, [3], horizon=4, n_rollouts=2, n_actions=2, n_levels=20,
        visited_at=(2,),
    )  # fmt: skip
    assert list(visited["start_step"]) == [0, 2]  # the start state, then 2 steps later
    assert visited["empirical_mean"].nunique() == 2


# ---------------------------------------------------------------------------------- bandit


def test_bandit_closed_form_matches_the_spec_analytic_values():
    spec = BanditSpec()
    truth = spec.analytic()
    points = bandit_points(spec, n_angles=4)
    centre, ring = points["centre"], points["ring"]
    assert bandit_reward_cvar(centre, spec).item() == pytest.approx(truth["centre_cvar"])
    np.testing.assert_allclose(bandit_reward_cvar(ring, spec), truth["ring_cvar"])
    assert bandit_reward_mean(centre, spec).item() == pytest.approx(truth["centre_mean"])
    np.testing.assert_allclose(bandit_reward_mean(ring, spec), truth["ring_mean"])
    # Ring: the penalty up to level 0.1 (its probability), the N(3, 0.2) beyond.
    q = bandit_reward_quantile(ring[:1], [0.05, 0.1, 0.55], spec)[0]
    np.testing.assert_allclose(q, [-10.0, -10.0, 3.0], atol=1e-9)
    q = bandit_reward_quantile(centre, [0.1, 0.5], spec)[0]
    np.testing.assert_allclose(q, [1.0 + 0.1 * norm.ppf(0.1), 1.0])


def test_closed_form_with_the_atom_inside_the_gaussian():
    """A penalty within the ring's Gaussian range exercises every branch; checked against
    the midpoint rule on the quantile function and a large sample of the true model."""
    spec = dataclasses.replace(BanditSpec(), penalty=2.9, penalty_prob=0.3)
    ring = bandit_points(spec, 1)["ring"]
    fine = midpoint_levels(200_000)
    quantile = bandit_reward_quantile(ring, fine, spec)[0]
    for alpha in (0.05, 0.1, 0.4, 0.8, 1.0):
        numeric = quantile[fine < alpha].mean()
        assert bandit_reward_cvar(ring, spec, alpha).item() == pytest.approx(numeric, abs=1e-3)
    rewards, _ = sample_rewards(np.repeat(ring, 400_000, axis=0), spec, np.random.default_rng(0))
    levels = [0.1, 0.3, 0.35, 0.5, 0.9]
    np.testing.assert_allclose(
        bandit_reward_quantile(ring, levels, spec)[0], np.quantile(rewards, levels), atol=0.01
    )
    assert gaussian_atom_quantile([0.5], 0.0, 1.0).item() == pytest.approx(0.0)
    assert gaussian_atom_cvar(0.1, 0.0, 1.0) == pytest.approx(NORMAL_CVAR)
    with pytest.raises(UserError):
        gaussian_atom_cvar(0.1, 0.0, 0.0)


class TrueBanditCritic(nn.Module):
    """A critic that has learned the bandit exactly (member 1 is 1 higher); ``collapse``
    puts every level at the true median instead, as the public code's loss drives it."""

    def __init__(self, spec: BanditSpec, collapse: bool = False) -> None:
        super().__init__()
        self.spec, self.collapse, self.obs_dim = spec, collapse, 1

    def forward(self, obs, actions, taus):
        levels = np.full(taus.shape[-1], 0.5) if self.collapse else taus.numpy()
        q = bandit_reward_quantile(actions.numpy(), levels, self.spec)
        z = torch.as_tensor(q, dtype=torch.float32)
        return torch.stack([z, z + 1.0])


def test_bandit_critic_that_knows_the_tail_has_no_gap():
    spec = BanditSpec()
    rows, curve = bandit_critic_calibration(TrueBanditCritic(spec), spec, n_angles=4)
    assert list(rows["zone"]) == ["centre"] + ["ring"] * 4
    assert len(curve) == 5 * len(BANDIT_LEVELS)
    np.testing.assert_allclose(rows["cvar_gap"], 0.0, atol=2e-3)
    np.testing.assert_allclose(rows["mean_gap"], 0.0, atol=2e-3)
    np.testing.assert_allclose(curve["gap"], 0.0, atol=1e-5)


def test_bandit_critic_collapsed_to_the_median_misses_the_ring_tail_by_13():
    spec = BanditSpec()
    rows, _ = bandit_critic_calibration(TrueBanditCritic(spec, collapse=True), spec, n_angles=2)
    ring = rows[rows["zone"] == "ring"]
    median = 3.0 + 0.2 * norm.ppf((0.5 - 0.1) / 0.9)  # the ring's median, about 2.97
    np.testing.assert_allclose(ring["predicted_cvar"], median, atol=1e-5)
    np.testing.assert_allclose(ring["cvar_gap"], median + 10.0, atol=1e-5)  # about 12.97
    np.testing.assert_allclose(ring["cvar_rel_gap"], (median + 10.0) / 10.0, atol=1e-6)
    centre = rows[rows["zone"] == "centre"]
    assert centre["cvar_gap"].item() == pytest.approx(1.0 - spec.analytic()["centre_cvar"])
