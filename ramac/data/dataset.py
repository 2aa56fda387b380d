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


def check_dataset(dataset: OfflineDataset) -> OfflineDataset:
    """``dataset`` when training can use it, else a one-line UserError naming its file.

    The checks every loader applies before training (``ramac.data.d4rl.load_d4rl``), and
    that a command can apply before any work starts: at least one transition; observations
    and actions 2-D, next observations the shape of the observations, rewards, terminals
    and timeouts one value per row (terminals and timeouts 0 or 1); observations, actions,
    rewards and next observations finite; actions within +-max_action (the
    ``max_action`` the agents are built with: the provenance's, else 1, as
    ``ramac.train.build_agent``).
    """
    where = dataset.provenance.extra.get("path") or f"dataset {dataset.provenance.id}"

    def fail(problem: str) -> UserError:
        return UserError(f"{where}: {problem}")

    if len(dataset) == 0:
        raise fail("the dataset has no transitions")
    for key in ("observations", "actions"):
        if np.ndim(getattr(dataset, key)) != 2:
            raise fail(f"'{key}' must be 2-D, got shape {np.shape(getattr(dataset, key))}")
    if np.shape(dataset.next_observations) != np.shape(dataset.observations):
        raise fail(
            f"'next_observations' has shape {np.shape(dataset.next_observations)}, "
            f"'observations' {np.shape(dataset.observations)}"
        )
    for key in ("rewards", "terminals", "timeouts"):
        if np.ndim(getattr(dataset, key)) != 1:
            raise fail(
                f"'{key}' must hold one value per row, got shape {np.shape(getattr(dataset, key))}"
            )
    for key in ("terminals", "timeouts"):
        if not np.isin(getattr(dataset, key), (0, 1)).all():
            raise fail(f"'{key}' must be 0 or 1 (false or true)")
    for key in ("observations", "actions", "rewards", "next_observations"):
        problem = nonfinite(key, np.asarray(getattr(dataset, key)))
        if problem:
            raise fail(problem)
    max_action = float(dataset.provenance.extra.get("max_action", 1.0))
    largest = float(np.abs(dataset.actions).max())
    if largest > max_action * (1.0 + ACTION_BOUND_SLACK):
        raise fail(
            f"'actions' reach {largest:g}, outside the action bounds +-{max_action:g} "
            "(the agents act in [-max_action, max_action])"
        )
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
        self.host_not_done = 1.0 - np.asarray(dataset.terminals, dtype=np.float32)
        self.all_terminal = False  # whether the last batch has no transition to bootstrap
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def sample(self) -> Batch:
        rows = self.rng.integers(0, len(self.rewards), self.batch_size)
        self.all_terminal = not self.host_not_done[rows].any()
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
