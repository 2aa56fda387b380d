"""Batched rollouts record exactly what one-episode-at-a-time rollouts record."""

import dataclasses

import numpy as np
import pandas as pd

from eval.rollout import run_episodes
from ramac.envs.hazards import load_hazard
from ramac.envs.mujoco import make_env


def sway(obs: np.ndarray) -> np.ndarray:
    """A deterministic policy that depends on the state (so episodes differ)."""
    return np.tanh(np.asarray(obs)[..., 2:5] * 5.0 + 0.3)


def one_at_a_time(task, hazard, seed, horizon) -> dict:
    env = make_env(task, hazard, seed, horizon)
    obs, _ = env.reset(seed=seed)
    total, length, risky, done = 0.0, 0, 0, False
    while not done:
        obs, reward, term, trunc, info = env.step(sway(obs[None])[0].astype(np.float32))
        total, length, risky = total + reward, length + 1, risky + int(info.get("risky", False))
        done = term or trunc
    return {"return": total, "length": length, "risky_steps": risky, "terminated": term}


def test_batched_episodes_equal_separate_episodes():
    # A narrow pitch band so that the hazard fires, and some episodes end early.
    hazard = dataclasses.replace(
        load_hazard("ramac-v2", "hopper-medium-replay-v2"),
        low=-0.02,
        high=0.02,
        probability=0.5,
        terminate_factor=None,
    )
    seeds = [3, 7, 11, 19]
    batched = run_episodes(sway, "hopper", hazard, seeds, max_episode_steps=150)
    expected = pd.DataFrame([one_at_a_time("hopper", hazard, s, 150) for s in seeds])
    np.testing.assert_allclose(batched["return"], expected["return"], rtol=1e-6)
    np.testing.assert_array_equal(batched["length"], expected["length"])
    np.testing.assert_array_equal(batched["risky_steps"], expected["risky_steps"])
    np.testing.assert_array_equal(batched["terminated"], expected["terminated"])
    assert (batched["terminated"] ^ batched["truncated"]).all()
    assert batched["risky_steps"].sum() > 0 and (batched["length"] <= 150).all()
    assert set(batched["env_id"]) == {"Hopper-v5"}  # the default simulator, recorded
    v4 = run_episodes(sway, "hopper", hazard, seeds[:1], max_episode_steps=150, env_id="Hopper-v4")
    assert v4["env_id"].tolist() == ["Hopper-v4"]


def test_policy_sees_only_running_episodes_and_visit_gets_every_pair():
    batch_sizes, pairs = [], []

    def policy(obs):
        batch_sizes.append(len(obs))
        return sway(obs)

    episodes = run_episodes(
        policy, "hopper", None, [3, 7, 11], max_episode_steps=60, visit=lambda o, a: pairs.append(a)
    )
    assert sum(batch_sizes) == episodes["length"].sum() == sum(len(a) for a in pairs)
    assert batch_sizes == sorted(batch_sizes, reverse=True)  # finished episodes drop out
    assert len(batch_sizes) == episodes["length"].max()
