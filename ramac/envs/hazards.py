"""Stochastic hazards ("Stochastic-D4RL"): one definition, applied to datasets and to envs.

A hazard watches one signal of the post-step state (the root x-velocity, or the torso
pitch). When the signal is in the hazard region the step is *risky*; a risky step is
*penalised* with probability ``p`` (one uniform coin per step, drawn from a seeded numpy
Generator, never global random state). The same decision function serves two callers:

- :func:`relabel` rewrites a dataset's rewards, vectorised over the post-step states
  (``next_observations``, and on episode-end rows the state the file stored for them: the
  RAMAC code re-simulates every step and so sees the fallen pose of a terminal row; d4rl's
  ``next_observations`` there is the next episode's reset pose; no re-simulation is needed);
- :class:`HazardWrapper` applies it to a Gymnasium env step by step.

Both draw exactly one uniform per transition, in order, from ``np.random.default_rng(seed)``,
so with the same seed they agree step by step on the same trajectory.

Spec sets are versioned YAML files in ``configs/hazards/`` (``ramac-v2``: the RAMAC code's
settings; ``oraac-v0``: the ORAAC code's; ``ramac-v2-generated``: thresholds for the
toolkit's generated datasets). The two codes' settings and semantics, with their files:
docs/reference-code.md, "Hazards".
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from ramac.config import CONFIG_DIR, read_yaml
from ramac.data.dataset import OfflineDataset
from ramac.errors import UserError, brief

HAZARD_DIR = CONFIG_DIR / "hazards"
SPEC_SET_KEYS = {"set", "description", "d4rl_version", "specs"}


@dataclasses.dataclass(frozen=True)
class HazardSpec:
    """Every parameter of one hazard, written out (recorded in provenance and results).

    - ``kind="velocity"``: risky when ``|v| > threshold`` (``absolute=True``, RAMAC) or
      ``v > threshold`` (``absolute=False``, ORAAC), v = ``obs[obs_index]``.
    - ``kind="pitch"``: risky when the pitch ``obs[obs_index]`` is outside ``[low, high]``.
    - ``mode="add"`` (RAMAC): a penalised step gets ``reward + cost``.
      ``mode="replace_forward"`` (ORAAC): the forward term is replaced,
      ``reward - forward_weight * v + cost`` (velocity hazards only). The forward term is
      rebuilt from the velocity signal because datasets do not store it; in Gymnasium v5
      ``forward_reward = forward_reward_weight * x_velocity`` with weight 1.0 for
      HalfCheetah, Hopper and Walker2d.
    - ``terminate_factor``: the episode ends when ``|pitch| > terminate_factor * |high|``
      (RAMAC's ``done_if_exceed``; pitch hazards only). Relabelling keeps the dataset's
      terminals, as the RAMAC dataset builder does; only the wrapper ends episodes.
    - ``info_key``: when set, the *wrapper* reads the signal from ``info[info_key]``
      (ORAAC reads ``info['x_velocity']``, a finite difference over the frame). Datasets
      have no such key, so relabelling always uses ``obs[obs_index]`` (qvel[0] after the
      step); the two differ by the velocity change within one frame.
    - ``d4rl_version``: the D4RL data version the spec was defined on (``oraac-v0``: v0,
      ``ramac-v2``: v2; a spec set's top-level ``d4rl_version``). Relabelling a D4RL file
      of another version is refused; other sources stand in for D4RL and are not checked.
    """

    name: str
    kind: Literal["velocity", "pitch"]
    obs_index: int
    probability: float
    cost: float
    threshold: float | None = None
    absolute: bool = True
    low: float | None = None
    high: float | None = None
    mode: Literal["add", "replace_forward"] = "add"
    terminate_factor: float | None = None
    forward_weight: float = 1.0
    info_key: str | None = None
    d4rl_version: str | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise UserError(f"hazard spec {self.name}: {problem}")

    def _problem(self) -> str | None:
        if self.kind not in ("velocity", "pitch"):
            return f"kind must be 'velocity' or 'pitch', got {brief(self.kind)}"
        if self.mode not in ("add", "replace_forward"):
            return f"mode must be 'add' or 'replace_forward', got {brief(self.mode)}"
        if not 0.0 <= self.probability <= 1.0:
            return f"probability must be in [0, 1], got {brief(self.probability)}"
        if self.obs_index < 0:
            return f"obs_index must be >= 0, got {brief(self.obs_index)}"
        if self.kind == "velocity" and self.threshold is None:
            return "a velocity hazard needs a threshold"
        if self.kind == "pitch":
            if self.low is None or self.high is None or self.low > self.high:
                return "a pitch hazard needs low <= high"
            if self.mode == "replace_forward":
                return "mode 'replace_forward' applies to velocity hazards only"
        if self.kind == "velocity" and self.terminate_factor is not None:
            return "terminate_factor applies to pitch hazards only"
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def hazard_outcome(
    spec: HazardSpec, signal: np.ndarray, uniforms: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hazard's effect on a batch of steps: ``(reward_delta, risky, terminate)``.

    ``signal`` is the watched quantity after each step and ``uniforms`` one coin in [0, 1)
    per step; a risky step is penalised when its coin is below ``p``, so p=0 never and p=1
    always penalises (risky is flagged either way). The only definition of a hazard:
    :func:`relabel` and :class:`HazardWrapper` both call it.
    """
    signal = np.asarray(signal, dtype=np.float64)
    risky = risk_mask(spec, signal)
    penalised = risky & (np.asarray(uniforms) < spec.probability)
    if spec.mode == "replace_forward":
        per_step = spec.cost - spec.forward_weight * signal
    else:
        per_step = np.full_like(signal, spec.cost)
    delta = np.where(penalised, per_step, 0.0)
    if spec.terminate_factor is None:
        terminate = np.zeros_like(risky)
    else:
        terminate = np.abs(signal) > spec.terminate_factor * abs(spec.high)
    return delta, risky, terminate


def risk_mask(spec: HazardSpec, signal: np.ndarray) -> np.ndarray:
    """Whether each signal value is in the hazard region (no coins involved)."""
    signal = np.asarray(signal)
    if spec.kind == "velocity":
        value = np.abs(signal) if spec.absolute else signal
        return value > spec.threshold
    return (signal < spec.low) | (signal > spec.high)


def relabel(dataset: OfflineDataset, spec: HazardSpec, seed: int) -> OfflineDataset:
    """A copy of ``dataset`` whose rewards carry the hazard, with a ``risky`` flag per step.

    Vectorised over the post-step states (:meth:`OfflineDataset.post_step_signal`: the
    ``next_observations``, and on episode-end rows the file's stored post-step state, so a
    fall is judged on the fallen pose); one uniform per transition of ``dataset`` as given,
    in order, from ``np.random.default_rng(seed)``, so replaying the same rows through
    :class:`HazardWrapper` with coin seed ``seed`` gives the same rewards. An end row whose
    post-step state the source did not store is neither risky nor penalised, and counted
    (``unlabelled_end_rows`` in the recorded hazard). The stored rewards are kept and the
    penalty applied on top (RAMAC re-simulated each step to get the reward again; no
    re-simulation is needed for the same result). Terminals are kept, as the RAMAC builder
    keeps the original ones (environment/risky_create_hdf5.py of KaiFukazawa/RAMAC @ f2c1ed6).
    """
    if dataset.provenance.hazard is not None:
        name = dataset.provenance.hazard.get("name")
        raise UserError(f"dataset {dataset.provenance.id} is already relabelled with {name}")
    if spec.obs_index >= dataset.obs_dim:
        raise UserError(
            f"hazard spec {spec.name}: obs_index {spec.obs_index} is out of range for "
            f"dataset {dataset.provenance.id} (obs_dim {dataset.obs_dim})"
        )
    check_data_version(spec, dataset)
    uniforms = np.random.default_rng(seed).random(len(dataset))
    signal, unknown = dataset.post_step_signal(spec.obs_index)
    delta, risky, _ = hazard_outcome(spec, np.where(unknown, 0.0, signal), uniforms)
    risky &= ~unknown
    delta = np.where(unknown, 0.0, delta)
    rewards = (dataset.rewards.astype(np.float64) + delta).astype(np.float32)
    end_rows = 0 if dataset.end_rows is None else len(dataset.end_rows)
    hazard = {
        **spec.to_dict(),
        "seed": seed,
        # where each step's hazard signal came from, and the steps it could not be decided on
        "post_step_state": "next_observations; the stored post-step state on episode-end rows",
        "end_rows_from_stored_state": int(end_rows - unknown.sum()),
        "unlabelled_end_rows": int(unknown.sum()),
    }
    provenance = dataclasses.replace(dataset.provenance, hazard=hazard)
    return dataset.replace(rewards=rewards, risky=risky, provenance=provenance)


def check_data_version(spec: HazardSpec, dataset: OfflineDataset) -> None:
    """One clear line when a spec defined on one D4RL version meets a D4RL file of another."""
    prov = dataset.provenance
    if spec.d4rl_version is None or prov.source != "d4rl" or prov.version == spec.d4rl_version:
        return
    want = spec.d4rl_version
    if not prov.version:
        raise UserError(
            f"hazard spec {spec.name} was defined on D4RL {want} data, but the D4RL version of "
            f"dataset {prov.id} is unknown: load it by its D4RL name (e.g. <task>-<kind>-{want})"
        )
    raise UserError(
        f"hazard spec {spec.name} was defined on D4RL {want} data, but dataset {prov.id} is "
        f"D4RL {prov.version}: load {dataset_key(prov.id)}-{want} or use a spec set defined on "
        f"{prov.version} data"
    )


class HazardWrapper(gym.Wrapper):
    """Applies a :class:`HazardSpec` to every step of ``env``; ``info['risky']`` per step.

    Coins: one uniform per step from the wrapper's own Generator, ``default_rng(seed)``,
    drawn in the same order as :func:`relabel`. ``reset()`` does not touch the coins, so
    a sequence of episodes consumes one stream (as relabelling a multi-episode dataset
    does). ``reset(seed=s)`` restarts them at ``default_rng([seed, s])``: reproducible
    from ``s`` and never the same stream as the env's own ``np_random``, which ``s`` seeds.
    """

    def __init__(self, env: gym.Env, spec: HazardSpec, seed: int):
        super().__init__(env)
        self.hazard = spec
        self.coin_seed = seed
        self.coins = np.random.default_rng(seed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.coins = np.random.default_rng([self.coin_seed, seed])
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        signal = self._signal(obs, info)
        delta, risky, terminate = hazard_outcome(
            self.hazard, np.array([signal]), np.array([self.coins.random()])
        )
        info = {
            **info,
            "risky": bool(risky[0]),
            "hazard_penalty": float(delta[0]),
            "hazard_terminated": bool(terminate[0]),
        }
        return (
            obs,
            float(reward) + float(delta[0]),
            terminated or bool(terminate[0]),
            truncated,
            info,
        )

    def _signal(self, obs: np.ndarray, info: dict[str, Any]) -> float:
        if self.hazard.info_key is not None and self.hazard.info_key in info:
            return float(info[self.hazard.info_key])
        return float(obs[self.hazard.obs_index])


# ---------------------------------------------------------------------------- spec sets


def dataset_key(dataset: str) -> str:
    """``halfcheetah-medium-expert-v2`` -> ``halfcheetah-medium-expert`` (specs ignore versions)."""
    return re.sub(r"-v\d+$", "", dataset)


def spec_set_path(spec_set: str) -> Path:
    """The YAML file of a named spec set, or ``spec_set`` itself when it is a YAML path."""
    if spec_set.endswith((".yaml", ".yml")) or "/" in spec_set:
        return Path(spec_set)
    path = HAZARD_DIR / f"{spec_set}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in HAZARD_DIR.glob("*.yaml"))
        raise UserError(f"unknown hazard spec set '{spec_set}' (known: {', '.join(known)})")
    return path


def load_spec_set(spec_set: str) -> dict[str, HazardSpec | None]:
    """All specs of a set by dataset key; ``None`` marks an entry not yet calibrated."""
    path = spec_set_path(spec_set)
    data = read_yaml(path)
    unknown = sorted(set(data) - SPEC_SET_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown top-level key(s) {', '.join(unknown)}")
    set_name = str(data.get("set") or path.stem)
    specs = data.get("specs") or {}
    if not isinstance(specs, dict):
        raise UserError(f"{path}: 'specs' must be a mapping of dataset -> spec")
    version = data.get("d4rl_version")
    if version is not None and not re.fullmatch(r"v\d+", str(version)):
        raise UserError(f"{path}: d4rl_version must look like v0 or v2, got {brief(version)}")
    return {key: _build_spec(path, set_name, key, values, version) for key, values in specs.items()}


def _build_spec(
    path: Path, set_name: str, key: str, values: Any, d4rl_version: str | None = None
) -> HazardSpec | None:
    if not isinstance(values, dict):
        raise UserError(f"{path}: spec '{key}' must be a mapping")
    if d4rl_version is not None:
        values = {"d4rl_version": str(d4rl_version), **values}
    names = {f.name for f in dataclasses.fields(HazardSpec)} - {"name"}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"{path}: spec '{key}': unknown key(s) {', '.join(unknown)}")
    if values.get("kind") == "velocity" and values.get("threshold", 0) is None:
        return None  # a placeholder waiting for calibration (see ramac-v2-generated.yaml)
    try:
        return HazardSpec(name=f"{set_name}/{key}", **values)
    except TypeError as exc:
        raise UserError(f"{path}: spec '{key}': {exc}") from None


def load_hazard(spec_set: str, dataset: str) -> HazardSpec:
    """The hazard of ``dataset`` (e.g. ``hopper-medium-expert-v2``) in a spec set or YAML path."""
    specs = load_spec_set(spec_set)
    key = dataset_key(dataset)
    if key not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise UserError(f"hazard spec set '{spec_set}' has no spec for '{key}' (has: {known})")
    spec = specs[key]
    if spec is None:
        raise UserError(
            f"hazard spec {spec_set}/{key} is not calibrated yet: run "
            f"'python -m ramac.data.generate --calibrate ...' and write its threshold into "
            f"{spec_set_path(spec_set)}"
        )
    return spec
