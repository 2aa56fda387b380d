"""The 2-D risky bandit of the paper's Figure 3 (docs/reference-code.md, "The paper").

One dummy state; actions in [-1, 1]^2. The behaviour data has two modes: a safe centre
cluster and a ring around it. The ring pays more on average but now and then a large
penalty; the centre pays a moderate reward with no tail. The paper gives no numbers,
so ours are chosen so that the risk-neutral optimum is the ring and the CVaR_0.1
optimum the centre (see ``BanditSpec`` and the README):

    centre: reward ~ N(1.0, 0.1)                        mean 1.0, CVaR_0.1 = 0.8245
    ring:   reward ~ N(3.0, 0.2), replaced by -10 w.p. 0.1  mean 1.7, CVaR_0.1 = -10

The true reward model is defined for every action in the square: an action pays the
reward of the zone it falls in, the centre zone being ||a|| <= ``zone_radius`` (0.4,
half-way between the modes) and the ring zone everything beyond it. Off-support actions
(between the modes, or in the corners) are therefore neither rewarded nor punished for
being off-support; the OOD detector measures that separately.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ramac.data.dataset import OfflineDataset, Provenance
from ramac.errors import UserError, brief


@dataclasses.dataclass(frozen=True)
class BanditSpec:
    """Geometry and reward model of the bandit; every number is written out."""

    n_samples: int = 10_000  # behaviour dataset size
    centre_weight: float = 0.5  # share of the data in the centre mode
    centre_std: float = 0.1  # the centre mode is N(0, centre_std^2 I)
    ring_radius: float = 0.8
    ring_std: float = 0.05  # radial spread of the ring; angles are uniform
    zone_radius: float = 0.4  # ||a|| <= zone_radius pays the centre reward
    centre_reward_mean: float = 1.0
    centre_reward_std: float = 0.1
    ring_reward_mean: float = 3.0
    ring_reward_std: float = 0.2
    penalty_prob: float = 0.1
    penalty: float = -10.0
    centre_mode_radius: float = 0.3  # "in the centre mode" for the metrics (3 std)
    ring_band: float = 0.15  # "on the ring" for the metrics: | ||a|| - radius | <= band (3 std)

    def validated(self, where: str = "BanditSpec") -> BanditSpec:
        """This spec when every value is in range, else a one-line UserError naming the field.

        ``where`` names the file and block (``configs/suites/bandit.yaml [bandit]``).
        """

        def number(key: str, low: float | None = None, high: float | None = None) -> None:
            """``key`` a finite number; above ``low`` (open), at most ``high`` (closed)."""
            value: Any = getattr(self, key)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
            ok = ok and (low is None or value > low) and (high is None or value <= high)
            if not ok:
                lo = "(-inf" if low is None else f"({low:g}"
                hi = "inf)" if high is None else f"{high:g}]"
                raise UserError(
                    f"{where}: {key} must be a number in {lo}, {hi}, got {brief(value)}"
                )

        def fraction(key: str) -> None:
            value: Any = getattr(self, key)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not (ok and 0.0 <= value <= 1.0):
                raise UserError(
                    f"{where}: {key} must be a probability in [0, 1], got {brief(value)}"
                )

        n = self.n_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise UserError(f"{where}: n_samples must be a whole number >= 2, got {brief(n)}")
        for key in ("centre_weight", "penalty_prob"):
            fraction(key)
        for key in ("centre_std", "ring_std", "centre_reward_std", "ring_reward_std"):
            number(key, low=0.0)
        for key in ("ring_radius", "zone_radius", "centre_mode_radius", "ring_band"):
            number(key, low=0.0)
        for key in ("centre_reward_mean", "ring_reward_mean", "penalty"):
            number(key)
        # The centre zone (rewards) and the centre mode (metrics) lie inside the ring, and
        # the metrics' "on the ring" band does not reach the centre mode.
        if self.zone_radius >= self.ring_radius:
            raise UserError(
                f"{where}: zone_radius ({brief(self.zone_radius)}) must be below ring_radius "
                f"({brief(self.ring_radius)}): the centre zone lies inside the ring"
            )
        if self.centre_mode_radius >= self.ring_radius - self.ring_band:
            raise UserError(
                f"{where}: centre_mode_radius ({brief(self.centre_mode_radius)}) must be below "
                f"ring_radius - ring_band ({brief(self.ring_radius)} - "
                f"{brief(self.ring_band)}): the "
                "centre mode and the ring band must not overlap"
            )
        return self

    def analytic(self) -> dict[str, float]:
        """Mean and CVaR_0.1 of each zone's reward, for the README and the tests."""
        from scipy.stats import norm

        z = norm.pdf(norm.ppf(0.1)) / 0.1
        ring_mean = (
            1 - self.penalty_prob
        ) * self.ring_reward_mean + self.penalty_prob * self.penalty
        # With penalty_prob >= 0.1 the worst 10% are all penalties.
        ring_cvar = self.penalty if self.penalty_prob >= 0.1 else float("nan")
        return {
            "centre_mean": self.centre_reward_mean,
            "centre_cvar": self.centre_reward_mean - self.centre_reward_std * z,
            "ring_mean": ring_mean,
            "ring_cvar": ring_cvar,
        }


def sample_rewards(
    actions: np.ndarray, spec: BanditSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rewards of ``actions`` [n, 2] drawn from the true model, and the penalty flags."""
    actions = np.asarray(actions, dtype=np.float64)
    in_centre = np.linalg.norm(actions, axis=1) <= spec.zone_radius
    noise = rng.standard_normal(len(actions))
    coins = rng.random(len(actions))
    centre = spec.centre_reward_mean + spec.centre_reward_std * noise
    ring = spec.ring_reward_mean + spec.ring_reward_std * noise
    penalised = ~in_centre & (coins < spec.penalty_prob)
    rewards = np.where(in_centre, centre, np.where(penalised, spec.penalty, ring))
    return rewards.astype(np.float32), penalised


def sample_behaviour_actions(spec: BanditSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """Actions of the behaviour policy: the centre Gaussian and the ring, clipped to the square."""
    in_centre = rng.random(n) < spec.centre_weight
    centre = spec.centre_std * rng.standard_normal((n, 2))
    angle = rng.uniform(0.0, 2 * np.pi, n)
    radius = spec.ring_radius + spec.ring_std * rng.standard_normal(n)
    ring = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return np.clip(np.where(in_centre[:, None], centre, ring), -1.0, 1.0).astype(np.float32)


def make_dataset(spec: BanditSpec, seed: int) -> tuple[OfflineDataset, np.ndarray]:
    """The behaviour dataset (one-step episodes from a dummy state) and its penalty flags."""
    spec.validated()
    rng = np.random.default_rng(seed)
    actions = sample_behaviour_actions(spec, spec.n_samples, rng)
    rewards, penalised = sample_rewards(actions, spec, rng)
    n = spec.n_samples
    obs = np.zeros((n, 1), dtype=np.float32)
    dataset = OfflineDataset(
        observations=obs,
        actions=actions,
        rewards=rewards,
        next_observations=obs.copy(),
        terminals=np.ones(n, dtype=bool),  # one-step episodes: the critic learns r itself
        timeouts=np.zeros(n, dtype=bool),
        risky=penalised,
        provenance=Provenance(
            source="bandit",
            id="bandit",
            version="1",
            env_id="ramac/RiskyBandit2D",
            extra={"spec": dataclasses.asdict(spec), "seed": seed},
        ),
    )
    return dataset, penalised


def mode_fractions(actions: np.ndarray, spec: BanditSpec) -> dict[str, float]:
    """Fractions of actions in the centre mode, on the ring, and in neither."""
    radius = np.linalg.norm(np.asarray(actions, dtype=np.float64), axis=1)
    centre = radius <= spec.centre_mode_radius
    ring = np.abs(radius - spec.ring_radius) <= spec.ring_band
    return {
        "centre_frac": float(centre.mean()),
        "ring_frac": float(ring.mean()),
        "between_frac": float((~centre & ~ring).mean()),
    }


def ring_bins_covered(
    actions: np.ndarray, spec: BanditSpec, n_bins: int = 12, share: float = 0.03
) -> int:
    """How many of ``n_bins`` equal angle bins hold at least ``share`` of the actions on
    the ring: whether a model covers the ring's angle, not just its radius."""
    actions = np.asarray(actions, dtype=np.float64)
    radius = np.linalg.norm(actions, axis=1)
    ring = actions[np.abs(radius - spec.ring_radius) <= spec.ring_band]
    counts, _ = np.histogram(np.arctan2(ring[:, 1], ring[:, 0]), n_bins, (-np.pi, np.pi))
    return int((counts >= share * max(len(ring), 1)).sum())
