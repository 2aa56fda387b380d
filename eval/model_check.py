"""A model-based agent's dynamics model against the simulator, from the same states.

Training rollouts start at dataset states and run the stochastic training policy; evaluation
episodes start at resets and run the deterministic one. Their hazard rates differ for both
reasons, so neither answers whether the *model* enters hazard states as often as the real
environment. This check does: from the same ``n`` dataset states, the evaluated policy takes
``k`` steps in the model and ``k`` steps in the simulator (set to each state), and the two
hazard rates and mean rewards are compared. A simulator state is rebuilt from an
observation: (qpos without the x position, qvel) is what HalfCheetah, Hopper and Walker2d
observe, with x set to 0 (no reward or hazard depends on it); Hopper and Walker2d clip the
observed qvel to +-10, so a state with a larger speed is rebuilt at the clip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ramac.data.dataset import OfflineDataset
from ramac.envs.hazards import HazardSpec
from ramac.envs.mujoco import make_env
from ramac.models.hazard_view import hazard_share

CHECK_STATES = 200  # dataset states each side starts from
CHECK_SEED = 2_000_000  # start states, model draws and hazard coins: seeded from BASE + seed


def sim_state(env: Any, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(qpos, qvel) of the observation ``obs`` (x position 0)."""
    nq = env.unwrapped.model.nq
    qpos = np.concatenate([[0.0], obs[: nq - 1]])
    return qpos.astype(np.float64), np.asarray(obs[nq - 1 :], dtype=np.float64)


def start_states(dataset: OfflineDataset, n: int, seed: int) -> np.ndarray:
    """n distinct dataset states (all of them when there are fewer)."""
    rng = np.random.default_rng(CHECK_SEED + seed)
    rows = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    return np.asarray(dataset.observations[np.sort(rows)], dtype=np.float32)


@torch.no_grad()
def model_side(policy, model, starts: np.ndarray, hazard: HazardSpec, k: int, seed: int):
    """Hazard rate and mean reward of k policy steps in ``model`` from ``starts`` (a
    rollout stops at a predicted terminal, as training's do); rewards sampled, as rollouts."""
    generator = torch.Generator().manual_seed(CHECK_SEED + seed)
    obs = torch.as_tensor(starts)
    steps, risky, reward = 0, 0.0, 0.0
    for _ in range(k):
        actions = torch.as_tensor(policy(obs.numpy()), dtype=torch.float32)
        next_obs, rewards, done = model.step(obs, actions, generator, sample_reward=True)
        steps += len(obs)
        risky += hazard_share(hazard, next_obs) * len(obs)
        reward += float(rewards.sum())
        obs = next_obs[~done]
        if not len(obs):
            break
    return steps, risky / steps, reward / steps


def env_side(policy, task: str, hazard: HazardSpec, starts: np.ndarray, k: int, seed: int,
             env_id: str | None):  # fmt: skip
    """Hazard rate and mean reward (penalties included) of k policy steps in the simulator
    from each of ``starts`` (one env, reset and set to each state; its hazard coins run on)."""
    env = make_env(task, hazard, CHECK_SEED + seed, None, env_id)
    steps = risky = 0
    reward = 0.0
    try:
        for i, start in enumerate(starts):
            env.reset(seed=CHECK_SEED + seed + i)
            env.unwrapped.set_state(*sim_state(env, start))
            obs = env.unwrapped._get_obs()
            for _ in range(k):
                action = np.asarray(policy(obs[None]), dtype=np.float32)[0]
                obs, r, terminated, truncated, info = env.step(action)
                steps, risky, reward = steps + 1, risky + bool(info.get("risky")), reward + r
                if terminated or truncated:
                    break
    finally:
        env.close()
    return steps, risky / steps, reward / steps


def model_check(
    agent: Any,
    dataset: OfflineDataset,
    task: str,
    hazard: HazardSpec,
    seed: int,
    env_id: str | None = None,
    n_states: int = CHECK_STATES,
) -> dict[str, Any]:
    """The columns a model-based run's metrics row gets (``agent`` has ``dynamics_for``:
    RAVL): model and simulator from the same ``n_states`` dataset states, ``steps_k`` steps
    of the evaluated (deterministic) policy each."""
    model = agent.dynamics_for(dataset).to("cpu")
    generator = agent.generator(CHECK_SEED + seed)

    def policy(obs: np.ndarray) -> np.ndarray:
        return agent.act(obs, generator).cpu().numpy()

    starts, k = start_states(dataset, n_states, seed), agent.config.steps_k
    m_steps, m_risky, m_reward = model_side(policy, model, starts, hazard, k, seed)
    e_steps, e_risky, e_reward = env_side(policy, task, hazard, starts, k, seed, env_id)
    return {
        "check_states": len(starts),
        "check_steps_k": k,
        "check_model_steps": m_steps,
        "check_env_steps": e_steps,
        "check_model_hazard_rate": m_risky,
        "check_env_hazard_rate": e_risky,
        "check_model_reward": m_reward,
        "check_env_reward": e_reward,
    }
