"""The Stochastic-D4RL benchmark: every algorithm x dataset x seed trained, evaluated, tabulated.

Writes under ``results/stochastic-d4rl/<data>-<profile>/`` (or ``--out``):
  runs/<dataset>/<algo>/seed<k>-<config hash>/  config.yaml, checkpoint.pt, train_log.csv,
                                                episodes.csv, metrics.json, done (last);
                                                dynamics.json (model-based runs)
  episodes.csv, summary.csv, train_logs.csv     tidy records gathered from finished runs
  dynamics.csv                                  model-based runs (RAVL): their dynamics model
  leaderboard.*, ood.*, figures/*, report.html  written by ``reports.suite`` from the records

Stages: ``data`` makes (or finds) every dataset in the main process first, so parallel
workers never race to write one; ``train`` trains (resuming a killed run from its last
checkpoint); ``evaluate`` rolls out the chosen checkpoint and records episodes and the OOD
rate (``eval.suite_run``); ``all`` does both in one job per run. A run with a ``done`` file
is skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any, Self

import pandas as pd

from eval.metrics import PAPER_OOD
from eval.settings import names, whole
from eval.suite_run import (
    CURVE,
    EPISODES,
    EvalSettings,
    OODDetectors,
    check_horizon,
    eval_env,
    evaluate_run,
    fit_ood_detectors,
)
from pipeline import locks, runs
from pipeline.runs import (
    DONE,
    METRICS,
    Job,
    Profile,
    SuiteFile,
    algorithms,
    run_once,
)
from ramac.config import CONFIG_DIR, config_hash
from ramac.data.behaviour import ENV_IDS
from ramac.data.d4rl import KINDS
from ramac.data.dataset import OfflineDataset
from ramac.envs.hazards import HazardSpec, dataset_key, load_hazard, relabel, spec_set_path
from ramac.envs.mujoco import task_of
from ramac.errors import UserError, brief
from ramac.io import atomic_to_csv, read_table
from ramac.models.dynamics import record_row
from ramac.train import CHECKPOINT, MODEL_RECORD, TRAIN_LOG, TrainSettings, heal_log

SUITE = "stochastic-d4rl"
SUITE_FILE = CONFIG_DIR / "suites" / f"{SUITE}.yaml"
SOURCES = ("generated", "d4rl")
DYNAMICS_TABLE = "dynamics.csv"  # model-based runs' dynamics models (reports.model_based)


# ----------------------------------------------------------------------------- suite file


@dataclasses.dataclass(frozen=True, kw_only=True)
class SuiteProfile(Profile):
    checkpoints: int  # checkpoints per run (and kept snapshots, with snapshots or best)
    episodes: int | None = None  # evaluation episodes per seed (None: the eval block's)
    horizon: str | int | None = None  # episode length (None: the eval block's)
    data_size: int | None = None  # rows per generated dataset (None: the generator's)
    datasets: list[str] | None = None  # datasets or tasks (None: the suite's)
    algos: list[str] | None = None  # None: the suite's
    snapshots: bool = False  # keep every checkpoint's agent: return learning curves

    def validated(self, where: str) -> Self:
        whole(where, "checkpoints", self.checkpoints)
        for key in ("episodes", "data_size"):
            if getattr(self, key) is not None:
                whole(where, key, getattr(self, key))
        if self.horizon is not None:
            check_horizon(where, self.horizon)
        if self.datasets is not None:
            names(where, "datasets", self.datasets)
        if self.algos is not None:
            algorithms(where, "algos", self.algos)
        if not isinstance(self.snapshots, bool):
            raise UserError(
                f"{where}: snapshots must be true or false, got {brief(self.snapshots)}"
            )
        return super().validated(where)


@dataclasses.dataclass(frozen=True, kw_only=True)
class D4RLSuite(SuiteFile):
    """``configs/suites/stochastic-d4rl.yaml`` (or ``--suite``)."""

    datasets: list[str]  # in the tables' row order
    hazards: dict[str, str]  # the hazard set of each data source (configs/hazards/)
    relabel_seed: int  # hazard coins of the relabelled dataset (the same for every run)
    eval: EvalSettings
    profiles: dict[str, SuiteProfile]

    profile_type = SuiteProfile
    eval_type = EvalSettings

    def validated(self, where: str) -> Self:
        names(where, "datasets", self.datasets)
        unknown = [name for name in self.datasets if not known_dataset(name)]
        if unknown:
            raise UserError(
                f"{where}: datasets: unknown dataset(s) {', '.join(unknown)} (a dataset is "
                f"<task>-<kind>: tasks {', '.join(sorted(ENV_IDS))}; kinds {', '.join(KINDS)})"
            )
        whole(where, "relabel_seed", self.relabel_seed, minimum=0)
        if not isinstance(self.hazards, dict) or not set(self.hazards) <= set(SOURCES):
            raise UserError(f"{where}: hazards must map {' / '.join(SOURCES)} to a hazard set")
        for source, spec_set in self.hazards.items():
            if not isinstance(spec_set, str):
                raise UserError(f"{where}: hazards: {source}: expected a hazard set name")
            try:
                spec_set_path(spec_set)
            except UserError as exc:
                raise UserError(f"{where}: hazards: {source}: {exc}") from None
        suite = super().validated(where)
        swept = suite.frontier.datasets or [] if suite.frontier else []
        extra = [name for name in swept if name not in self.datasets]
        if extra:
            raise UserError(f"{where} [frontier]: datasets: {', '.join(extra)} not in datasets")
        return suite


def known_dataset(name: str) -> bool:
    """Whether ``name`` is ``<task>-<kind>`` (a D4RL version suffix allowed) of a known task."""
    task, _, kind = dataset_key(name).partition("-")
    return task in ENV_IDS and kind in KINDS


# ----------------------------------------------------------------------------- data


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


def prepare_data(spec: DataSpec) -> None:
    """Make the dataset's file when it is generated and missing; a D4RL file is checked as
    training will read it (``load_d4rl``: NaN or out-of-range values fail here, in one line)."""
    if spec.source == "generated":
        from ramac.data.generate import ensure_dataset

        ensure_dataset(spec.task, spec.kind, spec.size, spec.data_seed)
    else:
        from ramac.data.d4rl import ensure_card, load_d4rl, locate, resolve_info

        info = resolve_info(spec.d4rl_name)
        ensure_card(locate(info, allow_download=True), info.task)  # warns: falls unlabellable
        load_d4rl(spec.d4rl_name, download=False)  # the checks training applies
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


@functools.lru_cache(maxsize=2)
def ood_detectors(spec: DataSpec, settings: EvalSettings) -> OODDetectors:
    """The dataset's two fitted OOD detectors (cached per process: its runs share them)."""
    return fit_ood_detectors(load_dataset(spec), settings, seed=spec.data_seed)


# ----------------------------------------------------------------------------- one run


@dataclasses.dataclass(frozen=True, kw_only=True)
class SuiteJob(Job):
    """One (dataset, algorithm, seed) run."""

    data: DataSpec
    checkpoints: int
    eval_settings: EvalSettings
    keep_snapshots: bool = False  # keep every checkpoint's agent (best-checkpoint, curves)
    stages: tuple[str, ...] = ("train", "evaluate")
    # The folder of the same run trained without kept snapshots, when this one keeps them
    # only to choose the best checkpoint (--checkpoint best): named when it is not trained.
    final_only_dir: Path | None = None

    suite = SUITE

    @property
    def trains(self) -> bool:
        return "train" in self.stages

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
            device=self.device,
            compile=self.compile,
        )

    def dataset(self) -> OfflineDataset:
        return load_dataset(self.data)

    def record(self, dataset: OfflineDataset) -> dict[str, Any]:
        return {
            "dataset": self.data.name,
            "checkpoint_every": self.settings.checkpoint_every,
            "eval_env": eval_env(self, dataset.provenance),  # the simulator; metrics.json too
            "data": dataclasses.asdict(self.data),
            "provenance": dataset.provenance.to_dict(),
        }


def run_job(job: SuiteJob) -> dict[str, Any]:
    """Train and/or evaluate one run (per ``job.stages``); finished runs are read back.

    The run folder is keyed by what trains it; a finished run whose evaluation settings
    have changed since (another kappa, more episodes) is evaluated again, not retrained.
    A finished run whose records cannot be read is healed (``pipeline.runs.finished``).
    """
    if job.stages == ("train",):
        if not (job.run_dir / DONE).exists():
            with runs.fs_errors(job.run_dir), locks.owned(job.run_dir):
                if not (job.run_dir / DONE).exists():
                    runs.train_run(job, job.dataset())
        return {"run": str(job.run_dir), "trained": True}
    _heal_train_log(job)

    def train_and_evaluate() -> dict[str, Any]:
        dataset = job.dataset()
        if "train" in job.stages:
            runs.train_run(job, dataset)
        else:
            _check_trained(job)
        return job.metrics(evaluate_run(job, dataset, ood_detectors(job.data, job.eval_settings)))

    return run_once(
        job.run_dir,
        train_and_evaluate,
        records={EPISODES: lambda path: read_table(path, ("return",))},
        stale=functools.partial(_stale_evaluation, job),
    )


def _heal_train_log(job: SuiteJob) -> None:
    """A trained run's ``train_log.csv`` that does not read whole (cut mid-line, empty,
    missing) is rewritten from its checkpoint's copy of the log (``ramac.train.heal_log``;
    the damaged file moves to ``corrupt/``) before the run is evaluated or gathered."""
    if not (job.run_dir / CHECKPOINT).exists():
        return
    try:
        read_table(job.run_dir / TRAIN_LOG, ("step",))
        return
    except (ValueError, OSError):
        pass
    with runs.fs_errors(job.run_dir), locks.owned(job.run_dir):
        heal_log(job.run_dir)


def _model_row(job: SuiteJob) -> dict[str, Any]:
    """One row of ``dynamics.csv``: the run, then its dynamics model's record."""
    record = json.loads((job.run_dir / MODEL_RECORD).read_text())
    return {"dataset": job.data.name, "algo": job.algo, "seed": job.seed} | record_row(record)


def _read_train_log(path: Path) -> pd.DataFrame:
    """A finished run's training log; one that cannot be read (and was not healed) is one line."""
    try:
        return read_table(path, ("step",))
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(
            f"{path}: unreadable ({exc}) and no readable checkpoint.pt to rewrite it from; "
            "move the run folder aside and train it again"
        ) from None


def _check_trained(job: SuiteJob) -> None:
    """Say what is missing when ``--checkpoint best`` finds no kept checkpoints: the same
    run trained by default kept only its final one (another run folder)."""
    twin = job.final_only_dir
    if (job.run_dir / CHECKPOINT).exists() or twin is None or not (twin / CHECKPOINT).exists():
        return  # evaluation says what it finds
    raise UserError(
        f"{job.run_dir}: no kept checkpoints to choose the best from: training kept only the "
        f"final checkpoint (in {twin}); train with --checkpoint best (or a profile with "
        f"snapshots: true) to keep every checkpoint, or evaluate with --checkpoint final"
    )


def _forget_stale_evaluation(job: SuiteJob) -> None:
    """Move a finished run's ``done`` aside when its evaluation is stale (``run_once`` does
    this itself, under the run's lock; this checks one run outside it)."""
    recorded = runs.finished(job.run_dir)
    if recorded is not None and _stale_evaluation(job, recorded):
        (job.run_dir / DONE).rename(job.run_dir / "done.stale-eval")


def _stale_evaluation(job: SuiteJob, recorded: dict[str, Any]) -> bool:
    """Whether ``metrics.json`` (``recorded``) was computed with other eval settings, in
    another simulator than the one the run is evaluated in now (records from before the
    simulator was recorded were evaluated in the task's v5 env), or before both OOD rates
    were recorded (no ``ood_rate_1nn``: the eval settings of such a record may hash the same)."""
    env = recorded.get("eval_env", ENV_IDS[job.data.task])
    return (
        recorded.get("eval_hash") != config_hash(job.eval)
        or PAPER_OOD not in recorded
        or env != eval_env(job, load_dataset(job.data).provenance)["env_id"]
    )


# ----------------------------------------------------------------------------- job list


@dataclasses.dataclass(frozen=True)
class Plan:
    """A resolved suite invocation: the jobs, the datasets they need, where records go."""

    jobs: list[SuiteJob]
    data: list[DataSpec]
    out: Path
    eval_settings: EvalSettings
    algos: list[str]
    datasets: list[str]

    @property
    def eval(self) -> dict[str, Any]:
        """The evaluation settings as recorded (the reports' captions read them)."""
        return self.eval_settings.record()


def default_out(source: str, profile: str) -> Path:
    return runs.default_out(SUITE, f"{source}-{profile}")


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
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    device: str = "cpu",
    compile: bool = False,
) -> Plan:
    """Every (dataset, algorithm, seed) job of a profile, with its run folder.

    ``datasets`` may name tasks (``hopper``): each stands for all of its suite datasets.
    ``overrides``: settings on top of the profile's (the frontier's eta). ``device``
    (resolved) and ``compile``: where and how the runs run (recorded, not hashed). Every
    setting is checked here, before any job starts (``force``: ``runs.plan_budget``'s).
    """
    suite_file = suite_file or SUITE_FILE
    if source not in SOURCES:
        raise UserError(f"unknown data source '{source}' (known: {', '.join(SOURCES)})")
    suite = D4RLSuite.read(suite_file)
    budget = runs.with_overrides(
        runs.plan_budget(suite, profile, suite_file, steps, seeds, force), overrides
    )
    limits = budget.profile
    algos = list(algos or limits.algos or suite.algos)
    names = _resolve_datasets(datasets or limits.datasets or suite.datasets, suite.datasets)
    unknown = sorted(set(names) - set(suite.datasets))
    if unknown:
        given = "--tasks" if datasets else f"{budget.where}: datasets"
        raise UserError(
            f"{given}: unknown dataset(s) {', '.join(unknown)} (the suite's, in {suite_file}: "
            f"{', '.join(suite.datasets)})"
        )
    if source not in suite.hazards:
        raise UserError(f"{suite_file}: hazards: no hazard set for {source} data")
    if checkpoint not in (None, "final", "best"):
        raise UserError(f"--checkpoint must be final or best, got {brief(checkpoint)}")
    settings = dataclasses.replace(
        suite.eval,
        episodes=limits.episodes or suite.eval.episodes,
        horizon=limits.horizon or suite.eval.horizon,
        checkpoint=checkpoint or suite.eval.checkpoint,
    )
    out = out or default_out(source, profile)
    snapshots = limits.snapshots or settings.checkpoint == "best"
    specs = [
        DataSpec(
            source=source,
            name=name,
            size=limits.data_size,
            data_seed=suite.data_seed,
            hazard_set=suite.hazards[source],
            relabel_seed=suite.relabel_seed,
        )
        for name in names
    ]
    jobs = []
    for spec in specs:
        # What trains the run keys its folder; evaluation settings do not (run_job).
        keyed_by = {"data": dataclasses.asdict(spec), "checkpoints": limits.checkpoints}

        def spec_jobs(keep: bool, spec: DataSpec = spec, keyed_by: dict = keyed_by) -> list:
            return runs.seed_runs(
                SuiteJob,
                algos,
                budget,
                settings,
                dataset_key=spec.config_key,
                folder=out / "runs" / spec.name,
                keyed_by=keyed_by | {"snapshots": keep},
                data=spec,
                checkpoints=limits.checkpoints,
                keep_snapshots=keep,
                stages=stages,
                device=device,
                compile=compile,
            )

        found = spec_jobs(snapshots)
        if snapshots and not limits.snapshots:  # kept only for --checkpoint best
            twins = [job.run_dir for job in spec_jobs(False)]
            found = [
                dataclasses.replace(j, final_only_dir=t) for j, t in zip(found, twins, strict=True)
            ]
        jobs += found
    return Plan(jobs, specs, out, settings, algos, names)


def _resolve_datasets(names: list[str], known: list[str]) -> list[str]:
    """Dataset names in the suite's order; a task name expands to its datasets."""
    picked = [d for d in known if d in names or d.split("-")[0] in names]
    matched = set(picked) | {d.split("-")[0] for d in picked}
    return picked + [n for n in names if n not in matched]


def run_plan(
    plan: Plan,
    workers: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    seed_stacks_on: bool = True,
    force: bool = False,
    gpus_per_run: float = 0.0,
) -> list[dict[str, Any]]:
    """Make the data, run every job (finished runs are skipped), gather the records.

    With ``seed_stacks_on``, the seeds of each (dataset, algorithm) are first trained
    together, one process per stack (``ramac.seed_parallel``); evaluation stays per run.
    ``force``: write into a ``plan.out`` the toolkit did not make (``runs.check_out``).
    ``gpus_per_run``: each process's GPU share (``pipeline.executors.run_jobs``).
    """
    runs.check_workers(workers)
    runs.check_out(plan.out, force)
    for spec in plan.data:
        prepare_data(spec)
    runs.check_data_of(plan.jobs)  # a trained run meets only the data it trained on
    start = time.perf_counter()
    stacks = seed_stacks_on and "train" in plan.jobs[0].stages
    where = (executor, ray_address, stacks, gpus_per_run)
    rows = runs.execute(run_job, plan.jobs, SUITE, workers, *where)
    print(f"{SUITE}: {len(plan.jobs)} runs in {time.perf_counter() - start:.0f} s -> {plan.out}")
    if "evaluate" in plan.jobs[0].stages:
        gather_records(plan)
    return rows


def gather_records(plan: Plan) -> None:
    """``episodes.csv``, ``summary.csv`` and ``train_logs.csv`` at the top of ``plan.out``."""
    finished = [job for job in plan.jobs if (job.run_dir / DONE).exists()]
    if not finished:
        raise UserError(f"{plan.out}: no finished runs to gather")
    episodes = pd.concat([read_table(job.run_dir / EPISODES) for job in finished])
    summary = pd.DataFrame([runs.read_metrics(job.run_dir / METRICS) for job in finished])
    logs = pd.concat(
        _read_train_log(job.run_dir / TRAIN_LOG).assign(
            suite=SUITE, dataset=job.data.name, algo=job.algo, seed=job.seed
        )
        for job in finished
    )
    atomic_to_csv(episodes, plan.out / EPISODES)
    atomic_to_csv(summary, plan.out / "summary.csv")
    atomic_to_csv(logs, plan.out / "train_logs.csv")
    models = [job for job in finished if (job.run_dir / MODEL_RECORD).exists()]
    if models:  # model-based runs (RAVL): their dynamics model's record
        rows = [_model_row(job) for job in models]
        atomic_to_csv(pd.DataFrame(rows), plan.out / DYNAMICS_TABLE)
    curves = [job.run_dir / CURVE for job in finished if (job.run_dir / CURVE).exists()]
    if curves:
        atomic_to_csv(pd.concat(pd.read_csv(path) for path in curves), plan.out / "curves.csv")
