"""The Stochastic-D4RL benchmark: every algorithm x dataset x seed trained, evaluated, tabulated.

Writes under ``results/stochastic-d4rl/<data>-<profile>/`` (or ``--out``):
  runs/<dataset>/<algo>/seed<k>-<config hash>/  config.yaml, checkpoint.pt, train_log.csv,
                                                episodes.csv, metrics.json, done (last)
  episodes.csv, summary.csv, train_logs.csv     tidy records gathered from finished runs
  leaderboard.*, ood.*, figures/*, report.html  written by ``reports.suite`` from the records

Stages: ``data`` makes (or finds) every dataset in the main process first, so parallel
workers never race to write one; ``train`` trains (resuming a killed run from its last
checkpoint); ``evaluate`` rolls out the chosen checkpoint and records episodes and the OOD
rate; ``all`` does both in one job per run. A run with a ``done`` file is skipped.

The evaluation simulator follows the data (:func:`eval_env`): the env the dataset's
provenance records (D4RL files: Gymnasium v4, D4RL's collection dynamics; generated data:
the env its file records, v5), unless the suite's ``eval.env`` overrides it with a stated
reason. The choice is written into ``config.yaml``, ``metrics.json`` / ``summary.csv``,
``episodes.csv`` and the table captions.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from eval.metrics import summarise_seeds
from eval.ood import (
    DEFAULT_FEATURES,
    DEFAULT_NEIGHBOURS,
    OODDetector,
    StateConditionedDetector,
    fit_detector,
)
from eval.rollout import run_episodes
from pipeline import runs
from pipeline.executors import run_jobs
from pipeline.runs import (
    DONE,
    METRICS,
    check_positive,
    load_suite,
    profile_budget,
    profile_overrides,
    run_once,
    schedule_scale,
    seed_stacks,
)
from ramac.agents.base import make_config
from ramac.config import CONFIG_DIR, ROOT, config_hash
from ramac.data.behaviour import ENV_IDS
from ramac.data.dataset import OfflineDataset
from ramac.envs.hazards import HazardSpec, dataset_key, load_hazard, relabel
from ramac.envs.mujoco import ENV_VERSIONS, FULL_HORIZON, PAPER_HORIZONS, env_id_for, task_of
from ramac.errors import UserError
from ramac.io import atomic_to_csv
from ramac.records import package_versions, write_yaml
from ramac.risk import cvar_estimate
from ramac.train import (
    CHECKPOINT,
    SNAPSHOT_DIR,
    TRAIN_LOG,
    TrainSettings,
    hyperparameter_key,
    load_trained,
    train,
)

SUITE = "stochastic-d4rl"
SUITE_FILE = CONFIG_DIR / "suites" / f"{SUITE}.yaml"
SUITE_KEYS = {"datasets", "algos", "hazards", "data_seed", "relabel_seed", "eval", "profiles"}
SOURCES = ("generated", "d4rl")
EVAL_SEED_BASE = 1_000_000  # episode e of training seed k runs on env seed BASE + 1000 k + e
EPISODES = "episodes.csv"
CURVE = "curve.csv"  # per run with kept snapshots: return at every checkpoint


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """One Stochastic-D4RL dataset: where its transitions come from and its hazard."""

    source: str  # "generated" or "d4rl"
    name: str  # e.g. "hopper-medium-expert"
    size: int | None  # generated rows (None: the generator's default)
    data_seed: int
    hazard_set: str
    relabel_seed: int

    @property
    def task(self) -> str:
        return task_of(self.name)

    @property
    def kind(self) -> str:
        return dataset_key(self.name).split("-", 1)[1]

    @property
    def config_key(self) -> str:
        """The D4RL name whose hyperparameter overrides apply (``hopper-medium-expert-v2``)."""
        return f"{dataset_key(self.name)}-v2"

    @property
    def d4rl_name(self) -> str:
        """The D4RL file a ``d4rl`` source reads: the name's own version (``hopper-medium-v0``
        for ORAAC's data), else v2."""
        return self.name if dataset_key(self.name) != self.name else f"{self.name}-v2"

    def hazard(self) -> HazardSpec:
        return load_hazard(self.hazard_set, self.name)


@dataclasses.dataclass(frozen=True)
class SuiteJob:
    """One (dataset, algorithm, seed) run with everything a worker process needs."""

    data: DataSpec
    algo: str
    seed: int
    steps: int
    checkpoints: int
    overrides: dict[str, Any]
    run_dir: Path
    eval: dict[str, Any]
    profile: str
    schedule_scale: float = 1.0  # steps / the paper profile's steps (ramac.config)
    keep_snapshots: bool = False  # keep every checkpoint's agent (best-checkpoint, curves)
    stages: tuple[str, ...] = ("train", "evaluate")

    @property
    def settings(self) -> TrainSettings:
        every = max(1, self.steps // max(1, self.checkpoints))
        return TrainSettings(
            steps=self.steps,
            seed=self.seed,
            checkpoint_every=every,
            log_every=max(1, min(every, self.steps // 100 or 1)),
            progress=False,
            keep_snapshots=self.keep_snapshots,
            schedule_scale=self.schedule_scale,
        )


# ----------------------------------------------------------------------------- data


def prepare_data(spec: DataSpec) -> None:
    """Make the dataset's file when it is generated and missing (checks D4RL files exist)."""
    if spec.source == "generated":
        from ramac.data.generate import ensure_dataset

        ensure_dataset(spec.task, spec.kind, spec.size, spec.data_seed)
    else:
        from ramac.data.d4rl import ensure_card, locate, resolve_info

        info = resolve_info(spec.d4rl_name)
        ensure_card(locate(info, allow_download=True), info.task)  # warns: falls unlabellable
    spec.hazard()  # an uncalibrated or missing hazard fails here, before any training


@functools.lru_cache(maxsize=4)
def load_dataset(spec: DataSpec) -> OfflineDataset:
    """The relabelled dataset (cached per process: a worker's runs share one copy)."""
    if spec.source == "generated":
        from ramac.data.generate import load_generated

        dataset = load_generated(spec.task, spec.kind, size=spec.size, seed=spec.data_seed)
    else:
        from ramac.data.d4rl import load_d4rl

        dataset = load_d4rl(spec.d4rl_name, download=False)
    return relabel(dataset, spec.hazard(), seed=spec.relabel_seed)


def check_env_setting(eval_cfg: dict[str, Any], suite_file: Path) -> None:
    """``eval.env``: absent or ``data`` (the data's own simulator) or an override
    ``{version: v4|v5, reason: "..."}``; anything else is an error when the plan is made."""
    setting = eval_cfg.get("env", "data")
    if setting == "data":
        return
    keys = set(setting) if isinstance(setting, dict) else set()
    if keys != {"version", "reason"} or setting["version"] not in ENV_VERSIONS:
        raise UserError(
            f"{suite_file}: eval.env must be 'data' or {{version: {'|'.join(ENV_VERSIONS)}, "
            f"reason: ...}}, got {setting!r}"
        )
    if not str(setting["reason"] or "").strip():
        raise UserError(f"{suite_file}: eval.env overrides the data's simulator: state a reason")


def eval_env(job: SuiteJob, provenance: Any) -> dict[str, str]:
    """The simulator a run is evaluated in, who chose it and why.

    By default the env the data was collected in, as its provenance records it (read from
    the D4RL table / the generated file's metadata, never guessed); ``eval.env`` in the
    suite overrides the version, with its reason.
    """
    setting = job.eval.get("env", "data")
    if setting != "data":
        return {
            "env_id": env_id_for(job.data.task, setting["version"]),
            "chosen_by": "suite override",
            "reason": str(setting["reason"]).strip(),
        }
    if not provenance.env_id:
        raise UserError(
            f"dataset {provenance.id} records no environment: set eval.env in the suite"
        )
    return {
        "env_id": provenance.env_id,
        "chosen_by": "data",
        "reason": provenance.extra.get("env_source", "the dataset's provenance"),
    }


# ----------------------------------------------------------------------------- one run


def run_job(job: SuiteJob) -> dict[str, Any]:
    """Train and/or evaluate one run (per ``job.stages``); finished runs are read back.

    The run folder is keyed by what trains it; a finished run whose evaluation settings
    have changed since (another kappa, more episodes) is evaluated again, not retrained.
    """
    if job.stages == ("train",):
        return _train(job)
    _forget_stale_evaluation(job)
    return run_once(job.run_dir, lambda: _train_and_evaluate(job))


def _forget_stale_evaluation(job: SuiteJob) -> None:
    """Move ``done`` aside when ``metrics.json`` was computed with other eval settings, or
    in another simulator than the one the run is evaluated in now (records from before the
    simulator was recorded were evaluated in the task's v5 env)."""
    done, metrics = job.run_dir / DONE, job.run_dir / METRICS
    if done.exists() and metrics.exists():
        recorded = json.loads(metrics.read_text())
        env = recorded.get("eval_env", ENV_IDS[job.data.task])
        if (
            recorded.get("eval_hash") != config_hash(job.eval)
            or env != eval_env(job, load_dataset(job.data).provenance)["env_id"]
        ):
            done.rename(job.run_dir / "done.stale-eval")


def _train(job: SuiteJob) -> dict[str, Any]:
    if not (job.run_dir / DONE).exists():
        _train_run(job, load_dataset(job.data))
    return {"run": str(job.run_dir), "trained": True}


def _train_run(job: SuiteJob, dataset: OfflineDataset) -> None:
    """Record the run's config, then train (resuming from its checkpoint when there is one)."""
    _write_config(job, dataset, stack=[job.seed])
    train(job.algo, dataset, job.run_dir, job.settings, job.overrides)


def train_stack(jobs: tuple[SuiteJob, ...]) -> dict[str, Any]:
    """Train runs that differ only in seed as one seed stack."""
    return runs.train_stack(jobs, load_dataset(jobs[0].data), _write_config, lambda j: j.settings)


def _train_and_evaluate(job: SuiteJob) -> dict[str, Any]:
    dataset = load_dataset(job.data)
    if "train" in job.stages:
        _train_run(job, dataset)
    return evaluate_run(job, dataset)


def _write_config(job: SuiteJob, dataset: OfflineDataset, stack: list[int]) -> None:
    """``config.yaml``, written when the run starts and kept (a resumed run finds it there).

    ``trained_with_seeds`` records the seed stack the run was trained in: its update noise
    is drawn with those seeds' (``ramac.seed_parallel``), so a rerun repeats it exactly.
    """
    if (job.run_dir / "config.yaml").exists():
        return
    config = make_config(  # as train() does
        job.algo, hyperparameter_key(dataset), job.overrides, job.schedule_scale
    )
    write_yaml(
        job.run_dir / "config.yaml",
        {
            "suite": SUITE,
            "dataset": job.data.name,
            "algo": job.algo,
            "seed": job.seed,
            "trained_with_seeds": stack,
            "profile": job.profile,
            "steps": job.steps,
            "checkpoint_every": job.settings.checkpoint_every,
            # schedule lengths in algo_config are the paper's x this (ramac.config)
            "schedule_scale": job.schedule_scale,
            "algo_config": dataclasses.asdict(config),
            "eval": job.eval,
            "eval_env": eval_env(job, dataset.provenance),  # the simulator; metrics.json too
            "data": dataclasses.asdict(job.data),
            "provenance": dataset.provenance.to_dict(),
            "versions": package_versions(),
        },
    )


def horizon_steps(horizon: str | int, task: str) -> int:
    """Episode length: ``paper`` (200 / 500), ``full`` (1000) or a number of steps."""
    if horizon == "paper":
        return PAPER_HORIZONS[task]
    if horizon == "full":
        return FULL_HORIZON
    return int(horizon)


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """The fixed, recorded environment seeds of a training seed's evaluation episodes."""
    return [EVAL_SEED_BASE + 1000 * seed + e for e in range(episodes)]


def rollout_agent(
    agent: Any, job: SuiteJob, horizon: int, env_id: str | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """The run's evaluation episodes in ``env_id`` and every (state, action) pair visited."""
    seeds = episode_seeds(job.seed, job.eval["episodes"])
    generator = torch.Generator().manual_seed(EVAL_SEED_BASE + job.seed)
    pairs: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        return agent.act(obs, generator).cpu().numpy()

    def visit(obs: np.ndarray, actions: np.ndarray) -> None:
        pairs.append(np.hstack([obs, actions]))

    episodes = run_episodes(
        policy, job.data.task, job.data.hazard(), seeds, horizon, visit, env_id=env_id
    )
    return episodes, np.concatenate(pairs)


def _trained_agent(job: SuiteJob, dataset: OfflineDataset) -> tuple[Any, int]:
    """The agent of the run's final checkpoint; one clear line when training is unfinished."""
    trained = (job.run_dir / CHECKPOINT).exists()
    agent, step = (
        load_trained(job.algo, dataset, job.run_dir, job.overrides, job.schedule_scale)
        if trained
        else (None, 0)
    )
    if step < job.steps:
        raise UserError(f"{job.run_dir}: not trained to {job.steps} steps; run 'train' first")
    return agent, step


Rollout = tuple[int, pd.DataFrame, np.ndarray]  # (checkpoint step, episodes, visited pairs)


def _rollouts(
    job: SuiteJob, dataset: OfflineDataset, horizon: int, env_id: str | None = None
) -> list[Rollout]:
    """The final checkpoint's rollout and, when snapshots are kept, every earlier snapshot's,
    in step order (a snapshot holds the same agent as the checkpoint of its step)."""
    agent, final_step = _trained_agent(job, dataset)
    rollouts = [(final_step, *rollout_agent(agent, job, horizon, env_id))]
    if job.keep_snapshots:
        for path in sorted((job.run_dir / SNAPSHOT_DIR).glob("step*.pt")):
            if int(path.stem[4:]) != final_step:
                agent.load_state_dict(torch.load(path, weights_only=False))
                step = int(path.stem[4:])
                rollouts.append((step, *rollout_agent(agent, job, horizon, env_id)))
    return sorted(rollouts, key=lambda rollout: rollout[0])


def _evaluated(rollouts: list[Rollout], rule: str) -> tuple[Rollout, str]:
    """The recorded rollout: the final checkpoint's, or the best mean return on the
    evaluation env (the later on ties), which every table then calls optimistic."""
    if rule == "final":
        return rollouts[-1], "final"
    best = max(rollouts, key=lambda rollout: (rollout[1]["return"].mean(), rollout[0]))
    return best, "best on the evaluation env (optimistic)"


def _write_curve(job: SuiteJob, rollouts: list[Rollout]) -> None:
    """``curve.csv``: mean return and CVaR of every kept checkpoint (a learning curve)."""
    alpha, rule = job.eval["alpha"], job.eval["cvar_rule"]
    rows = [
        {"step": step, "mean_return": episodes["return"].mean()}
        | {"cvar": cvar_estimate(episodes["return"].to_numpy(), alpha, rule)}
        for step, episodes, _ in rollouts
    ]
    keys = {"suite": SUITE, "dataset": job.data.name, "algo": job.algo, "seed": job.seed}
    atomic_to_csv(pd.DataFrame(rows).assign(**keys), job.run_dir / CURVE)


@functools.lru_cache(maxsize=2)
def ood_detector(
    spec: DataSpec,
    loo_sample: int,
    features: str = DEFAULT_FEATURES,
    neighbours: int = DEFAULT_NEIGHBOURS,
) -> OODDetector | StateConditionedDetector:
    """The dataset's fitted OOD detector in feature space ``features`` (``eval.ood``;
    ``neighbours``: the state-conditioned detector's k), cached per process: every run on
    the dataset shares one."""
    dataset = load_dataset(spec)
    return fit_detector(
        features,
        dataset.observations,
        dataset.actions,
        neighbours=neighbours,
        loo_sample=loo_sample,
        seed=spec.data_seed,
    )


def evaluate_run(job: SuiteJob, dataset: OfflineDataset) -> dict[str, Any]:
    """Roll out the run's checkpoint, write ``episodes.csv``; returns its metrics row."""
    start = time.perf_counter()
    horizon = horizon_steps(job.eval["horizon"], job.data.task)
    env = eval_env(job, dataset.provenance)
    rollouts = _rollouts(job, dataset, horizon, env["env_id"])
    if len(rollouts) > 1:
        _write_curve(job, rollouts)
    (step, episodes, pairs), label = _evaluated(rollouts, job.eval["checkpoint"])
    keys = {"suite": SUITE, "dataset": job.data.name, "algo": job.algo, "seed": job.seed}
    episodes = episodes.assign(**keys, horizon=horizon, checkpoint_step=step)
    atomic_to_csv(episodes, job.run_dir / EPISODES)

    detector = ood_detector(
        job.data,
        job.eval["ood_loo_sample"],
        job.eval.get("ood_features", DEFAULT_FEATURES),
        job.eval.get("ood_neighbours", DEFAULT_NEIGHBOURS),
    )
    seed_row = summarise_seeds(episodes, job.eval["alpha"], job.eval["cvar_rule"]).iloc[0]
    log = pd.read_csv(job.run_dir / TRAIN_LOG)
    return {
        **seed_row.to_dict(),
        "run": job.run_dir.name,
        "data_source": job.data.source,
        "eval_env": env["env_id"],
        "eval_env_chosen_by": env["chosen_by"],
        "eval_env_reason": env["reason"],
        "horizon": horizon,
        "checkpoint": label,
        "checkpoint_step": step,
        **detector.rate_columns(pairs, job.eval["kappa"], job.eval["kappa_sweep"]),
        "ood_kappa": job.eval["kappa"],
        "ood_detector": detector.name,
        "ood_neighbours": detector.state().get("neighbours"),  # None: the joint detector
        "eval_hash": config_hash(job.eval),
        "ood_pairs": len(pairs),
        "train_steps": int(log["step"].iloc[-1]),
        "schedule_scale": job.schedule_scale,
        "train_seconds": round(float(log["wall_seconds"].iloc[-1]), 2),
        "eval_seconds": round(time.perf_counter() - start, 2),
        "dataset_sha256": dataset.provenance.sha256,
        "ref_min_score": dataset.provenance.ref_min_score,
        "ref_max_score": dataset.provenance.ref_max_score,
    }


# ----------------------------------------------------------------------------- job list


@dataclasses.dataclass(frozen=True)
class Plan:
    """A resolved suite invocation: the jobs, the datasets they need, where records go."""

    jobs: list[SuiteJob]
    data: list[DataSpec]
    out: Path
    eval: dict[str, Any]
    algos: list[str]
    datasets: list[str]


def default_out(source: str, profile: str) -> Path:
    return ROOT / "results" / SUITE / f"{source}-{profile}"


def make_plan(
    profile: str = "quick",
    source: str = "generated",
    *,
    seeds: int | None = None,
    out: Path | None = None,
    algos: list[str] | None = None,
    datasets: list[str] | None = None,
    steps: int | None = None,
    stages: tuple[str, ...] = ("train", "evaluate"),
    suite_file: Path | None = None,
    checkpoint: str | None = None,
) -> Plan:
    """Every (dataset, algorithm, seed) job of a profile, with its run folder.

    ``datasets`` may name tasks (``hopper``): each stands for all of its suite datasets.
    """
    suite_file = suite_file or SUITE_FILE
    if source not in SOURCES:
        raise UserError(f"unknown data source '{source}' (known: {', '.join(SOURCES)})")
    suite = load_suite(suite_file, SUITE_KEYS)
    budget = profile_budget(suite, profile, suite_file)
    steps = check_positive("steps", steps or budget["steps"])
    n_seeds = check_positive("seeds", seeds or budget["seeds"])
    algos = list(algos or budget.get("algos") or suite["algos"])
    names = _resolve_datasets(datasets or budget.get("datasets") or suite["datasets"], suite)
    unknown = sorted(set(names) - set(suite["datasets"]))
    if unknown:
        raise UserError(f"unknown dataset(s) {', '.join(unknown)} (known: {suite['datasets']})")
    eval_cfg = {**suite["eval"], **{k: budget[k] for k in ("episodes", "horizon") if k in budget}}
    eval_cfg["checkpoint"] = checkpoint or eval_cfg["checkpoint"]
    if eval_cfg["checkpoint"] not in ("final", "best"):
        raise UserError(f"{suite_file}: eval.checkpoint must be 'final' or 'best'")
    check_env_setting(eval_cfg, suite_file)
    out = out or default_out(source, profile)
    scale = schedule_scale(suite, steps)
    snapshots = bool(budget.get("snapshots")) or eval_cfg["checkpoint"] == "best"
    specs = [
        DataSpec(
            source=source,
            name=name,
            size=budget.get("data_size"),
            data_seed=suite["data_seed"],
            hazard_set=suite["hazards"][source],
            relabel_seed=suite["relabel_seed"],
        )
        for name in names
    ]
    jobs = []
    for spec in specs:
        for algo in algos:
            overrides = profile_overrides(algo, budget.get("overrides") or {})
            resolved = dataclasses.asdict(make_config(algo, spec.config_key, overrides, scale))
            # What trains the run keys its folder; evaluation settings do not (run_job).
            key = config_hash(
                {"algo": resolved, "steps": steps, "data": dataclasses.asdict(spec)}
                | {"checkpoints": budget["checkpoints"], "snapshots": snapshots}
            )
            for seed in range(n_seeds):
                jobs.append(
                    SuiteJob(
                        data=spec,
                        algo=algo,
                        seed=seed,
                        steps=steps,
                        checkpoints=budget["checkpoints"],
                        overrides=overrides,
                        run_dir=out / "runs" / spec.name / algo / f"seed{seed}-{key}",
                        eval=eval_cfg,
                        profile=profile,
                        schedule_scale=scale,
                        keep_snapshots=snapshots,
                        stages=stages,
                    )
                )
    return Plan(jobs, specs, out, eval_cfg, algos, names)


def _resolve_datasets(names: list[str], suite: dict[str, Any]) -> list[str]:
    """Dataset names in the suite's order; a task name expands to its datasets."""
    known = suite["datasets"]
    picked = [d for d in known if d in names or d.split("-")[0] in names]
    matched = set(picked) | {d.split("-")[0] for d in picked}
    return picked + [n for n in names if n not in matched]


def run_plan(
    plan: Plan,
    workers: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    seed_stacks_on: bool = True,
) -> list[dict[str, Any]]:
    """Make the data, run every job (finished runs are skipped), gather the records.

    With ``seed_stacks_on``, the seeds of each (dataset, algorithm) are first trained
    together, one process per stack (``ramac.seed_parallel``); evaluation stays per run.
    """
    for spec in plan.data:
        prepare_data(spec)
    start = time.perf_counter()
    stacks = seed_stacks(plan.jobs) if seed_stacks_on and "train" in plan.jobs[0].stages else []
    if stacks:
        run_jobs(train_stack, stacks, workers, f"{SUITE} seed stacks", executor, ray_address)
    rows = run_jobs(
        run_job,
        plan.jobs,
        workers,
        desc=f"{SUITE} runs",
        executor=executor,
        ray_address=ray_address,
    )
    print(f"{SUITE}: {len(plan.jobs)} runs in {time.perf_counter() - start:.0f} s -> {plan.out}")
    if "evaluate" in plan.jobs[0].stages:
        gather_records(plan)
    return rows


def gather_records(plan: Plan) -> None:
    """``episodes.csv``, ``summary.csv`` and ``train_logs.csv`` at the top of ``plan.out``."""
    finished = [job for job in plan.jobs if (job.run_dir / DONE).exists()]
    if not finished:
        raise UserError(f"{plan.out}: no finished runs to gather")
    episodes = pd.concat([pd.read_csv(job.run_dir / EPISODES) for job in finished])
    summary = pd.DataFrame([json.loads((job.run_dir / METRICS).read_text()) for job in finished])
    logs = pd.concat(
        pd.read_csv(job.run_dir / TRAIN_LOG).assign(
            suite=SUITE, dataset=job.data.name, algo=job.algo, seed=job.seed
        )
        for job in finished
    )
    atomic_to_csv(episodes, plan.out / EPISODES)
    atomic_to_csv(summary, plan.out / "summary.csv")
    atomic_to_csv(logs, plan.out / "train_logs.csv")
    curves = [job.run_dir / CURVE for job in finished if (job.run_dir / CURVE).exists()]
    if curves:
        atomic_to_csv(pd.concat(pd.read_csv(path) for path in curves), plan.out / "curves.csv")
