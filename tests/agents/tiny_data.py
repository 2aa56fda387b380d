"""Tiny data and an untrained tiny dynamics model for the model-based agents' tests (RAVL
needs its dataset and a model before it can update: ``attach``)."""

import numpy as np
import torch

from ramac.data.dataset import OfflineDataset, Provenance
from ramac.models.dynamics import DynamicsConfig, DynamicsEnsemble

OBS_DIM, ACT_DIM = 3, 2
# RAVL's networks, rollouts and batches at test sizes; RAVL_TINY_IQN: RAVL (CVaR)'s critic.
RAVL_TINY = dict(
    batch_size=16, actor_hidden=16, critic_hidden=16, critic_layers=2, n_critics=3,
    rollout_batch=8, rollout_every=2, steps_k=2, dataset_ratio=0.25,
)  # fmt: skip
RAVL_TINY_IQN = dict(embed_dim=8, n_cos=8, head_hidden=16, n_quantiles=4)


def tiny_dataset(n: int = 64, task: str = "halfcheetah", obs_dim: int = OBS_DIM) -> OfflineDataset:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    return OfflineDataset(
        obs,
        rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        obs + 0.1,
        np.zeros(n, bool),
        np.zeros(n, bool),
        Provenance(source="synthetic", id=f"{task}-tiny"),
    )


def tiny_model(task: str = "halfcheetah", obs_dim: int = OBS_DIM) -> DynamicsEnsemble:
    """An untrained two-member model: rollouts need a model, not a good one."""
    config = DynamicsConfig(n_members=2, n_elites=1, hidden=8, n_layers=1, weight_decays=(0, 0))
    torch.manual_seed(0)
    return DynamicsEnsemble(obs_dim, ACT_DIM, task, config)
