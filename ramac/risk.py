"""Risk measures: distortion samplers for the critic, tail estimators for returns.

Distortions map uniform levels u in (0, 1) to distorted quantile levels tau = beta(u);
averaging Z(s, a, beta(u)) over u ~ U(0, 1) estimates the distorted risk measure
(Dabney et al. 2018 style sampling, as both RAMAC and ORAAC do; docs/reference-code.md,
"Risk distortions", which names their files). Tail estimators compute CVaR_alpha of a sample
of episode returns with the tail rule stated, because the public codes disagree on it
(docs/reference-code.md, "Risk distortions" and "Public-code issues", item 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

Levels = TypeVar("Levels", np.ndarray, torch.Tensor)

# Default parameters (docs/reference-code.md, "Risk distortions"). Wang's eta is -0.75 as in
# ORAAC; the RAMAC code uses -0.7, so it is a parameter.
DEFAULT_PARAMS = {"neutral": None, "cvar": 0.1, "wang": -0.75, "cpw": 0.71, "power": -2.0}

TAIL_RULES = ("ceil", "floor", "interpolated")


def _lib(u: Levels):
    return torch if isinstance(u, torch.Tensor) else np


def _normal_cdf(x: Levels) -> Levels:
    if isinstance(x, torch.Tensor):
        return torch.special.ndtr(x)
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def _normal_icdf(u: Levels) -> Levels:
    if isinstance(u, torch.Tensor):
        return torch.special.ndtri(u)
    from scipy.special import ndtri

    return ndtri(u)


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x)


def neutral(u: Levels) -> Levels:
    """The identity: the expectation of Z."""
    return u


def cvar(u: Levels, alpha: float = 0.1) -> Levels:
    """CVaR_alpha: tau = alpha * u, i.e. tau ~ U(0, alpha) (docs/reference-code.md, "Risk
    distortions")."""
    _check_alpha(alpha)
    return alpha * u


def wang(u: Levels, eta: float = -0.75) -> Levels:
    """Wang transform: tau = Phi(Phi^-1(u) + eta); eta < 0 is risk-averse
    (docs/reference-code.md, "Risk distortions")."""
    return _normal_cdf(_normal_icdf(u) + eta)


def cpw(u: Levels, eta: float = 0.71) -> Levels:
    """Cumulative probability weighting: u^eta / (u^eta + (1-u)^eta)^(1/eta)
    (docs/reference-code.md, "Risk distortions").

    RAMAC's RAFMAC code omits the 1/eta power; this is the RADAC/ORAAC formula.
    """
    return u**eta / (u**eta + (1.0 - u) ** eta) ** (1.0 / eta)


def power(u: Levels, eta: float = -2.0) -> Levels:
    """Power distortion with exponent e = 1/(1+|eta|): risk-averse 1-(1-u)^e for eta < 0,
    risk-seeking u^e for eta >= 0 (docs/reference-code.md, "Risk distortions")."""
    e = 1.0 / (1.0 + abs(eta))
    return 1.0 - (1.0 - u) ** e if eta < 0 else u**e


_DISTORTIONS: dict[str, Callable] = {
    "neutral": neutral,
    "cvar": cvar,
    "wang": wang,
    "cpw": cpw,
    "power": power,
}


def make_distortion(name: str, param: float | None = None) -> Callable[[Levels], Levels]:
    """The distortion ``name`` with its parameter (``None`` = the default above).

    Works on numpy arrays and torch tensors alike, and is differentiable in torch.
    """
    if name not in _DISTORTIONS:
        raise ValueError(f"distortion: unknown name '{name}' (known: {', '.join(_DISTORTIONS)})")
    fn = _DISTORTIONS[name]
    if name == "neutral":
        return fn
    value = DEFAULT_PARAMS[name] if param is None else float(param)
    if name == "cvar":
        _check_alpha(value)
    return lambda u: fn(u, value)


def sample_levels(
    n: int,
    distortion: Callable[[torch.Tensor], torch.Tensor],
    shape: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Draw ``shape + (n,)`` distorted levels tau = distortion(u), u ~ U(eps, 1 - eps).

    The clamp keeps inverse-normal based distortions (Wang) finite.
    """
    u = torch.rand(*shape, n, generator=generator).clamp(eps, 1.0 - eps)
    return distortion(u)


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha <= 1.0) or math.isnan(alpha):
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")


def _check_returns(returns: np.ndarray | list[float]) -> np.ndarray:
    x = np.asarray(returns, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("returns: the sample is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("returns: the sample contains NaN or infinite values")
    return x


def tail_count(n: int, alpha: float, rule: str) -> int:
    """How many of the worst samples the ``ceil`` / ``floor`` rules average."""
    _check_alpha(alpha)
    if rule == "ceil":
        # A small tolerance so that e.g. 0.1 * 30 (= 3.0000000000000004) counts 3, not 4.
        return max(1, math.ceil(alpha * n - 1e-9))
    if rule == "floor":
        return math.floor(alpha * n + 1e-9)
    raise ValueError(f"rule must be one of {TAIL_RULES}, got '{rule}'")


def cvar_estimate(
    returns: np.ndarray | list[float], alpha: float = 0.1, rule: str = "ceil"
) -> float:
    """Empirical CVaR_alpha (lower tail) of a sample of returns.

    Tail rules:
      - ``ceil``: mean of the worst ceil(alpha*n) returns (RAMAC's ``lower_tail_mean``;
        with n = 10 and alpha = 0.1 it is the single worst episode);
      - ``floor``: mean of the worst floor(alpha*n) (ORAAC's ``compute_cvar``), which
        raises when that count is 0 instead of returning the first sample as ORAAC does;
      - ``interpolated``: the exact CVaR of the empirical distribution, i.e. the worst
        alpha-fraction with a fractional weight alpha*n - floor(alpha*n) on the boundary
        sample.
    The two codes' rules: docs/reference-code.md, "Risk distortions"; "Public-code issues",
    item 4.
    """
    _check_alpha(alpha)
    x = np.sort(_check_returns(returns))
    n = x.size
    if rule == "interpolated":
        mass = alpha * n
        k = math.floor(mass + 1e-9)
        frac = max(0.0, mass - k)
        total = x[:k].sum() + (frac * x[k] if k < n and frac > 0 else 0.0)
        return float(total / mass)
    k = tail_count(n, alpha, rule)
    if k == 0:
        raise ValueError(
            f"alpha: floor({alpha} * {n}) = 0 samples in the tail; use more episodes or "
            "rule='ceil'/'interpolated'"
        )
    return float(x[:k].mean())
