"""Evaluation environments: Gymnasium v5 MuJoCo tasks, optionally with a hazard.

D4RL's own envs need mujoco-py; Gymnasium v5 on the official ``mujoco`` bindings is used
instead (ref ecosystem.md §3: label results "D4RL data, Gymnasium evaluation").
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
from gymnasium.vector import SyncVectorEnv

from ramac.data.behaviour import ENV_IDS
from ramac.envs.hazards import HazardSpec, HazardWrapper
from ramac.errors import UserError

# ref: ramac-oraac-code.md §4 / paper-tables.md §1.5: RAMAC (and ORAAC) evaluate with
# 200-step HalfCheetah and 500-step Hopper/Walker2d episodes; D4RL's full episode is 1000.
PAPER_HORIZONS = {"halfcheetah": 200, "hopper": 500, "walker2d": 500}
FULL_HORIZON = 1000


def task_of(name: str) -> str:
    """The task of a task or dataset name: ``hopper-medium-expert-v2`` -> ``hopper``."""
    task = name.split("-")[0].split("_")[0].lower()
    if task not in ENV_IDS:
        raise UserError(f"unknown task '{name}' (known: {', '.join(sorted(ENV_IDS))})")
    return task


def make_env(
    task: str, hazard: HazardSpec | None, seed: int, max_episode_steps: int | None = None
) -> gym.Env:
    """A Gymnasium v5 env for ``task``, wrapped with ``hazard`` (coin seed ``seed``).

    ``max_episode_steps=None`` gives the paper's horizon (200 / 500); pass
    ``FULL_HORIZON`` for D4RL's 1000-step episodes. The env itself is seeded by the caller's
    ``reset(seed=...)``, as Gymnasium expects; ``seed`` also seeds the action space.
    """
    task = task_of(task)
    horizon = PAPER_HORIZONS[task] if max_episode_steps is None else max_episode_steps
    env = gym.make(ENV_IDS[task], max_episode_steps=horizon)
    if hazard is not None:
        env = HazardWrapper(env, hazard, seed)
    env.action_space.seed(seed)
    return env


def make_vector_env(
    task: str,
    hazard: HazardSpec | None,
    n_envs: int,
    seeds: Sequence[int],
    max_episode_steps: int | None = None,
) -> SyncVectorEnv:
    """``n_envs`` copies of :func:`make_env` in a SyncVectorEnv, each with its own coin seed."""
    if len(seeds) != n_envs:
        raise UserError(f"make_vector_env: {n_envs} envs need {n_envs} seeds, got {len(seeds)}")
    fns = [
        (lambda s=s: make_env(task, hazard, s, max_episode_steps))  # bind s now
        for s in seeds
    ]
    return SyncVectorEnv(fns)
