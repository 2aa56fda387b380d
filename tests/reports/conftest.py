"""Tiny records, made here, that the report writers run on: a Stochastic-D4RL folder and a
bandit folder, each with the files the pipeline writes (no training)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml

from ramac.envs.bandit import BanditSpec


def write_run_config(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(fields))


def suite_records(out, seeds=(0, 1), episodes=2, steps=20, profile="smoke"):
    """Two algorithms on one dataset; ``steps`` against the paper's 2,000,000."""
    rng = np.random.default_rng(0)
    dataset, rows, runs, logs = "hopper-medium-expert", [], [], []
    for algo in ("radac", "bc"):
        for seed in seeds:
            run = f"seed{seed}-abcd1234"
            write_run_config(
                out / "runs" / dataset / algo / run,
                suite="stochastic-d4rl",
                profile=profile,
                versions={"python": "3.11"},
            )
            returns = rng.normal(10.0 if algo == "bc" else 0.0, 5.0, episodes)
            for episode, value in enumerate(returns):
                rows.append(
                    {"suite": "stochastic-d4rl", "dataset": dataset, "algo": algo}
                    | {"seed": seed, "episode": episode, "return": value, "length": 20}
                    | {"risky_steps": 2, "terminated": True, "truncated": False}
                )
            runs.append(
                {"suite": "stochastic-d4rl", "dataset": dataset, "algo": algo, "seed": seed}
                | {"run": run, "n_episodes": episodes, "checkpoint": "final"}
                | {"ood_rate": rng.uniform(0.2, 0.6), "ood_detector": "joint"}
                | {"data_source": "generated", "dataset_sha256": "ab" * 32, "horizon": 25}
                | {"ref_min_score": -20.0, "ref_max_score": 3000.0, "eval_env": "Hopper-v5"}
                | {"eval_env_chosen_by": "data", "eval_env_reason": "file metadata/env_id"}
                | {"train_steps": steps, "schedule_scale": steps / 2_000_000}
            )
            for step in range(1, steps + 1, max(1, steps // 10)):
                logs.append(
                    {"step": step, "critic_loss": 10.0 / step + rng.uniform(0, 1)}
                    | {"suite": "stochastic-d4rl", "dataset": dataset, "algo": algo}
                    | {"seed": seed}
                )
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "episodes.csv", index=False)
    pd.DataFrame(runs).to_csv(out / "summary.csv", index=False)
    pd.DataFrame(logs).to_csv(out / "train_logs.csv", index=False)
    return out


SUITE_EVAL = {"alpha": 0.1, "cvar_rule": "ceil", "kappa": 3.0, "bootstrap_reps": 200}
BANDIT_EVAL = SUITE_EVAL | {"n_actions": 200}


def bandit_records(out, algos=("radac", "bc"), seeds=(0, 1), steps=20, profile="smoke"):
    """Per-seed bandit rows, each run's actions.npz and config.yaml (with the data's spec)."""
    rng = np.random.default_rng(1)
    spec = BanditSpec(n_samples=500)
    rows = []
    for algo in algos:
        for seed in seeds:
            run = f"seed{seed}-abcd1234"
            folder = out / "runs" / algo / run
            write_run_config(
                folder,
                suite="bandit",
                algo=algo,
                seed=seed,
                profile=profile,
                dataset={"extra": {"spec": dataclasses.asdict(spec), "seed": 0}},
                versions={"python": "3.11"},
            )
            actions = np.clip(rng.normal(0.0, 0.3, (200, 2)), -1, 1)
            np.savez_compressed(folder / "actions.npz", actions=actions, rewards=actions[:, 0])
            rows.append(
                {"suite": "bandit", "dataset": "bandit", "algo": algo, "seed": seed}
                | {"run": run, "n_actions": 200, "mean_reward": rng.uniform(0.9, 1.1)}
                | {"cvar": rng.uniform(0.7, 0.8), "centre_frac": rng.uniform(0.8, 1.0)}
                | {"ring_frac": rng.uniform(0, 0.1), "ood_rate": rng.uniform(0, 0.2)}
                | {"train_steps": steps, "schedule_scale": steps / 20_000}
            )
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "summary.csv", index=False)
    return summary


@pytest.fixture
def suite_folder(tmp_path):
    return suite_records(tmp_path / "suite")


@pytest.fixture
def bandit_folder(tmp_path):
    out = tmp_path / "bandit"
    return out, bandit_records(out)


@pytest.fixture
def suite_eval():
    return dict(SUITE_EVAL)


@pytest.fixture
def bandit_eval():
    return dict(BANDIT_EVAL)


@pytest.fixture
def make_suite_records():
    """``suite_records`` itself, for tests that vary seeds, episodes or steps."""
    return suite_records


@pytest.fixture
def make_bandit_records():
    """``bandit_records`` itself, for tests that vary the seeds."""
    return bandit_records
