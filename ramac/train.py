"""The training loop: seeded, checkpointed, resumable, one CSV log schema.

A run directory holds ``checkpoint.pt`` (agent, sampler and RNG states, the log so far)
and ``train_log.csv``; both are rewritten atomically at every checkpoint, so a killed run
restarts from its last checkpoint and, on CPU, ends with the same numbers as a run that
was never interrupted (the global torch RNG state and the sampler's numpy Generator
travel with the checkpoint).
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from ramac.agents.base import make_agent
from ramac.data.dataset import BatchSampler, OfflineDataset
from ramac.io import atomic_write_bytes, atomic_write_text

CHECKPOINT = "checkpoint.pt"
TRAIN_LOG = "train_log.csv"


@dataclasses.dataclass
class TrainSettings:
    """The budget of one run (profiles set these; algorithms never do)."""

    steps: int
    seed: int
    checkpoint_every: int = 10_000
    log_every: int = 1_000
    progress: bool = True
    keep_snapshots: bool = False  # also keep the agent of every checkpoint (for selection)


SNAPSHOT_DIR = "snapshots"


def _save_bytes(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _save(run_dir: Path, agent: Any, sampler: BatchSampler, step: int, log: list[dict]) -> None:
    state = {
        "step": step,
        "agent": agent.state_dict(),
        "sampler": sampler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "log": log,
    }
    _save_bytes(run_dir / CHECKPOINT, state)
    atomic_write_text(run_dir / TRAIN_LOG, pd.DataFrame(log).to_csv(index=False))


def _resume(run_dir: Path, agent: Any, sampler: BatchSampler) -> tuple[int, list[dict]]:
    path = run_dir / CHECKPOINT
    if not path.exists():
        return 0, []
    state = torch.load(path, weights_only=False)
    agent.load_state_dict(state["agent"])
    sampler.load_state_dict(state["sampler"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["log"]


def hyperparameter_key(dataset: OfflineDataset) -> str:
    """The name whose per-dataset overrides in ``configs/algos/*.yaml`` apply to ``dataset``.

    A generated dataset stands in for its D4RL counterpart and takes that dataset's
    hyperparameters (``extra["config_key"]``, e.g. ``hopper-medium-expert-v2``).
    """
    return dataset.provenance.extra.get("config_key", dataset.provenance.id)


def _tensorboard(run_dir: Path):
    """A TensorBoard writer beside the CSV log when ``tensorboard`` is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def build_agent(algo: str, dataset: OfflineDataset, seed: int, overrides: dict | None = None):
    """A freshly initialised agent for ``dataset``, with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    # Every task here acts in [-1, 1]^d; a source with other bounds records them.
    max_action = float(dataset.provenance.extra.get("max_action", 1.0))
    return make_agent(
        algo,
        dataset.obs_dim,
        dataset.act_dim,
        max_action,
        dataset=hyperparameter_key(dataset),
        overrides=overrides,
    )


def train(
    algo: str,
    dataset: OfflineDataset,
    run_dir: Path,
    settings: TrainSettings,
    overrides: dict | None = None,
    stop_after: int | None = None,
):
    """Train ``algo`` on ``dataset`` into ``run_dir``; resumes when a checkpoint is there.

    ``stop_after`` ends the process-local loop early at that step (after checkpointing),
    which is how tests simulate a killed run. Returns the trained agent.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    agent = build_agent(algo, dataset, settings.seed, overrides)
    sampler = BatchSampler(dataset, agent.config.batch_size, seed=settings.seed)
    torch.manual_seed(settings.seed + 1)  # the update's randomness: its own stream
    step, log = _resume(run_dir, agent, sampler)
    start_wall = time.perf_counter() - (log[-1]["wall_seconds"] if log else 0.0)
    bar = tqdm(
        total=settings.steps,
        initial=step,
        desc=f"{algo} seed {settings.seed}",
        unit="it",
        disable=not settings.progress,
        mininterval=2.0,
    )
    board = _tensorboard(run_dir) if step < settings.steps else None
    while step < settings.steps:
        metrics = agent.update(sampler.sample())
        step += 1
        bar.update(1)
        if step % settings.log_every == 0 or step == settings.steps:
            log.append({"step": step, "wall_seconds": time.perf_counter() - start_wall, **metrics})
            if board is not None:
                for name, value in metrics.items():
                    board.add_scalar(name, value, step)
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            if settings.keep_snapshots:
                _save_bytes(run_dir / SNAPSHOT_DIR / f"step{step:08d}.pt", agent.state_dict())
            _save(run_dir, agent, sampler, step, log)
        if stop_after is not None and step >= stop_after:
            break
    bar.close()
    if board is not None:
        board.close()
    if step >= settings.steps and not (run_dir / CHECKPOINT).exists():
        _save(run_dir, agent, sampler, step, log)
    return agent


def load_trained(algo: str, dataset: OfflineDataset, run_dir: Path, overrides: dict | None = None):
    """The agent stored in ``run_dir``'s checkpoint (for evaluation)."""
    agent = build_agent(algo, dataset, 0, overrides)
    state = torch.load(run_dir / CHECKPOINT, weights_only=False)
    agent.load_state_dict(state["agent"])
    return agent, state["step"]
