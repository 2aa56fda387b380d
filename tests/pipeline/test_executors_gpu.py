"""Ray with GPUs (issue 24, item 5): each task asks for its share of a GPU and sees it.

Ray schedules declared resources without the hardware, so a local instance that declares
one GPU shows the placement on a machine without any: four runs with ``gpus_per_run=0.25``
run at once, each holding a quarter of GPU 0. The job functions need no CUDA.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from local_ray import local_ray

from pipeline.executors import run_jobs
from ramac.errors import UserError


def placed(folder: Path) -> dict:
    """Record this task's start, wait (up to 60 s) until four tasks have started, and say
    what Ray gave it: all four waiting together shows they were placed at once."""
    import ray

    (folder / f"start-{os.getpid()}-{time.monotonic_ns()}").touch()
    deadline = time.monotonic() + 60
    while len(list(folder.glob("start-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    context = ray.get_runtime_context()
    return {
        "together": len(list(folder.glob("start-*"))),
        "resources": context.get_assigned_resources(),
        "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
        "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


@pytest.fixture(scope="module")
def ray_with_a_gpu():
    yield from local_ray(num_cpus=4, num_gpus=1)  # the GPU declared only: nothing uses it


def test_four_quarter_gpu_runs_are_placed_at_once(ray_with_a_gpu, tmp_path):
    rows = run_jobs(placed, [tmp_path] * 4, executor="ray", gpus_per_run=0.25)
    assert [row["together"] for row in rows] == [4, 4, 4, 4]
    for row in rows:
        assert row["resources"] == {"CPU": 1.0, "GPU": 0.25}  # each records its request
        assert row["gpu_ids"] == ["0"] and row["visible"] == "0"  # it sees its GPU as cuda:0


def test_more_gpu_than_the_cluster_declares_is_one_line(ray_with_a_gpu, tmp_path):
    """A request no node can meet would wait for ever; it is refused before any task."""
    from pipeline import executors

    outcomes = executors._ray_outcomes(ray_with_a_gpu, placed, [tmp_path], None, None, 2.0)
    with pytest.raises(UserError, match=r"^--gpus-per-run 2: the Ray cluster declares 1 GPUs"):
        next(outcomes)
    assert not list(tmp_path.glob("start-*"))
