"""Issue 23, data half: a run meets only the data it trained on; a stage that trains prints
its plan with an estimate; a budget far beyond the paper's needs --force; values from the
environment and YAML are checked, and error messages cut a value in bounded work."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import runs
from pipeline.estimate import duration, plan_lines, seconds_per_update
from ramac.config import env_folder, env_seconds, read_yaml
from ramac.data.dataset import OfflineDataset, Provenance
from ramac.errors import UserError, brief

ROOT = Path(__file__).resolve().parents[2]


def dataset(sha: str = "a" * 64, n: int = 64) -> OfflineDataset:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
    return OfflineDataset(
        observations=obs[:-1], actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32), next_observations=obs[1:],
        terminals=np.zeros(n, bool), timeouts=np.zeros(n, bool),
        provenance=Provenance(source="d4rl", id="toy", sha256=sha, extra={"path": "toy.hdf5"}),
    )  # fmt: skip


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToyJob(runs.Job):
    data: OfflineDataset
    suite = "toy"

    @property
    def settings(self):
        from ramac.train import TrainSettings

        return TrainSettings(steps=self.steps, seed=self.seed, progress=False)

    def dataset(self) -> OfflineDataset:
        return self.data

    def record(self, data: OfflineDataset) -> dict:
        return {"provenance": data.provenance.to_dict()}


def toy_job(run_dir: Path, data: OfflineDataset, algo: str = "bc", steps: int = 8) -> ToyJob:
    from eval.settings import RiskSettings

    settings = RiskSettings(
        alpha=0.1, cvar_rule="ceil", kappa=3.0, kappa_sweep=(), bootstrap_reps=1
    )
    return ToyJob(
        algo=algo, seed=0, steps=steps, overrides={"batch_size": 8}, run_dir=run_dir,
        profile="smoke", eval_settings=settings, data=data,
    )  # fmt: skip


# ----------------------------------------------------------------- runs keyed on content


def test_a_resumed_run_refuses_other_data_and_keeps_its_record(tmp_path):
    job = toy_job(tmp_path / "run", dataset("a" * 64))
    runs.write_config(job, job.data, [0])
    recorded = (job.run_dir / "config.yaml").read_text()
    assert runs.trained_on(read_yaml(job.run_dir / "config.yaml")) == "a" * 64
    runs.write_config(job, job.data, [0])  # the same data: resumes quietly
    other = dataset("b" * 64)
    with pytest.raises(UserError) as err:
        runs.write_config(job, other, [0])
    line = str(err.value)
    assert line.startswith(f"{job.run_dir}: trained on data with sha256 aaaa")
    assert "toy.hdf5 now has sha256 bbbbbbbbbbbb" in line and "\n" not in line
    assert (job.run_dir / "config.yaml").read_text() == recorded
    with pytest.raises(UserError, match="trained on data with sha256"):
        runs.check_data_of([dataclasses.replace(job, data=other)])  # evaluate / calibrate
    runs.check_data_of([job])


def test_data_without_a_hash_is_not_judged(tmp_path):
    job = toy_job(tmp_path / "run", dataset(""))  # built in memory (the bandit)
    runs.write_config(job, job.data, [0])
    runs.check_same_data(job.run_dir, dataset("c" * 64))


# ----------------------------------------------------------------- the plan and the budget


def test_the_plan_counts_what_is_left_and_times_each_algorithm(tmp_path):
    jobs = [toy_job(tmp_path / f"s{k}", dataset(), algo) for k, algo in enumerate(["bc", "bc"])]
    (jobs[1].run_dir).mkdir()
    (jobs[1].run_dir / "train_log.csv").write_text("step,wall_seconds\n3,0.1\n")
    lines = plan_lines(jobs, "toy", workers=1)
    assert (
        lines[0]
        == "plan: toy: 2 of 2 runs to train, 8 updates per run (13 updates left in all), 1 worker"
    )
    assert lines[1].startswith("estimate: about ") and "bc " in lines[1]
    (jobs[0].run_dir).mkdir()
    (jobs[0].run_dir / "done").write_text("")
    (jobs[1].run_dir / "train_log.csv").write_text("step,wall_seconds\n8,0.1\n")
    assert plan_lines(jobs, "toy", 1) == ["plan: toy: 2 runs, all trained: nothing to train"]


def test_timing_an_update_leaves_the_random_streams_alone(tmp_path):
    import torch

    job = toy_job(tmp_path / "run", dataset())
    torch.manual_seed(5)
    np.random.seed(5)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), torch.get_num_threads())
    assert 0 < seconds_per_update(job) < 1
    assert torch.equal(torch.get_rng_state(), before[0])
    assert (np.random.get_state()[1] == before[1]).all() and torch.get_num_threads() == before[2]


def test_duration_reads_well():
    assert [duration(s) for s in (0.12, 42, 600, 4 * 3600, 3 * 86400, 10**12 / 100)] == [
        "0.1 s", "42 s", "10.0 min", "4.0 h", "3.0 days", "317.1 years",
    ]  # fmt: skip


def test_steps_far_above_the_papers_budget_need_force():
    from pipeline.suite import make_plan

    with pytest.raises(UserError, match=r"--steps 20,000,001 is 10 x the paper's .*needs --force"):
        make_plan("smoke", steps=20_000_001)
    assert make_plan("smoke", steps=20_000_001, force=True).jobs[0].steps == 20_000_001
    make_plan("smoke", steps=20_000_000)  # 10 x is allowed


def test_train_prints_its_plan_and_a_huge_budget_is_refused(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        out = ["--out", str(tmp_path / "out")]
        command = [sys.executable, str(ROOT / "reproduce.py"), "bandit", "--profile", "smoke",
                   "--algos", "bc", "--workers", "1", *out, *args]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)

    refused = run("--steps", str(10**12))
    assert refused.returncode == 2 and not (tmp_path / "out" / "runs").exists()
    assert refused.stderr.strip().splitlines() == [
        "error: --steps 1,000,000,000,000 is 50,000,000 x the paper's budget of 20,000 "
        "updates; above 10 x needs --force"
    ]
    done = run("--steps", "4")
    assert done.returncode == 0, done.stderr[-2000:]
    first = done.stdout.splitlines()[:2]
    assert (
        first[0]
        == "plan: bandit: 1 of 1 runs to train, 4 updates per run (4 updates left in all), 1 worker"
    )
    assert first[1].startswith("estimate: about ") and "bc " in first[1]


# ----------------------------------------------------------------- environment and YAML


def test_environment_values_are_checked(monkeypatch):
    monkeypatch.setenv("X_SECONDS", "abc")
    with pytest.raises(UserError, match="X_SECONDS must be a number of seconds > 0, got 'abc'"):
        env_seconds("X_SECONDS", 2.0)
    for bad in ("0", "-1", "nan", "inf"):
        monkeypatch.setenv("X_SECONDS", bad)
        with pytest.raises(UserError):
            env_seconds("X_SECONDS", 2.0)
    monkeypatch.setenv("X_SECONDS", "0.25")
    assert env_seconds("X_SECONDS", 2.0) == 0.25
    monkeypatch.delenv("X_SECONDS")
    assert env_seconds("X_SECONDS", 2.0) == 2.0
    monkeypatch.setenv("X_DIR", "  ")
    with pytest.raises(UserError, match="X_DIR is set but empty"):
        env_folder("X_DIR", Path("/default"))
    monkeypatch.setenv("X_DIR", "/data")
    assert env_folder("X_DIR", Path("/default")) == Path("/data")


def test_a_bad_lock_poll_and_an_empty_data_dir_are_one_line(tmp_path):
    import os

    for variable, value, stage in (
        ("RAMAC_LOCK_POLL_SECONDS", "abc", "train"),
        ("RAMAC_DATA_DIR", "", "data"),
        ("D4RL_DATASET_DIR", "", "data"),
    ):
        env = {**os.environ, variable: value}
        extra = ["--data", "d4rl"] if variable.startswith("D4RL") else []
        command = [sys.executable, str(ROOT / "reproduce.py"), stage, "--profile", "smoke", *extra]
        proc = subprocess.run(
            command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
        )
        assert proc.returncode == 2 and variable in proc.stderr, (variable, proc.stderr[-500:])
        assert len(proc.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


BOMB = """a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]
"""


def test_yaml_aliases_are_refused_in_one_line(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(BOMB)
    with pytest.raises(
        UserError, match=r"suite\.yaml: line 2: YAML aliases \(\*a\) are not allowed"
    ):
        read_yaml(path)


def test_error_messages_cut_a_huge_value_in_bounded_work():
    value = yaml.safe_load(BOMB)["e"]  # 9**5 strings when walked; 4 levels of shared lists
    for _ in range(30):
        value = [value] * 9  # 9**35 elements: formatting it whole would never end
    text = brief(value)
    assert len(text) <= 80 and text.startswith("[[[")
    from eval.settings import names
    from ramac.config_checks import show

    assert len(show(value)) <= 80
    with pytest.raises(UserError, match="must be a non-empty list of names, got") as err:
        names("suite.yaml", "datasets", [value])
    assert len(str(err.value)) < 200


def test_calibrate_reads_a_damaged_config_in_one_line(tmp_path):
    from pipeline.calibrate import bandit_run_calibration

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("algo: [unclosed\n")
    with pytest.raises(UserError, match="config.yaml: not valid YAML"):
        bandit_run_calibration(run)
    (run / "config.yaml").write_text("algo: bc\n")
    with pytest.raises(UserError, match="config.yaml: not a bandit run's config"):
        bandit_run_calibration(run)
