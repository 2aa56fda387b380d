"""Dataset cards: a short JSON summary written next to a dataset file, and printed.

A card says what a dataset holds (rows, episodes, returns) and how often its states fall
in each hazard region of the task, so a reader can tell whether a hazard can matter for
it at all (e.g. D4RL's |v| > 10 may never fire on slower generated experts). It also says
how often the post-step state of a terminal row (a fall) is in each hazard region, and warns
in one line when the file stores no post-step states, so that falls cannot be labelled.

A card also records the file's size and sha256, so that ``data`` can tell a damaged or
replaced file from the one the card describes (:func:`card_mismatch`).
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


def file_facts(data_path: Path) -> dict[str, Any]:
    """What a card records to recognise its file: ``bytes`` and ``sha256``."""
    from ramac.data.d4rl import file_sha256

    return {"bytes": data_path.stat().st_size, "sha256": file_sha256(data_path)}


def read_card(data_path: Path) -> dict[str, Any] | None:
    """The card beside ``data_path``; None when there is none. One that is not a JSON object
    (damaged) is moved to ``corrupt/`` beside it with a one-line warning, and None returned."""
    from ramac.io import move_aside

    path = card_path(data_path)
    if not path.exists():
        return None
    try:
        card = json.loads(path.read_text())
        if not isinstance(card, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        move_aside(path, f"{exc.__class__.__name__}", then="a new card is written")
        return None
    return card


def card_mismatch(data_path: Path, card: dict[str, Any]) -> str | None:
    """How ``data_path`` differs from what its card recorded (size, then sha256), or None
    when it matches (a card without these facts, from an older ramac, matches anything)."""
    size = data_path.stat().st_size
    if isinstance(card.get("bytes"), int) and card["bytes"] != size:
        return f"{size} bytes, its card {card_path(data_path).name} records {card['bytes']}"
    if card.get("sha256"):
        from ramac.data.d4rl import file_sha256

        if file_sha256(data_path) != card["sha256"]:
            return f"its sha256 differs from the one its card {card_path(data_path).name} records"
    return None


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
