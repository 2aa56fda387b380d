"""The 2-D risky bandit end to end: train every method x seed, evaluate, tabulate, plot.

Writes under ``results/bandit/<profile>/`` (or ``--out``):
  runs/<algo>/seed<k>-<config hash>/  config.yaml, checkpoint.pt, train_log.csv, actions.npz,
                                      metrics.json, done (written last)
  summary.csv                         one row per method x seed
  leaderboard.{csv,tex,md,html}, bandit.{png,pdf}

Evaluation (sampling and scoring a trained policy's actions) is ``eval.bandit``'s; this
module decides which runs to do and hands them to the executor.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Self

import pandas as pd

from eval.bandit import ACTIONS, BanditEvalSettings, evaluate_run, read_actions
from eval.settings import whole
from pipeline import runs
from pipeline.runs import Job, Profile, SuiteFile, run_once
from ramac.config import CONFIG_DIR, build
from ramac.data.dataset import OfflineDataset
from ramac.envs.bandit import BanditSpec, make_dataset
from ramac.errors import UserError
from ramac.io import atomic_to_csv, move_aside, read_table
from ramac.train import TrainSettings

SUITE = "bandit"
SUITE_FILE = CONFIG_DIR / "suites" / "bandit.yaml"


@dataclasses.dataclass(frozen=True, kw_only=True)
class BanditProfile(Profile):
    n_actions: int | None = None  # actions sampled per policy (None: the eval block's)

    def validated(self, where: str) -> Self:
        if self.n_actions is not None:
            whole(where, "n_actions", self.n_actions)
        return super().validated(where)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BanditSuite(SuiteFile):
    """``configs/suites/bandit.yaml``."""

    # geometry and rewards; BanditSpec's defaults for the keys the file omits
    bandit: BanditSpec = dataclasses.field(default_factory=BanditSpec)
    eval: BanditEvalSettings
    profiles: dict[str, BanditProfile]

    profile_type = BanditProfile
    eval_type = BanditEvalSettings

    def validated(self, where: str) -> Self:
        spec = BanditSpec() if self.bandit is None else self.bandit
        if not isinstance(spec, BanditSpec):
            if not isinstance(spec, dict):
                raise UserError(f"{where} [bandit]: expected a mapping of BanditSpec settings")
            spec = build(BanditSpec, spec, f"{where} [bandit]")
        spec.validated(f"{where} [bandit]")
        return dataclasses.replace(super().validated(where), bandit=spec)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BanditJob(Job):
    """One (algorithm, seed) run of the bandit."""

    spec: BanditSpec
    data_seed: int
    eval_settings: BanditEvalSettings

    suite = SUITE

    @property
    def settings(self) -> TrainSettings:
        return TrainSettings(
            steps=self.steps,
            seed=self.seed,
            checkpoint_every=max(1, self.steps // 4),
            log_every=max(1, self.steps // 50),
            progress=False,
            schedule_scale=self.schedule_scale,
            device=self.device,
            compile=self.compile,
        )

    def dataset(self) -> OfflineDataset:
        return make_dataset(self.spec, self.data_seed)[0]

    def record(self, dataset: OfflineDataset) -> dict[str, Any]:
        return {"dataset": dataset.provenance.to_dict()}


def run_job(job: BanditJob) -> dict[str, Any]:
    """Train, evaluate and record one run; a run with a ``done`` file is read, not redone."""

    def train_and_evaluate() -> dict[str, Any]:
        dataset = job.dataset()
        return job.metrics(evaluate_run(job, runs.train_run(job, dataset), dataset))

    return run_once(job.run_dir, train_and_evaluate, records={ACTIONS: read_actions})


def make_jobs(
    suite: BanditSuite,
    profile: str,
    seeds: int | None,
    out: Path,
    algos: list[str] | None,
    steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    device: str = "cpu",
    compile: bool = False,
) -> list[BanditJob]:
    """The job list of a profile: every algorithm x seed (``steps`` overrides the budget;
    ``overrides``, settings on top of the profile's: the frontier's eta; ``force``:
    ``runs.plan_budget``'s; ``device`` and ``compile``: where and how they run, not hashed)."""
    budget = runs.plan_budget(suite, profile, SUITE_FILE, steps, seeds, force)
    budget = runs.with_overrides(budget, overrides)
    settings = suite.eval
    if budget.profile.n_actions is not None:
        settings = dataclasses.replace(settings, n_actions=budget.profile.n_actions)
    keyed_by = {"spec": dataclasses.asdict(suite.bandit), "eval": settings.record()}
    return runs.seed_runs(
        BanditJob,
        algos or suite.algos,
        budget,
        settings,
        dataset_key=SUITE,
        folder=out / "runs",
        keyed_by=keyed_by | {"data_seed": suite.data_seed},
        spec=suite.bandit,
        data_seed=suite.data_seed,
        device=device,
        compile=compile,
    )


def run_bandit(
    profile: str = "quick",
    seeds: int | None = None,
    out: Path | None = None,
    workers: int | None = None,
    algos: list[str] | None = None,
    steps: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    seed_stacks_on: bool = True,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    device: str = "cpu",
    compile: bool = False,
    gpus_per_run: float = 0.0,
) -> pd.DataFrame:
    """Run (or finish) every bandit job, then write the summary, leaderboards and figure.

    With ``seed_stacks_on`` the seeds of each method first train together as one seed stack.
    ``overrides``: settings on top of the profile's, for every algorithm that has them.
    ``force``: write into an ``out`` the toolkit did not make (``runs.check_out``).
    ``device`` (resolved), ``compile`` and ``gpus_per_run``: where and how the runs run.
    """
    out = out or default_out(profile)
    suite = BanditSuite.read(SUITE_FILE)
    jobs = make_jobs(suite, profile, seeds, out, algos, steps, overrides, force, device, compile)
    runs.check_workers(workers)
    runs.check_out(out, force)
    start = time.perf_counter()
    where = (executor, ray_address, seed_stacks_on, gpus_per_run)
    rows = runs.execute(run_job, jobs, SUITE, workers, *where)
    summary = pd.DataFrame(rows)
    atomic_to_csv(summary, out / "summary.csv")
    write_bandit_outputs(out, summary, suite, [j.algo for j in jobs])
    print(f"bandit ({profile}): {len(jobs)} runs in {time.perf_counter() - start:.0f} s -> {out}")
    return summary


def write_bandit_outputs(
    out: Path, summary: pd.DataFrame, suite: BanditSuite, algos: list[str]
) -> None:
    """Leaderboards, the figure and ``report.html``, from ``summary.csv`` and the saved
    actions alone (``reports.bandit`` draws the figure with the data the runs recorded)."""
    from reports.bandit import write_bandit_leaderboards

    write_bandit_leaderboards(out, summary, suite.eval.record(), list(dict.fromkeys(algos)))


def default_out(profile: str) -> Path:
    """``results/bandit/<profile>``: each profile keeps its own tables and figure."""
    return runs.default_out(SUITE, profile)


SUMMARY_COLUMNS = ("algo", "seed", "run", "n_actions", "train_steps", "schedule_scale")


def read_summary(path: Path) -> pd.DataFrame:
    """``summary.csv`` when it reads whole; an unreadable one (empty, cut off) is moved to
    ``corrupt/`` beside it and is one line saying how to rewrite it from the run records."""
    if not path.exists():
        raise UserError(f"{path}: no bandit records; run 'reproduce.py bandit' first")
    try:
        summary = read_table(path, SUMMARY_COLUMNS)
    except ValueError as exc:
        moved = move_aside(path, str(exc), quiet=True)
        raise UserError(
            f"{path}: unreadable ({exc}; moved to {moved}); run 'reproduce.py bandit' with the "
            f"same options again to rewrite it from the run records (finished runs are not redone)"
        ) from None
    return summary


def rewrite_bandit_outputs(out: Path) -> None:
    """Regenerate the leaderboards and the figure from ``summary.csv``, without training."""
    path = out / "summary.csv"
    summary = read_summary(path)
    write_bandit_outputs(out, summary, BanditSuite.read(SUITE_FILE), list(summary["algo"]))
    print(f"bandit tables and figure rewritten from {path}")
