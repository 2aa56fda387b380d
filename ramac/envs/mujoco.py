"""Evaluation environments: Gymnasium MuJoCo tasks, optionally with a hazard.

The simulator follows the data: a dataset's provenance names the env it was collected in
(D4RL files: Gymnasium v4, whose model files, reward and termination are those of the
mujoco-py classes D4RL used, ``ramac.data.d4rl``; generated and Minari data: the env their
files record, v5 for the toolkit's own). D4RL's own envs need mujoco-py; the official
``mujoco`` bindings are used instead, and results say so ("D4RL data, Gymnasium
evaluation"; README, "D4RL data: its simulator, and falls"). Without an env id the
default is v5 (``ENV_IDS``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import SyncVectorEnv

from ramac.data.behaviour import ENV_IDS
from ramac.envs.hazards import HazardSpec, HazardWrapper
from ramac.errors import UserError

# RAMAC's main.py (and O-RAAC) evaluate with 200-step HalfCheetah and 500-step Hopper /
# Walker2d episodes; D4RL's full episode is 1000 (docs/reference-code.md, "RAMAC main.py").
PAPER_HORIZONS = {"halfcheetah": 200, "hopper": 500, "walker2d": 500}
FULL_HORIZON = 1000
ENV_VERSIONS = ("v4", "v5")  # the Gymnasium versions of the three tasks that can evaluate
# the foot geoms whose friction simulator_facts reports (v5 changed Walker2d's right foot)
FOOT_GEOMS = {"walker2d": ("foot_geom", "foot_left_geom"), "hopper": ("foot_geom",)}


def task_of(name: str) -> str:
    """The task of a task or dataset name: ``hopper-medium-expert-v2`` -> ``hopper``."""
    task = name.split("-")[0].split("_")[0].lower()
    if task not in ENV_IDS:
        raise UserError(f"unknown task '{name}' (known: {', '.join(sorted(ENV_IDS))})")
    return task


def env_id_for(task: str, version: str) -> str:
    """The Gymnasium id of ``task`` at ``version``: ``("walker2d", "v4")`` -> ``Walker2d-v4``."""
    if version not in ENV_VERSIONS:
        raise UserError(f"unknown env version '{version}' (known: {', '.join(ENV_VERSIONS)})")
    return re.sub(r"-v\d+$", f"-{version}", ENV_IDS[task_of(task)])


def check_env_id(task: str, env_id: str) -> str:
    """``env_id`` when it is a Gymnasium version of ``task`` that can evaluate it."""
    task = task_of(task)
    known = [env_id_for(task, v) for v in ENV_VERSIONS]
    if env_id not in known:
        raise UserError(f"env '{env_id}' cannot evaluate {task} (known: {', '.join(known)})")
    return env_id


def make_env(
    task: str,
    hazard: HazardSpec | None,
    seed: int,
    max_episode_steps: int | None = None,
    env_id: str | None = None,
) -> gym.Env:
    """A Gymnasium env for ``task``, wrapped with ``hazard`` (coin seed ``seed``).

    ``env_id`` picks the simulator (``Walker2d-v4``; default: the task's v5 env, ``ENV_IDS``).
    ``max_episode_steps=None`` gives the paper's horizon (200 / 500); pass
    ``FULL_HORIZON`` for D4RL's 1000-step episodes. The env itself is seeded by the caller's
    ``reset(seed=...)``, as Gymnasium expects; ``seed`` also seeds the action space.
    """
    task = task_of(task)
    env_id = ENV_IDS[task] if env_id is None else check_env_id(task, env_id)
    horizon = PAPER_HORIZONS[task] if max_episode_steps is None else max_episode_steps
    env = _make(env_id, horizon)
    if hazard is not None:
        env = HazardWrapper(env, hazard, seed)
    env.action_space.seed(seed)
    return env


def _make(env_id: str, horizon: int) -> gym.Env:
    """``gym.make`` without the "v4 is out of date" warning (v4 is chosen on purpose here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*is out of date.*", category=DeprecationWarning
        )
        return gym.make(env_id, max_episode_steps=horizon)


def make_vector_env(
    task: str,
    hazard: HazardSpec | None,
    n_envs: int,
    seeds: Sequence[int],
    max_episode_steps: int | None = None,
    env_id: str | None = None,
) -> SyncVectorEnv:
    """``n_envs`` copies of :func:`make_env` in a SyncVectorEnv, each with its own coin seed."""
    if len(seeds) != n_envs:
        raise UserError(f"make_vector_env: {n_envs} envs need {n_envs} seeds, got {len(seeds)}")
    fns = [
        (lambda s=s: make_env(task, hazard, s, max_episode_steps, env_id))  # bind s now
        for s in seeds
    ]
    return SyncVectorEnv(fns)


def simulator_facts(env_id: str) -> dict[str, Any]:
    """What distinguishes the simulators, read from the compiled model and one step.

    ``foot_friction``: the sliding friction of each foot geom in the compiled MuJoCo model;
    ``fall_terminates`` / ``healthy_reward_on_fall``: whether a step that ends with the torso
    pitched past the healthy range terminates, and whether its reward still holds the healthy
    bonus (gym's v2-v4 classes pay it, v5 withholds it), measured by setting that state.
    """
    task = task_of(env_id)
    env = _make(env_id, 10)
    inner = env.unwrapped
    model = inner.model
    facts: dict[str, Any] = {"env_id": env_id, "timestep": float(model.opt.timestep)}
    facts["foot_friction"] = {
        name: float(
            model.geom_friction[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)][0]
        )
        for name in FOOT_GEOMS.get(task, ())
    }
    if task in FOOT_GEOMS:
        env.reset(seed=0)
        qpos, qvel = inner.init_qpos.copy(), np.zeros(model.nv)
        qpos[2] = 1.5  # torso pitch far outside the healthy range of both tasks
        inner.set_state(qpos, qvel)
        action = np.zeros(env.action_space.shape, np.float32)
        x_before = float(inner.data.qpos[0])
        _, reward, terminated, _, _ = env.step(action)
        forward = (float(inner.data.qpos[0]) - x_before) / inner.dt
        facts["fall_terminates"] = bool(terminated)
        facts["healthy_reward_on_fall"] = round(float(reward) - forward, 6)
    env.close()
    return facts
