"""The plan a stage that trains prints before any work: its runs, their updates, and an
estimated time, on stdout, on a terminal or not (a log file shows it too).

The estimate times a few updates of one agent per algorithm in the main process: the run's
own resolved config (its network sizes, batch size, schedules) on a batch drawn from the
first rows of its own data, with one torch thread as a pool worker has. It counts training
updates only (not data loading, process start-up, a model-based agent's dynamics model, or
evaluation), divided over the parallel workers; seed stacks train several seeds per process
and usually finish sooner. It costs well under a second per algorithm, and never touches
what a run draws: the random states it uses are restored.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.executors import default_workers

WARM_UP = 2  # updates before timing (first-call allocations)
TIMED = 10  # updates timed per algorithm ...
TIME_CAP = 0.5  # ... or fewer once this many seconds have passed (at least 3)
BATCH_ROWS = 4096  # the rows a timed batch is drawn from (a large file is never copied whole)


def updates_left(job: Any) -> int:
    """Updates the run still needs: 0 when finished or not training, else its budget less
    the step its training log reached (a killed run resumes from its last checkpoint)."""
    if not job.trains or (job.run_dir / "done").exists():
        return 0
    try:
        reached = int(pd.read_csv(job.run_dir / "train_log.csv", usecols=["step"])["step"].max())
    except (OSError, ValueError, KeyError):
        reached = 0
    return max(0, job.steps - reached)


@contextlib.contextmanager
def _untouched_random_state(device: Any = "cpu") -> Iterator[None]:
    """Run the block with one torch thread and restore torch's and numpy's global random
    states after it (the GPU's too when ``device`` is one), so that timing never changes
    what a run in this process draws."""
    import torch

    threads = torch.get_num_threads()
    numpy_state = np.random.get_state()
    where = torch.device(device)
    gpus = [where.index or 0] if where.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            np.random.set_state(numpy_state)


def seconds_per_update(job: Any) -> float | None:
    """Seconds one update of ``job``'s agent takes here (its config, a batch of its data);
    None for a model-based agent, whose updates need its dynamics model trained first."""
    from ramac.data.dataset import ARRAY_KEYS, BatchSampler
    from ramac.train import build_agent, model_based

    if model_based(job.algo):
        return None
    dataset = job.dataset()
    rows = min(len(dataset), BATCH_ROWS)
    head = dataset.replace(
        **{key: getattr(dataset, key)[:rows] for key in ARRAY_KEYS},
        risky=None,
        end_rows=None,
        end_observations=None,
    )
    device = getattr(job, "device", "cpu")
    with _untouched_random_state(device):
        agent = build_agent(job.algo, head, job.seed, job.overrides, job.schedule_scale, device)
        sampler = BatchSampler(head, agent.config.batch_size, seed=0, device=agent.device)
        for _ in range(WARM_UP):
            agent.update(sampler.sample())
        start, done = time.perf_counter(), 0
        while done < TIMED and (done < 3 or time.perf_counter() - start < TIME_CAP):
            agent.train_step(sampler.sample(), sampler.all_terminal)  # as the loop runs it
            done += 1
        agent.logged()  # waits for the device's queued work (a GPU's), so the time counts it
        return (time.perf_counter() - start) / done


def duration(seconds: float) -> str:
    """``seconds`` in the largest unit that reads well: 40 s, 12 min, 3.5 h, 2.1 days, 31 years."""
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def plan_lines(jobs: Sequence[Any], desc: str, workers: int | None) -> list[str]:
    """The lines of the plan of ``jobs`` (see the module docstring)."""
    left = [(job, updates_left(job)) for job in jobs]
    todo = [(job, n) for job, n in left if n > 0]
    trains = [job for job in jobs if job.trains]
    if not todo:
        return [f"plan: {desc}: {len(trains)} runs, all trained: nothing to train"]
    steps = sorted({job.steps for job, _ in todo})
    total = sum(n for _, n in todo)
    parallel = min(workers or default_workers(), len(todo))
    first = {}
    for job, _ in todo:
        first.setdefault(job.algo, job)
    timing = {algo: seconds_per_update(job) for algo, job in first.items()}
    seconds = sum(n * timing[job.algo] for job, n in todo if timing[job.algo] is not None)
    timed = ", ".join(f"{a} {t * 1000:.1f} ms" for a, t in timing.items() if t is not None)
    untimed = [a for a, t in timing.items() if t is None]
    lines = [
        f"plan: {desc}: {len(todo)} of {len(trains)} runs to train, "
        f"{'/'.join(f'{s:,}' for s in steps)} updates per run ({total:,} updates left in all), "
        f"{parallel} worker{'s' * (parallel != 1)}",
        f"estimate: about {duration(seconds / parallel)} of training updates"
        + (f" (per update: {timed})" if timed else ""),
        f"  timed: {TIMED} updates of one agent per algorithm with the run's config, here, on "
        "its data; not counted: data loading, start-up, evaluation"
        + (f", and {', '.join(untimed)} (their dynamics model trains first)" if untimed else ""),
    ]
    return lines


def print_plan(jobs: Sequence[Any], desc: str, workers: int | None) -> None:
    """Print :func:`plan_lines` on stdout, before any work."""
    print("\n".join(plan_lines(jobs, desc, workers)), flush=True)
