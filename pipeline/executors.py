"""Run a list of independent jobs: inline, in a local process pool, (later) on Ray.

Jobs are idempotent (a finished run has a `done` file and is skipped inside the job), so
re-running the same list after a crash or a kill only does what is missing.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from tqdm import tqdm


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker: no oversubscription


def run_jobs(
    fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int | None = None, desc: str = "runs"
) -> list[Any]:
    """``[fn(job) for job in jobs]``, in ``workers`` processes; results in job order.

    Every job is attempted even when one fails; the failures are raised together at the
    end (each job writes its own traceback into its run folder).
    """
    workers = min(workers or default_workers(), max(1, len(jobs)))
    results: list[Any] = [None] * len(jobs)
    errors: list[tuple[Any, BaseException]] = []
    bar = tqdm(total=len(jobs), desc=desc, unit="run")
    if workers == 1:
        for i, job in enumerate(jobs):
            try:
                results[i] = fn(job)
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                errors.append((job, exc))
            bar.update(1)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except Exception as exc:  # noqa: BLE001
                    errors.append((jobs[i], exc))
                bar.update(1)
    bar.close()
    if errors:
        lines = "\n".join(f"  {job}: {type(exc).__name__}: {exc}" for job, exc in errors)
        raise RuntimeError(f"{len(errors)} of {len(jobs)} jobs failed:\n{lines}")
    return results
