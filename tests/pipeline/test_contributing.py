"""docs/contributing.md, followed once: an algorithm added the documented way (a Config
dataclass, an Agent subclass, ``register``, a ``configs/algos/<name>.yaml``) trains (its
seeds as one seed stack), evaluates and appears in the bandit's tables and figure with no
other change."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import Tensor, nn

import ramac.config
from pipeline.bandit import run_bandit
from ramac.agents.base import AGENTS, Agent, Phase, register
from ramac.data.dataset import Batch


@dataclass
class MeanActionConfig:
    """A constant policy: the data's mean action, learnt by least squares."""

    batch_size: int = 64  # rows per update
    lr: float = 1e-3  # Adam's step: 20 smoke updates move the action by at most 0.02


class ConstantAction(nn.Module):
    def __init__(self, act_dim: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs: Tensor) -> Tensor:
        return self.value.expand(obs.shape[0], -1)


class MeanAction(Agent):
    """Every state gets the same action; an update moves it towards the batch's actions."""

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config) -> None:
        super().__init__(obs_dim, act_dim, max_action, config)
        self.policy = self.add_net("policy", ConstantAction(act_dim))
        self.optims["policy"] = torch.optim.Adam(self.policy.parameters(), lr=config.lr)

    def phases(self) -> list[Phase]:
        return [Phase("policy", self.mse)]

    def mse(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        loss = ((self.policy(b.obs) - b.actions) ** 2).mean()
        return loss, {"mse": loss.detach()}

    def _policy(self, obs: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.policy(obs)


@pytest.fixture
def mean_action(tmp_path, monkeypatch):
    """The algorithm registered (as a module under ramac/agents/ does on import) with its
    YAML file in a copy of configs/ (no per-dataset overrides), for this test only."""
    algos = tmp_path / "configs" / "algos"
    algos.mkdir(parents=True)
    (algos / "mean_action.yaml").write_text("overrides: {}\n")
    monkeypatch.setattr(ramac.config, "CONFIG_DIR", tmp_path / "configs")
    register("mean_action", MeanActionConfig, MeanAction, "Mean action")
    try:
        yield "mean_action"
    finally:
        AGENTS.pop("mean_action")


def test_a_new_algorithm_runs_through_the_bandit(mean_action, tmp_path):
    out = tmp_path / "bandit"
    summary = run_bandit(profile="smoke", out=out, workers=1, algos=[mean_action], seeds=2)

    assert summary["algo"].tolist() == [mean_action] * 2 and summary["seed"].tolist() == [0, 1]
    assert summary["train_steps"].tolist() == [20, 20]
    for name in summary["run"]:
        run = out / "runs" / mean_action / name
        assert yaml.safe_load((run / "config.yaml").read_text())["trained_with_seeds"] == [0, 1]
        assert "mse" in pd.read_csv(run / "train_log.csv")
        actions = np.load(run / "actions.npz")["actions"]
        assert actions.shape == (200, 2) and (actions == actions[0]).all()  # a constant policy
        assert np.abs(actions).max() <= 0.02  # 20 Adam steps of 1e-3 from the origin
    # so every sampled action is in the safe centre mode, none on the ring
    assert summary[["centre_frac", "ring_frac"]].values.tolist() == [[1.0, 0.0]] * 2
    assert np.isfinite(summary[["mean_reward", "cvar", "ood_rate"]].to_numpy()).all()
    assert "Mean action" in (out / "leaderboard.md").read_text()
    assert (out / "bandit.png").read_bytes()[:4] == b"\x89PNG"
