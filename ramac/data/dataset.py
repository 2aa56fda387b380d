"""The one in-memory format every data source is converted into.

Transitions are flat numpy arrays (observations, actions, rewards, next_observations,
terminals, timeouts, and optionally a ``risky`` flag) plus a provenance record that
every result file copies, so a number can always be traced back to its data.

``next_observations`` is what the agents bootstrap from. With d4rl's ``qlearning_dataset``
semantics a terminal row's ``next_observations`` is the *next episode's first state* (it is
never bootstrapped from, so training does not care), which is not the state the step led to:
for a fall it is the reset pose. ``end_rows`` / ``end_observations`` keep the true post-step
state of such rows, so hazards are decided on the fallen pose (:meth:`post_step_signal`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import torch

from ramac.errors import UserError

ARRAY_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


@dataclasses.dataclass
class Provenance:
    """Where a dataset came from; written into every result file that uses it."""

    source: str  # "d4rl", "minari", "generated", "bandit", "synthetic"
    id: str  # e.g. "halfcheetah-medium-expert-v2"
    version: str = ""
    sha256: str = ""  # of the file the arrays were read from ("" when built in memory)
    env_id: str = ""  # the Gymnasium environment used to evaluate on it
    hazard: dict[str, Any] | None = None  # the hazard spec applied, all parameters written out
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class OfflineDataset:
    """Transitions as aligned arrays (first axis = transition) plus provenance."""

    observations: np.ndarray  # [n, obs_dim] float32
    actions: np.ndarray  # [n, act_dim] float32
    rewards: np.ndarray  # [n] float32
    next_observations: np.ndarray  # [n, obs_dim] float32
    terminals: np.ndarray  # [n] bool: the environment ended the episode (no bootstrap)
    timeouts: np.ndarray  # [n] bool: the episode was cut by a time limit (bootstrap)
    provenance: Provenance
    risky: np.ndarray | None = None  # [n] bool: the transition entered a hazard region
    # Rows whose next_observations is not the state the step led to (terminal rows under
    # d4rl's semantics get the next episode's first state), and the true post-step state of
    # each: the file's stored next_observations, NaN where the file has none (unknown).
    end_rows: np.ndarray | None = None  # [k] int, indices into the rows above
    end_observations: np.ndarray | None = None  # [k, obs_dim] float32

    def __post_init__(self) -> None:
        n = len(self.rewards)
        for key in (*ARRAY_KEYS, "risky"):
            value = getattr(self, key)
            if value is not None and len(value) != n:
                raise UserError(
                    f"dataset {self.provenance.id}: '{key}' has {len(value)} rows, "
                    f"'rewards' has {n}"
                )
        if (self.end_rows is None) != (self.end_observations is None) or (
            self.end_rows is not None and len(self.end_rows) != len(self.end_observations)
        ):
            raise UserError(
                f"dataset {self.provenance.id}: 'end_rows' and 'end_observations' must be "
                f"given together, one state per row"
            )

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    def post_step_signal(self, obs_index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(signal, unknown)``: observation ``obs_index`` of the state each step led to.

        ``next_observations[:, obs_index]`` except on ``end_rows``, which take their stored
        post-step state; ``unknown`` flags end rows whose post-step state the source did not
        store (their ``signal`` is NaN: no hazard can be decided for them).
        """
        signal = np.array(self.next_observations[:, obs_index], dtype=np.float64)
        unknown = np.zeros(len(signal), bool)
        if self.end_rows is not None and len(self.end_rows):
            stored = np.asarray(self.end_observations[:, obs_index], dtype=np.float64)
            signal[self.end_rows] = stored
            unknown[self.end_rows] = np.isnan(stored)
        return signal, unknown

    def replace(self, **changes: Any) -> OfflineDataset:
        """A copy with some arrays or the provenance replaced (datasets are not mutated)."""
        return dataclasses.replace(self, **changes)


def nonfinite(key: str, values: np.ndarray) -> str | None:
    """What is wrong with float array ``values`` (named ``key``), or None when all are finite:
    "'rewards' contains NaN values (first at row 3)"."""
    finite = np.isfinite(values)
    if finite.all():
        return None
    bad = "NaN" if np.isnan(values).any() else "inf"
    row = int(np.argwhere(~finite)[0][0])
    return f"'{key}' contains {bad} values (first at row {row})"


# Relative slack on the action bound: float32 rounding of a squashed action, nothing more.
ACTION_BOUND_SLACK = 1e-5
FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")
FLAG_KEYS = ("terminals", "timeouts", "risky")
PER_ROW_KEYS = ("rewards", "terminals", "timeouts", "risky")  # one value per row
MIN_ROWS = 2  # one transition needs the next row; the OOD scale needs two points


def check_arrays(arrays: dict[str, Any], where: str, max_action: float | None = None) -> None:
    """The one validation path of every data source (D4RL, generated, Minari, in memory).

    ``arrays`` as the source stores them, before any cast (a cast hides problems: terminals
    of 2 become True, a float64 1e39 becomes inf in float32). Checks, in order: at least
    ``MIN_ROWS`` rows; numbers (not text or objects); one row count; observations, actions
    and next observations 2-D, next observations the observations' shape; rewards and flags
    one value per row; flags (terminals, timeouts, risky) 0 or 1; float arrays finite
    *after* the float32 cast training makes; with ``max_action``, actions within
    +-max_action (the bound the agents act in). A problem is a one-line UserError
    ``<where>: <what>`` naming the array (``where``: the file, else the dataset).
    """

    def fail(problem: str) -> UserError:
        return UserError(f"{where}: {problem}")

    present = {k: v for k, v in arrays.items() if v is not None}
    n = len(present["observations"]) if np.ndim(present.get("observations")) else 0
    if n < MIN_ROWS:
        raise fail(
            f"only {n} row{'s' * (n != 1)}; training needs at least {MIN_ROWS}"
            if n
            else "the dataset has no transitions"
        )
    for key, value in present.items():
        if np.ndim(value) == 0:
            raise fail(f"'{key}' is a single value, not one per row")
        kind = np.asarray(value).dtype.kind
        if kind not in "biuf" or (key in FLOAT_KEYS and kind == "b"):
            raise fail(f"'{key}' holds {np.asarray(value).dtype} values, not numbers")
        if len(value) != n:
            raise fail(f"'{key}' has {len(value)} rows, 'observations' has {n}")
    for key in ("observations", "actions", "next_observations"):
        if key in present and np.ndim(present[key]) != 2:
            raise fail(f"'{key}' must be 2-D, got shape {np.shape(present[key])}")
    if "next_observations" in present and (
        np.shape(present["next_observations"]) != np.shape(present["observations"])
    ):
        raise fail(
            f"'next_observations' has shape {np.shape(present['next_observations'])}, "
            f"'observations' {np.shape(present['observations'])}"
        )
    for key in PER_ROW_KEYS:
        if key in present and np.shape(present[key])[1:] not in ((), (1,)):
            raise fail(f"'{key}' must hold one value per row, got shape {np.shape(present[key])}")
    for key in FLAG_KEYS:
        if key in present and not np.isin(present[key], (0, 1)).all():
            raise fail(f"'{key}' must be 0 or 1 (false or true)")
    for key in FLOAT_KEYS:
        if key in present:
            _check_float32(key, present[key], fail)
    if max_action is not None:
        largest = float(np.abs(np.asarray(present["actions"], np.float32)).max())
        if largest > max_action * (1.0 + ACTION_BOUND_SLACK):
            raise fail(
                f"'actions' reach {largest:g}, outside the action bounds +-{max_action:g} "
                "(the agents act in [-max_action, max_action])"
            )


def _check_float32(key: str, values: Any, fail: Any) -> None:
    """Finite as stored, and still finite in float32 (what training computes with)."""
    stored = np.asarray(values)
    problem = nonfinite(key, stored) if stored.dtype.kind == "f" else None
    if problem:
        raise fail(problem)
    with np.errstate(over="ignore"):
        cast = stored.astype(np.float32, copy=False)
    problem = nonfinite(key, cast)
    if problem:
        bad = ~np.isfinite(cast)
        row, value = int(np.argwhere(bad)[0][0]), float(stored[bad][0])
        raise fail(
            f"'{key}' holds {value:g} at row {row}, beyond float32's range (+-3.4e38) that "
            "training computes in"
        )


def check_dataset(dataset: OfflineDataset) -> OfflineDataset:
    """``dataset`` when training can use it, else a one-line UserError naming its file.

    :func:`check_arrays` on what training will see (every loader ends with it), with the
    action bound the agents are built with: the provenance's ``max_action``, else 1, as
    ``ramac.train.build_agent``.
    """
    where = dataset.provenance.extra.get("path") or f"dataset {dataset.provenance.id}"
    arrays = {key: getattr(dataset, key) for key in (*ARRAY_KEYS, "risky")}
    max_action = float(dataset.provenance.extra.get("max_action", 1.0))
    check_arrays(arrays, where, max_action)
    return dataset


class Batch(NamedTuple):
    """A minibatch of transitions as float32 tensors; what every agent's ``update`` takes."""

    obs: torch.Tensor  # [B, obs_dim]
    actions: torch.Tensor  # [B, act_dim]
    rewards: torch.Tensor  # [B, 1]
    next_obs: torch.Tensor  # [B, obs_dim]
    not_done: torch.Tensor  # [B, 1], 0 where the transition is terminal


def device_arrays(dataset: OfflineDataset, device: str | torch.device = "cpu") -> Batch:
    """Every transition of ``dataset`` as one :class:`Batch` of float32 tensors on
    ``device``: what samplers gather their batches from, copied to the device once (the
    samplers of a seed stack share one copy)."""

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)

    return Batch(
        tensor(dataset.observations),
        tensor(dataset.actions),
        tensor(dataset.rewards).reshape(-1, 1),
        tensor(dataset.next_observations),
        1.0 - tensor(dataset.terminals).reshape(-1, 1),
    )


class BatchSampler:
    """Uniform sampling with replacement from a dataset held as tensors on ``device``.

    Each sampler owns its numpy Generator, so the data order is a function of the seed
    alone (the same on every device) and can be saved and restored with the run (see
    ``state_dict``). The row indices are drawn on the host and the batch is gathered on
    the device; nothing is read back from it. ``arrays``: the dataset already on the
    device (:func:`device_arrays`), shared with other samplers.
    """

    def __init__(
        self,
        dataset: OfflineDataset,
        batch_size: int,
        seed: int,
        device: str | torch.device = "cpu",
        arrays: Batch | None = None,
    ):
        self.device = torch.device(device)
        arrays = device_arrays(dataset, self.device) if arrays is None else arrays
        self.obs, self.actions, self.rewards, self.next_obs, self.not_done = arrays
        # on the host: whether a batch bootstraps is known from its indices alone
        self.host_terminals = np.asarray(dataset.terminals, dtype=bool)
        self.all_terminal = False  # whether the last batch has no transition to bootstrap
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def sample(self) -> Batch:
        rows = self.rng.integers(0, len(self.rewards), self.batch_size)
        self.all_terminal = bool(self.host_terminals[rows].all())
        idx = torch.as_tensor(rows)
        if self.device.type == "cuda":  # an asynchronous copy: the host does not wait
            idx = idx.pin_memory().to(self.device, non_blocking=True)
        return Batch(
            self.obs[idx],
            self.actions[idx],
            self.rewards[idx],
            self.next_obs[idx],
            self.not_done[idx],
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
