"""Evaluation of a trained bandit policy: reward, tail risk, modes and OOD rate.

The policy's sampled actions are scored with rewards drawn from the bandit's true model
(`ramac.envs.bandit`), never with the critic, so the numbers measure the policy itself.
"""

from __future__ import annotations

import numpy as np

from eval.ood import OODDetector
from ramac.envs.bandit import BanditSpec, mode_fractions, sample_rewards
from ramac.risk import cvar_estimate


def evaluate_actions(
    actions: np.ndarray,
    spec: BanditSpec,
    detector: OODDetector,
    *,
    alpha: float,
    rule: str,
    kappa: float,
    kappa_sweep: list[float],
    seed: int,
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of one policy's ``actions`` [n, 2] and the rewards they drew."""
    rewards, _ = sample_rewards(actions, spec, np.random.default_rng(seed))
    metrics = {
        "mean_reward": float(rewards.mean()),
        "cvar": cvar_estimate(rewards, alpha, rule),
        **mode_fractions(actions, spec),
        **detector.rate_columns(actions, kappa, kappa_sweep),
    }
    return metrics, rewards
