"""Evaluation rollouts: many seeded episodes stepped together, one policy call per step.

Each episode runs in its own sub-environment of a Gymnasium vector env, seeded with its
episode seed (environment and hazard coins alike), so an episode's record does not depend
on how many others run beside it. Records are tidy: one row per episode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ramac.envs.hazards import HazardSpec
from ramac.envs.mujoco import make_vector_env

Policy = Callable[[np.ndarray], np.ndarray]
Visitor = Callable[[np.ndarray, np.ndarray], None]


def run_episodes(
    policy: Policy,
    task: str,
    hazard: HazardSpec | None,
    seeds: Sequence[int],
    max_episode_steps: int | None = None,
    visit: Visitor | None = None,
) -> pd.DataFrame:
    """One episode per seed, all stepped together; returns one row per episode.

    Columns: episode (index into ``seeds``), env_seed, return, length, risky_steps,
    terminated, truncated. ``policy`` maps a batch of observations [n, obs_dim] to actions.
    A finished episode's sub-environment keeps being stepped (Gymnasium resets it) until
    every episode is done, but nothing it does afterwards is recorded. ``visit(obs,
    actions)``, when given, receives the (state, action) pairs of the episodes still
    running at each step (for the OOD detector).
    """
    n = len(seeds)
    env = make_vector_env(task, hazard, n, list(seeds), max_episode_steps)
    obs, _ = env.reset(seed=[int(s) for s in seeds])
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=int)
    risky = np.zeros(n, dtype=int)
    terminated = np.zeros(n, dtype=bool)
    truncated = np.zeros(n, dtype=bool)
    active = np.ones(n, dtype=bool)
    while active.any():
        actions = np.asarray(policy(obs), dtype=np.float32)
        if visit is not None:
            visit(obs[active], actions[active])
        obs, reward, term, trunc, info = env.step(actions)
        returns[active] += reward[active]
        lengths[active] += 1
        if "risky" in info:
            risky[active] += np.asarray(info["risky"], dtype=bool)[active]
        ended = active & (term | trunc)
        terminated |= ended & term
        truncated |= ended & trunc & ~term
        active &= ~ended
    env.close()
    return pd.DataFrame(
        {
            "episode": np.arange(n),
            "env_seed": np.asarray(seeds, dtype=int),
            "return": returns,
            "length": lengths,
            "risky_steps": risky,
            "terminated": terminated,
            "truncated": truncated,
        }
    )
