"""What a dynamics model sees of a dataset's stochastic hazard.

A hazard (``ramac.envs.hazards``) penalises a risky step with probability p. A reward model
fitted by a Gaussian likelihood can absorb that two ways: its mean moves by p x cost (the
expected penalty), and its variance widens. Whether samples from it ever look like a
penalty is the question for a risk-aware critic trained on model rollouts: a CVaR critic can
only see a tail the model puts in its rewards. Two measures answer it:

- :func:`penalty_fidelity`: on a dataset's (held-out) risky rows, the share of rows the data
  penalised against the share of the model's reward draws that fall nearer the penalised
  reward than the unpenalised one, and the mean penalty in the data against the model's
  mean shift. The unpenalised reward of each row is recovered exactly from the relabelling's
  coin seed (:func:`penalties`).
- :func:`hazard_share`: the share of model states in the hazard region (the rollouts'
  counterpart of an evaluation's ``risky_rate``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ramac.data.dataset import OfflineDataset
from ramac.envs.hazards import HazardSpec, hazard_outcome, risk_mask


def hazard_spec_of(dataset: OfflineDataset) -> HazardSpec | None:
    """The spec ``dataset`` was relabelled with (from its provenance), or None."""
    recorded = dataset.provenance.hazard
    if not recorded or dataset.risky is None:
        return None
    names = {f.name for f in dataclasses.fields(HazardSpec)}
    return HazardSpec(**{k: v for k, v in recorded.items() if k in names})


def penalties(dataset: OfflineDataset, spec: HazardSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(applied, full)`` per row: the penalty the relabelling added (0 where its coin
    spared the row or the row is not risky), and the penalty the row gets when its coin
    falls (0 on rows that are not risky; ``replace_forward``'s depends on the velocity).
    The coins are the relabelling's own, redrawn from the seed its provenance records,
    exactly as :func:`ramac.envs.hazards.relabel` draws them."""
    seed = dataset.provenance.hazard["seed"]
    uniforms = np.random.default_rng(seed).random(len(dataset))
    signal, unknown = dataset.post_step_signal(spec.obs_index)
    signal = np.where(unknown, 0.0, signal)
    applied, _, _ = hazard_outcome(spec, signal, uniforms)
    full, _, _ = hazard_outcome(spec, signal, np.zeros(len(dataset)))
    return np.where(unknown, 0.0, applied), full


@torch.no_grad()
def penalty_fidelity(
    model: Any, dataset: OfflineDataset, rows: np.ndarray, generator: torch.Generator
) -> dict[str, float] | None:
    """The model's reward head against the data's penalties on the risky rows among ``rows``
    (``model.step``, a random elite per row, as rollouts draw). None without a hazard.

    A model draw counts as a penalty when it lies below the unpenalised reward by more than
    half the penalty (the midpoint of the data's two outcomes)."""
    spec = hazard_spec_of(dataset)
    if spec is None:
        return None
    rows = np.asarray(rows)
    risky_rows = rows[dataset.risky[rows]]
    applied, full = (a[risky_rows] for a in penalties(dataset, spec))
    record = {
        "risky_share": float(len(risky_rows) / max(len(rows), 1)),
        "risky_rows": int(len(risky_rows)),
        "penalty_probability": float(spec.probability),
    }
    if not len(risky_rows):
        return record
    device = next(iter(model.buffers())).device

    def t(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)

    obs, actions = t(dataset.observations[risky_rows]), t(dataset.actions[risky_rows])
    base = dataset.rewards[risky_rows].astype(np.float64) - applied
    drawn = model.step(obs, actions, generator, sample_reward=True)[1].cpu().numpy() - base
    mean = model.step(obs, actions, generator, sample_reward=False)[1].cpu().numpy() - base
    return record | {
        "data_penalty_rate": float(np.mean(applied != 0)),
        "model_penalty_rate": float(np.mean(drawn < full / 2)),
        "data_mean_penalty": float(np.mean(applied)),
        "model_mean_penalty": float(np.mean(mean)),
    }


def hazard_share(spec: HazardSpec, next_obs: Tensor) -> float:
    """The share of states next_obs [B, ds] in the hazard region (no coins involved)."""
    return float(risk_mask(spec, next_obs[:, spec.obs_index].cpu().numpy()).mean())
