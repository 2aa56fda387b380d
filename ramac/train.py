"""The training loop: seeded, checkpointed, resumable, one CSV log schema.

A run directory holds ``checkpoint.pt`` (agent, sampler and RNG states, the log so far)
and ``train_log.csv``; both are rewritten atomically at every checkpoint, so a killed run
restarts from its last checkpoint and, on CPU, ends with the same numbers as a run that
was never interrupted (the global torch RNG state and the sampler's numpy Generator
travel with the checkpoint). :func:`train_seeds` trains several seeds of one run as a
seed stack (:mod:`ramac.seed_parallel`), writing for each what :func:`train` writes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from ramac import progress
from ramac.agents.base import RESUME_ONLY, make_agent
from ramac.data.dataset import Batch, BatchSampler, OfflineDataset, device_arrays
from ramac.device import resolve_device
from ramac.io import (
    atomic_write_bytes,
    atomic_write_text,
    load_torch_file,
    move_aside,
    problem_of,
    read_table,
)
from ramac.runtime import keep_freed_memory
from ramac.seed_parallel import SeedStack

CHECKPOINT = "checkpoint.pt"
PENDING = "checkpoint.pending.pt"  # a seed stack's next checkpoint, until every seed has one
TRAIN_LOG = "train_log.csv"
MODEL_RECORD = "dynamics.json"  # a model-based run's dynamics model: provenance and errors


@dataclasses.dataclass
class TrainSettings:
    """The budget of one run (profiles set these; algorithms never do)."""

    steps: int
    seed: int
    checkpoint_every: int = 10_000
    log_every: int = 1_000
    progress: bool = True
    keep_snapshots: bool = False  # also keep the agent of every checkpoint (for selection)
    # steps / the paper profile's steps: schedule lengths in the algorithm's config are
    # stated against the paper's budget and scaled by this (ramac.config.scale_schedules).
    schedule_scale: float = 1.0
    # Where and how the updates run (--device, --compile): recorded with the run, never in
    # its folder's hash. A resolved torch device name (ramac.device.resolve_device).
    device: str = "cpu"
    compile: bool = False  # torch.compile the update's losses (Agent.compile_losses)


SNAPSHOT_DIR = "snapshots"


def _save_bytes(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _save(
    run_dir: Path,
    agent_state: dict,
    sampler: BatchSampler,
    step: int,
    log: list[dict],
    name: str = CHECKPOINT,
) -> None:
    state = {
        "step": step,
        "agent": agent_state,
        "sampler": sampler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "device": str(sampler.device),  # compared on resume (_resume)
        "log": log,
    }
    if sampler.device.type == "cuda":  # the update noise drawn on the GPU: its own stream
        state["cuda_rng"] = torch.cuda.get_rng_state(sampler.device)
    _save_bytes(run_dir / name, state)
    if name == CHECKPOINT:
        _write_log(run_dir, log)


def _write_log(run_dir: Path, log: list[dict]) -> None:
    atomic_write_text(run_dir / TRAIN_LOG, pd.DataFrame(log).to_csv(index=False))


def heal_log(run_dir: Path, log: list[dict] | None = None) -> bool:
    """Rewrite ``train_log.csv`` from the checkpoint's copy of the log (``log``, or read from
    ``checkpoint.pt``) when the file does not read whole: missing, empty or cut mid-line (a
    full disk, a copy cut short). The damaged file moves to the run folder's ``corrupt/``
    with a one-line warning. Returns whether the log was rewritten; without a readable
    checkpoint (or with an empty log) the file is left as it is."""
    path = run_dir / TRAIN_LOG
    try:
        read_table(path, ("step",))
        return False
    except FileNotFoundError:
        problem = None
    except (ValueError, OSError) as exc:
        problem = exc
    if log is None:
        try:
            state = load_torch_file(run_dir / CHECKPOINT, map_location="cpu")
            log = state["log"]
        except Exception:  # noqa: BLE001 - no readable checkpoint: nothing to heal from
            return False
    if not log:
        return False
    if problem is not None:
        move_aside(path, problem_of(problem), then=f"rewritten from {CHECKPOINT}'s copy")
    _write_log(run_dir, log)
    return True


def _commit_pending(run_dir: Path, log: list[dict]) -> None:
    """Make a seed's pending checkpoint its checkpoint (an atomic rename), then its log."""
    (run_dir / PENDING).replace(run_dir / CHECKPOINT)
    _write_log(run_dir, log)


CHECKPOINT_KEYS = ("step", "log")  # read before a checkpoint is resumed from


def read_checkpoint(path: Path, then: str = "") -> dict | None:
    """The checkpoint state at ``path``; None when there is none. One that cannot be read
    (truncated, damaged on disk) is moved to its run folder's ``corrupt/`` with a one-line
    warning ending in ``then``, and None is returned: the run continues without it."""
    if not path.exists():
        return None
    try:
        state = load_torch_file(path, map_location="cpu")  # the agent moves it (any device)
        if not isinstance(state, dict):
            raise TypeError(f"holds a {type(state).__name__}, not a checkpoint")
        missing = [key for key in CHECKPOINT_KEYS if key not in state]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
    except Exception as exc:  # noqa: BLE001 - any failure to read is a damaged record
        move_aside(path, problem_of(exc), then=then)
        return None
    return state


def _settle_pending(run_dirs: list[Path]) -> None:
    """Finish or undo a stack checkpoint that a kill interrupted.

    A stack writes every seed's pending checkpoint before it renames any, so either every
    seed has its new state (finish the renames) or the kill came first (drop the pending
    ones): the seeds never resume from different steps. An unreadable pending or
    checkpoint file is moved aside (``read_checkpoint``) and counts as missing.
    """
    pending = {}
    for d in run_dirs:
        state = read_checkpoint(d / PENDING, then="the stack resumes from its checkpoints")
        if state is not None:
            pending[d] = state
    if not pending:
        return
    saved = {
        d: read_checkpoint(d / CHECKPOINT, then="training starts over")
        for d in run_dirs
        if d not in pending
    }
    steps = {
        pending[d]["step"] if d in pending else saved[d]["step"]
        for d in run_dirs
        if d in pending or saved[d] is not None
    }
    complete = len(steps) == 1 and all(d in pending or saved[d] is not None for d in run_dirs)
    for run_dir, state in pending.items():
        if complete:
            _commit_pending(run_dir, state["log"])
        else:
            (run_dir / PENDING).unlink()


def _resume(
    run_dir: Path, agent: Any, sampler: BatchSampler, state: dict | None | bool = True
) -> tuple[int, list[dict]]:
    """Load the run's checkpoint (``state``: as read already, None for none; True: read it
    now) into ``agent``, ``sampler`` and torch's RNG; returns (step, log). No readable
    checkpoint: (0, []), the run starts over."""
    if state is True:
        state = read_checkpoint(run_dir / CHECKPOINT, then="training starts over")
    if not isinstance(state, dict):
        return 0, []
    agent.load_state_dict(state["agent"])
    sampler.load_state_dict(state["sampler"])
    torch.set_rng_state(state["torch_rng"])
    saved_on = torch.device(state.get("device", "cpu"))  # checkpoints before 'device': CPU
    if saved_on != sampler.device:
        print(
            f"warning: {run_dir}: its checkpoint was written on {saved_on}, training goes on "
            f"on {sampler.device}: its numbers are no longer bit-identical to an "
            f"uninterrupted run's",
            file=sys.stderr,
            flush=True,
        )
    elif "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], sampler.device)
    heal_log(run_dir, state["log"])  # a cut-off log file: rewritten from the checkpoint's
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


def snapshot_path(run_dir: Path, step: int) -> Path:
    """Where a run keeps the agent of its checkpoint at ``step`` (``keep_snapshots``)."""
    return run_dir / SNAPSHOT_DIR / f"step{step:08d}.pt"


def model_based(algo: str) -> bool:
    """Whether ``algo`` learns from a dynamics model of the data (``attach``: RAVL)."""
    from ramac.agents import AGENTS

    return hasattr(AGENTS[algo].agent_cls, "attach")


def seed_stackable(algo: str) -> bool:
    """Whether ``algo``'s update runs under ``torch.func.vmap`` over seeds (RAVL's
    data-dependent model rollouts do not: ``seed_stackable = False`` on its class)."""
    from ramac.agents import AGENTS

    return getattr(AGENTS[algo].agent_cls, "seed_stackable", True)


def build_agent(
    algo: str,
    dataset: OfflineDataset,
    seed: int,
    overrides: dict | None = None,
    schedule_scale: float = 1.0,
    device: str | torch.device = "cpu",
):
    """A freshly initialised agent for ``dataset`` on ``device``, with weights drawn from
    ``seed`` (on the CPU: the same initial weights on every device). ``device`` is resolved
    here again (``ramac.device``): in a Ray task ``cuda`` is the GPU Ray gave it.

    An agent with ``fit_to(dataset)`` (CQL: its state statistics) is fitted to the data
    here, which draws no random numbers; what it fits is part of its state, so an agent
    then loaded from a checkpoint has the statistics it was trained with."""
    device = resolve_device(device)
    torch.manual_seed(seed)
    # Every task here acts in [-1, 1]^d; a source with other bounds records them.
    max_action = float(dataset.provenance.extra.get("max_action", 1.0))
    agent = make_agent(
        algo,
        dataset.obs_dim,
        dataset.act_dim,
        max_action,
        dataset=hyperparameter_key(dataset),
        overrides=overrides,
        schedule_scale=schedule_scale,
        device=device,
    )
    if hasattr(agent, "fit_to"):
        agent.fit_to(dataset)
    return agent


@dataclasses.dataclass
class _Run:
    """What the loop keeps per seed: where it writes, its budget, data order and log."""

    run_dir: Path
    settings: TrainSettings
    sampler: BatchSampler
    log: list[dict]


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
    keep_freed_memory()
    run_dir.mkdir(parents=True, exist_ok=True)
    agent = build_agent(
        algo, dataset, settings.seed, overrides, settings.schedule_scale, settings.device
    )
    if model_based(algo):  # a model-based agent learns from the data itself (RAVL)
        agent.attach(dataset, settings.seed)  # before _resume, which restores its generator
        record = json.dumps(agent.dynamics.record, indent=1, default=str)
        atomic_write_text(run_dir / MODEL_RECORD, record + "\n")
    sampler = BatchSampler(dataset, agent.config.batch_size, settings.seed, agent.device)
    torch.manual_seed(settings.seed + 1)  # the update's randomness: its own stream
    step, log = _resume(run_dir, agent, sampler)
    if settings.compile:
        agent.compile_losses()
    _loop(
        f"{algo} seed {settings.seed}",
        [_Run(run_dir, settings, sampler, log)],
        step,
        lambda batches, all_terminal: agent.train_step(batches[0], all_terminal),
        lambda: [agent.logged()],
        lambda k: agent.state_dict(),
        stop_after,
    )
    return agent


def train_seeds(
    algo: str,
    dataset: OfflineDataset,
    run_dirs: list[Path],
    settings: list[TrainSettings],
    overrides: dict | None = None,
    stop_after: int | None = None,
) -> None:
    """Train one run per seed as a :class:`~ramac.seed_parallel.SeedStack`, in one process.

    Each run gets what :func:`train` would write (checkpoint, log, snapshots), from its own
    initial weights and data order; the update noise comes from one stream seeded by the
    first seed (see :mod:`ramac.seed_parallel`). A killed stack resumes from its runs'
    checkpoints, which it writes together; runs found at different steps (say, one
    trained alone before) are trained one after the other by :func:`train` instead.
    """
    if not seed_stackable(algo):  # its seeds train one after the other, each as train does
        for run_dir, setting in zip(run_dirs, settings, strict=True):
            train(algo, dataset, run_dir, setting, overrides, stop_after)
        return
    budget = dataclasses.replace(settings[0], seed=0)
    if any(dataclasses.replace(s, seed=0) != budget for s in settings):
        raise ValueError("the runs of a seed stack may differ only in their seed")
    keep_freed_memory()
    agents, runs, steps = [], [], []
    device = resolve_device(budget.device)
    arrays = device_arrays(dataset, device)  # on the device once, for every seed
    for run_dir, setting in zip(run_dirs, settings, strict=True):
        run_dir.mkdir(parents=True, exist_ok=True)
        agent = build_agent(algo, dataset, setting.seed, overrides, setting.schedule_scale, device)
        batch = agent.config.batch_size
        sampler = BatchSampler(dataset, batch, setting.seed, device, arrays)
        agents.append(agent)
        runs.append(_Run(run_dir, setting, sampler, []))
    torch.manual_seed(settings[0].seed + 1)  # the stack's update stream
    for agent, run, state in zip(agents, runs, _stack_states(list(run_dirs)), strict=True):
        step, run.log = _resume(run.run_dir, agent, run.sampler, state)
        steps.append(step)
    if len(set(steps)) > 1:
        for run_dir, setting in zip(run_dirs, settings, strict=True):
            train(algo, dataset, run_dir, setting, overrides, stop_after)
        return
    stack = SeedStack(agents)
    if budget.compile:
        stack.compile_losses()
    seeds = ", ".join(str(s.seed) for s in settings)
    desc = f"{algo} seeds {seeds}"
    _loop(desc, runs, steps[0], stack.train_step, stack.logged, stack.agent_state, stop_after)


def _stack_states(run_dirs: list[Path]) -> list[dict | None]:
    """Each run's checkpoint state for a stack (None: none), after settling its pending ones.

    When a checkpoint could not be read (moved aside) while other seeds of the stack have
    theirs, the whole stack starts over from step 0 (one warning): its seeds then train
    together again and end with the numbers of an undamaged run (the others' checkpoints
    are rewritten with the same states), rather than each seed alone.
    """
    had = [(d / CHECKPOINT).exists() or (d / PENDING).exists() for d in run_dirs]
    _settle_pending(run_dirs)
    states = [read_checkpoint(d / CHECKPOINT, then="training starts over") for d in run_dirs]
    lost = [d for d, found, state in zip(run_dirs, had, states, strict=True) if found and not state]
    if lost and any(state is not None for state in states):
        names = ", ".join(d.name for d in lost)
        print(
            f"warning: {run_dirs[0].parent}: {names} lost its checkpoint; the seed stack "
            f"({', '.join(d.name for d in run_dirs)}) starts over from step 0 to train as one",
            file=sys.stderr,
            flush=True,
        )
        return [None] * len(run_dirs)
    return states


def _checkpoint(runs: list[_Run], agent_state: Callable[[int], dict], step: int) -> None:
    """Every run's checkpoint (and snapshot); a stack's all pending before any is renamed."""
    name = PENDING if len(runs) > 1 else CHECKPOINT
    for k, run in enumerate(runs):
        state = agent_state(k)
        if run.settings.keep_snapshots:  # the agent to evaluate, not what resuming needs
            snapshot = {k: v for k, v in state.items() if k != RESUME_ONLY}
            _save_bytes(snapshot_path(run.run_dir, step), snapshot)
        _save(run.run_dir, state, run.sampler, step, run.log, name)
    if len(runs) > 1:
        for run in runs:
            _commit_pending(run.run_dir, run.log)


def _loop(
    desc: str,
    runs: list[_Run],
    step: int,
    update: Callable[[list[Batch], bool], None],
    logged: Callable[[], list[dict[str, float]]],
    agent_state: Callable[[int], dict],
    stop_after: int | None,
) -> None:
    """Update from ``step`` to the budget: log, checkpoint and snapshot every run.

    ``update(batches, all_terminal)`` steps every run without reading anything back from
    the device; ``logged()`` reads each run's log values at logging steps only, so a GPU
    waits for the host there and at checkpoints, nowhere else."""
    settings = runs[0].settings
    log0 = runs[0].log
    start_wall = time.perf_counter() - (log0[-1]["wall_seconds"] if log0 else 0.0)
    bar = tqdm(
        total=settings.steps,
        initial=step,
        desc=desc,
        unit="it",
        disable=not settings.progress,
        mininterval=2.0,
    )
    tick = progress.tracker(desc, settings.steps, initial=step)  # to the pipeline's display
    boards = [_tensorboard(r.run_dir) if step < settings.steps else None for r in runs]
    while step < settings.steps:
        batches = [run.sampler.sample() for run in runs]
        update(batches, all(run.sampler.all_terminal for run in runs))
        step += 1
        bar.update(1)
        tick(step)
        if step % settings.log_every == 0 or step == settings.steps:
            wall = time.perf_counter() - start_wall
            for run, metrics, board in zip(runs, logged(), boards, strict=True):
                run.log.append({"step": step, "wall_seconds": wall, **metrics})
                if board is not None:
                    for name, value in metrics.items():
                        board.add_scalar(name, value, step)
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            _checkpoint(runs, agent_state, step)
        if stop_after is not None and step >= stop_after:
            break
    bar.close()
    tick.close(step)
    for board in boards:
        if board is not None:
            board.close()
    if step >= settings.steps and not all((r.run_dir / CHECKPOINT).exists() for r in runs):
        _checkpoint(runs, agent_state, step)


def load_trained(
    algo: str,
    dataset: OfflineDataset,
    run_dir: Path,
    overrides: dict | None = None,
    schedule_scale: float = 1.0,
    device: str | torch.device = "cpu",
    state: dict | None = None,
):
    """The agent stored in ``run_dir``'s checkpoint (for evaluation), on ``device``
    (whatever device the checkpoint was written on); ``state``: that checkpoint as read
    already (``read_checkpoint``), so it is not read twice."""
    agent = build_agent(algo, dataset, 0, overrides, schedule_scale, device)
    if state is None:
        state = load_torch_file(run_dir / CHECKPOINT, map_location="cpu")
    agent.load_state_dict(state["agent"])
    return agent, state["step"]
