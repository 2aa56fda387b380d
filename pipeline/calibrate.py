"""Does the critic know the tail? Tail calibration of every trained IQN critic of a results
folder (``eval.calibration``), per run and gathered into the folder's tables.

    ramac calibrate --profile quick              # the bandit: against the closed form
    ramac calibrate --on suite --profile cpu     # Stochastic-D4RL: against Monte-Carlo returns

Every finished run of an agent with an IQN critic (RADAC and its public-loss variant, RAFMAC,
the ORAAC family, CODAC) is rebuilt from its records (config, final checkpoint). Its
calibration goes into its run folder (``calibration.csv``, ``calibration_curve.csv``; a run
that has them is read, not redone, so a killed calibration resumes), and the folder gathers
them into ``calibration.csv`` and ``calibration_curve.csv`` (one row per run x point or
state, with the run's algorithm, dataset and seed), from which ``reports.calibration``
writes the table, figure and page.

Stochastic-D4RL: at the first ``N_STATES`` evaluation start states of each seed and at the
state the policy reaches ``horizon // 2`` steps after each, ``N_ROLLOUTS`` rollouts per state.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import runs
from ramac.agents import make_config
from ramac.config import RETIRED, build, read_yaml
from ramac.errors import UserError
from ramac.io import atomic_to_csv, problem_of
from ramac.nets.iqn import IQNEnsemble
from ramac.nets.quantile_mlp import QuantileMlpEnsemble

POINTS, CURVE = "calibration.csv", "calibration_curve.csv"
N_STATES = 5  # evaluation start states per run (the first of its recorded episode seeds)
N_ROLLOUTS = 100  # Monte-Carlo returns per state: CVaR_0.1 is the mean of the worst 10
KEYS = ("suite", "dataset", "algo", "seed", "run")


@functools.cache
def _may_be_iqn(algo: str) -> bool:
    """Whether ``algo``'s config sets quantile levels (a cheap filter before loading a run;
    ``has_iqn_critic`` decides)."""
    return "n_quantiles" in {f.name for f in dataclasses.fields(make_config(algo))}


def has_iqn_critic(agent: Any) -> bool:
    """Whether ``agent``'s critic is an implicit quantile ensemble (a distributional critic to
    check): the IQN critics, or CODAC's QuantileMlp (the same call, [E, B, N] quantiles)."""
    return isinstance(getattr(agent, "critic", None), IQNEnsemble | QuantileMlpEnsemble)


def _gather(root: Path, records: list[tuple[dict, pd.DataFrame, pd.DataFrame]]) -> Path:
    """The folder's tables from the runs' (keys, points, curve); returns the points' path."""
    if not records:
        raise UserError(f"{root}: no finished run with an IQN critic to calibrate")
    points = pd.concat([p.assign(**keys) for keys, p, _ in records], ignore_index=True)
    curve = pd.concat([c.assign(**keys) for keys, _, c in records], ignore_index=True)
    front = [k for k in KEYS if k in points]
    points = points[front + [c for c in points if c not in front]]
    curve = curve[front + [c for c in curve if c not in front]]
    atomic_to_csv(curve, root / CURVE)
    return atomic_to_csv(points, root / POINTS)


def _cached(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    if (run_dir / POINTS).exists() and (run_dir / CURVE).exists():
        return pd.read_csv(run_dir / POINTS), pd.read_csv(run_dir / CURVE)
    return None


def _store(run_dir: Path, points: pd.DataFrame, curve: pd.DataFrame) -> None:
    atomic_to_csv(curve, run_dir / CURVE)
    atomic_to_csv(points, run_dir / POINTS)  # written last: its presence means both are there


# ------------------------------------------------------------------------------ the bandit


def bandit_run_calibration(
    run_dir: Path, device: str = "cpu"
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """A finished bandit run's critic against the closed form, or None (no IQN critic);
    the critic runs on ``device``."""
    from eval.calibration import bandit_critic_calibration
    from ramac.envs.bandit import BanditSpec, make_dataset
    from ramac.train import CHECKPOINT, build_agent, read_checkpoint

    path = run_dir / runs.CONFIG
    config = read_yaml(path)  # a damaged file: one line naming it
    try:
        extra = config["dataset"]["extra"]  # the bandit's provenance: geometry and data seed
        spec = build(BanditSpec, extra["spec"], str(path))
        dataset, _ = make_dataset(spec, extra["seed"])
        algo, seed, algo_config = config["algo"], config["seed"], config["algo_config"]
        # a record written before a setting was retired (ramac.config.RETIRED) still holds it
        overrides = {k: v for k, v in algo_config.items() if k not in RETIRED}
    except (KeyError, TypeError, AttributeError) as exc:
        raise UserError(
            f"{path}: not a bandit run's config ({problem_of(exc)}); move the run folder "
            "aside and run 'bandit' again to train it anew"
        ) from None
    agent = build_agent(algo, dataset, seed, overrides, device=device)
    if not has_iqn_critic(agent):
        return None
    state = read_checkpoint(run_dir / CHECKPOINT, then="run 'bandit' again to retrain the run")
    if state is None:
        raise UserError(f"{run_dir}: no readable {CHECKPOINT}; run 'bandit' again first")
    agent.load_state_dict(state["agent"])
    return bandit_critic_calibration(agent.critic, spec)


def calibrate_bandit(root: Path, device: str = "cpu") -> Path:
    """Calibrate every finished IQN run of the bandit folder ``root`` on ``device``;
    returns the table."""
    from pipeline.bandit import read_summary

    summary = read_summary(root / "summary.csv")
    records = []
    for row in summary[summary["algo"].map(_may_be_iqn)].itertuples():
        run_dir = root / "runs" / str(row.algo) / str(row.run)
        found = _cached(run_dir) or bandit_run_calibration(run_dir, device)
        if found is None:
            continue
        _store(run_dir, *found)
        keys = {"suite": "bandit", "dataset": "bandit", "algo": row.algo, "seed": row.seed}
        records.append((keys | {"run": row.run}, *found))
    return _gather(root, records)


# ----------------------------------------------------------------------- Stochastic-D4RL


def suite_run_calibration(
    job: Any, n_states: int = N_STATES, n_rollouts: int = N_ROLLOUTS
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """A finished Stochastic-D4RL run's critic against Monte-Carlo returns of its policy
    (``eval.calibration.calibrate_agent``), or None (no IQN critic)."""
    from eval.calibration import calibrate_agent
    from eval.suite_run import episode_seeds, eval_env, horizon_steps, trained_agent

    found = _cached(job.run_dir)
    if found is not None:
        return found
    dataset = job.dataset()
    agent, _ = trained_agent(job, dataset)
    if not has_iqn_critic(agent):
        return None
    horizon = horizon_steps(job.eval_settings.horizon, job.data.task)
    points, curve = calibrate_agent(
        agent,
        job.data.task,
        job.data.hazard(),
        episode_seeds(job.seed, n_states),
        horizon=horizon,
        n_rollouts=n_rollouts,
        seed=job.seed,
        env_id=eval_env(job, dataset.provenance)["env_id"],
        visited_at=(horizon // 2,),
    )
    _store(job.run_dir, points, curve)
    return points, curve


def calibrate_suite(
    plan: Any,
    workers: int | None,
    n_states: int = N_STATES,
    n_rollouts: int = N_ROLLOUTS,
    **execution: Any,
) -> Path:
    """Calibrate every finished IQN run of the plan's folder; returns the table."""
    jobs = [j for j in plan.jobs if (j.run_dir / runs.DONE).exists() and _may_be_iqn(j.algo)]
    runs.check_data_of(jobs)  # the runs' own data, before any work
    one_run = functools.partial(suite_run_calibration, n_states=n_states, n_rollouts=n_rollouts)
    found = runs.run_jobs(one_run, jobs, workers=workers, desc="calibration", **execution)
    records = [
        (
            {
                "suite": j.suite,
                "dataset": j.data.name,
                "algo": j.algo,
                "seed": j.seed,
                "run": j.run_dir.name,
            },
            *f,
        )
        for j, f in zip(jobs, found, strict=True)
        if f is not None
    ]
    return _gather(plan.out, records)
