"""What budget produced a table: the profile, updates per run, seeds and evaluation draws.

Every table and report states it, and says so visibly when it is not the paper's, so a
quick-profile table cannot pass for the paper's. The numbers come from the records
(``summary.csv``: ``train_steps``, ``schedule_scale``, seeds, ``n_episodes`` or
``n_actions``; the runs' ``config.yaml``: ``profile``) and the paper profile from the
shipped suite file (``configs/suites/<suite>.yaml``, ``profiles: paper:``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ramac.config import CONFIG_DIR

NOT_PAPER = "NOT the paper's budget"  # the phrase every format emphasises (bold / banner)
SCHEDULE_NOTE = (
    "schedule lengths (eta warm-up and ramp, EMA start, lr decay) are stated against the "
    "paper's budget and scaled by the same factor"
)


@dataclass(frozen=True)
class Budget:
    """One table's budget, with the paper profile's where it is known.

    ``draws`` counts what each seed is evaluated on, named by ``draw_unit`` (Stochastic-D4RL:
    evaluation episodes; the bandit: actions sampled from each trained policy). Ranges
    (``*_max``) appear when runs of one table differ.
    """

    profile: str | None
    steps: int
    steps_max: int
    seeds: int
    seeds_max: int
    draws: int | None
    draw_unit: str
    scale: float | None = None  # steps / the paper profile's steps, as the runs recorded it
    paper_steps: int | None = None
    paper_seeds: int | None = None
    paper_draws: int | None = None

    @property
    def differences(self) -> list[str]:
        """What differs from the paper profile (empty when it is the paper's or unknown)."""
        pairs = [
            ("updates per run", self.steps, self.steps_max, self.paper_steps),
            ("seeds", self.seeds, self.seeds_max, self.paper_seeds),
            (self.draw_unit, self.draws, self.draws, self.paper_draws),
        ]
        return [
            name
            for name, low, high, paper in pairs
            if paper is not None and low is not None and (low != paper or high != paper)
        ]

    @property
    def known(self) -> bool:
        """Whether the paper's budget is known (else nothing can be compared)."""
        return self.paper_steps is not None

    @property
    def is_paper(self) -> bool:
        return self.known and not self.differences

    def ours(self) -> str:
        """ "20 updates per run, 2 seeds, 2 evaluation episodes per seed"."""
        parts = [
            f"{_span(self.steps, self.steps_max)} updates per run",
            f"{_span(self.seeds, self.seeds_max)} seed{'s' if self.seeds_max != 1 else ''}",
        ]
        if self.draws is not None:
            parts.append(f"{self.draws:,} {self.draw_unit}")
        return ", ".join(parts)

    def paper(self) -> str:
        """The paper profile's budget in the same words ("" when unknown)."""
        if not self.known:
            return ""
        parts = [f"{self.paper_steps:,} updates per run"]
        if self.paper_seeds is not None:
            parts.append(f"{self.paper_seeds} seeds")
        if self.paper_draws is not None:
            parts.append(f"{self.paper_draws:,} {self.draw_unit}")
        return ", ".join(parts)

    def profile_text(self) -> str:
        return f"profile '{self.profile}'" if self.profile else "profile not recorded"

    def short(self) -> str:
        """One line for a figure caption: "Profile 'smoke': 20 updates per run, ...; NOT the
        paper's budget."."""
        tail = ""
        if self.known:
            tail = "; the paper's budget" if self.is_paper else f"; {NOT_PAPER}"
        return f"{self.profile_text()[0].upper()}{self.profile_text()[1:]}: {self.ours()}{tail}."

    def sentence(self) -> str:
        """The plain-text sentence every caption ends with."""
        head = f"Budget ({self.profile_text()}): {self.ours()}."
        if not self.known:
            return head + " The paper's budget is not known for these records."
        if self.is_paper:
            return f"Budget ({self.profile_text()}): the paper's, {self.ours()}."
        text = f"{head} {NOT_PAPER} (the paper's: {self.paper()})"
        if "updates per run" in self.differences and self.scale and self.scale != 1.0:
            text += f"; updates {self.scale:.3g} x the paper's, and {SCHEDULE_NOTE}"
        return text + "."


def _span(low: int, high: int) -> str:
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def _int(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(round(number)) if math.isfinite(number) else None


def paper_profile(suite: str) -> dict[str, int | None]:
    """The paper profile of a shipped suite file: steps, seeds and per-seed evaluation draws
    (episodes or, for the bandit, actions; the suite's ``eval`` default when the profile
    does not set them). Empty when the file or its paper profile is missing."""
    path = CONFIG_DIR / "suites" / f"{suite}.yaml"
    try:
        config = yaml.safe_load(path.read_text()) or {}
        paper = (config.get("profiles") or {}).get("paper") or {}
        evaluation = config.get("eval") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    if not isinstance(paper, dict) or "steps" not in paper:
        return {}
    draws_key = "n_actions" if "n_actions" in evaluation else "episodes"
    return {
        "steps": _int(paper.get("steps")),
        "seeds": _int(paper.get("seeds")),
        "draws": _int(paper.get(draws_key, evaluation.get(draws_key))),
    }


def recorded_profiles(summary: pd.DataFrame, out: Path | None) -> list[str]:
    """The profiles the runs of ``summary`` were made under: its ``profile`` column, else
    each run's ``config.yaml`` (``out/runs/[<dataset>/]<algo>/<run>/``); [] when unrecorded."""
    if "profile" in summary and summary["profile"].notna().any():
        return sorted(set(summary["profile"].dropna().astype(str)))
    if out is None or "run" not in summary:
        return []
    found: set[str] = set()
    for row in summary.drop_duplicates(["dataset", "algo", "run"]).itertuples():
        for folder in (
            Path(out) / "runs" / str(row.dataset) / str(row.algo) / str(row.run),
            Path(out) / "runs" / str(row.algo) / str(row.run),
        ):
            path = folder / "config.yaml"
            if path.is_file():
                profile = _profile_of(path)
                if profile:
                    found.add(profile)
                break
    return sorted(found)


def _profile_of(path: Path) -> str | None:
    """The ``profile:`` line of a run's config.yaml (read as YAML; None when absent)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("profile:"):
                return str(yaml.safe_load(line)["profile"])
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        return None
    return None


def budget_of(summary: pd.DataFrame, out: Path | None = None) -> Budget:
    """The budget of the per-run records ``summary`` (one row per run) of one suite.

    Updates: ``train_steps``; seeds: the fewest any (dataset, algo) has; draws per seed:
    the fewest ``n_episodes`` (episodes) or ``n_actions`` (the bandit's actions). The
    paper's: the suite file's paper profile, else (updates only) ``train_steps /
    schedule_scale``.
    """
    steps = summary["train_steps"].astype(float)
    keys = [c for c in ("dataset", "algo") if c in summary]
    seeds = summary.groupby(keys)["seed"].nunique() if keys else pd.Series([len(summary)])
    if "n_actions" in summary:
        draws, unit = _int(summary["n_actions"].min()), "actions sampled per policy per seed"
    elif "n_episodes" in summary:
        draws, unit = _int(summary["n_episodes"].min()), "evaluation episodes per seed"
    else:
        draws, unit = None, "evaluation episodes per seed"
    scale = None
    if "schedule_scale" in summary and summary["schedule_scale"].notna().any():
        scale = float(summary["schedule_scale"].max())
    suite = str(summary["suite"].iloc[0]) if "suite" in summary and len(summary) else ""
    paper = paper_profile(suite) if suite else {}
    paper_steps = paper.get("steps")
    if paper_steps is None and scale:
        paper_steps = round(float(steps.max()) / scale)
    profiles = recorded_profiles(summary, out)
    return Budget(
        profile=" / ".join(profiles) if profiles else None,
        steps=int(steps.min()),
        steps_max=int(steps.max()),
        seeds=int(seeds.min()),
        seeds_max=int(seeds.max()),
        draws=draws,
        draw_unit=unit,
        scale=scale,
        paper_steps=paper_steps,
        paper_seeds=paper.get("seeds"),
        paper_draws=paper.get("draws"),
    )
