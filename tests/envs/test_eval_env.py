"""The evaluation simulator follows the data: D4RL files -> Gymnasium v4 (D4RL's collection
dynamics), generated files -> the env their metadata records; a suite may override it with a
reason. Friction and the fall rule are read from the compiled model and one simulated step."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from pipeline.suite import SUITE_FILE, eval_env, make_plan
from ramac.data.d4rl import load_d4rl
from ramac.data.generate import default_path, load_generated
from ramac.envs.mujoco import check_env_id, env_id_for, make_env, simulator_facts
from ramac.errors import UserError

# D4RL's collection env for Walker2d is gym's mujoco-py v2 class (D4RL
# d4rl/gym_mujoco/gym_envs.py imports gym.envs.mujoco.Walker2dEnv). Its model file gives the
# right foot friction 0.9 and the left 1.9 (gym gym/envs/mujoco/assets/walker2d.xml; also
# Gymnasium walker2d_v5.py, version history: "In v2, v3 and v4 ... right foot friction ==
# 0.9"); its step pays the alive bonus 1.0 on every step and ends the episode when the torso
# pitch leaves (-1, 1) (gym gym/envs/mujoco/walker2d.py).
D4RL_WALKER = {
    "foot_friction": {"foot_geom": 0.9, "foot_left_geom": 1.9},
    "fall_terminates": True,
    "healthy_reward_on_fall": 1.0,
}
FACT_KEYS = ("foot_friction", "fall_terminates", "healthy_reward_on_fall")


def write_walker(path: Path, meta: dict | None = None) -> Path:
    rng = np.random.default_rng(0)
    obs = rng.normal(0, 0.1, (6, 17)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=obs[:-1])
        f.create_dataset("next_observations", data=obs[1:])
        f.create_dataset("actions", data=np.zeros((5, 6), np.float32))
        f.create_dataset("rewards", data=np.ones(5, np.float32))
        f.create_dataset("terminals", data=np.zeros(5, bool))
        f.create_dataset("timeouts", data=np.eye(5, dtype=bool)[-1])
        if meta is not None:
            f.create_dataset("metadata/json", data=json.dumps(meta))
            f.create_dataset("metadata/env_id", data=meta["env_id"])
    return path


def job_for(tmp_path: Path, source: str, suite_file: Path | None = None):
    plan = make_plan(
        "smoke", source, datasets=["walker2d-medium-expert"], algos=["bc"], seeds=1,
        out=tmp_path / "out", suite_file=suite_file,
    )  # fmt: skip
    return plan.jobs[0]


def facts(env_id: str) -> dict:
    return {k: simulator_facts(env_id)[k] for k in FACT_KEYS}


def test_d4rl_data_is_evaluated_in_its_collection_dynamics(tmp_path):
    data = load_d4rl(str(write_walker(tmp_path / "walker2d_medium_expert-v2.hdf5")))
    chosen = eval_env(job_for(tmp_path, "d4rl"), data.provenance)
    assert chosen["chosen_by"] == "data" and "D4RL" in chosen["reason"]
    assert facts(chosen["env_id"]) == D4RL_WALKER  # read from the compiled model, one step
    v5 = facts(env_id_for("walker2d", "v5"))  # the difference v4 -> v5, so the check can fail
    assert v5["foot_friction"] == {"foot_geom": 1.9, "foot_left_geom": 1.9}
    assert v5["healthy_reward_on_fall"] == 0.0


def test_generated_data_is_evaluated_in_the_env_its_file_records(tmp_path):
    meta = {
        "generator": "gen-1", "task": "walker2d", "kind": "medium-expert", "seed": 0, "size": 5,
        "env_id": "Walker2d-v5",
        "segments": [{"role": "medium", "file": "p.npz", "sha256": "0", "step": 1, "steps": 5}],
    }  # fmt: skip
    write_walker(tmp_path / default_path("walker2d", "medium-expert", 5, 0).name, meta)
    data = load_generated("walker2d", "medium-expert", tmp_path, size=5, seed=0)
    chosen = eval_env(job_for(tmp_path, "generated"), data.provenance)
    assert chosen == {
        "env_id": "Walker2d-v5",
        "chosen_by": "data",
        "reason": "file metadata/env_id",
    }
    assert facts(chosen["env_id"]) == facts(meta["env_id"])  # the data's own simulator
    # a D4RL-format file that records its env (a generated one renamed) keeps that env
    renamed = load_d4rl(str(write_walker(tmp_path / "walker2d_medium_expert-v2.hdf5", meta)))
    assert eval_env(job_for(tmp_path, "d4rl"), renamed.provenance)["env_id"] == "Walker2d-v5"


def override_suite(tmp_path: Path, env) -> Path:
    suite = yaml.safe_load(SUITE_FILE.read_text())
    suite["eval"]["env"] = env
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_a_suite_can_override_the_simulator_with_a_reason(tmp_path):
    data = load_d4rl(str(write_walker(tmp_path / "walker2d_medium_expert-v2.hdf5")))
    reason = "compare with results evaluated in Gymnasium v5"
    suite = override_suite(tmp_path, {"version": "v5", "reason": reason})
    chosen = eval_env(job_for(tmp_path, "d4rl", suite), data.provenance)
    assert chosen == {"env_id": "Walker2d-v5", "chosen_by": "suite override", "reason": reason}
    for bad, message in (
        ({"version": "v5"}, "must be 'data' or"),
        ({"version": "v3", "reason": "x"}, "must be 'data' or"),
        ({"version": "v5", "reason": " "}, "state a reason"),
        ("v5", "must be 'data' or"),
    ):
        with pytest.raises(UserError, match=message) as err:
            job_for(tmp_path, "d4rl", override_suite(tmp_path, bad))
        assert "\n" not in str(err.value)


def test_make_env_takes_the_simulator():
    env = make_env("walker2d-medium-expert-v2", None, 0, None, env_id="Walker2d-v4")
    assert (env.spec.id, env.spec.max_episode_steps) == ("Walker2d-v4", 500)
    assert make_env("walker2d", None, 0, None).spec.id == "Walker2d-v5"  # the default
    assert check_env_id("hopper", "Hopper-v4") == "Hopper-v4"
    with pytest.raises(UserError, match="cannot evaluate hopper"):
        make_env("hopper", None, 0, None, env_id="Walker2d-v4")
    with pytest.raises(UserError, match="unknown env version 'v3'"):
        env_id_for("hopper", "v3")


@pytest.mark.parametrize(
    ("source", "env_id", "stale"),
    [("d4rl", "Walker2d-v4", True), ("generated", "Walker2d-v5", False)],
)
def test_records_from_before_the_simulator_was_recorded(
    tmp_path, monkeypatch, source, env_id, stale
):
    """A finished run whose metrics.json names no simulator was evaluated in v5: it is
    evaluated again when its data's simulator is another (D4RL), kept otherwise."""
    import types

    import pipeline.suite as suite
    from eval.metrics import PAPER_OOD
    from ramac.config import config_hash
    from ramac.data.dataset import Provenance

    job = job_for(tmp_path, source)
    provenance = Provenance(source=source, id="walker2d-medium-expert", env_id=env_id)
    monkeypatch.setattr(
        suite, "load_dataset", lambda spec: types.SimpleNamespace(provenance=provenance)
    )
    job.run_dir.mkdir(parents=True)
    recorded = {"eval_hash": config_hash(job.eval), PAPER_OOD: 0.0}  # only the simulator missing
    (job.run_dir / "metrics.json").write_text(json.dumps(recorded))
    (job.run_dir / "done").write_text("")
    suite._forget_stale_evaluation(job)
    assert (job.run_dir / "done").exists() != stale
