"""Minari datasets (optional extra ``ramac[minari]``), converted to the toolkit's format.

Episodes are flattened with ``obs[:-1]`` / ``obs[1:]``, which gives the true next
observation even on truncated and terminal steps (an episode stores one more observation
than actions: Minari's ``EpisodeData``, minari.farama.org), so a fall is judged on the
fallen pose. The evaluation env is the one the dataset records
(``env_spec``), the simulator it was collected in. Reference scores come from
the dataset's own metadata, never from D4RL's constants: Minari's locomotion sets were
regenerated with Gymnasium v5 and have their own (or none).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ramac.data.dataset import PER_ROW_KEYS, OfflineDataset, Provenance, check_arrays, check_dataset
from ramac.errors import UserError

EXTRA_HINT = "Minari support needs the extra: pip install 'ramac[minari]'"


def flatten_episodes(
    episodes: Iterable[Mapping[str, Any]], where: str = "the Minari dataset"
) -> dict[str, np.ndarray]:
    """Concatenate episodes (``observations`` T+1 rows; ``actions``, ``rewards``,
    ``terminations``, ``truncations`` T rows) into flat transition arrays, checked as every
    source's are (``check_arrays``, before the cast to float32 / bool; ``where`` names the
    dataset in errors)."""
    keys = ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for i, episode in enumerate(episodes):
        obs = episode["observations"]
        if not isinstance(obs, np.ndarray):
            raise UserError(f"episode {i}: observations are {type(obs).__name__}, not an array")
        steps = len(episode["rewards"])
        if len(obs) != steps + 1:
            raise UserError(f"episode {i}: {len(obs)} observations for {steps} steps (need T+1)")
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(np.asarray(episode["actions"]).reshape(steps, -1))
        parts["rewards"].append(np.asarray(episode["rewards"]))
        parts["terminals"].append(np.asarray(episode["terminations"]))
        parts["timeouts"].append(np.asarray(episode["truncations"]))
    if not parts["rewards"]:
        raise UserError("the Minari dataset has no episodes")
    try:
        raw = {k: np.concatenate(v) for k, v in parts.items()}
    except ValueError as exc:  # episodes whose arrays have different shapes
        raise UserError(f"{where}: episodes of different shapes ({exc})") from None
    check_arrays(raw, where)
    out = {}
    for key, value in raw.items():
        value = value.astype(bool if key in ("terminals", "timeouts") else np.float32)
        out[key] = value.reshape(-1) if key in PER_ROW_KEYS else value  # (n, 1): checked
    return out


def reference_scores(metadata: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """``(ref_min_score, ref_max_score)`` from Minari metadata; None where absent."""

    def get(key: str) -> float | None:
        value = metadata.get(key)
        return None if value is None else float(value)

    return get("ref_min_score"), get("ref_max_score")


def _data_sha256(data_path: Path) -> str:
    """One sha256 over the dataset's data files (sorted by name), for provenance."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(data_path).rglob("*") if p.is_file())
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest() if files else ""


def _version_of(dataset_id: str) -> str:
    """``mujoco/halfcheetah/medium-v0`` -> ``v0`` ("" without a version suffix)."""
    match = re.search(r"-(v\d+)$", dataset_id)
    return match.group(1) if match else ""


def load_minari(dataset_id: str, *, download: bool = False) -> OfflineDataset:
    """A Minari dataset (e.g. ``mujoco/halfcheetah/medium-v0``) as an OfflineDataset."""
    try:
        import minari
    except ImportError:
        raise UserError(EXTRA_HINT) from None
    try:
        dataset = minari.load_dataset(dataset_id, download=download)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"Minari dataset '{dataset_id}': {exc}") from None
    episodes = (
        {
            "observations": ep.observations,
            "actions": ep.actions,
            "rewards": ep.rewards,
            "terminations": ep.terminations,
            "truncations": ep.truncations,
        }
        for ep in dataset.iterate_episodes()
    )
    arrays = flatten_episodes(episodes, f"Minari dataset '{dataset_id}'")
    metadata = dataset.storage.metadata
    low, high = reference_scores(metadata)
    env_spec = dataset.env_spec
    provenance = Provenance(
        source="minari",
        id=dataset.id,
        version=_version_of(dataset.id),
        sha256=_data_sha256(dataset.storage.data_path),
        env_id=env_spec.id if env_spec is not None else "",
        ref_min_score=low,
        ref_max_score=high,
        extra={
            "minari_version": getattr(minari, "__version__", ""),
            "dataset_format_version": str(dataset.minari_version),
            "ref_score_source": "minari metadata" if low is not None else "none",
            "env_source": "minari env_spec" if env_spec is not None else "none",
            "unlabelled_end_rows": 0,  # obs[1:] holds every step's post-step state
        },
    )
    return check_dataset(OfflineDataset(provenance=provenance, **arrays))
