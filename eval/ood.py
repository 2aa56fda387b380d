"""The 1-nearest-neighbour detectors of out-of-distribution actions.

RAMAC reports the fraction of evaluation actions that are "OOD" under a nearest-neighbour
detector with kappa = 3, but does not publish its feature space, scaling or threshold rule
(arXiv 2510.02695; docs/fidelity.md, "The OOD detector"). The choices made here, all
recorded by ``state()``:

- two feature spaces (``FEATURE_SPACES``): ``joint`` (``OODDetector``: 2-D bandit actions,
  or whole (state, action) rows, standardised with the dataset's per-feature mean and std,
  std floored at ``std_floor``) and ``state_conditioned`` (``StateConditionedDetector``: an
  action's distance to the actions of the dataset's k nearest states, in the data's action
  scale), the calibrated one for MuJoCo data (see that class for why). Stochastic-D4RL
  records carry both rates (``eval.suite_run.OODDetectors``): the joint one as the paper's
  1-NN detector, the state-conditioned one as ours;
- the reference scale is the dataset's mean leave-one-out distance, measured the same way;
- a query is OOD when its distance exceeds ``kappa`` times that scale.

This module decides what is out of distribution; ``eval.knn`` finds the distances, exactly
(brute force over chunked matrix products, or a search that skips clusters of rows by a
triangle-inequality bound, chosen by ``backend``; see ``nearest_neighbour_distance`` for the
precise guarantee), so the rates do not depend on an approximate index.
``nearest_neighbour_distance`` and the engine settings are re-exported here for callers that
import them from ``eval.ood``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch

from eval.knn import (
    BACKENDS,
    DEFAULT_CHUNK_BYTES,
    Backend,
    BruteForceEngine,
    ClusterEngine,
    Precision,
    as_matrix,
    check_self_index,
    make_engine,
    nearest_neighbour_distance,
)
from ramac.errors import UserError

__all__ = [
    "ACTION_SCALES",
    "BACKENDS",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_NEIGHBOURS",
    "FEATURE_SPACES",
    "ActionScale",
    "Backend",
    "OODDetector",
    "Precision",
    "StateConditionedDetector",
    "fit_detector",
    "nearest_neighbour_distance",
]


class _KappaRule:
    """The threshold rule shared by the detectors: a query is OOD when its ``distances``
    value exceeds kappa x ``ref_distance``. Subclasses define both, and ``state()``."""

    name = ""  # the feature space, as configs and records name it

    def distances(self, queries: np.ndarray | torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict:
        raise NotImplementedError

    @property
    def ref_distance(self) -> float:
        """The reference scale: the mean leave-one-out distance of the dataset's points."""
        return self.state()["ref_distance"]

    def is_ood(self, queries: np.ndarray | torch.Tensor, kappa: float = 3.0) -> np.ndarray:
        """Boolean [m]: distance > kappa * reference scale."""
        return self.distances(queries) > _check_kappa(kappa) * self.ref_distance

    def ood_rate(self, queries: np.ndarray | torch.Tensor, kappa: float = 3.0) -> float:
        """Fraction of queries flagged OOD at ``kappa`` (NaN for no queries)."""
        flags = self.is_ood(queries, kappa)
        return float(flags.mean()) if flags.size else math.nan

    def sweep(
        self, queries: np.ndarray | torch.Tensor, kappas: Iterable[float] = (1, 3, 5, 10)
    ) -> dict[float, float]:
        """OOD rate at each kappa, from one distance computation."""
        distances = self.distances(queries)
        ref = self.ref_distance
        return {
            float(k): float((distances > _check_kappa(k) * ref).mean())
            if distances.size
            else math.nan
            for k in kappas
        }

    def rate_columns(
        self,
        queries: np.ndarray | torch.Tensor,
        kappa: float = 3.0,
        kappa_sweep: Iterable[float] = (1, 3, 5, 10),
        column: str = "ood_rate",
    ) -> dict[str, float]:
        """Record columns from one search: ``<column>`` at ``kappa`` and ``<column>_k<k>``
        for each k of the sweep (a column name per detector, when a record holds two)."""
        kappa_sweep = [float(k) for k in kappa_sweep]
        rates = self.sweep(queries, [float(kappa), *kappa_sweep])
        return {column: rates[float(kappa)]} | {f"{column}_k{k:g}": rates[k] for k in kappa_sweep}


class OODDetector(_KappaRule):
    """Flags queries whose standardised 1-NN distance to a dataset exceeds kappa x its scale.

    The ``joint`` feature space: on MuJoCo data the features are whole (state, action) rows,
    on the bandit the actions alone (one dummy state). With many state features the state
    part dominates the distance (see ``StateConditionedDetector``).

    ``fit`` standardises the features by the dataset's mean and std (std floored at
    ``std_floor``) and sets the reference scale to the mean leave-one-out 1-NN distance of the
    dataset's points. Each point's distance is exact (against all other n - 1 points); when
    n > ``loo_sample`` the mean is taken over a seeded random subsample of ``loo_sample``
    points (drawn without replacement), which estimates the full mean without bias. The std
    is the population std (ddof=0). ``chunk_bytes``, ``backend``, ``precision`` and
    ``device`` configure the search as in ``nearest_neighbour_distance``.
    """

    name = "joint"

    def __init__(
        self,
        *,
        std_floor: float = 1e-6,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        backend: Backend = "by-size",
        precision: Precision = "mixed",
        device: str | torch.device = "cpu",
    ) -> None:
        if not std_floor > 0:
            raise ValueError(f"std_floor must be > 0, got {std_floor}")
        self.std_floor = float(std_floor)
        self._engine_args = (backend, int(chunk_bytes), precision, device)
        self._engine: BruteForceEngine | ClusterEngine | None = None
        self._state: dict | None = None

    def fit(
        self, data: np.ndarray | torch.Tensor, *, loo_sample: int | None = 20000, seed: int = 0
    ) -> OODDetector:
        """Standardise by ``data`` [n, d] and set the reference scale; returns self."""
        x = as_matrix(data, "data")
        n = x.shape[0]
        if n < 2:
            raise UserError(f"OOD detector: needs at least 2 data points, got {n}")
        _check_loo_sample(loo_sample)
        mean = x.mean(axis=0)
        std = np.maximum(x.std(axis=0), self.std_floor)
        standardised = (x - mean) / std
        self._engine = make_engine(standardised, *self._engine_args)
        points = _loo_points(n, loo_sample, seed)
        excluded = check_self_index(points, n, points.size)
        loo = self._engine.search(standardised[points], excluded)[0]
        ref = _reference_scale(loo)
        self._state = {
            "features": self.name,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "std_floor": self.std_floor,
            "ref_distance": ref,
            "n": n,
            "dim": x.shape[1],
            "loo_sample": loo_sample,
            "loo_points": int(points.size),
            "seed": seed,
            "backend": self._engine_args[0],
            "precision": self._engine_args[2],
        }
        return self

    @property
    def ref_distance(self) -> float:
        """The reference scale: mean leave-one-out 1-NN distance in standardised units."""
        return self.state()["ref_distance"]

    def distances(self, queries: np.ndarray | torch.Tensor) -> np.ndarray:
        """Exact 1-NN distance of each query [m, d] to the dataset, in standardised units."""
        state = self.state()
        q = as_matrix(queries, "queries")
        if q.shape[1] != state["dim"]:
            raise ValueError(f"queries have {q.shape[1]} features, the detector {state['dim']}")
        if q.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        standardised = (q - np.asarray(state["mean"])) / np.asarray(state["std"])
        return self._engine.search(standardised)[0]

    def state(self) -> dict:
        """The fitted numbers for records: mean, std, ref_distance, n, dim, loo_sample, ..."""
        if self._state is None:
            raise RuntimeError("OODDetector: call fit(data) first")
        return dict(self._state)


ActionScale = Literal["std", "raw"]
ACTION_SCALES = ("std", "raw")
# k of the state-conditioned detector: chosen with benchmarks/bench_ood_calibration.py
# (--neighbours 5 10 20 50 100) by the rule stated in StateConditionedDetector.
DEFAULT_NEIGHBOURS = 50


class StateConditionedDetector(_KappaRule):
    """Flags an action that is far from every action the dataset took in similar states.

    Why: in the joint (state, action) space of HalfCheetah the 17 standardised state
    features outweigh the 6 action ones, so the joint detector flagged 0.55% of uniformly
    random actions at dataset states (issue 11). Here the state only chooses which data to
    compare against, and the distance is measured between actions alone.

    For a query (s, a): the dataset's ``neighbours`` (k) nearest states to s, in states
    standardised by the dataset's mean and std; the query's distance is the Euclidean
    distance from a to the nearest of those k states' actions. The reference scale is the
    same quantity for the dataset's own points left out one at a time (point i: the
    distance from its action to the actions of its k nearest *other* states), averaged over
    ``loo_sample`` seeded points as in ``OODDetector``; a query is OOD when its distance
    exceeds kappa times that mean, so kappa means what it means for the joint detector.
    The state's own novelty is not measured: a query far from every dataset state is
    judged against the actions of the nearest ones.

    Action scale (``action_scale``): ``"std"`` (default) divides each action coordinate by
    the dataset's action std (floored at ``std_floor``), as the joint detector does, so
    the two detectors weigh action coordinates alike and no environment's action units
    enter; ``"raw"`` keeps the env's units ([-1, 1] on MuJoCo). On the six generated
    datasets the two give rates within about 1 point of each other (their per-coordinate
    action stds differ by at most ~1.4x; ``bench_ood_calibration.py --action-scale raw``).

    k (``neighbours``): k = 1 compares with one sampled action of the nearest state, too
    few for a stochastic behaviour policy (the left-out distance is then large, and the
    threshold loose); a larger k sees more of the action distribution near s but a less
    local one. Rule used for the default: among k in {10, 20, 50, 100} that flag at most 2%
    of held-out dataset pairs on each of the six generated datasets, those within 1 point of
    the highest mean rate on random actions at dataset states; the smallest of them (the
    most local). Measured with 6,000 held-out rows (at 2,000 the 2% test is within sampling
    error, ~0.3 points): mean random rate 34.6 / 37.4 / 40.0 / 40.3% for k = 10 / 20 / 50 /
    100, worst held-out rate 1.9% at k = 50, so k = 50 (``benchmarks/bench_ood_calibration.py
    --detectors state_conditioned --neighbours 10 20 50 100 --held-out 6000 --no-episodes``).
    No k reaches 90% on random actions anywhere: see that benchmark for why.

    The paper gives no detector details beyond "1-NN, kappa = 3" (arXiv 2510.02695); this
    feature space is the toolkit's choice.

    Queries are (state, action) rows, as for the joint detector (``rate_columns(pairs)``
    takes the same pairs). Searches are exact k-NN over the standardised states with the
    brute-force engine (``eval.knn.BruteForceEngine.k_nearest``), in float64 by default so
    that the k states found are the exact k nearest (float32 swapped ~0.07% of k-th neighbours on
    generated Walker2d): about 2.5 s per 2,000 queries against 200,000 states on one core,
    whether or not the queries lie on the data (a k-d tree took 1.6-3.6 s on data-like
    queries, 4-11 s on states one std off the data).
    """

    name = "state_conditioned"

    def __init__(
        self,
        *,
        neighbours: int = DEFAULT_NEIGHBOURS,
        action_scale: ActionScale = "std",
        std_floor: float = 1e-6,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        precision: Precision = "float64",
        device: str | torch.device = "cpu",
    ) -> None:
        if int(neighbours) != neighbours or neighbours < 1:
            raise ValueError(f"neighbours must be a positive integer, got {neighbours}")
        if action_scale not in ACTION_SCALES:
            raise ValueError(f"action_scale must be one of {ACTION_SCALES}, got '{action_scale}'")
        if not std_floor > 0:
            raise ValueError(f"std_floor must be > 0, got {std_floor}")
        self.neighbours = int(neighbours)
        self.action_scale = action_scale
        self.std_floor = float(std_floor)
        self._engine_kwargs = {"chunk_bytes": int(chunk_bytes), "precision": precision}
        self._engine_kwargs["device"] = device
        self._engine: BruteForceEngine | None = None
        self._actions: np.ndarray | None = None  # [n, action_dim], divided by the scale
        self._state: dict | None = None

    def fit(
        self,
        states: np.ndarray | torch.Tensor,
        actions: np.ndarray | torch.Tensor,
        *,
        loo_sample: int | None = 20000,
        seed: int = 0,
    ) -> StateConditionedDetector:
        """Index ``states`` [n, ds] with their ``actions`` [n, da] and set the reference
        scale; returns self. Needs more than ``neighbours`` rows."""
        states = as_matrix(states, "states")
        actions = as_matrix(actions, "actions")
        n, k = states.shape[0], self.neighbours
        if actions.shape[0] != n:
            raise ValueError(f"states have {n} rows, actions {actions.shape[0]}")
        if n <= k:
            raise UserError(
                f"state-conditioned OOD detector: needs more than k = {k} data points, got {n}"
            )
        _check_loo_sample(loo_sample)
        state_mean = states.mean(axis=0)
        state_std = np.maximum(states.std(axis=0), self.std_floor)
        if self.action_scale == "std":
            action_divisor = np.maximum(actions.std(axis=0), self.std_floor)
        else:
            action_divisor = np.ones(actions.shape[1])
        standardised = (states - state_mean) / state_std
        self._engine = BruteForceEngine(standardised, **self._engine_kwargs)
        self._actions = actions / action_divisor
        points = _loo_points(n, loo_sample, seed)
        excluded = check_self_index(points, n, points.size)
        near_states = self._engine.k_nearest(standardised[points], k, excluded)[1]
        loo = self._nearest_action_distance(self._actions[points], near_states)
        ref = _reference_scale(loo)
        self._state = {
            "features": self.name,
            "neighbours": k,
            "action_scale": self.action_scale,
            "state_mean": state_mean.tolist(),
            "state_std": state_std.tolist(),
            "action_divisor": action_divisor.tolist(),
            "std_floor": self.std_floor,
            "ref_distance": ref,
            "n": n,
            "state_dim": states.shape[1],
            "action_dim": actions.shape[1],
            "loo_sample": loo_sample,
            "loo_points": int(points.size),
            "seed": seed,
            "precision": self._engine_kwargs["precision"],
        }
        return self

    @property
    def ref_distance(self) -> float:
        """The reference scale: the mean leave-one-out action distance (action units of
        ``action_scale``)."""
        return self.state()["ref_distance"]

    def distances(self, queries: np.ndarray | torch.Tensor) -> np.ndarray:
        """Distance of each query's action to the nearest action of the dataset's k
        nearest states to its state; queries are rows [state, action] (ds + da columns)."""
        state = self.state()
        q = as_matrix(queries, "queries")
        state_dim, action_dim = state["state_dim"], state["action_dim"]
        if q.shape[1] != state_dim + action_dim:
            raise ValueError(
                f"queries have {q.shape[1]} columns, the detector takes {state_dim} state + "
                f"{action_dim} action columns"
            )
        if q.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        query_states, query_actions = q[:, :state_dim], q[:, state_dim:]
        standardised = (query_states - np.asarray(state["state_mean"])) / np.asarray(
            state["state_std"]
        )
        near_states = self._engine.k_nearest(standardised, self.neighbours)[1]
        scaled_actions = query_actions / np.asarray(state["action_divisor"])
        return self._nearest_action_distance(scaled_actions, near_states)

    def _nearest_action_distance(self, actions: np.ndarray, near_states: np.ndarray) -> np.ndarray:
        """Per row i: min over j of ||actions[i] - dataset action near_states[i, j]||
        (scaled actions), by row blocks of ~32 MB of differences."""
        distances = np.empty(actions.shape[0], dtype=np.float64)
        rows_per_block = max(1, 2**22 // (near_states.shape[1] * actions.shape[1]))
        for i in range(0, actions.shape[0], rows_per_block):
            block = slice(i, i + rows_per_block)
            diff = actions[block, None, :] - self._actions[near_states[block]]
            distances[block] = np.sqrt(np.square(diff).sum(axis=2)).min(axis=1)
        return distances

    def state(self) -> dict:
        """The fitted numbers for records: neighbours, scales, ref_distance, n, ..."""
        if self._state is None:
            raise RuntimeError("StateConditionedDetector: call fit(states, actions) first")
        return dict(self._state)


FEATURE_SPACES = ("joint", "state_conditioned")


def fit_detector(
    features: str,
    states: np.ndarray | torch.Tensor,
    actions: np.ndarray | torch.Tensor,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    action_scale: ActionScale = "std",
    loo_sample: int | None = 20000,
    seed: int = 0,
) -> OODDetector | StateConditionedDetector:
    """The fitted detector of a feature space (``FEATURE_SPACES``) for a dataset's
    (state, action) pairs; its queries are rows [state, action] either way. ``neighbours``
    and ``action_scale`` configure the state-conditioned detector (the joint one ignores
    them)."""
    if features == "joint":
        return OODDetector().fit(np.hstack([states, actions]), loo_sample=loo_sample, seed=seed)
    if features == "state_conditioned":
        detector = StateConditionedDetector(neighbours=neighbours, action_scale=action_scale)
        return detector.fit(states, actions, loo_sample=loo_sample, seed=seed)
    raise UserError(f"OOD features must be one of {list(FEATURE_SPACES)}, got '{features}'")


def _loo_points(n: int, loo_sample: int | None, seed: int) -> np.ndarray:
    """All indices when n <= loo_sample (or None), else a seeded subsample, sorted."""
    if loo_sample is None or n <= loo_sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=loo_sample, replace=False))


def _check_loo_sample(loo_sample: int | None) -> None:
    """Reject a ``loo_sample`` below 1 before any search (None means every point)."""
    if loo_sample is not None and loo_sample < 1:
        raise ValueError(f"loo_sample must be >= 1 or None, got {loo_sample}")


def _reference_scale(loo: np.ndarray) -> float:
    """Mean of the leave-one-out distances; an error when it is 0 (no scale to set kappa
    against)."""
    ref = float(loo.mean())
    if not ref > 0:
        raise UserError(
            "OOD detector: the mean leave-one-out distance is 0 (every sampled point has an "
            "exact duplicate), so there is no scale to set kappa against"
        )
    return ref


def _check_kappa(kappa: float) -> float:
    """``kappa`` as a float; 0, negative or infinite would flag everything or nothing."""
    kappa = float(kappa)
    if not (kappa > 0 and math.isfinite(kappa)):
        raise ValueError(f"kappa must be a positive finite number, got {kappa}")
    return kappa
