"""Run a list of independent jobs: inline, in a local process pool, or as Ray tasks.

Jobs are idempotent (a finished run has a `done` file and is skipped inside the job, a
half-finished one resumes from its checkpoint), so re-running the same list after a crash or
a kill only does what is missing. Ray uses that too: a task whose worker process or node dies
is retried (up to RAY_MAX_RETRIES times) and picks up where it stopped.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from typing import Any

from tqdm import tqdm

from ramac.errors import UserError

EXECUTORS = ("local", "ray")
RAY_MAX_RETRIES = 3  # re-runs of a task whose worker or node died; job exceptions never retry

# (job index, a call that returns its result or raises its error), in completion order
Outcomes = Iterator[tuple[int, Callable[[], Any]]]


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker: no oversubscription


def run_jobs(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    workers: int | None = None,
    desc: str = "runs",
    executor: str = "local",
    ray_address: str | None = None,
) -> list[Any]:
    """``[fn(job) for job in jobs]`` on ``executor``; results in job order.

    ``"local"``: ``workers`` spawned processes (inline when 1). ``"ray"``: one task per job on
    the cluster at ``ray_address``, or on a local Ray instance with ``workers`` CPUs when it
    is None (``fn`` and the jobs must be importable by the Ray workers).
    Every job is attempted even when one fails; the failures are raised together at the
    end (each job writes its own traceback into its run folder).
    """
    if executor == "local":
        outcomes = _local_outcomes(fn, jobs, workers)
    elif executor == "ray":
        outcomes = _ray_outcomes(_import_ray(), fn, jobs, workers, ray_address)
    else:
        raise UserError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    results: list[Any] = [None] * len(jobs)
    errors: list[tuple[Any, BaseException]] = []
    with tqdm(total=len(jobs), desc=desc, unit="run") as bar:
        for i, result in outcomes:
            try:
                results[i] = result()
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                errors.append((jobs[i], exc))
            bar.update(1)
    if errors:
        _raise_failures(errors, len(jobs))
    return results


def _raise_failures(errors: list[tuple[Any, BaseException]], n_jobs: int) -> None:
    """A user's error (every failure a UserError) stays one line; anything else lists all."""
    if all(isinstance(exc, UserError) for _, exc in errors):
        more = f" (and {len(errors) - 1} more failed runs)" if len(errors) > 1 else ""
        raise UserError(f"{errors[0][1]}{more}")
    lines = "\n".join(
        f"  {getattr(job, 'run_dir', job)}: {type(exc).__name__}: {exc}" for job, exc in errors
    )
    raise RuntimeError(f"{len(errors)} of {n_jobs} jobs failed:\n{lines}")


def _local_outcomes(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int | None) -> Outcomes:
    workers = min(workers or default_workers(), max(1, len(jobs)))
    if workers == 1:
        for i, job in enumerate(jobs):
            yield i, partial(fn, job)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            yield futures[future], future.result


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("the Ray executor needs the 'ray' extra: pip install -e '.[ray]'") from None
    return ray


def _ray_outcomes(
    ray: Any,
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    workers: int | None,
    address: str | None,
) -> Outcomes:
    started = not ray.is_initialized()
    if started and address is None:
        ray.init(
            num_cpus=workers or default_workers(),
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    elif started:
        ray.init(address=address, logging_level=logging.WARNING)
    try:
        task = ray.remote(num_cpus=1, max_retries=RAY_MAX_RETRIES)(_call_in_worker)
        index = {task.remote(fn, job): i for i, job in enumerate(jobs)}
        pending = list(index)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield index[done[0]], partial(_ray_result, ray, done[0])
    finally:
        if started:
            ray.shutdown()


def _call_in_worker(fn: Callable[[Any], Any], job: Any) -> Any:
    _init_worker()
    return fn(job)


def _ray_result(ray: Any, ref: Any) -> Any:
    """The task's result; a job's own exception comes back as itself, not Ray's wrapper."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, Exception):
            raise exc.cause from exc
        raise
