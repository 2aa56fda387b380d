"""Offline datasets: one in-memory format (``dataset``) and its sources (D4RL, Minari, generated).

The loaders are re-exported lazily, so ``import ramac.data.dataset`` stays light (no h5py,
Gymnasium or MuJoCo import until a loader is used).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "OfflineDataset": "ramac.data.dataset",
    "Provenance": "ramac.data.dataset",
    "Batch": "ramac.data.dataset",
    "BatchSampler": "ramac.data.dataset",
    "load_d4rl": "ramac.data.d4rl",
    "read_d4rl_hdf5": "ramac.data.d4rl",
    "qlearning_dataset": "ramac.data.d4rl",
    "D4RL_DATASETS": "ramac.data.d4rl",
    "load_minari": "ramac.data.minari_source",
    "generate_dataset": "ramac.data.generate",
    "load_generated": "ramac.data.generate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ramac.data' has no attribute {name!r}")
