"""What every result file records: config, seed, dataset provenance, package versions."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from ramac.io import atomic_write_text

PACKAGES = ("ramac", "torch", "numpy", "gymnasium", "mujoco", "h5py", "stable-baselines3", "pandas")


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages that can change a number."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def ramac_version() -> str:
    """This package's installed version (``pyproject.toml``), or "unknown" outside an install."""
    try:
        return metadata.version("ramac")
    except metadata.PackageNotFoundError:
        return "unknown"


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as YAML atomically (a crash never leaves half a file)."""
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
