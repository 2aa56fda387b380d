"""The risky bandit: its optima are where the config says, its data is seeded."""

import numpy as np
import pytest

from ramac.envs.bandit import (
    BanditSpec,
    make_dataset,
    mode_fractions,
    ring_bins_covered,
    sample_rewards,
)
from ramac.risk import cvar_estimate

SPEC = BanditSpec()


def test_analytic_optima_ring_for_mean_centre_for_cvar():
    a = SPEC.analytic()
    assert a["ring_mean"] == pytest.approx(1.7)
    assert a["centre_cvar"] == pytest.approx(1.0 - 0.1 * 1.7550, abs=1e-3)
    assert a["ring_mean"] > a["centre_mean"]  # risk-neutral optimum: the ring
    assert a["centre_cvar"] > a["ring_cvar"]  # CVaR_0.1 optimum: the centre


@pytest.mark.parametrize(
    "point, zone", [((0.0, 0.0), "centre"), ((0.8, 0.0), "ring"), ((0.9, 0.9), "ring")]
)
def test_sampled_rewards_match_the_zone_model(point, zone):
    rng = np.random.default_rng(1)
    actions = np.tile(np.array(point, dtype=np.float32), (200_000, 1))
    rewards, penalised = sample_rewards(actions, SPEC, rng)
    a = SPEC.analytic()
    assert rewards.mean() == pytest.approx(a[f"{zone}_mean"], abs=0.03)
    assert cvar_estimate(rewards, 0.1, "interpolated") == pytest.approx(a[f"{zone}_cvar"], abs=0.02)
    assert penalised.mean() == pytest.approx(0.1 if zone == "ring" else 0.0, abs=0.005)


def test_dataset_is_seeded_and_has_both_modes():
    d1, pen1 = make_dataset(SPEC, seed=3)
    d2, _ = make_dataset(SPEC, seed=3)
    np.testing.assert_array_equal(d1.actions, d2.actions)
    np.testing.assert_array_equal(d1.rewards, d2.rewards)
    assert len(d1) == 10_000 and d1.terminals.all() and np.abs(d1.actions).max() <= 1.0
    fr = mode_fractions(d1.actions, SPEC)
    assert fr["centre_frac"] == pytest.approx(0.5 * (1 - np.exp(-4.5)), abs=0.02)  # 3-sigma disc
    assert fr["ring_frac"] == pytest.approx(0.5, abs=0.02)
    assert pen1.sum() > 0 and not pen1[np.linalg.norm(d1.actions, axis=1) < 0.4].any()


def test_mode_fractions_on_hand_made_points():
    pts = np.array([[0.0, 0.0], [0.1, 0.1], [0.8, 0.0], [0.0, -0.85], [0.5, 0.0], [1.0, 1.0]])
    fr = mode_fractions(pts, SPEC)
    assert fr == {"centre_frac": 2 / 6, "ring_frac": 2 / 6, "between_frac": 2 / 6}


def test_ring_bins_covered_counts_angle_bins_of_ring_actions_only():
    spec = BanditSpec()
    # 10 ring actions at each of 3 angles (3 of 12 bins), plus centre actions that never count
    angles = np.repeat([0.1, 1.7, -2.5], 10)
    ring = spec.ring_radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    actions = np.concatenate([ring, np.zeros((50, 2))])
    assert ring_bins_covered(actions, spec) == 3
    # a bin needs `share` of the ring samples: 1 of 31 (3.2%) counts at 3%, not at 5%
    lone = np.concatenate([actions, spec.ring_radius * np.array([[np.cos(-1.0), np.sin(-1.0)]])])
    assert ring_bins_covered(lone, spec, share=0.03) == 4
    assert ring_bins_covered(lone, spec, share=0.05) == 3


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_samples", 1),
        ("n_samples", 10.0),
        ("centre_weight", -0.1),
        ("penalty_prob", 1.5),
        ("centre_std", 0.0),
        ("ring_reward_std", -1.0),
        ("ring_radius", float("nan")),
        ("centre_mode_radius", 0.7),  # reaches the ring band (0.8 - 0.15)
        ("zone_radius", 0.8),  # not inside the ring
    ],
)
def test_an_out_of_range_spec_is_one_line_naming_the_field(field, value):
    from ramac.errors import UserError

    spec = BanditSpec(**{field: value})
    with pytest.raises(UserError, match=rf"^where: {field}") as err:
        spec.validated("where")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError):
        make_dataset(spec, seed=0)  # never samples from a bad spec
    assert SPEC.validated() is SPEC
