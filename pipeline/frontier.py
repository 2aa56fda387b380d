"""The risk-return frontier: risk-aware methods trained over a range of risk weights.

A suite file's ``frontier:`` block (``pipeline.runs.FrontierSettings``) names the methods
(RADAC, RAFMAC), the setting swept (``eta``), its values and the seeds. Each value is one
run of the suite's own pipeline with that setting on top of the profile's overrides, into

    results/frontier/<bandit|stochastic-d4rl>-<profile>/<key>-<value>/

a results folder like any other (its runs, summary, leaderboard; ``sweep.json`` says which
value it holds), so a killed sweep resumes where it stopped and a finished value is never
redone. The frontier's table and figure (``reports.frontier``) read those folders and, for
the other methods' points, the profile's main results folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline import runs
from pipeline.runs import FrontierSettings
from ramac.config import ROOT
from ramac.errors import UserError
from ramac.io import atomic_write_text
from reports.frontier import SWEEP

BENCHES = ("bandit", "suite")


def frontier_root(on: str, profile: str, source: str = "generated") -> Path:
    """``results/frontier/<bandit|stochastic-d4rl-<source>>-<profile>``: one folder per
    suite (and data source) and profile."""
    suite = "bandit" if on == "bandit" else f"stochastic-d4rl-{source}"
    return ROOT / "results" / "frontier" / f"{suite}-{profile}"


def value_folder(root: Path, key: str, value: float) -> Path:
    """The results folder of one value of the sweep: ``<root>/<key>-<value>``."""
    return root / f"{key}-{value:g}"


def settings_of(frontier: FrontierSettings | None, path: Path) -> FrontierSettings:
    """The suite file's frontier block; a suite file without one is one line saying so."""
    if frontier is None:
        raise UserError(f"{path}: no frontier: block (the methods, key and values to sweep)")
    return frontier


def mark_value(folder: Path, key: str, value: float) -> None:
    """Record which value ``folder`` holds (read by ``reports.frontier``)."""
    atomic_write_text(folder / SWEEP, json.dumps({"key": key, "value": value}) + "\n")


def run_frontier(
    on: str = "bandit",
    profile: str = "quick",
    out: Path | None = None,
    workers: int | None = None,
    source: str = "generated",
    suite_file: Path | None = None,
    device: str = "cpu",
    compile: bool = False,
    **execution: Any,
) -> Path:
    """Train and evaluate every value of the frontier of the bandit (``on="bandit"``) or of
    Stochastic-D4RL (``on="suite"``), then write its table and figure; returns the folder.

    ``device`` (resolved) and ``compile``: where and how the runs run. ``execution``: the
    executor options of ``run_bandit`` / ``run_plan`` (executor, ray_address,
    seed_stacks_on, gpus_per_run) and ``force`` (folders the toolkit did not make).
    """
    jobs = {"device": device, "compile": compile}
    if on not in BENCHES:
        raise UserError(f"--on must be one of {', '.join(BENCHES)}, got '{on}'")
    if on == "bandit":
        root, reference = _bandit_frontier(profile, out, workers, jobs, execution)
    else:
        root, reference = _suite_frontier(
            profile, out, workers, source, suite_file, jobs, execution
        )
    from reports.frontier import write_frontier_report

    write_frontier_report(root, reference)
    return root


def _bandit_frontier(profile, out, workers, jobs, execution) -> tuple[Path, Path]:
    from pipeline.bandit import SUITE_FILE, BanditSuite, default_out, run_bandit

    frontier = settings_of(BanditSuite.read(SUITE_FILE).frontier, SUITE_FILE)
    root = out or frontier_root("bandit", profile)
    runs.check_out(root, execution.get("force", False))  # its report is written there
    for value in frontier.values:
        folder = value_folder(root, frontier.key, value)
        runs.check_out(folder, execution.get("force", False))
        mark_value(folder, frontier.key, value)
        run_bandit(
            profile,
            seeds=frontier.seeds,
            out=folder,
            workers=workers,
            algos=frontier.algos,
            overrides={frontier.key: value},
            **jobs,
            **execution,
        )
    return root, default_out(profile)


def _suite_frontier(
    profile, out, workers, source, suite_file, jobs, execution
) -> tuple[Path, Path]:
    from pipeline.suite import SUITE_FILE, D4RLSuite, make_plan, run_plan
    from reports.suite import write_suite_reports

    path = suite_file or SUITE_FILE
    frontier = settings_of(D4RLSuite.read(path).frontier, path)
    root = out or frontier_root("suite", profile, source)
    runs.check_out(root, execution.get("force", False))  # its report is written there
    reference = make_plan(profile, source, suite_file=path).out  # the profile's main results
    for value in frontier.values:
        folder = value_folder(root, frontier.key, value)
        plan = make_plan(
            profile,
            source,
            seeds=frontier.seeds,
            out=folder,
            algos=frontier.algos,
            datasets=frontier.datasets,
            suite_file=path,
            overrides={frontier.key: value},
            **jobs,
        )
        runs.check_out(folder, execution.get("force", False))
        mark_value(folder, frontier.key, value)
        run_plan(plan, workers, **execution)
        write_suite_reports(plan.out, plan.eval, plan.algos, plan.datasets)
    return root, reference
