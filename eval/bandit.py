"""Evaluation of a trained bandit policy: reward, tail risk, modes and OOD rate.

The policy's sampled actions are scored with rewards drawn from the bandit's true model
(`ramac.envs.bandit`), never with the critic, so the numbers measure the policy itself.
:func:`evaluate_run` samples a trained run's actions, scores them, writes them to the run's
``actions.npz`` (the figure is drawn from it) and returns the run's metrics row.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np
import pandas as pd
import torch

from eval.ood import OODDetector
from eval.settings import RiskSettings, whole
from ramac.data.dataset import OfflineDataset
from ramac.envs.bandit import BanditSpec, mode_fractions, sample_rewards
from ramac.io import atomic_write_bytes, require_regular_file
from ramac.risk import cvar_estimate
from ramac.train import TRAIN_LOG

EVAL_SEED_OFFSET = 10_000  # evaluation draws use seed + offset: never the training streams
ACTIONS = "actions.npz"


@dataclasses.dataclass(frozen=True, kw_only=True)
class BanditEvalSettings(RiskSettings):
    """The ``eval:`` block of the bandit's suite file (a profile may set n_actions)."""

    n_actions: int  # actions sampled from each trained policy

    def validated(self, where: str) -> Self:
        whole(where, "n_actions", self.n_actions)
        return super().validated(where)


class TrainedBanditRun(Protocol):
    """What evaluation reads of a trained bandit run (``pipeline.bandit.BanditJob`` is one)."""

    algo: str
    seed: int
    steps: int
    run_dir: Path
    schedule_scale: float
    spec: BanditSpec
    data_seed: int
    eval_settings: BanditEvalSettings


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


def read_actions(path: Path) -> np.ndarray:
    """A run's sampled actions from its ``actions.npz``; an exception when it cannot be read
    whole (a truncated file), so that the run is evaluated again."""
    with np.load(require_regular_file(path)) as data:
        actions, rewards = data["actions"], data["rewards"]
    if actions.ndim != 2 or len(actions) != len(rewards):
        raise ValueError(f"actions {actions.shape} and rewards {rewards.shape} do not match")
    return actions


def evaluate_run(run: TrainedBanditRun, agent: Any, dataset: OfflineDataset) -> dict[str, Any]:
    """Sample ``eval.n_actions`` actions of the run's trained ``agent``, score them, write
    them (with their rewards) to ``actions.npz``; returns the run's metrics row."""
    settings = run.eval_settings
    # The training loop's own clock (a stacked run's is its stack's).
    train_seconds = pd.read_csv(require_regular_file(run.run_dir / TRAIN_LOG))["wall_seconds"].iloc[
        -1
    ]
    eval_seed = run.seed + EVAL_SEED_OFFSET
    obs = torch.zeros(settings.n_actions, dataset.obs_dim)
    actions = agent.act(obs, generator=agent.generator(eval_seed)).cpu().numpy()
    detector = OODDetector().fit(dataset.actions, seed=run.data_seed)
    metrics, rewards = evaluate_actions(
        actions,
        run.spec,
        detector,
        alpha=settings.alpha,
        rule=settings.cvar_rule,
        kappa=settings.kappa,
        kappa_sweep=settings.kappa_sweep,
        seed=eval_seed,
    )
    buffer = io.BytesIO()
    np.savez_compressed(buffer, actions=actions, rewards=rewards)
    atomic_write_bytes(run.run_dir / ACTIONS, buffer.getvalue())
    return {
        "suite": "bandit",
        "dataset": "bandit",
        "algo": run.algo,
        "seed": run.seed,
        "run": run.run_dir.name,
        "n_actions": len(actions),
        **metrics,
        "train_steps": run.steps,
        "schedule_scale": run.schedule_scale,
        "wall_seconds": round(train_seconds, 2),
    }
