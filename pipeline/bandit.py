"""The 2-D risky bandit end to end: train every method x seed, evaluate, tabulate, plot.

Writes under ``results/bandit/<profile>/`` (or ``--out``):
  runs/<algo>/seed<k>-<config hash>/  config.yaml, checkpoint.pt, train_log.csv, actions.npz,
                                      metrics.json, done (written last)
  summary.csv                         one row per method x seed
  leaderboard.{csv,tex,md,html}, bandit.{png,pdf}
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from eval.bandit import evaluate_actions
from eval.ood import OODDetector
from pipeline import runs
from pipeline.executors import run_jobs
from pipeline.runs import (
    check_positive,
    load_suite,
    profile_budget,
    profile_overrides,
    run_once,
    schedule_scale,
    seed_stacks,
)
from ramac.agents.base import make_config
from ramac.config import CONFIG_DIR, ROOT, build, config_hash
from ramac.data.dataset import OfflineDataset
from ramac.envs.bandit import BanditSpec, make_dataset
from ramac.errors import UserError
from ramac.io import atomic_to_csv, atomic_write_bytes
from ramac.records import package_versions, write_yaml
from ramac.train import TRAIN_LOG, TrainSettings, train

SUITE_FILE = CONFIG_DIR / "suites" / "bandit.yaml"
SUITE_KEYS = {"bandit", "data_seed", "algos", "eval", "profiles"}
EVAL_SEED_OFFSET = 10_000  # evaluation draws use seed + offset: never the training streams


@dataclasses.dataclass(frozen=True)
class BanditJob:
    """One (algorithm, seed) run with everything it needs, so a worker process can run it."""

    algo: str
    seed: int
    steps: int
    overrides: dict[str, Any]
    run_dir: Path
    spec: BanditSpec
    data_seed: int
    eval: dict[str, Any]
    profile: str
    schedule_scale: float = 1.0  # steps / the paper profile's steps (ramac.config)


def bandit_spec(suite: dict[str, Any]) -> BanditSpec:
    """The suite's bandit geometry and rewards (BanditSpec defaults for keys it omits)."""
    return build(BanditSpec, suite.get("bandit") or {}, f"{SUITE_FILE} [bandit]")


def run_job(job: BanditJob) -> dict[str, Any]:
    """Train, evaluate and record one run; a run with a ``done`` file is read, not redone."""
    return run_once(job.run_dir, lambda: _train_and_evaluate(job))


def _settings(job: BanditJob) -> TrainSettings:
    return TrainSettings(
        steps=job.steps,
        seed=job.seed,
        checkpoint_every=max(1, job.steps // 4),
        log_every=max(1, job.steps // 50),
        progress=False,
        schedule_scale=job.schedule_scale,
    )


def _write_config(job: BanditJob, dataset: OfflineDataset, stack: list[int]) -> None:
    """``config.yaml``, written when the run starts and kept (``trained_with_seeds``: the
    seed stack it trained in, see ``ramac.seed_parallel``)."""
    if (job.run_dir / "config.yaml").exists():
        return
    config = make_config(job.algo, dataset.provenance.id, job.overrides, job.schedule_scale)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(
        job.run_dir / "config.yaml",
        {
            "suite": "bandit",
            "algo": job.algo,
            "seed": job.seed,
            "trained_with_seeds": stack,
            "profile": job.profile,
            "steps": job.steps,
            "schedule_scale": job.schedule_scale,
            "algo_config": dataclasses.asdict(config),
            "eval": job.eval,
            "dataset": dataset.provenance.to_dict(),
            "versions": package_versions(),
        },
    )


def train_stack(jobs: tuple[BanditJob, ...]) -> dict[str, Any]:
    """Train runs that differ only in seed as one seed stack."""
    dataset, _ = make_dataset(jobs[0].spec, jobs[0].data_seed)
    return runs.train_stack(jobs, dataset, _write_config, _settings)


def _train_and_evaluate(job: BanditJob) -> dict[str, Any]:
    dataset, _ = make_dataset(job.spec, job.data_seed)
    _write_config(job, dataset, [job.seed])
    agent = train(job.algo, dataset, job.run_dir, _settings(job), job.overrides)
    # The training loop's own clock (a stacked run's is its stack's).
    train_seconds = pd.read_csv(job.run_dir / TRAIN_LOG)["wall_seconds"].iloc[-1]

    eval_seed = job.seed + EVAL_SEED_OFFSET
    obs = torch.zeros(job.eval["n_actions"], dataset.obs_dim)
    actions = agent.act(obs, generator=torch.Generator().manual_seed(eval_seed)).cpu().numpy()
    detector = OODDetector().fit(dataset.actions, seed=job.data_seed)
    metrics, rewards = evaluate_actions(
        actions,
        job.spec,
        detector,
        alpha=job.eval["alpha"],
        rule=job.eval["cvar_rule"],
        kappa=job.eval["kappa"],
        kappa_sweep=job.eval["kappa_sweep"],
        seed=eval_seed,
    )
    row = {
        "suite": "bandit",
        "dataset": "bandit",
        "algo": job.algo,
        "seed": job.seed,
        "run": job.run_dir.name,
        "n_actions": len(actions),
        **metrics,
        "train_steps": job.steps,
        "schedule_scale": job.schedule_scale,
        "wall_seconds": round(train_seconds, 2),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, actions=actions, rewards=rewards)
    atomic_write_bytes(job.run_dir / "actions.npz", buffer.getvalue())
    return row


def make_jobs(
    suite: dict[str, Any],
    profile: str,
    seeds: int | None,
    out: Path,
    algos: list[str] | None,
    steps: int | None = None,
) -> list[BanditJob]:
    """The job list of a profile: every algorithm x seed (``steps`` overrides the budget)."""
    budgets = profile_budget(suite, profile, SUITE_FILE)
    if steps is not None:
        budgets = {**budgets, "steps": check_positive("steps", steps)}
    algos = algos or suite["algos"]
    spec = bandit_spec(suite)
    eval_cfg = {**suite["eval"], "n_actions": budgets.get("n_actions", suite["eval"]["n_actions"])}
    n_seeds = check_positive("seeds", seeds or budgets["seeds"])
    scale = schedule_scale(suite, budgets["steps"])
    jobs = []
    for algo in algos:
        overrides = profile_overrides(algo, budgets.get("overrides") or {})
        resolved = dataclasses.asdict(make_config(algo, "bandit", overrides, scale))
        key = config_hash(
            {"algo": resolved, "steps": budgets["steps"], "spec": dataclasses.asdict(spec)}
            | {"eval": eval_cfg, "data_seed": suite["data_seed"]}
        )
        for seed in range(n_seeds):
            run_dir = out / "runs" / algo / f"seed{seed}-{key}"
            jobs.append(
                BanditJob(
                    algo=algo,
                    seed=seed,
                    steps=budgets["steps"],
                    overrides=overrides,
                    run_dir=run_dir,
                    spec=spec,
                    data_seed=suite["data_seed"],
                    eval=eval_cfg,
                    profile=profile,
                    schedule_scale=scale,
                )
            )
    return jobs


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
) -> pd.DataFrame:
    """Run (or finish) every bandit job, then write the summary, leaderboards and figure.

    With ``seed_stacks_on`` the seeds of each method first train together as one seed stack.
    """
    out = out or default_out(profile)
    suite = load_suite(SUITE_FILE, SUITE_KEYS)
    jobs = make_jobs(suite, profile, seeds, out, algos, steps)
    start = time.perf_counter()
    stacks = seed_stacks(jobs) if seed_stacks_on else []
    if stacks:
        run_jobs(train_stack, stacks, workers, "bandit seed stacks", executor, ray_address)
    rows = run_jobs(run_job, jobs, workers, "bandit runs", executor, ray_address)
    summary = pd.DataFrame(rows)
    atomic_to_csv(summary, out / "summary.csv")
    write_bandit_outputs(out, summary, suite, [j.algo for j in jobs])
    print(f"bandit ({profile}): {len(jobs)} runs in {time.perf_counter() - start:.0f} s -> {out}")
    return summary


def write_bandit_outputs(out: Path, summary: pd.DataFrame, suite: dict, algos: list[str]) -> None:
    """Leaderboards and the figure, from ``summary.csv`` and the saved actions alone."""
    from figures.bandit import plot_bandit
    from reports.bandit import write_bandit_leaderboards

    algo_order = list(dict.fromkeys(algos))
    write_bandit_leaderboards(out, summary, suite["eval"], algo_order)
    plot_bandit(out, bandit_spec(suite), suite["data_seed"], algo_order, summary)


def default_out(profile: str) -> Path:
    """``results/bandit/<profile>``: each profile keeps its own tables and figure."""
    return ROOT / "results" / "bandit" / profile


def rewrite_bandit_outputs(out: Path) -> None:
    """Regenerate the leaderboards and the figure from ``summary.csv``, without training."""
    path = out / "summary.csv"
    if not path.exists():
        raise UserError(f"{path}: no bandit records; run 'reproduce.py bandit' first")
    summary = pd.read_csv(path)
    write_bandit_outputs(out, summary, load_suite(SUITE_FILE, SUITE_KEYS), list(summary["algo"]))
    print(f"bandit tables and figure rewritten from {path}")
