"""Train the SAC behaviour policies that the dataset generator rolls out.

A one-time job (about 45 environment steps per second on a 2-core CPU). It uses
stable-baselines3's SAC rather than a home-made one, saves a resumable checkpoint
(model + replay buffer) and a small actor snapshot every ``--snapshot-every`` steps,
and evaluates each snapshot so that the generator can pick its medium and expert
levels. A killed run resumes from its last checkpoint when started again.

    python scripts/train_behaviour.py --task halfcheetah --steps 100000

Snapshots land in ``behaviour_runs/<task>/`` (ignored by git); ``--export`` copies the
ones the generator needs into ``ramac/data/policies/<task>/`` (committed).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

REPLAY_SIZE = 300_000  # larger than any run here, so a resumed run never wraps its buffer
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ramac.data.behaviour import (  # noqa: E402
    ENV_IDS,
    POLICY_DIR,
    GaussianTanhPolicy,
    evaluate_policy,
    save_policy,
)


def actor_arrays(model: SAC) -> dict[str, np.ndarray]:
    """The SB3 actor's weights as plain float32 arrays (the generator needs only these)."""
    actor = model.actor
    layers = [m for m in actor.latent_pi if isinstance(m, torch.nn.Linear)]
    arrays = {}
    for i, layer in enumerate(layers):
        arrays[f"w{i}"] = layer.weight.detach().cpu().numpy().astype(np.float32)
        arrays[f"b{i}"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    arrays["mu_w"] = actor.mu.weight.detach().cpu().numpy().astype(np.float32)
    arrays["mu_b"] = actor.mu.bias.detach().cpu().numpy().astype(np.float32)
    arrays["log_std_w"] = actor.log_std.weight.detach().cpu().numpy().astype(np.float32)
    arrays["log_std_b"] = actor.log_std.bias.detach().cpu().numpy().astype(np.float32)
    return arrays


class SnapshotCallback(BaseCallback):
    """Every ``every`` steps: save an actor snapshot, evaluate it, and checkpoint for resume."""

    def __init__(self, task: str, run_dir: Path, every: int, eval_episodes: int):
        super().__init__()
        self.task, self.run_dir, self.every, self.eval_episodes = (
            task,
            run_dir,
            every,
            eval_episodes,
        )

    def _on_step(self) -> bool:
        step = self.model.num_timesteps
        if step % self.every:
            return True
        path = self.run_dir / f"step{step:07d}.npz"
        policy = GaussianTanhPolicy(actor_arrays(self.model))
        ret = evaluate_policy(policy, self.task, episodes=self.eval_episodes, seed=10_000)
        save_policy(path, policy.arrays, task=self.task, step=step, eval_return=ret)
        with open(self.run_dir / "snapshots.csv", "a", newline="") as f:
            csv.writer(f).writerow([step, f"{ret:.2f}", path.name])
        self.model.save(self.run_dir / "checkpoint_tmp.zip")
        self.model.save_replay_buffer(self.run_dir / "replay_tmp.pkl")
        (self.run_dir / "checkpoint_tmp.zip").replace(self.run_dir / "checkpoint.zip")
        (self.run_dir / "replay_tmp.pkl").replace(self.run_dir / "replay.pkl")
        print(f"[{self.task}] step {step}: deterministic return {ret:.1f}", flush=True)
        return True


def train(task: str, steps: int, every: int, eval_episodes: int, seed: int) -> None:
    run_dir = ROOT / "behaviour_runs" / task
    run_dir.mkdir(parents=True, exist_ok=True)
    env = gym.make(ENV_IDS[task])
    checkpoint = run_dir / "checkpoint.zip"
    if checkpoint.exists():
        model = SAC.load(checkpoint, env=env, device="cpu")
        model.load_replay_buffer(run_dir / "replay.pkl")
        print(f"[{task}] resuming at step {model.num_timesteps}", flush=True)
    else:
        model = SAC(
            "MlpPolicy", env, buffer_size=REPLAY_SIZE, learning_starts=5000, seed=seed, device="cpu"
        )
    remaining = steps - model.num_timesteps
    if remaining <= 0:
        print(f"[{task}] already trained to {model.num_timesteps} steps")
        return
    callback = SnapshotCallback(task, run_dir, every, eval_episodes)
    model.learn(remaining, callback=callback, reset_num_timesteps=False, progress_bar=False)


def export(task: str, names: list[str]) -> None:
    """Copy chosen snapshots (by file name) into the committed policy folder."""
    dest = POLICY_DIR / task
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(ROOT / "behaviour_runs" / task / name, dest / name)
    print(f"exported {len(names)} snapshots to {dest}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--task", choices=sorted(ENV_IDS), required=True)
    parser.add_argument("--steps", type=int, default=100_000, help="total environment steps")
    parser.add_argument("--snapshot-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--export", nargs="*", metavar="SNAPSHOT", help="copy snapshots and exit")
    args = parser.parse_args()
    if args.export is not None:
        export(args.task, args.export)
        return
    torch.set_num_threads(args.threads)
    train(args.task, args.steps, args.snapshot_every, args.eval_episodes, args.seed)


if __name__ == "__main__":
    main()
