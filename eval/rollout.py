"""Evaluation rollouts: many seeded episodes stepped together, one policy call per step.

Each episode runs in its own environment, seeded with its episode seed (environment and
hazard coins alike), so an episode's record does not depend on how many others run beside
it. At every step the policy gets one batch: the observations of the episodes still
running; finished episodes are neither stepped nor queried again (with Hopper and Walker2d
many end early). The environments are stepped in a plain loop rather than a Gymnasium
vector env, whose auto-reset and info merging cost more than the MuJoCo step itself here.
Records are tidy: one row per episode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ramac.envs.hazards import HazardSpec
from ramac.envs.mujoco import make_env

Policy = Callable[[np.ndarray], np.ndarray]
Visitor = Callable[[np.ndarray, np.ndarray], None]


def run_episodes(
    policy: Policy,
    task: str,
    hazard: HazardSpec | None,
    seeds: Sequence[int],
    max_episode_steps: int | None = None,
    visit: Visitor | None = None,
    env_id: str | None = None,
) -> pd.DataFrame:
    """One episode per seed, all stepped together; returns one row per episode.

    ``env_id`` is the simulator (``Walker2d-v4``; default: the task's v5 env, see
    ``ramac.envs.mujoco``); it is recorded in the ``env_id`` column.

    Columns: episode (index into ``seeds``), env_seed, env_id, return, length, risky_steps,
    terminated, truncated. ``policy`` maps a batch of observations [k, obs_dim] to actions
    (k = the episodes still running). ``visit(obs, actions)``, when given, receives the
    (state, action) pairs of those episodes at each step (for the OOD detector).
    """
    n = len(seeds)
    envs = [make_env(task, hazard, int(s), max_episode_steps, env_id) for s in seeds]
    obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds, strict=True)])
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=int)
    risky = np.zeros(n, dtype=int)
    terminated = np.zeros(n, dtype=bool)
    truncated = np.zeros(n, dtype=bool)
    running = np.arange(n)
    while running.size:
        actions = np.asarray(policy(obs[running]), dtype=np.float32)
        if visit is not None:
            visit(obs[running], actions)
        for i, action in zip(running, actions, strict=True):
            obs[i], reward, terminated[i], trunc, info = envs[i].step(action)
            returns[i] += reward
            lengths[i] += 1
            risky[i] += bool(info.get("risky", False))
            truncated[i] = trunc and not terminated[i]
        running = running[~(terminated[running] | truncated[running])]
    for env in envs:
        env.close()
    return pd.DataFrame(
        {
            "episode": np.arange(n),
            "env_seed": np.asarray(seeds, dtype=int),
            "env_id": envs[0].spec.id if envs else env_id,
            "return": returns,
            "length": lengths,
            "risky_steps": risky,
            "terminated": terminated,
            "truncated": truncated,
        }
    )
