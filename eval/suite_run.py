"""Evaluation of one trained Stochastic-D4RL run: rollouts, checkpoint choice, OOD rate, record.

The run's checkpoint (or, with ``eval.checkpoint: best``, each kept snapshot) is rolled out
for ``eval.episodes`` fixed, recorded environment seeds; the run folder gets
``episodes.csv`` (one row per episode), ``curve.csv`` (when snapshots are kept: mean return
and CVaR of every checkpoint), and the metrics row the caller writes to ``metrics.json``.

The evaluation simulator follows the data (:func:`eval_env`): the env the dataset's
provenance records (D4RL files: Gymnasium v4, D4RL's collection dynamics; generated data:
the env its file records, v5), unless the suite's ``eval.env`` overrides it with a stated
reason. The choice is written into ``config.yaml``, ``metrics.json`` / ``summary.csv``,
``episodes.csv`` and the table captions.

What is evaluated is any object with the attributes of :class:`TrainedRun`
(``pipeline.suite.SuiteJob`` is one); the dataset and its fitted OOD detectors are given.

Two OOD rates are recorded for every run, because the paper's detector is not ours
(:class:`OODDetectors`): ``ood_rate_1nn``, the paper's 1-NN detector on joint (state,
action) pairs (what its OOD table reports), and ``ood_rate``, the state-conditioned
detector calibrated here (docs/fidelity.md, "The OOD detector"); each with its kappa sweep
(``ood_rate_1nn_k<k>``, ``ood_rate_k<k>``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np
import pandas as pd

from eval.metrics import OURS_OOD, PAPER_OOD, summarise_seeds
from eval.model_check import model_check
from eval.ood import DEFAULT_NEIGHBOURS, OODDetector, StateConditionedDetector, fit_detector
from eval.rollout import run_episodes
from eval.settings import RiskSettings, one_of, whole
from ramac.config import config_hash
from ramac.data.dataset import OfflineDataset
from ramac.envs.hazards import HazardSpec
from ramac.envs.mujoco import ENV_VERSIONS, FULL_HORIZON, PAPER_HORIZONS, env_id_for
from ramac.errors import UserError, brief
from ramac.io import atomic_to_csv, load_torch_file, require_regular_file
from ramac.risk import cvar_estimate
from ramac.train import (
    CHECKPOINT,
    SNAPSHOT_DIR,
    TRAIN_LOG,
    load_trained,
    model_based,
    read_checkpoint,
    snapshot_path,
)

EVAL_SEED_BASE = 1_000_000  # episode e of training seed k runs on env seed BASE + 1000 k + e
EPISODES = "episodes.csv"
CURVE = "curve.csv"  # per run with kept snapshots: return at every checkpoint


@dataclasses.dataclass(frozen=True)
class EnvOverride:
    """``eval.env: {version, reason}``: evaluate in another version of the data's simulator,
    for a reason every record and caption repeats."""

    version: str  # ramac.envs.mujoco.ENV_VERSIONS
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSettings(RiskSettings):
    """The ``eval:`` block of a Stochastic-D4RL suite file (a profile may set episodes and
    horizon; ``--checkpoint`` may set checkpoint)."""

    episodes: int  # evaluation episodes per seed
    horizon: str | int  # episode length: "paper" (200 / 500), "full" (1000) or steps
    ood_loo_sample: int  # data points whose leave-one-out distance sets the OOD scale
    checkpoint: str  # "final", or "best": the best kept checkpoint (optimistic)
    # Gone: both detectors are always recorded (OODDetectors); kept only to refuse the key
    # of an older suite file with one line instead of a generic "unknown key".
    ood_features: str | None = None
    ood_neighbours: int | None = None  # None: eval.ood.DEFAULT_NEIGHBOURS
    # None or "data": the simulator the data was collected in (eval_env)
    env: str | EnvOverride | None = None

    def validated(self, where: str) -> Self:
        whole(where, "episodes", self.episodes)
        check_horizon(where, self.horizon)
        whole(where, "ood_loo_sample", self.ood_loo_sample)
        one_of(where, "checkpoint", self.checkpoint, ("final", "best"))
        if self.ood_features is not None:
            raise UserError(
                f"{where}: ood_features is no longer a setting: every run records both OOD "
                f"rates ({PAPER_OOD}: the paper's 1-NN on joint (state, action); {OURS_OOD}: "
                f"state-conditioned); remove the key"
            )
        if self.ood_neighbours is not None:
            whole(where, "ood_neighbours", self.ood_neighbours)
        env = _env_setting(where, self.env)
        return dataclasses.replace(super().validated(where), env=env)

    @property
    def neighbours(self) -> int:
        return self.ood_neighbours or DEFAULT_NEIGHBOURS


def check_horizon(where: str, horizon: Any) -> None:
    """``paper``, ``full`` or a whole number of steps."""
    if horizon not in ("paper", "full"):
        if isinstance(horizon, str):
            raise UserError(f"{where}: horizon must be paper, full or a number of steps")
        whole(where, "horizon", horizon)


def _env_setting(where: str, setting: Any) -> str | EnvOverride | None:
    """``env``: absent or ``data`` (the data's own simulator) or an override
    ``{version: v4|v5, reason: "..."}``."""
    if setting in (None, "data") or isinstance(setting, EnvOverride):
        return setting
    keys = set(setting) if isinstance(setting, dict) else set()
    if keys != {"version", "reason"} or setting["version"] not in ENV_VERSIONS:
        raise UserError(
            f"{where}: eval.env must be 'data' or {{version: {'|'.join(ENV_VERSIONS)}, "
            f"reason: ...}}, got {brief(setting)}"
        )
    reason = setting["reason"]
    if not isinstance(reason, str) or not reason.strip():
        raise UserError(
            f"{where}: eval.env overrides the data's simulator: state a reason (a line of text), "
            f"got {brief(reason)}"
        )
    return EnvOverride(**setting)


class RunData(Protocol):
    """The dataset a run trained on, as evaluation names it."""

    name: str  # the suite's dataset name (hopper-medium-expert)
    source: str  # "generated" or "d4rl"

    @property
    def task(self) -> str: ...

    def hazard(self) -> HazardSpec: ...


class TrainedRun(Protocol):
    """What evaluation reads of a trained run: where it is and what built its agent."""

    suite: str
    data: RunData
    algo: str
    seed: int
    steps: int  # the budget: an unfinished run is not evaluated
    overrides: dict[str, Any]
    run_dir: Path
    schedule_scale: float
    keep_snapshots: bool
    eval_settings: EvalSettings
    device: str  # where its agent is evaluated (ramac.device), whatever it was trained on


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


def eval_env(run: TrainedRun, provenance: Any) -> dict[str, str]:
    """The simulator a run is evaluated in, who chose it and why.

    By default the env the data was collected in, as its provenance records it (read from
    the D4RL table / the generated file's metadata, never guessed); ``eval.env`` in the
    suite overrides the version, with its reason.
    """
    setting = run.eval_settings.env
    if isinstance(setting, EnvOverride):
        return {
            "env_id": env_id_for(run.data.task, setting.version),
            "chosen_by": "suite override",
            "reason": str(setting.reason).strip(),
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


@dataclasses.dataclass(frozen=True)
class OODDetectors:
    """A dataset's two fitted OOD detectors, whose rates every run records side by side.

    ``paper``: 1-NN on the joint (state, action) row, every feature standardised by the
    dataset's mean and std, flagged above kappa x the dataset's mean leave-one-out 1-NN
    distance. The paper names only "1-NN, kappa = 3" and publishes no feature space or
    normalisation (its OOD code is not in the authors' release), so this is its reading
    that uses no choice of ours beyond z-scoring. ``ours``: the state-conditioned detector
    (k = ``eval.ood_neighbours``), calibrated here because the joint one barely sees actions
    on HalfCheetah (docs/fidelity.md, "The OOD detector").
    """

    paper: OODDetector
    ours: StateConditionedDetector

    def columns(self, pairs: np.ndarray, settings: EvalSettings) -> dict[str, Any]:
        """Both rates at ``kappa`` and over the sweep, and what each detector was."""
        sweep = (settings.kappa, settings.kappa_sweep)
        return {
            **self.paper.rate_columns(pairs, *sweep, column=PAPER_OOD),
            **self.ours.rate_columns(pairs, *sweep, column=OURS_OOD),
            "ood_kappa": settings.kappa,
            "ood_detector": self.ours.name,  # of ood_rate (records before both: either)
            "ood_neighbours": self.ours.neighbours,
        }


def fit_ood_detectors(dataset: OfflineDataset, settings: EvalSettings, seed: int) -> OODDetectors:
    """The dataset's two OOD detectors (:class:`OODDetectors`), each reference scale measured
    on ``eval.ood_loo_sample`` points drawn with ``seed``."""
    data = (dataset.observations, dataset.actions)
    sample = {"loo_sample": settings.ood_loo_sample, "seed": seed}
    return OODDetectors(
        paper=fit_detector("joint", *data, **sample),
        ours=fit_detector("state_conditioned", *data, neighbours=settings.neighbours, **sample),
    )


def rollout_agent(
    agent: Any, run: TrainedRun, horizon: int, env_id: str | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """The run's evaluation episodes in ``env_id`` and every (state, action) pair visited."""
    seeds = episode_seeds(run.seed, run.eval_settings.episodes)
    generator = agent.generator(EVAL_SEED_BASE + run.seed)
    pairs: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        return agent.act(obs, generator).cpu().numpy()

    def visit(obs: np.ndarray, actions: np.ndarray) -> None:
        pairs.append(np.hstack([obs, actions]))

    episodes = run_episodes(
        policy, run.data.task, run.data.hazard(), seeds, horizon, visit, env_id=env_id
    )
    return episodes, np.concatenate(pairs)


def trained_agent(run: TrainedRun, dataset: OfflineDataset) -> tuple[Any, int]:
    """The agent of the run's final checkpoint; one clear line when training is unfinished
    (an unreadable checkpoint is moved to the run's ``corrupt/`` first, with a warning)."""
    path = run.run_dir / CHECKPOINT
    state = read_checkpoint(path, then="run 'train' again to retrain the run")
    if state is None or state["step"] < run.steps:
        found = "no checkpoint" if state is None else f"its checkpoint is at step {state['step']}"
        raise UserError(
            f"{run.run_dir}: not trained to {run.steps} steps ({found}); run 'train' first"
        )
    where = (run.overrides, run.schedule_scale, run.device)
    return load_trained(run.algo, dataset, run.run_dir, *where, state=state)


def agent_at(run: TrainedRun, dataset: OfflineDataset, step: int) -> Any:
    """The run's agent at checkpoint ``step``: the final one, or a kept snapshot."""
    agent, final_step = trained_agent(run, dataset)
    if step != final_step:
        agent.load_state_dict(load_torch_file(snapshot_path(run.run_dir, step), "cpu"))
    return agent


Rollout = tuple[int, pd.DataFrame, np.ndarray]  # (checkpoint step, episodes, visited pairs)


def _rollouts(
    run: TrainedRun, dataset: OfflineDataset, horizon: int, env_id: str | None = None
) -> list[Rollout]:
    """The final checkpoint's rollout and, when snapshots are kept, every earlier snapshot's,
    in step order (a snapshot holds the same agent as the checkpoint of its step)."""
    agent, final_step = trained_agent(run, dataset)
    rollouts = [(final_step, *rollout_agent(agent, run, horizon, env_id))]
    if run.keep_snapshots:
        for path in sorted((run.run_dir / SNAPSHOT_DIR).glob("step*.pt")):
            if int(path.stem[4:]) != final_step:
                agent.load_state_dict(load_torch_file(path, "cpu"))
                step = int(path.stem[4:])
                rollouts.append((step, *rollout_agent(agent, run, horizon, env_id)))
    return sorted(rollouts, key=lambda rollout: rollout[0])


def _evaluated(rollouts: list[Rollout], rule: str) -> tuple[Rollout, str]:
    """The recorded rollout: the final checkpoint's, or the best mean return on the
    evaluation env (the later on ties), which every table then calls optimistic."""
    if rule == "final":
        return rollouts[-1], "final"
    best = max(rollouts, key=lambda rollout: (rollout[1]["return"].mean(), rollout[0]))
    return best, "best on the evaluation env (optimistic)"


def _record_keys(run: TrainedRun) -> dict[str, Any]:
    """The key columns of the run's records (DESIGN "Records")."""
    return {"suite": run.suite, "dataset": run.data.name, "algo": run.algo, "seed": run.seed}


def _write_curve(run: TrainedRun, rollouts: list[Rollout]) -> None:
    """``curve.csv``: mean return and CVaR of every kept checkpoint (a learning curve)."""
    alpha, rule = run.eval_settings.alpha, run.eval_settings.cvar_rule
    rows = [
        {"step": step, "mean_return": episodes["return"].mean()}
        | {"cvar": cvar_estimate(episodes["return"].to_numpy(), alpha, rule)}
        for step, episodes, _ in rollouts
    ]
    atomic_to_csv(pd.DataFrame(rows).assign(**_record_keys(run)), run.run_dir / CURVE)


def evaluate_run(
    run: TrainedRun, dataset: OfflineDataset, detectors: OODDetectors
) -> dict[str, Any]:
    """Roll out the run's checkpoint, write ``episodes.csv``; returns its metrics row.

    ``detectors``: the dataset's fitted OOD detectors (:func:`fit_ood_detectors`), which
    every run on the dataset may share.
    """
    start = time.perf_counter()
    settings = run.eval_settings
    horizon = horizon_steps(settings.horizon, run.data.task)
    env = eval_env(run, dataset.provenance)
    rollouts = _rollouts(run, dataset, horizon, env["env_id"])
    if len(rollouts) > 1:
        _write_curve(run, rollouts)
    (step, episodes, pairs), label = _evaluated(rollouts, settings.checkpoint)
    episodes = episodes.assign(**_record_keys(run), horizon=horizon, checkpoint_step=step)
    atomic_to_csv(episodes, run.run_dir / EPISODES)

    seed_row = summarise_seeds(episodes, settings.alpha, settings.cvar_rule).iloc[0]
    checked = {}
    if model_based(run.algo):  # its dynamics model against the simulator (eval.model_check)
        agent = agent_at(run, dataset, step)
        checked = model_check(agent, dataset, run.data.task, run.data.hazard(), run.seed,
                              env["env_id"])  # fmt: skip
    log = pd.read_csv(require_regular_file(run.run_dir / TRAIN_LOG))
    return {
        **seed_row.to_dict(),
        "run": run.run_dir.name,
        "data_source": run.data.source,
        "eval_env": env["env_id"],
        "eval_env_chosen_by": env["chosen_by"],
        "eval_env_reason": env["reason"],
        "horizon": horizon,
        "checkpoint": label,
        "checkpoint_step": step,
        **detectors.columns(pairs, settings),
        "eval_hash": config_hash(settings.record()),
        "ood_pairs": len(pairs),
        **checked,
        "train_steps": int(log["step"].iloc[-1]),
        "schedule_scale": run.schedule_scale,
        "train_seconds": round(float(log["wall_seconds"].iloc[-1]), 2),
        "eval_seconds": round(time.perf_counter() - start, 2),
        "dataset_sha256": dataset.provenance.sha256,
        "ref_min_score": dataset.provenance.ref_min_score,
        "ref_max_score": dataset.provenance.ref_max_score,
    }
