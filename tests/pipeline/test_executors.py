"""run_jobs on the local process pool and on a local Ray instance."""

import os
import sys
from pathlib import Path

import pytest
from local_ray import local_ray

from pipeline.executors import RAY_MAX_RETRIES, run_jobs
from ramac.errors import UserError

# Job functions live at module level so worker processes can unpickle them.


def square(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative job {x}")
    return x * x


def record_then_fail(folder: Path) -> None:
    """Counts its attempts in ``folder/attempts`` and raises: must run exactly once."""
    with open(folder / "attempts", "a") as f:
        f.write("attempt\n")
    raise ValueError("application error")


def die_once_then_resume(folder: Path) -> int:
    """First attempt writes a checkpoint and kills its worker; the retry resumes from it."""
    marker = folder / "checkpoint"
    if not marker.exists():
        marker.write_text("20\n")  # half the work, saved
        os._exit(1)  # the worker process dies without a Python exception
    progress = int(marker.read_text().splitlines()[0])
    with open(marker, "a") as f:
        f.write("resumed\n")
    return progress + 22


def test_local_results_in_job_order():
    assert run_jobs(square, [3, 1, 2], workers=1) == [9, 1, 4]


def test_local_pool_runs_every_job_and_lists_failures():
    with pytest.raises(RuntimeError) as info:
        run_jobs(square, [1, -2, 3, -4], workers=2)
    message = str(info.value)
    assert message.startswith("2 of 4 jobs failed")
    assert "-2: ValueError: negative job -2" in message
    assert "-4: ValueError: negative job -4" in message


def test_unknown_executor_is_a_user_error():
    with pytest.raises(UserError, match="unknown executor 'dask'; known: local, ray"):
        run_jobs(square, [1], executor="dask")


def test_ray_executor_without_ray_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(UserError, match=r"needs the 'ray' extra: pip install -e '\.\[ray\]'"):
        run_jobs(square, [1], executor="ray")


@pytest.fixture(scope="module")
def ray_cluster():
    yield from local_ray(num_cpus=2)


def test_ray_results_in_job_order(ray_cluster):
    assert run_jobs(square, list(range(8)), executor="ray") == [x * x for x in range(8)]
    assert ray_cluster.is_initialized()  # run_jobs leaves a Ray it did not start running


def test_ray_retries_a_dead_worker_and_the_job_resumes(ray_cluster, tmp_path):
    assert RAY_MAX_RETRIES >= 1
    assert run_jobs(die_once_then_resume, [tmp_path], executor="ray") == [42]
    assert (tmp_path / "checkpoint").read_text() == "20\nresumed\n"  # ran twice, resumed once


def test_ray_reports_application_errors_without_retrying(ray_cluster, tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
    with pytest.raises(RuntimeError) as info:
        run_jobs(record_then_fail, folders, executor="ray")
    message = str(info.value)
    assert message.startswith("2 of 2 jobs failed")
    for folder in folders:
        assert f"{folder}: ValueError: application error" in message
        assert (folder / "attempts").read_text() == "attempt\n"  # once: not retried


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_worker_whose_parent_died_before_it_started_ends_itself():
    """die_with_parent: a parent gone before the prctl call is caught by its pid."""
    import subprocess

    code = "from ramac.runtime import die_with_parent as d; import os; d({}); print('alive')"
    gone = subprocess.run([sys.executable, "-c", code.format(999_999_999)], capture_output=True)
    assert (gone.returncode, gone.stdout) == (1, b"")
    kept = subprocess.run([sys.executable, "-c", code.format("os.getppid()")], capture_output=True)
    assert (kept.returncode, kept.stdout) == (0, b"alive\n")
