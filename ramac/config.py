"""Dataclass configs filled from YAML: values live in YAML, structure lives in code.

Algorithm files (`configs/algos/<algo>.yaml`) hold `defaults:` plus optional
`overrides: {<dataset>: {...}}`; unknown keys are an error so that a typo never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ramac.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"

# The paper's training budget: 2000 epochs x 1000 gradient steps (RAMAC's main.py, as
# Diffusion-QL's; docs/fidelity.md). Schedule lengths in configs are stated against it.
PAPER_STEPS = 2_000_000
# Config fields that are lengths of a schedule, in updates: scaled with a run's budget, so
# a short run is the same algorithm, shorter (a 300k-step eta warm-up is 15% of any run).
SCHEDULE_FIELDS = ("eta_warmup_steps", "eta_ramp_steps", "ema_start", "lr_decay_steps")

T = TypeVar("T")


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping; a missing or malformed file is a UserError naming it."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


def build(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Instantiate dataclass ``cls`` from ``values``, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    return cls(**values)


def algo_values(algo: str, dataset: str | None = None) -> dict[str, Any]:
    """The resolved hyperparameters of ``algo`` for ``dataset``: defaults, then overrides."""
    path = CONFIG_DIR / "algos" / f"{algo}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONFIG_DIR / "algos").glob("*.yaml"))
        raise UserError(f"unknown algorithm '{algo}' (known: {', '.join(known)})")
    data = read_yaml(path)
    unknown = sorted(set(data) - {"defaults", "overrides"})
    if unknown:
        raise UserError(f"{path}: unknown top-level key(s) {', '.join(unknown)}")
    values = dict(data.get("defaults") or {})
    if dataset is not None:
        values.update((data.get("overrides") or {}).get(dataset) or {})
    return values


def scale_schedules(config: T, scale: float) -> T:
    """``config`` with every schedule length (:data:`SCHEDULE_FIELDS`) multiplied by ``scale``.

    ``scale`` is the run's budget over the budget the schedules are stated against (the
    paper profile's); lengths are rounded to whole updates and stay >= 1 when they were.
    """
    scaled = {
        name: max(1, round(getattr(config, name) * scale))
        for name in SCHEDULE_FIELDS
        if getattr(config, name, 0)
    }
    return dataclasses.replace(config, **scaled) if scaled and scale != 1.0 else config


# Settings added after run folders were first keyed by ``config_hash``, each with the value
# that trains exactly as the code did before the setting existed. At that value a setting
# is left out of the hash, so runs keyed before it was added keep their folders (and are
# not retrained); any other value is hashed as usual and keys a folder of its own.
HASH_NEUTRAL: dict[str, Any] = {
    "tau_weighting": "current",
    "actor_action_gain": 1.0,
    "prior_action_gain": 1.0,
    "latent_clip": 0.5,
}


def _hashed(values: Any) -> Any:
    """``values`` without the :data:`HASH_NEUTRAL` settings at their neutral value."""
    if isinstance(values, dict):
        return {
            k: _hashed(v)
            for k, v in values.items()
            if not (k in HASH_NEUTRAL and v == HASH_NEUTRAL[k])
        }
    if isinstance(values, list | tuple):
        return [_hashed(v) for v in values]
    return values


def config_hash(values: dict[str, Any]) -> str:
    """A short stable hash of a resolved config, used to key run directories."""
    text = json.dumps(_hashed(values), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
