"""The model-against-simulator check: a simulator state rebuilt from its observation, and a
'model' that is the simulator itself giving exactly the simulator's hazard rate."""

import numpy as np
import pytest
import torch

from eval.model_check import env_side, model_side, sim_state
from ramac.envs.hazards import HazardSpec
from ramac.envs.mujoco import make_env

# risky when the forward speed |obs[8]| > 0.3, which random actions reach now and then
HAZARD = HazardSpec(
    name="t/v", kind="velocity", obs_index=8, probability=0.5, cost=-60.0, threshold=0.3
)


def visited(task: str, n: int, seed: int = 0) -> np.ndarray:
    """Observations of n random-action steps (a running, tumbling body)."""
    env = make_env(task, None, seed)
    obs, out = env.reset(seed=seed)[0], []
    for _ in range(n):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        out.append(obs)
        if terminated or truncated:
            obs = env.reset()[0]
    env.close()
    return np.stack(out).astype(np.float32)


@pytest.mark.parametrize("task", ["halfcheetah", "hopper", "walker2d"])
def test_a_state_rebuilt_from_its_observation_is_observed_the_same(task):
    env = make_env(task, None, 0)
    env.reset(seed=0)
    for obs in visited(task, 20):
        env.unwrapped.set_state(*sim_state(env, obs))
        np.testing.assert_allclose(env.unwrapped._get_obs(), obs, atol=1e-5)
    env.close()


class Simulator(torch.nn.Module):
    """A 'dynamics model' that steps the real simulator from each row's state."""

    def __init__(self, task: str):
        super().__init__()
        self.env = make_env(task, None, 0)
        self.env.reset(seed=0)

    def step(self, obs, actions, generator=None, sample_reward=True):
        rows = []
        for o, a in zip(obs.numpy(), actions.numpy(), strict=True):
            self.env.unwrapped.set_state(*sim_state(self.env, o))
            nxt, r, terminated, _, _ = self.env.step(a)
            rows.append((nxt, r, terminated))
        nxt, r, done = (np.array(x) for x in zip(*rows, strict=True))
        return torch.tensor(nxt, dtype=torch.float32), torch.tensor(r), torch.tensor(done)


def test_the_simulator_as_its_own_model_gives_the_simulators_hazard_rate():
    starts = visited("halfcheetah", 30, seed=1)

    def policy(obs):  # deterministic, as the evaluated policy
        return np.tanh(np.asarray(obs)[:, :6] * 0.5)

    m_steps, m_risky, m_reward = model_side(policy, Simulator("halfcheetah"), starts, HAZARD, 5, 0)
    e_steps, e_risky, e_reward = env_side(policy, "halfcheetah", HAZARD, starts, 5, 0, None)
    assert m_steps == e_steps == 150  # HalfCheetah never ends
    assert 0 < e_risky < 1 and m_risky == pytest.approx(e_risky)
    # Rewards differ only by the hazard's penalties: -60 on a penalised step (p = 0.5).
    penalties = (e_reward - m_reward) * e_steps / -60.0
    assert penalties == pytest.approx(round(penalties), abs=1e-3) and penalties >= 0
