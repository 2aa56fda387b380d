"""A local Ray instance for the executor tests: its workers import the job functions from this
folder (pytest imports the test files as top-level modules, found on PYTHONPATH)."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def local_ray(**resources: Any) -> Iterator[Any]:
    """Start Ray with ``resources`` (``num_cpus``, ``num_gpus``: declared, not detected), yield
    the module, shut it down: the body of a module-scoped fixture (``yield from``)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    ray.init(
        **resources,
        include_dashboard=False,
        logging_level="warning",
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield ray
    ray.shutdown()
