"""What every suite's runs share: suite files, profile overrides, and the run-once contract.

A run folder is finished when it holds a ``done`` file (written last, after the run's
``metrics.json``); a finished run is read back, never redone, and a failed one leaves its
traceback in ``error.txt`` so a rerun of the same job list only does what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ramac.agents.base import make_config
from ramac.config import PAPER_STEPS, read_yaml
from ramac.errors import UserError
from ramac.io import atomic_write_text
from ramac.train import train_seeds

DONE = "done"
METRICS = "metrics.json"


def load_suite(path: Path, keys: set[str]) -> dict[str, Any]:
    """A suite YAML, with keys outside ``keys`` rejected (a typo is an error, not a default)."""
    suite = read_yaml(path)
    unknown = sorted(set(suite) - keys)
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}")
    return suite


def profile_budget(suite: dict[str, Any], profile: str, path: Path) -> dict[str, Any]:
    """The budget block of ``profile`` in a suite."""
    budget = (suite.get("profiles") or {}).get(profile)
    if budget is None:
        raise UserError(f"{path}: no profile '{profile}'")
    return budget


def profile_overrides(algo: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The profile's overrides that ``algo``'s config has (profiles speak to all algorithms).

    An unknown algorithm name fails here, before any work starts.
    """
    names = {f.name for f in dataclasses.fields(make_config(algo))}
    return {k: v for k, v in overrides.items() if k in names}


def schedule_scale(suite: dict[str, Any], steps: int) -> float:
    """A run's budget over the paper profile's (or the paper's 2M updates when the suite has
    no ``paper`` profile): the factor its schedule lengths are scaled by."""
    paper = (suite.get("profiles") or {}).get("paper") or {}
    return steps / paper.get("steps", PAPER_STEPS)


def check_positive(name: str, value: int) -> int:
    if value < 1:
        raise UserError(f"--{name} must be at least 1, got {value}")
    return value


def run_once(run_dir: Path, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``work()``'s metrics, recorded in ``run_dir``; a finished run is read, not redone.

    ``work`` returns the run's metrics row; it is written to ``metrics.json`` and then the
    ``done`` marker. An exception leaves ``error.txt`` with the traceback and propagates.
    """
    if (run_dir / DONE).exists():
        return json.loads((run_dir / METRICS).read_text())
    try:
        row = work()
    except Exception:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "error.txt", traceback.format_exc())
        raise
    atomic_write_text(run_dir / METRICS, json.dumps(row, indent=1, default=str))
    atomic_write_text(run_dir / DONE, "")
    return row


def seed_stacks(jobs: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Unfinished runs that differ only in their seed, grouped for one seed-stacked process.

    Runs live in ``<...>/<algo>/seed<k>-<config hash>``: the same folder and hash means the
    same algorithm, data and budget. Groups of one are left to the ordinary jobs.
    """
    groups: dict[tuple[Path, str], list[Any]] = {}
    for job in jobs:
        if not (job.run_dir / DONE).exists():
            key = (job.run_dir.parent, job.run_dir.name.split("-", 1)[-1])
            groups.setdefault(key, []).append(job)
    return [tuple(group) for group in groups.values() if len(group) > 1]


def train_stack(
    jobs: Sequence[Any],
    dataset: Any,
    write_config: Callable[[Any, Any, list[int]], None],
    settings: Callable[[Any], Any],
) -> dict[str, Any]:
    """Train runs that differ only in seed as one seed stack (``ramac.seed_parallel``),
    each run's ``config.yaml`` first recording the stack's seeds."""
    seeds = [job.seed for job in jobs]
    for job in jobs:
        write_config(job, dataset, seeds)
    dirs = [job.run_dir for job in jobs]
    train_seeds(jobs[0].algo, dataset, dirs, [settings(j) for j in jobs], jobs[0].overrides)
    return {"runs": [str(d) for d in dirs], "trained": True}
