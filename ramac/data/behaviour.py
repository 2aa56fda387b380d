"""Behaviour policies shipped with the toolkit, used to generate datasets offline.

The policies are SAC actors (trained once by ``scripts/train_behaviour.py`` with
stable-baselines3) stored as plain float32 arrays in ``.npz`` files, so rolling them out
needs only numpy: no SB3 model file, no optimiser state, a few hundred kB each.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np

POLICY_DIR = Path(__file__).resolve().parent / "policies"

# Gymnasium v5 MuJoCo tasks (official `mujoco` bindings); see README "Environments".
ENV_IDS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SB3's SAC actor clamps log-std to this range


class GaussianTanhPolicy:
    """A SAC actor: ReLU MLP -> (mean, log-std) -> tanh-squashed Gaussian, in numpy."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        n_hidden = sum(1 for k in arrays if k.startswith("w"))
        self.hidden = [(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(n_hidden)]

    def _heads(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.asarray(obs, dtype=np.float32)
        for w, b in self.hidden:
            h = np.maximum(h @ w.T + b, 0.0)
        mu = h @ self.arrays["mu_w"].T + self.arrays["mu_b"]
        log_std = h @ self.arrays["log_std_w"].T + self.arrays["log_std_b"]
        return mu, np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Deterministic (tanh of the mean) without ``rng``; a stochastic sample with it."""
        mu, log_std = self._heads(obs)
        if rng is None:
            return np.tanh(mu)
        return np.tanh(mu + np.exp(log_std) * rng.standard_normal(mu.shape).astype(np.float32))


def save_policy(path: Path, arrays: dict[str, np.ndarray], **meta: object) -> None:
    """Write a snapshot atomically; ``meta`` (task, step, eval_return) is stored as JSON."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)


def load_policy(path: Path) -> tuple[GaussianTanhPolicy, dict]:
    """Read a snapshot written by :func:`save_policy`; returns the policy and its metadata."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        arrays = {k: data[k] for k in data.files if k != "meta"}
    return GaussianTanhPolicy(arrays), meta


def evaluate_policy(policy: GaussianTanhPolicy, task: str, episodes: int, seed: int) -> float:
    """Mean undiscounted return of the deterministic policy over full 1000-step episodes."""
    env = gym.make(ENV_IDS[task])
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs[None])[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))
