"""Run a list of independent jobs: inline, in a local process pool, or as Ray tasks.

Jobs are idempotent (a finished run has a `done` file and is skipped inside the job, a
half-finished one resumes from its checkpoint), so re-running the same list after a crash or
a kill only does what is missing. Ray uses that too: a task whose worker process or node dies
is retried (up to RAY_MAX_RETRIES times) and picks up where it stopped.

Pool workers belong to the main process: they die with it (``kill -9`` too), ignore Ctrl-C
(the main process stops them and prints one line), and report their training's progress to
it through a queue (``ramac.progress``), shown on a terminal only. SIGTERM ends a worker as
it ends the main process (``ramac.runtime.Terminated``): its job unwinds (locks released,
temporary files removed), then it exits. A worker that dies (the out-of-memory killer's
SIGKILL) breaks the pool: its run fails with one line naming it and the signal, and the
other runs carry on in a fresh pool (resuming from their checkpoints).
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import queue
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import PurePath
from typing import Any

from tqdm import tqdm

from pipeline import locks
from ramac import progress
from ramac.errors import UserError
from ramac.runtime import Terminated, die_with_parent

EXECUTORS = ("local", "ray")
RAY_MAX_RETRIES = 3  # re-runs of a task whose worker or node died; job exceptions never retry

# (job index, a call that returns its result or raises its error), in completion order
Outcomes = Iterator[tuple[int, Callable[[], Any]]]


def default_workers(gpus_per_run: float = 0.0) -> int:
    """One worker per CPU; on a GPU (``gpus_per_run`` > 0, the runs' share of it), one per
    share of the GPU: 0.25 -> four runs share it."""
    if gpus_per_run > 0:
        return max(1, math.floor(1 / gpus_per_run + 1e-9))
    return max(1, os.cpu_count() or 1)


def plan_device(name: str | None, executor: str, gpus_per_run: float | None) -> tuple[str, float]:
    """``--device`` and ``--gpus-per-run`` of a plan, checked when it is made, before any
    work: (the device every job runs on, each run's GPU share; 0: none).

    Locally the name is resolved on this machine (``ramac.device.resolve_device``: a GPU
    it lacks is one line); a GPU runs one worker per share (default 1: one run per GPU).
    On Ray each task asks for its share (``num_gpus``) and sees only the GPU Ray gives it,
    as ``cuda``: a GPU device (``auto`` too, when a share is asked for) is checked against
    the cluster's GPUs when Ray starts, not this machine's, and a share with ``--device
    cpu`` is a scheduling request only (the runs train on the CPU).
    """
    if gpus_per_run is not None and not 0 < gpus_per_run <= 1:
        raise UserError(
            f"--gpus-per-run must be in (0, 1] (a share of one GPU), got {gpus_per_run:g}"
        )
    from ramac.device import resolve_device  # torch: only where a plan is made

    text = "auto" if name is None else str(name).strip().lower()
    if executor != "ray":
        device = resolve_device(text)
        share = (gpus_per_run or 1.0) if device.type == "cuda" else 0.0
        return str(device), share
    gpu = text.startswith("cuda") or (text == "auto" and gpus_per_run is not None)
    if not gpu:
        return str(resolve_device("cpu" if text == "auto" else text)), gpus_per_run or 0.0
    if text not in ("auto", "cuda", "cuda:0"):
        raise UserError(
            f"--device {text}: on Ray each run sees only its own GPU; use --device cuda"
        )
    return "cuda", gpus_per_run or 1.0


# In a local pool's worker: the array where each job writes the pid of the worker running it
# (job index -> pid), so that the main process can name the run of a worker that died; and
# whether a job is running now (SIGTERM unwinds it, else ends the idle worker at once).
_started: Any = None
_busy = False


def _on_sigterm(signum: int, frame: object) -> None:
    """A pool worker's SIGTERM: unwind the running job (``_run_job`` then exits), or exit."""
    signal.signal(signum, signal.SIG_IGN)
    if _busy:
        raise Terminated(signum)
    os._exit(128 + signum)


def _init_worker(parent: int | None = None, channel: Any = None, started: Any = None) -> None:
    """Set up a worker process: one torch thread; in the local pool (``parent``: the main
    process's pid) die with the main process, leave Ctrl-C to it, end on SIGTERM after its
    job unwinds and record in ``started`` which job it runs; report progress on ``channel``
    (a queue the main process reads) when given."""
    global _started
    if parent is not None:
        _started = started
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # already inherited (_workers_ignore_sigint)
        if hasattr(signal, "pthread_sigmask"):  # POSIX
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        die_with_parent(parent)
        # tqdm's default lock is a multiprocessing semaphore: a worker ended by its parent
        # would leave it to the resource tracker, which warns about it under the last line
        tqdm.set_lock(threading.RLock())
    if channel is not None:
        channel.cancel_join_thread()  # exiting never waits for undelivered progress
        progress.set_reporter(channel.put)
    import torch

    torch.set_num_threads(1)  # one core per worker: no oversubscription


def _run_job(
    fn: Callable[[Any], Any],
    label: str,
    job: Any,
    reporter: progress.Reporter | None = None,
    index: int | None = None,
) -> Any:
    """``fn(job)``, its progress reported as job ``label`` (to ``reporter`` when given, else
    to the process's own reporter). In a pool worker: job ``index`` is recorded as this
    process's, and a SIGTERM ends the process once the job has unwound."""
    global _busy
    if _started is not None and index is not None:
        _started[index] = os.getpid()
    installed = progress.reporting(reporter) if reporter else contextlib.nullcontext()
    _busy = True
    try:
        with installed, progress.job(label):
            return fn(job)
    except Terminated as exc:
        if _started is None:  # the main process (inline): the command line says it
            raise
        os._exit(exc.exit_code)  # nothing to report: the main process is stopping the pool
    finally:
        _busy = False


def job_labels(jobs: Sequence[Any]) -> list[str]:
    """Short, unique names for the progress display: each job's run folder relative to the
    folder the plan's runs share, without its config hash (``radac/seed0``; a seed stack,
    a tuple of jobs: ``radac/seeds 0,1,2``); a job without ``run_dir``: its index."""
    dirs = [_run_dirs(job) for job in jobs]
    found = [d for members in dirs for d in members]
    root = os.path.commonpath([d.parent.parent for d in found]) if found else ""
    labels = []
    for i, members in enumerate(dirs):
        if not members:
            labels.append(f"job {i}")
            continue
        names = [_HASH.sub("", d.name) for d in members]
        seeds = [m.group(1) for m in map(_SEED.fullmatch, names) if m]
        name = names[0] if len(names) == 1 else "+".join(names)
        if len(names) > 1 and len(seeds) == len(names):
            name = "seeds " + ",".join(seeds)
        labels.append(os.path.relpath(members[0].parent / name, root))
    counts = Counter(labels)
    return [f"{label} #{i}" if counts[label] > 1 else label for i, label in enumerate(labels)]


_HASH = re.compile(r"-[0-9a-f]{8}$")  # a run folder's config hash (pipeline/runs.py)
_SEED = re.compile(r"seed(\d+)")


def _run_dirs(job: Any) -> list[Any]:
    members = job if isinstance(job, tuple) else (job,)
    dirs = [getattr(member, "run_dir", None) for member in members]
    return dirs if all(isinstance(d, PurePath) for d in dirs) else []


def _job_steps(job: Any) -> int | None:
    """The training updates a job (or a seed stack, trained together) runs, when it says."""
    steps = getattr(job[0] if isinstance(job, tuple) and job else job, "steps", None)
    return steps if isinstance(steps, int) else None


def run_jobs(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    workers: int | None = None,
    desc: str = "runs",
    executor: str = "local",
    ray_address: str | None = None,
    gpus_per_run: float = 0.0,
) -> list[Any]:
    """``[fn(job) for job in jobs]`` on ``executor``; results in job order.

    ``"local"``: ``workers`` spawned processes (inline when 1; default: one per CPU, or one
    per GPU share when ``gpus_per_run`` > 0). ``"ray"``: one task per job on the cluster
    at ``ray_address``, or on a local Ray instance with ``workers`` CPUs when it is None
    (``fn`` and the jobs must be importable by the Ray workers); each task asks for one
    CPU and ``gpus_per_run`` of a GPU (:func:`plan_device`).
    Every job is attempted even when one fails; the failures are raised together at the
    end (each job writes its own traceback into its run folder).
    """
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    ray = _import_ray() if executor == "ray" else None
    show = progress.on_terminal()
    labels = job_labels(jobs)
    # Ray's tasks report no progress: its bar counts runs
    expected = [_job_steps(job) if executor == "local" else None for job in jobs]
    bar = progress.PlanBar(desc, labels, expected, show)
    if executor == "local":
        workers = workers or default_workers(gpus_per_run)
        outcomes = _local_outcomes(fn, jobs, workers, labels, bar if show else None)
    else:
        outcomes = _ray_outcomes(ray, fn, jobs, workers, ray_address, gpus_per_run)
    results: list[Any] = [None] * len(jobs)
    errors: list[tuple[Any, BaseException]] = []
    try:
        for i, result in outcomes:
            try:
                results[i] = result()
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                errors.append((jobs[i], exc))
            bar.finished(i)
    finally:
        outcomes.close()  # interrupted: stops the workers now (_local_outcomes)
        bar.close()
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


def _local_outcomes(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    workers: int | None,
    labels: Sequence[str],
    reporter: progress.Reporter | None,
) -> Outcomes:
    """Inline when one worker, else a spawned pool whose workers report to ``reporter``
    through a queue (when given). An exception here or in the caller (Ctrl-C, which the
    workers ignore) terminates the workers and cancels the jobs not started: nothing waits
    for the running ones."""
    workers = min(workers or default_workers(), max(1, len(jobs)))
    if workers == 1:
        for i, job in enumerate(jobs):
            yield i, partial(_run_job, fn, labels[i], job, reporter)
        return
    ctx = multiprocessing.get_context("spawn")
    channel = ctx.Queue() if reporter is not None else None
    listener = _Listener(channel, reporter) if channel is not None else None
    pending = list(range(len(jobs)))
    try:
        while pending:  # a fresh pool for the runs a dead worker's pool left undone
            started = ctx.RawArray("i", len(jobs))
            initargs = (os.getpid(), channel, started)
            pool = ProcessPoolExecutor(
                min(workers, len(pending)), ctx, initializer=_init_worker, initargs=initargs
            )
            try:
                with _workers_ignore_sigint():  # the pool starts its workers in submit()
                    futures = {
                        pool.submit(_run_job, fn, labels[i], jobs[i], None, i): i for i in pending
                    }
                processes = dict(pool._processes or {})  # no public API before Python 3.14
                broken = []
                for future in as_completed(futures):
                    if isinstance(future.exception(), BrokenProcessPool):
                        broken.append(futures[future])
                        continue
                    yield futures[future], future.result
                pool.shutdown()
            except BaseException:  # Ctrl-C, SIGTERM, or the caller closing us on its error
                _stop_workers(pool)
                raise
            dead = _dead_jobs(processes, started, jobs, broken)
            if dead:  # the dead workers' runs fail; the others go on in a fresh pool
                for i, why in dead.items():
                    yield i, partial(_died, _run_name(jobs[i], labels[i]), why)
                pending = [i for i in broken if i not in dead]
            else:  # no worker to blame: report the broken runs, never loop
                for i in broken:
                    yield (
                        i,
                        partial(_died, _run_name(jobs[i], labels[i]), "its worker ended abruptly"),
                    )
                pending = []
    finally:
        if listener is not None:
            listener.stop()


def _dead_jobs(
    processes: dict[int, Any], started: Any, jobs: Sequence[Any], broken: list[int]
) -> dict[int, str]:
    """The jobs among ``broken`` whose worker died (killed by a signal other than the SIGTERM
    the pool sends its other workers when one dies), with how it died; their run folders'
    locks, which the dead worker held, are removed."""
    how = {}
    for pid, process in processes.items():
        process.join(timeout=10)
        code = process.exitcode
        if code is None or code in (0, 128 + signal.SIGTERM, -signal.SIGTERM):
            continue
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            how[pid] = f"its worker process was killed by {name}"
        else:
            how[pid] = f"its worker process exited with code {code}"
    dead = {i: how[started[i]] for i in broken if started[i] in how}
    for i in dead:  # its locks: the dead worker could not release them
        for run_dir in _run_dirs(jobs[i]):
            locks.clear_dead(run_dir, started[i])
    return dead


def _run_name(job: Any, label: str) -> str:
    """The job's run folder(s) as the user finds them, else its progress label."""
    return str(getattr(job, "run_dir", label))


def _died(label: str, why: str) -> None:
    """The outcome of a job whose worker died: one line naming its run and how."""
    hint = " (the out-of-memory killer sends SIGKILL: fewer --workers use less memory)"
    raise UserError(
        f"{label}: {why}{hint if 'SIGKILL' in why else ''}; the other runs went on; run the "
        "same command again to resume it"
    )


@contextlib.contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Processes started in the block inherit SIGINT ignored from their first instruction.

    A worker that sets it itself would still take a Ctrl-C while it starts (imports) and
    print a traceback. This (main) thread holds SIGINT blocked meanwhile, so a Ctrl-C in
    the block is delivered to it when the block ends, not lost. Elsewhere than the main
    thread it does nothing (the workers ignore SIGINT once initialised).
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the jobs not started and end the workers now (SIGTERM, then SIGKILL)."""
    processes = list((pool._processes or {}).values())  # no public API before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.terminate()
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            process.join(timeout=2)
            if process.is_alive():
                process.kill()
                process.join(timeout=2)


class _Listener(threading.Thread):
    """Hands the workers' progress messages from ``channel`` to ``reporter``."""

    def __init__(self, channel: Any, reporter: progress.Reporter):
        super().__init__(name="progress-listener", daemon=True)
        self._channel, self._reporter = channel, reporter
        self._stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while True:
            try:
                message = self._channel.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return  # drained
                continue
            except (EOFError, OSError):
                return
            with contextlib.suppress(Exception):  # a display problem never stops a run
                self._reporter(message)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=2)


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
    gpus_per_run: float = 0.0,
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
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus_per_run > gpus:  # its tasks would wait for ever
            raise UserError(
                f"--gpus-per-run {gpus_per_run:g}: the Ray cluster declares {gpus:g} GPUs "
                "(start its nodes with their GPUs, or use --device cpu)"
            )
        remote = ray.remote(num_cpus=1, num_gpus=gpus_per_run, max_retries=RAY_MAX_RETRIES)
        task = remote(_call_in_worker)
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
