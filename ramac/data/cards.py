"""Dataset cards: a short JSON summary written next to a dataset file, and printed.

A card says what a dataset holds (rows, episodes, returns) and how often its states fall
in each hazard region of the task, so a reader can tell whether a hazard can matter for
it at all (e.g. D4RL's |v| > 10 may never fire on slower generated experts). It also says
how often the post-step state of a terminal row (a fall) is in each hazard region, and warns
in one line when the file stores no post-step states, so that falls cannot be labelled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ramac.envs.hazards import load_spec_set, risk_mask
from ramac.io import atomic_write_text

CARD_SPEC_SETS = ("ramac-v2", "ramac-v2-generated")


def card_path(data_path: Path) -> Path:
    """``x.hdf5`` -> ``x.card.json``."""
    return data_path.with_suffix(".card.json")


def episode_bounds(raw: dict[str, np.ndarray]) -> np.ndarray:
    """Row index one past the end of each episode (episodes end on a terminal or timeout)."""
    done = np.asarray(raw["terminals"], bool) | np.asarray(raw.get("timeouts", False), bool)
    ends = np.flatnonzero(done) + 1
    n = len(raw["rewards"])
    if len(ends) == 0 or ends[-1] != n:
        ends = np.append(ends, n)
    return ends


def episode_returns(raw: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Undiscounted return and length of every episode in row order."""
    ends = episode_bounds(raw)
    starts = np.concatenate([[0], ends[:-1]])
    sums = np.add.reduceat(np.asarray(raw["rewards"], np.float64), starts)
    return sums, ends - starts


def hazard_fractions(
    next_observations: np.ndarray, task: str, spec_sets: tuple[str, ...] = CARD_SPEC_SETS
) -> dict[str, float | str]:
    """Share of rows whose post-step state is risky, for every spec of ``task`` in each set."""
    fractions: dict[str, float | str] = {}
    for spec_set in spec_sets:
        for key, spec in load_spec_set(spec_set).items():
            if not key.startswith(f"{task}-"):
                continue
            if spec is None:
                fractions[f"{spec_set}/{key}"] = "uncalibrated"
                continue
            mask = risk_mask(spec, next_observations[:, spec.obs_index])
            fractions[spec.name] = round(float(mask.mean()), 6)
    return fractions


def dataset_card(raw: dict[str, np.ndarray], task: str, **info: Any) -> dict[str, Any]:
    """The card of D4RL-format arrays ``raw`` of ``task``; ``info`` is copied in first."""
    returns, lengths = episode_returns(raw)
    next_obs = raw.get("next_observations")
    terminals = np.asarray(raw["terminals"], bool)
    stored = next_obs is not None
    if not stored:
        next_obs = raw["observations"]  # no stored successors: the states themselves
    falls: dict[str, Any] = {}
    if stored and terminals.any():
        falls["terminal_hazard_fraction"] = hazard_fractions(np.asarray(next_obs)[terminals], task)
    if not stored:
        falls["warning"] = (
            "no stored next_observations: falls cannot be labelled by a hazard "
            f"({int(terminals.sum())} terminal rows unlabelled)"
        )
    return {
        **info,
        "task": task,
        "rows": int(len(raw["rewards"])),
        "episodes": int(len(returns)),
        "terminals": int(np.sum(raw["terminals"])),
        "timeouts": int(np.sum(raw.get("timeouts", 0))),
        "episode_length_mean": round(float(lengths.mean()), 2),
        "return_mean": round(float(returns.mean()), 3),
        "return_min": round(float(returns.min()), 3),
        "return_max": round(float(returns.max()), 3),
        "reward_mean": round(float(np.mean(raw["rewards"])), 5),
        "hazard_state_fraction": hazard_fractions(np.asarray(next_obs), task),
        "unlabelled_terminal_rows": 0 if stored else int(terminals.sum()),
        **falls,
    }


def write_card(card: dict[str, Any], data_path: Path) -> Path:
    """Write the card as JSON next to ``data_path`` (``ramac.io.atomic_write_text``)."""
    return atomic_write_text(card_path(data_path), json.dumps(card, indent=2) + "\n")


def format_card(card: dict[str, Any]) -> str:
    """A few readable lines for the terminal."""
    lines = [f"dataset card: {card.get('id', card['task'])}"]
    for key, value in card.items():
        if key == "hazard_state_fraction":
            lines.append("  hazard-state fraction (post-step states):")
            lines += [f"    {name}: {frac}" for name, frac in value.items()]
        elif key == "terminal_hazard_fraction":
            lines.append("  hazard-state fraction of terminal rows (the fallen pose):")
            lines += [f"    {name}: {frac}" for name, frac in value.items()]
        elif not isinstance(value, (dict, list)):
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)
