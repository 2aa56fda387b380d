"""What every suite's runs share: typed suite files and profiles, the job, its config record,
its run folder (algorithm -> overrides -> config hash -> seed), and the run-once contract.

A run folder is finished when it holds a ``done`` file (written last, after the run's
``metrics.json``); a finished run is read back, never redone, and a failed one leaves its
traceback in ``error.txt`` so a rerun of the same job list only does what is missing.

A finished run whose records cannot be read (``metrics.json`` missing, empty or invalid, or
another record its suite names) is healed: the unreadable file and the ``done`` marker move
to the run folder's ``corrupt/`` with a one-line warning, and the run is done again (its
evaluation only, when its checkpoint is good: training resumes from it). One process owns a
run folder at a time (``pipeline.locks``): another one waits, then reads its results.
A file system error in a run (no space left, a read-only folder) is one line naming the path.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from eval.settings import names, number, typed, whole
from pipeline import locks
from pipeline.estimate import print_plan
from pipeline.executors import run_jobs
from ramac.agents import AGENTS, make_config  # the package: every algorithm registered
from ramac.config import (
    PAPER_STEPS,
    ROOT,
    algo_hash_values,
    config_hash,
    read_yaml,
    refuse_retired,
)
from ramac.data.dataset import OfflineDataset
from ramac.errors import UserError, brief
from ramac.folders import claim
from ramac.io import CORRUPT, atomic_write_text, move_aside, problem_of, require_regular_file
from ramac.records import package_versions, write_yaml
from ramac.train import TrainSettings, hyperparameter_key, seed_stackable, train, train_seeds

DONE = "done"
METRICS = "metrics.json"
CONFIG = "config.yaml"


# ----------------------------------------------------------------------------- suite files


def algorithms(where: str, key: str, value: Any) -> list[str]:
    """``value`` when it is a non-empty list of registered algorithm names, each named once."""
    unknown = [name for name in names(where, key, value) if name not in AGENTS]
    if unknown:
        known = ", ".join(sorted(AGENTS))
        raise UserError(f"{where}: {key}: unknown algorithm(s) {', '.join(unknown)} ({known})")
    return once(f"{where}: {key}", value)


def once(what: str, value: Sequence[str]) -> list[str]:
    """``value`` when no name in it repeats: two jobs of one algorithm would share a run folder.

    ``what`` names the list in the error (``<suite file>: algos``, ``--algos``).
    """
    repeated = [name for name in dict.fromkeys(value) if list(value).count(name) > 1]
    if repeated:
        raise UserError(
            f"{what}: {', '.join(repeated)} named more than once (each algorithm runs once per "
            "seed; name it once)"
        )
    return list(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile:
    """A budget of a suite file's ``profiles:``. Profiles scale budgets, never algorithms."""

    steps: int  # training updates per run
    seeds: int  # training seeds per (dataset,) algorithm
    # config values for every algorithm whose config has the key (smaller nets for smoke)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validated(self, where: str) -> Self:
        whole(where, "steps", self.steps)
        whole(where, "seeds", self.seeds)
        overrides = self.overrides or {}
        if not isinstance(overrides, dict):
            raise UserError(f"{where}: overrides must map config keys to values")
        refuse_retired(f"{where}: overrides", overrides)  # device: --device, before any work
        known = {f.name for entry in AGENTS.values() for f in dataclasses.fields(entry.config_cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UserError(f"{where}: overrides: {', '.join(unknown)} is no algorithm's setting")
        return dataclasses.replace(self, overrides=overrides)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FrontierSettings:
    """A suite file's ``frontier:`` block: the risk-return frontier that ``ramac frontier``
    trains (``pipeline.frontier``): ``algos`` once per value of their setting ``key``."""

    algos: list[str]  # the methods swept (each has the setting ``key``)
    key: str = "eta"  # the config setting swept: the risk weight
    values: list[float]  # its values, from 0 (no risk term) up
    seeds: int | None = None  # seeds per value (None: the profile's)
    datasets: list[str] | None = None  # Stochastic-D4RL only: the datasets swept

    def validated(self, where: str) -> Self:
        algorithms(where, "algos", self.algos)
        for algo in self.algos:
            if self.key not in {f.name for f in dataclasses.fields(AGENTS[algo].config_cls)}:
                raise UserError(f"{where}: key: {algo} has no setting '{self.key}'")
        if not isinstance(self.values, list) or not self.values:
            raise UserError(f"{where}: values must be a non-empty list of numbers")
        values = [float(number(where, "values", v)) for v in self.values]
        if min(values) < 0:
            raise UserError(f"{where}: values must be >= 0, got {min(values):g}")
        if len(set(values)) != len(values):
            raise UserError(f"{where}: values: each value once, got {brief(self.values)}")
        if self.seeds is not None:
            whole(where, "seeds", self.seeds)
        if self.datasets is not None:
            names(where, "datasets", self.datasets)
        return dataclasses.replace(self, values=sorted(values))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SuiteFile:
    """What every suite file states; each suite's class adds its data, evaluation and profile
    types (``profile_type``, ``eval_type``)."""

    algos: list[str]  # the algorithms, in the tables' column order
    data_seed: int
    eval: Any
    profiles: dict[str, Any]
    frontier: FrontierSettings | None = None  # the risk-return frontier (ramac frontier)

    profile_type: ClassVar[type[Profile]] = Profile
    eval_type: ClassVar[type]

    @classmethod
    def read(cls, path: Path) -> Self:
        """The suite file at ``path``, every value checked (one line naming file and key)."""
        return typed(cls, read_yaml(path), str(path))

    def validated(self, where: str) -> Self:
        algorithms(where, "algos", self.algos)
        whole(where, "data_seed", self.data_seed, minimum=0)
        if not isinstance(self.profiles, dict) or not self.profiles:
            raise UserError(f"{where}: profiles must map profile names to budgets")
        frontier = self.frontier
        if frontier is not None:
            frontier = typed(FrontierSettings, frontier, f"{where} [frontier]")
        return dataclasses.replace(
            self,
            frontier=frontier,
            eval=typed(self.eval_type, self.eval, f"{where} [eval]"),
            profiles={
                name: typed(self.profile_type, budget, f"{where} [profiles.{name}]")
                for name, budget in self.profiles.items()
            },
        )

    def profile(self, name: str, path: Path) -> Any:
        """The budget of profile ``name``."""
        if name not in self.profiles:
            known = ", ".join(self.profiles)
            raise UserError(f"{path}: no profile '{name}' (known: {known})")
        return self.profiles[name]


def profile_overrides(algo: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The profile's overrides that ``algo``'s config has (profiles speak to all algorithms).

    An unknown algorithm name fails here, before any work starts.
    """
    fields = {f.name for f in dataclasses.fields(make_config(algo))}
    return {k: v for k, v in overrides.items() if k in fields}


def schedule_scale(suite: SuiteFile | Mapping[str, Any], steps: int) -> float:
    """A run's budget over the paper profile's (or the paper's 2M updates when the suite has
    no ``paper`` profile): the factor its schedule lengths are scaled by. ``suite`` may be a
    suite file's raw mapping too."""
    if isinstance(suite, Mapping):
        paper_steps = ((suite.get("profiles") or {}).get("paper") or {}).get("steps")
    else:
        paper_steps = getattr(suite.profiles.get("paper"), "steps", None)
    return steps / (paper_steps or PAPER_STEPS)


def check_positive(name: str, value: int) -> int:
    """A command-line count (``--seeds``, ``--steps``): 0 or less is an error, not a default."""
    if value < 1:
        raise UserError(f"--{name} must be at least 1, got {value}")
    return value


def check_workers(workers: int | None) -> int | None:
    """``--workers``: None (one per CPU) or at least 1; 0 or less is an error."""
    return workers if workers is None else check_positive("workers", workers)


def fs_message(exc: OSError, where: Path | str | None = None) -> str:
    """A file system error as one line naming its path (``where`` when it names none)."""
    path = exc.filename if exc.filename is not None else where
    reason = exc.strerror or problem_of(exc)
    if exc.filename2 is not None:
        return f"{path} -> {exc.filename2}: {reason}"
    return f"{path}: {reason}" if path is not None else reason


@contextlib.contextmanager
def fs_errors(where: Path | str | None = None) -> Iterator[None]:
    """Turn a file system error in the block into a one-line UserError naming its path."""
    try:
        yield
    except OSError as exc:
        raise UserError(fs_message(exc, where)) from exc


def check_out(out: Path, force: bool = False) -> Path:
    """``out``, the toolkit's to write into until this command ends, checked before any work.

    Made (with its parents) and checked writable: a file, a read-only folder or a name too
    long is one line naming the path. It must be the toolkit's (``ramac.folders.claim``):
    new, empty or carrying the ``.ramac`` marker; a folder of results an earlier version
    made (run records ``runs/.../seed*/config.yaml``, :func:`made_by_ramac`) is adopted
    with a one-line note; any other non-empty folder is refused in one line unless
    ``force``. The command then owns ``out`` (its ``lock``, :func:`hold_out`): a second
    command on the same folder waits for it (one-line note) before it trains or writes a
    table, so the folder's tables always come from one command's set of runs.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
        claim(out, force=force, adopt=made_by_ramac)
        hold_out(out)
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename).parent == out:
            exc.filename = str(out)  # the probe's name means nothing to the user
        raise UserError(fs_message(exc, out)) from exc
    return out


# Run records as the toolkit writes them: bandit, suite, and a folder of those (all, frontier)
RECORD_PATTERNS = ("runs/*/seed*/config.yaml", "runs/*/*/seed*/config.yaml")


def made_by_ramac(folder: Path) -> bool:
    """Whether ``folder`` holds run records the toolkit wrote (``runs/.../seed*/config.yaml``,
    there or one level down as ``all`` and ``frontier`` nest them): a results folder of an
    earlier version, made before folders carried the marker."""
    patterns = [*RECORD_PATTERNS, *(f"*/{p}" for p in RECORD_PATTERNS)]
    return any(path.is_file() for pattern in patterns for path in folder.glob(pattern))


_HELD_OUTS: dict[Path, tuple[Path, dict[str, Any]]] = {}  # resolved out -> (out, lock owner)


def hold_out(out: Path) -> None:
    """Own ``out`` (its ``lock``, ``pipeline.locks``) until :func:`release_outs`: the command
    line releases it when the command ends, on an error or an interrupt too (and the process
    on exit); a second hold by this process is a no-op. Another command's live hold is
    waited for; a dead one's is taken over."""
    key = out.resolve()
    if key not in _HELD_OUTS:
        _HELD_OUTS[key] = (out, locks.acquire(out))


def release_outs() -> None:
    """Release every results folder this process holds (:func:`hold_out`)."""
    while _HELD_OUTS:
        _, (out, owner) = _HELD_OUTS.popitem()
        with contextlib.suppress(OSError):
            locks.release(out, owner)


atexit.register(release_outs)


def default_out(suite: str, name: str) -> Path:
    """``results/<suite>/<name>``: each suite and profile keeps its own records."""
    return ROOT / "results" / suite / name


# ----------------------------------------------------------------------------- jobs


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """One (algorithm, seed) run with everything a worker process needs to run it.

    Each suite's job adds its data and evaluation settings and says how it trains
    (``settings``), which data it trains on (``dataset``) and what its ``config.yaml``
    records beyond what every run records (``record``).
    """

    algo: str
    seed: int
    steps: int
    overrides: dict[str, Any]  # the profile's overrides this algorithm's config has
    run_dir: Path
    profile: str
    eval_settings: Any  # the suite's evaluation settings (eval.suite_run, eval.bandit)
    schedule_scale: float = 1.0  # steps / the paper profile's steps (ramac.config)
    # Where and how it runs (--device, --compile): recorded with the run, never in its
    # folder's hash (seed_runs), so the same run may resume on another device.
    device: str = "cpu"  # resolved when the plan is made (pipeline.executors.plan_device)
    compile: bool = False

    suite: ClassVar[str]

    @property
    def settings(self) -> TrainSettings:
        raise NotImplementedError

    @property
    def trains(self) -> bool:
        """Whether the job trains its run (when unfinished); evaluation-only jobs do not."""
        return True

    @property
    def eval(self) -> dict[str, Any]:
        """The evaluation settings as recorded (``config.yaml``) and hashed."""
        return self.eval_settings.record()

    def dataset(self) -> OfflineDataset:
        raise NotImplementedError

    def record(self, dataset: OfflineDataset) -> dict[str, Any]:
        raise NotImplementedError

    def metrics(self, row: dict[str, Any]) -> dict[str, Any]:
        """The run's metrics row as ``metrics.json`` records it: with the device it ran on."""
        return row | {"device": self.device}


@dataclasses.dataclass(frozen=True)
class PlanBudget:
    """What every run of a plan shares: its profile (with the command line's steps and seeds
    in place of the profile's) and the factor its schedules are scaled by."""

    name: str  # the profile's name
    profile: Any  # its typed settings (a Profile)
    steps: int
    seeds: int
    schedule_scale: float
    where: str  # the suite file and profile, for errors in the profile's overrides


# A budget above this many times the paper's needs --force: 10x is already far beyond any
# study of the paper, and a typo (--steps 10**12, ~30 years) must not start silently.
MAX_PAPER_MULTIPLE = 10


def plan_budget(
    suite: SuiteFile,
    name: str,
    path: Path,
    steps: int | None,
    seeds: int | None,
    force: bool = False,
) -> PlanBudget:
    """Profile ``name`` of the suite file at ``path``; ``steps`` / ``seeds`` (the command
    line's, when given) replace its own and must be at least 1. A budget above
    ``MAX_PAPER_MULTIPLE`` x the paper profile's (``schedule_scale``) needs ``force``."""
    profile = suite.profile(name, path)
    where = f"{path} [profiles.{name}]"
    given = "--steps" if steps is not None else f"{where}: steps"
    steps = profile.steps if steps is None else check_positive("steps", steps)
    seeds = profile.seeds if seeds is None else check_positive("seeds", seeds)
    scale = schedule_scale(suite, steps)
    if scale > MAX_PAPER_MULTIPLE and not force:
        raise UserError(
            f"{given} {steps:,} is {scale:,.0f} x the paper's budget of "
            f"{round(steps / scale):,} updates; above {MAX_PAPER_MULTIPLE} x needs --force"
        )
    return PlanBudget(name, profile, steps, seeds, scale, where)


def with_overrides(budget: PlanBudget, overrides: Mapping[str, Any] | None) -> PlanBudget:
    """``budget`` with ``overrides`` on top of its profile's: a study's setting (the
    frontier's eta) for every algorithm that has it, in the run's config and its hash."""
    if not overrides:
        return budget
    profile = dataclasses.replace(
        budget.profile, overrides={**budget.profile.overrides, **overrides}
    )
    return dataclasses.replace(budget, profile=profile)


J = TypeVar("J", bound=Job)


def seed_runs(
    job_type: type[J],
    algos: Sequence[str],
    budget: PlanBudget,
    eval_settings: Any,
    *,
    dataset_key: str,
    folder: Path,
    keyed_by: dict[str, Any],
    **fields: Any,
) -> list[J]:
    """A ``job_type`` job (with ``fields``) for every algorithm x seed of ``budget``.

    Its folder is ``folder/<algo>/seed<k>-<hash>``: the hash of the algorithm's resolved
    config (its defaults, then ``dataset_key``'s overrides in its YAML, then the profile's
    overrides it has, schedules scaled to the budget), the steps and ``keyed_by`` (what else
    trains the run), so a changed setting gets a folder of its own. Every resolved config
    is checked here, before any job starts.
    """
    once("algos", algos)
    jobs = []
    for algo in algos:
        own = profile_overrides(algo, budget.profile.overrides)
        scale = budget.schedule_scale
        config = make_config(algo, dataset_key, own, scale, overrides_from=budget.where)
        key = config_hash({"algo": algo_hash_values(config), "steps": budget.steps} | keyed_by)
        jobs += [
            job_type(
                algo=algo,
                seed=seed,
                steps=budget.steps,
                overrides=own,
                run_dir=folder / algo / f"seed{seed}-{key}",
                profile=budget.name,
                eval_settings=eval_settings,
                schedule_scale=scale,
                **fields,
            )
            for seed in range(budget.seeds)
        ]
    return jobs


def write_config(job: Job, dataset: OfflineDataset, stack: list[int]) -> None:
    """``config.yaml``, written when the run starts and kept (a resumed run finds it there).

    One that does not read as a run's config (zero bytes, cut off, not YAML) is moved to the
    run folder's ``corrupt/`` with a one-line warning and written again.

    ``trained_with_seeds`` records the seed stack the run was trained in: its update noise
    is drawn with those seeds' (``ramac.seed_parallel``), so a rerun repeats it exactly.
    """
    path = job.run_dir / CONFIG
    if path.exists():
        try:
            recorded = read_yaml(path)
            if not recorded:
                raise ValueError("empty file")
            if "algo" not in recorded:
                raise ValueError("no algo: not a run's config")
        except (UserError, ValueError, OSError) as exc:  # a damaged record: rewritten below
            move_aside(path, problem_of(exc), then="it is written again")
        else:
            check_same_data(job.run_dir, dataset, recorded)  # a resumed run: the same data
            return
    config = make_config(  # as train() does
        job.algo, hyperparameter_key(dataset), job.overrides, job.schedule_scale
    )
    job.run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(
        job.run_dir / CONFIG,
        {
            "suite": job.suite,
            "algo": job.algo,
            "seed": job.seed,
            "trained_with_seeds": stack,
            "profile": job.profile,
            "steps": job.steps,
            # schedule lengths in algo_config are the paper's x this (ramac.config)
            "schedule_scale": job.schedule_scale,
            "algo_config": dataclasses.asdict(config),
            "device": job.device,  # where training started (its checkpoints say where next)
            "compile": job.compile,
            "eval": job.eval,
            **job.record(dataset),
            "versions": package_versions(),
        },
    )


def trained_on(config: Mapping[str, Any]) -> str:
    """The sha256 of the data a run's ``config.yaml`` (``config``) says it trained on: its
    provenance's (the suite: ``provenance``, the bandit: ``dataset``); "" when it records
    none (data built in memory, or a record from before provenance was kept)."""
    for key in ("provenance", "dataset"):
        block = config.get(key)
        if isinstance(block, dict) and isinstance(block.get("sha256"), str):
            return block["sha256"]
    return ""


def check_same_data(
    run_dir: Path, dataset: OfflineDataset, config: Mapping[str, Any] | None = None
) -> None:
    """Refuse, in one line, to resume, evaluate or calibrate the run in ``run_dir`` on
    ``dataset`` when its sha256 differs from the data the run trained on (its
    ``config.yaml``, or ``config`` as read already): another file under the dataset's name
    would give numbers that belong to neither. A run without a readable config is left to
    the stage (``write_config`` heals a damaged one)."""
    if config is None:
        path = run_dir / CONFIG
        if not path.is_file():
            return
        try:
            config = read_yaml(path)
        except (UserError, OSError):
            return
    recorded, now = trained_on(config), dataset.provenance.sha256
    if recorded and now and recorded != now:
        where = dataset.provenance.extra.get("path") or f"dataset {dataset.provenance.id}"
        raise UserError(
            f"{run_dir}: trained on data with sha256 {recorded[:12]}..., but {where} now "
            f"has sha256 {now[:12]}...: restore the data it trained on, or train again into "
            "another --out"
        )


def check_data_of(jobs: Sequence[Job]) -> None:
    """:func:`check_same_data` of every run that has a ``config.yaml``, before any work."""
    for job in jobs:
        if (job.run_dir / CONFIG).is_file():
            check_same_data(job.run_dir, job.dataset())


def train_run(job: Job, dataset: OfflineDataset) -> Any:
    """Record the run's config, then train (resuming from its checkpoint when there is one);
    returns the trained agent."""
    write_config(job, dataset, stack=[job.seed])
    return train(job.algo, dataset, job.run_dir, job.settings, job.overrides)


class SeedStack(tuple):
    """The jobs of one seed stack (a tuple of jobs), named by their run folders in errors."""

    @property
    def run_dir(self) -> str:
        return ", ".join(str(job.run_dir) for job in self)

    def __repr__(self) -> str:
        return f"SeedStack({self.run_dir})"


def train_stack(jobs: tuple[Job, ...]) -> dict[str, Any]:
    """Train runs that differ only in seed as one seed stack (``ramac.seed_parallel``),
    each run's ``config.yaml`` first recording the stack's seeds. The stack owns all its run
    folders meanwhile (``pipeline.locks``); runs another process finished are not redone."""
    dirs = [job.run_dir for job in jobs]
    with fs_errors(dirs[0].parent), locks.owned(dirs):
        if all((d / DONE).exists() for d in dirs):
            return {"runs": [str(d) for d in dirs], "trained": True}
        dataset = jobs[0].dataset()
        seeds = [job.seed for job in jobs]
        for job in jobs:
            write_config(job, dataset, seeds)
        train_seeds(jobs[0].algo, dataset, dirs, [job.settings for job in jobs], jobs[0].overrides)
    return {"runs": [str(d) for d in dirs], "trained": True}


def seed_stacks(jobs: Sequence[Job]) -> list[tuple[Job, ...]]:
    """Unfinished runs that differ only in their seed, grouped for one seed-stacked process.

    Runs live in ``<...>/<algo>/seed<k>-<config hash>``: the same folder and hash means the
    same algorithm, data and budget. Groups of one are left to the ordinary jobs.
    """
    groups: dict[tuple[Path, str], list[Job]] = {}
    for job in jobs:
        if seed_stackable(job.algo) and not (job.run_dir / DONE).exists():
            key = (job.run_dir.parent, job.run_dir.name.split("-", 1)[-1])
            groups.setdefault(key, []).append(job)
    return [SeedStack(group) for group in groups.values() if len(group) > 1]


# A record of a finished run and how to read it: a reader raises when the file is unreadable.
Readers = Mapping[str, Callable[[Path], Any]]


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's ``metrics.json``: a JSON object, else an exception (a FIFO or a folder there
    too: ``require_regular_file``, never a read that waits forever)."""
    row = json.loads(require_regular_file(path).read_text())
    if not isinstance(row, dict) or not row:
        raise ValueError("not a JSON object of metrics")
    return row


def finished(run_dir: Path, records: Readers | None = None, heal: bool = False) -> dict | None:
    """The metrics row of a finished run whose records all read; else None.

    With ``heal``, a finished run with unreadable records is made unfinished: each such
    record and ``done`` move to ``corrupt/`` (a one-line warning each), so the run is done
    again.
    """
    if not (run_dir / DONE).exists():
        return None
    readers = {METRICS: read_metrics, **(records or {})}
    row, damaged = None, {}
    for name, reader in readers.items():
        try:
            value = reader(run_dir / name)
        except Exception as exc:  # noqa: BLE001 - any failure to read is a damaged record
            damaged[name] = exc
            if not heal:
                return None
            continue
        row = value if name == METRICS else row
    if not damaged:
        return row
    for name, exc in damaged.items():
        path = run_dir / name
        if path.exists():
            move_aside(path, problem_of(exc), then="the run is done again")
        else:
            print(
                f"warning: {run_dir}: finished without {name}; the run is done again",
                file=sys.stderr,
                flush=True,
            )
    move_aside(run_dir / DONE, "", run_dir / CORRUPT, quiet=True)
    return None


def run_once(
    run_dir: Path,
    work: Callable[[], dict[str, Any]],
    *,
    records: Readers | None = None,
    stale: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """``work()``'s metrics, recorded in ``run_dir``; a finished run is read, not redone.

    ``work`` returns the run's metrics row; it is written to ``metrics.json`` and then the
    ``done`` marker. An exception leaves ``error.txt`` with the traceback and propagates (a
    file system error as a one-line UserError naming its path). ``records``: the run's
    other records a finished run must be able to read (else it is healed, see
    :func:`finished`); ``stale(row)``: whether a finished run's recorded row is out of date
    (its ``done`` then moves to ``done.stale-eval`` and the run is done again).
    The process owns ``run_dir`` meanwhile; another process's run is waited for, then read.
    """
    row = finished(run_dir, records)
    if row is not None and not (stale and stale(row)):
        return row
    with fs_errors(run_dir), locks.owned(run_dir):
        row = finished(run_dir, records, heal=True)
        if row is not None:
            if not (stale and stale(row)):
                return row  # finished by the process we waited for
            (run_dir / DONE).rename(run_dir / "done.stale-eval")
        try:
            row = work()
        except Exception:
            with contextlib.suppress(OSError):  # a full disk must not hide the error itself
                atomic_write_text(run_dir / "error.txt", traceback.format_exc())
            raise
        atomic_write_text(run_dir / METRICS, json.dumps(row, indent=1, default=str))
        atomic_write_text(run_dir / DONE, "")
    return row


def execute(
    run_job: Callable[[Any], Any],
    jobs: Sequence[Job],
    desc: str,
    workers: int | None,
    executor: str,
    ray_address: str | None,
    stacks: bool,
    gpus_per_run: float = 0.0,
) -> list[Any]:
    """``run_job`` of every job, in job order (finished runs are read back); with ``stacks``,
    the unfinished seeds of each run first train together, one process per seed stack
    (``ramac.seed_parallel``; evaluation stays per run). ``gpus_per_run``: each process's
    GPU share (``pipeline.executors.run_jobs``)."""
    check_workers(workers)
    if any(job.trains for job in jobs):
        print_plan(jobs, desc, workers)
    grouped = seed_stacks(jobs) if stacks else []
    where = {"workers": workers, "executor": executor, "ray_address": ray_address}
    where |= {"gpus_per_run": gpus_per_run}
    if grouped:
        run_jobs(train_stack, grouped, desc=f"{desc} seed stacks", **where)
    return run_jobs(run_job, jobs, desc=f"{desc} runs", **where)
