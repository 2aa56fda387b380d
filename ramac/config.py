"""Dataclass configs, with per-dataset YAML overrides: one source for every value.

An algorithm's defaults live in one place, the Config dataclass it is registered with
(``ramac.agents.base.register``), each field with its default and the reason for it. Its
YAML file, ``configs/algos/<algo>.yaml``, holds only ``overrides: {<dataset>: {...}}``:
the values that differ on a dataset (or benchmark, e.g. ``bandit``), with their reasons.
A config resolves as the dataclass defaults, then the dataset's overrides, then a run's own
overrides (``ramac.agents.base.make_config``). Unknown keys are an error, so that a typo
never silently falls back to a default; a ``defaults:`` block is an error too, so that no
default is ever written twice.

Variants: a named variant whose defaults differ from its base algorithm's is registered
with its own Config subclass that states only what differs (``rafmac_public``:
``RAFMACPublicConfig``; ``oraac_diff`` / ``oraac_flow``: ``ORAACDiffConfig`` /
``ORAACFlowConfig``; ``diffusion_ql_flow``: ``DiffusionQLFlowConfig``; ``diffusion_ql_annealed``:
``DiffusionQLAnnealedConfig``). A variant with the
same defaults and other per-dataset values shares its base's Config and has a YAML file
of its own (``oraac_published``: ``ORAACConfig``, ``configs/algos/oraac_published.yaml``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ramac.errors import UserError, brief

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"

# The paper's training budget: 2000 epochs x 1000 gradient steps (RAMAC's main.py, as
# Diffusion-QL's; docs/fidelity.md). Schedule lengths in configs are stated against it.
PAPER_STEPS = 2_000_000
# Config fields that are lengths of a schedule, in updates: scaled with a run's budget, so
# a short run is the same algorithm, shorter (a 300k-step eta warm-up is 15% of any run).
SCHEDULE_FIELDS = ("eta_warmup_steps", "eta_ramp_steps", "ema_start", "lr_decay_steps")

T = TypeVar("T")


class _AliasFound(yaml.YAMLError):
    """A YAML alias (``*name``) in a file ramac reads."""

    def __init__(self, anchor: str, line: int):
        super().__init__(f"line {line}: a YAML alias (*{anchor}) is not read here")
        self.anchor, self.line = anchor, line


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases: a few lines of ``&a [*b, *b, ...]`` expand
    to billions of elements when a value is walked or printed (a "billion laughs"), and
    ramac's files never need one (write the value out)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasFound(event.anchor, event.start_mark.line + 1)
        return super().compose_node(parent, index)


def load_yaml_text(text: str, where: str | Path) -> Any:
    """The YAML document ``text`` (read from ``where``, named in errors); not YAML, or an
    alias (refused, see ``_NoAliasLoader``), is a one-line UserError."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
    except _AliasFound as exc:
        raise UserError(
            f"{where}: line {exc.line}: YAML aliases (*{exc.anchor[:40]}) are not allowed in "
            "ramac's files; write the value out"
        ) from None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an int of too many digits
        raise UserError(f"{where}: not valid YAML ({exc.__class__.__name__})") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping; a missing or malformed file is a UserError naming it."""
    from ramac.io import require_regular_file  # a FIFO named like a YAML file never hangs

    try:
        with open(require_regular_file(path)) as f:
            text = f.read()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: not a regular file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid YAML (not UTF-8 text)") from None
    data = load_yaml_text(text, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


def env_folder(name: str, default: Path) -> Path:
    """The folder environment variable ``name`` names, else ``default`` when it is unset.

    Set but empty (``RAMAC_DATA_DIR=`` or a ``$DIR`` that expanded to nothing) is a one-line
    UserError, not the current folder: files would land where the user never asked.
    """
    value = os.environ.get(name)
    if value is None:
        return default
    if not value.strip():
        raise UserError(
            f"{name} is set but empty: set it to a folder, or unset it to use {default}"
        )
    return Path(value).expanduser()


def env_seconds(name: str, default: float) -> float:
    """The number of seconds (> 0, finite) environment variable ``name`` holds, else
    ``default`` when it is unset; anything else is a one-line UserError."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UserError(f"{name} must be a number of seconds > 0, got {brief(value)}")
    return seconds


def build(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Instantiate dataclass ``cls`` from ``values``, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    refuse_retired(where, set(values) - names)
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    return cls(**values)


def algo_values(algo: str, dataset: str | None = None) -> dict[str, Any]:
    """The YAML overrides of ``algo`` for ``dataset`` (none for ``dataset=None``).

    The defaults are not here but in the algorithm's Config dataclass; ``make_config``
    builds the resolved config from both.
    """
    path = CONFIG_DIR / "algos" / f"{algo}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONFIG_DIR / "algos").glob("*.yaml"))
        raise UserError(f"unknown algorithm '{algo}' (known: {', '.join(known)})")
    data = read_yaml(path)
    if "defaults" in data:
        raise UserError(
            f"{path}: a 'defaults:' block is not read; defaults live in the algorithm's Config "
            "dataclass (ramac/agents/), the YAML file holds only 'overrides:'"
        )
    unknown = sorted(set(data) - {"overrides"})
    if unknown:
        raise UserError(f"{path}: unknown top-level key(s) {', '.join(unknown)}")
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise UserError(f"{path}: 'overrides:' must map dataset names to settings")
    if dataset is None:
        return {}
    values = overrides.get(dataset) or {}
    if not isinstance(values, dict):
        raise UserError(f"{path}: overrides for '{dataset}' must be a mapping of settings")
    return dict(values)


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
    "lr_decay_steps": 0,
    "lr_decay_stairs": 0,
}


# Settings the algorithm configs held once and no longer do: the value every run keyed by
# ``config_hash`` had then (still hashed, so those run folders keep their names) and where
# the setting lives now (said in one line when a YAML file or a profile still sets it).
RETIRED: dict[str, tuple[Any, str]] = {
    "device": ("cpu", "the device is chosen with --device (make: DEVICE=), never in a config"),
}


def refuse_retired(where: str, keys: Any) -> None:
    """A one-line UserError when ``keys`` name a :data:`RETIRED` setting."""
    for key in sorted(set(keys) & set(RETIRED)):
        raise UserError(f"{where}: {key}: {RETIRED[key][1]}")


def algo_hash_values(config: Any) -> dict[str, Any]:
    """What a run folder's hash reads of an algorithm's resolved ``config``: its settings,
    plus each :data:`RETIRED` setting at the value every run had (folders keep their names)."""
    return dataclasses.asdict(config) | {key: value for key, (value, _) in RETIRED.items()}


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
