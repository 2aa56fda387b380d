"""File system errors end with one line naming the path and exit code 2 (an --out that is a
file, read-only, too long a name, no space left), in the main process and in a worker; a
failed job is named by its run folder; --workers must be at least 1; the data stage checks
D4RL files as training does."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import runs
from pipeline.bandit import SUITE_FILE, BanditSuite, make_jobs
from pipeline.cli import main
from pipeline.executors import run_jobs
from ramac.folders import claim

ROOT = Path(__file__).resolve().parents[2]
BANDIT = ["bandit", "--profile", "smoke", "--algos", "bc", "--seeds", "1", "--workers", "1"]
AS_ROOT = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root writes into read-only (chmod 555) folders: nothing to check",
)


def one_line_error(capsys, code: int) -> str:
    """The command's only stderr line, after checking its exit code."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


def test_out_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("not a folder")
    err = one_line_error(capsys, main([*BANDIT, "--out", str(out)]))
    assert err == f"error: {out}: not a directory"
    err = one_line_error(capsys, main([*BANDIT, "--out", str(out / "bandit")]))
    assert err == f"error: {out / 'bandit'}: Not a directory"
    assert out.read_text() == "not a folder"


@AS_ROOT
def test_read_only_out(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        err = one_line_error(capsys, main([*BANDIT, "--out", str(locked / "bandit")]))
        assert err == f"error: {locked / 'bandit'}: Permission denied"
        err = one_line_error(capsys, main([*BANDIT, "--out", str(locked)]))
        assert err == f"error: {locked}: Permission denied"
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_read_only_file_system(tmp_path, capsys, monkeypatch):
    """A read-only mount, simulated (root writes through chmod; mounting needs privileges)."""
    mkdir, read_only = os.mkdir, tmp_path / "mounted"

    def refuse(path, *args, **kwargs):
        if Path(path).is_relative_to(read_only):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refuse)
    out = read_only / "bandit"
    err = one_line_error(capsys, main([*BANDIT, "--out", str(out)]))
    assert err == f"error: {out}: Read-only file system"


def test_a_name_too_long(tmp_path, capsys):
    out = tmp_path / ("x" * 300)
    err = one_line_error(capsys, main([*BANDIT, "--out", str(out)]))
    assert err == f"error: {out}: File name too long"


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() and fsync() raise it


def test_no_space_left_in_a_run(tmp_path, capsys, monkeypatch):
    out = claim(tmp_path / "bandit")  # the folder made (with its marker) before the disk fills
    monkeypatch.setattr(os, "fsync", no_space)  # every atomic write fails
    err = one_line_error(capsys, main([*BANDIT, "--out", str(out), "--steps", "10"]))
    (run,) = (out / "runs" / "bc").iterdir()
    assert err == f"error: {run / 'config.yaml'}: No space left on device"
    assert not list(run.glob(".*.tmp")) and not (run / "lock").exists()


def test_no_space_left_for_a_table(tmp_path, capsys, monkeypatch):
    """The main process's own writes: the table's name, not its temporary file's."""
    to_csv = pd.DataFrame.to_csv

    def full_disk(frame, path=None, *args, **kwargs):
        if path is not None and Path(path).name.startswith(".summary.csv."):
            no_space()
        return to_csv(frame, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    out = tmp_path / "bandit"
    err = one_line_error(capsys, main([*BANDIT, "--out", str(out), "--steps", "10"]))
    assert err == f"error: {out / 'summary.csv'}: No space left on device"
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_a_file_system_error_in_a_pool_worker_names_the_run_folder(tmp_path):
    out = tmp_path / "bandit"
    suite = BanditSuite.read(SUITE_FILE)
    jobs = make_jobs(suite, "smoke", 1, out, ["bc", "radac"], 10)
    blocked = jobs[1].run_dir
    claim(out)  # a results folder of the toolkit's own
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the run folder goes")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "reproduce.py"), "bandit", "--profile", "smoke"]
        + ["--algos", "bc", "radac", "--seeds", "1", "--steps", "10", "--workers", "2"]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr == f"error: {blocked}: File exists\n"
    assert (jobs[0].run_dir / "done").exists()  # the other run was done


def failing(job) -> None:
    raise ValueError("a bug")


def test_a_failed_seed_stack_is_named_by_its_run_folders(tmp_path):
    jobs = make_jobs(BanditSuite.read(SUITE_FILE), "smoke", 2, tmp_path, ["bc"], 10)
    (stack,) = runs.seed_stacks(jobs)
    with pytest.raises(RuntimeError) as info:
        run_jobs(failing, [stack, jobs[0]], workers=1)
    message = str(info.value)
    assert message == (
        f"2 of 2 jobs failed:\n  {jobs[0].run_dir}, {jobs[1].run_dir}: ValueError: a bug\n"
        f"  {jobs[0].run_dir}: ValueError: a bug"
    )
    assert "BanditJob(" not in message and "BanditJob(" not in repr(stack)


@pytest.mark.parametrize("workers", ["0", "-1"])
@pytest.mark.parametrize("stage", ["bandit", "train", "data"])
def test_workers_must_be_at_least_one(tmp_path, capsys, stage, workers):
    out = tmp_path / "out"
    err = one_line_error(
        capsys, main([stage, "--profile", "smoke", "--out", str(out), "--workers", workers])
    )
    assert err == f"error: --workers must be at least 1, got {workers}"
    assert not out.exists()  # nothing started


# ----------------------------------------------------------------------------- D4RL files


def d4rl_file(path: Path, **changes: np.ndarray) -> Path:
    """A tiny Hopper dataset in D4RL's layout (11-D observations, 3-D actions)."""
    import h5py

    rng = np.random.default_rng(0)
    n = 40
    arrays = {
        "observations": rng.normal(size=(n, 11)).astype(np.float32),
        "next_observations": rng.normal(size=(n, 11)).astype(np.float32),
        "actions": rng.uniform(-0.9, 0.9, size=(n, 3)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": (np.arange(n) % 20 == 19),
    } | changes
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"rewards": np.where(np.arange(40) == 7, np.nan, 1.0).astype(np.float32)}, "rewards"),
        ({"actions": np.full((40, 3), 1.5, np.float32)}, "actions"),  # beyond max_action
    ],
    ids=["nan-reward", "action-out-of-range"],
)
def test_the_data_stage_checks_d4rl_files_as_training_does(
    tmp_path, capsys, monkeypatch, change, problem
):
    d4rl_dir = tmp_path / "d4rl"
    d4rl_dir.mkdir()
    path = d4rl_file(d4rl_dir / "hopper_medium_expert-v2.hdf5", **change)
    monkeypatch.setenv("D4RL_DATASET_DIR", str(d4rl_dir))
    args = ["data", "--profile", "smoke", "--data", "d4rl", "--out", str(tmp_path / "out")]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {path}: "), err
    assert problem in err


def test_the_data_stage_accepts_a_good_d4rl_file(tmp_path, capsys, monkeypatch):
    d4rl_dir = tmp_path / "d4rl"
    d4rl_dir.mkdir()
    d4rl_file(d4rl_dir / "hopper_medium_expert-v2.hdf5")
    monkeypatch.setenv("D4RL_DATASET_DIR", str(d4rl_dir))
    assert main(["data", "--profile", "smoke", "--data", "d4rl", "--out", str(tmp_path)]) == 0
