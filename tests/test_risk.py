"""Risk measures against analytic values and hand-computed cases."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from ramac.risk import cvar_estimate, make_distortion, sample_levels, tail_count

GRID = np.linspace(0.001, 0.999, 199)


def test_cvar_of_standard_normal_matches_analytic_value():
    x = np.random.default_rng(0).standard_normal(400_000)
    analytic = -norm.pdf(norm.ppf(0.1)) / 0.1  # -1.7550
    assert analytic == pytest.approx(-1.7550, abs=1e-4)
    for rule in ("ceil", "floor", "interpolated"):
        assert cvar_estimate(x, 0.1, rule) == pytest.approx(analytic, abs=0.02)


def test_tail_rules_on_hand_computed_cases():
    returns = [5.0, -3.0, 1.0, 10.0, -7.0, 2.0, 0.0, 4.0, 3.0, 6.0, 8.0, -1.0]  # n = 12
    # alpha = 0.2: alpha*n = 2.4 -> ceil 3 worst (-7, -3, -1), floor 2 worst (-7, -3)
    assert cvar_estimate(returns, 0.2, "ceil") == pytest.approx((-7 - 3 - 1) / 3)
    assert cvar_estimate(returns, 0.2, "floor") == pytest.approx((-7 - 3) / 2)
    # interpolated: (-7 - 3 + 0.4 * -1) / 2.4
    assert cvar_estimate(returns, 0.2, "interpolated") == pytest.approx((-10 - 0.4) / 2.4)
    # RAMAC's rule with 10 episodes and alpha = 0.1 is the single worst episode
    assert cvar_estimate(returns[:10], 0.1, "ceil") == -7.0
    # alpha = 1 is the mean under every rule
    for rule in ("ceil", "floor", "interpolated"):
        assert cvar_estimate(returns, 1.0, rule) == pytest.approx(np.mean(returns))


def test_tail_count_is_robust_to_float_error():
    assert tail_count(30, 0.1, "ceil") == 3  # 0.1 * 30 = 3.0000000000000004
    assert tail_count(50, 0.1, "ceil") == 5
    assert tail_count(70, 0.1, "floor") == 7  # 0.1 * 70 = 7.000000000000001


def test_floor_rule_raises_instead_of_returning_first_sample():
    with pytest.raises(ValueError, match="alpha"):
        cvar_estimate([3.0, 1.0, 2.0], 0.1, "floor")


@pytest.mark.parametrize(
    "args, match",
    [
        (([1.0, 2.0], 0.0), "alpha"),
        (([1.0, 2.0], 1.5), "alpha"),
        (([1.0, 2.0], float("nan")), "alpha"),
        (([], 0.1), "returns"),
        (([1.0, float("nan")], 0.1), "returns"),
        (([1.0, float("inf")], 0.1), "returns"),
    ],
)
def test_invalid_inputs_raise_value_error_naming_parameter(args, match):
    with pytest.raises(ValueError, match=match):
        cvar_estimate(*args)


def test_unknown_rule_and_distortion_raise():
    with pytest.raises(ValueError, match="rule"):
        cvar_estimate([1.0, 2.0], 0.5, "median")
    with pytest.raises(ValueError, match="distortion"):
        make_distortion("entropic")
    with pytest.raises(ValueError, match="alpha"):
        make_distortion("cvar", 0.0)


EXPECTED = {
    "neutral": lambda u: u,
    "cvar": lambda u: 0.1 * u,
    "wang": lambda u: norm.cdf(norm.ppf(u) - 0.75),
    "cpw": lambda u: u**0.71 / (u**0.71 + (1 - u) ** 0.71) ** (1 / 0.71),
    "power": lambda u: 1 - (1 - u) ** (1 / 3),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_distortion_matches_formula_on_grid(name):
    fn = make_distortion(name)
    got = fn(GRID)
    np.testing.assert_allclose(got, EXPECTED[name](GRID), rtol=1e-10, atol=1e-12)
    assert np.all((got > 0) & (got < 1))
    torch_got = fn(torch.tensor(GRID, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(torch_got, got, rtol=1e-9, atol=1e-12)


def test_distortion_parameters_are_used():
    u = np.array([0.3])
    assert make_distortion("wang", -0.7)(u)[0] == pytest.approx(norm.cdf(norm.ppf(0.3) - 0.7))
    assert make_distortion("cvar", 0.25)(u)[0] == pytest.approx(0.075)
    assert make_distortion("power", 2.0)(u)[0] == pytest.approx(0.3 ** (1 / 3))  # risk-seeking


def test_risk_averse_distortions_lower_the_mean_level():
    # Risk aversion moves the sampled levels towards the lower tail: E[tau] < 0.5.
    for name in ("cvar", "wang", "power"):
        assert make_distortion(name)(GRID).mean() < 0.5


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.5])
def test_cvar_levels_never_exceed_alpha(alpha):
    taus = sample_levels(
        10_000, make_distortion("cvar", alpha), generator=torch.Generator().manual_seed(0)
    )
    assert taus.max().item() <= alpha
    assert taus.min().item() > 0
    assert taus.mean().item() == pytest.approx(alpha / 2, rel=0.03)


def test_sample_levels_shape_and_seed():
    d = make_distortion("wang", -0.7)
    a = sample_levels(8, d, (4,), torch.Generator().manual_seed(3))
    b = sample_levels(8, d, (4,), torch.Generator().manual_seed(3))
    assert a.shape == (4, 8) and torch.equal(a, b)
    assert torch.isfinite(a).all() and not math.isnan(a.sum().item())
