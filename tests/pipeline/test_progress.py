"""Progress from inside the runs: trackers, the plan's bar, job labels, and a real command
on a pseudo-terminal (progress shown) and off one (nothing shown)."""

import io
import os
import re
import select
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.executors import job_labels, run_jobs
from ramac import progress
from ramac.data.behaviour import save_policy
from ramac.data.generate import generate_dataset

ROOT = Path(__file__).resolve().parents[2]


def test_a_tracker_reports_the_start_then_at_most_once_a_second_and_the_end(monkeypatch):
    clock = iter(np.arange(0.0, 100.0, 0.1))  # each call of the clock: 0.1 s later
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    sent = []
    with progress.reporting(sent.append), progress.job("radac/seed0"):
        tick = progress.tracker("radac seed 0", 50, initial=20)
        for step in range(21, 51):
            tick(step)
        tick.close(50)
    steps = [m.step for m in sent]
    assert steps[0] == 20 and steps[-1] == 50  # where it starts (a resumed run) and ends
    assert len(steps) == len(set(steps)) and 3 <= len(steps) <= 6  # 3 s of steps: ~1 a second
    assert {(m.job, m.task, m.unit, m.total) for m in sent} == {
        ("radac/seed0", "radac seed 0", "update", 50)
    }


def test_without_a_reporter_a_tracker_is_silent_off_a_terminal(monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    assert progress._reporter is None
    tick = progress.tracker("generate hopper-medium", 10, unit="row", bar=True)
    tick(10)
    tick.close(10)  # nothing to see, nothing raised
    assert isinstance(tick, progress._Silent)


def test_a_finished_loop_says_nothing():
    sent = []
    with progress.reporting(sent.append):
        progress.tracker("bc seed 0", 10, initial=10).close(10)  # a trained run, evaluated
    assert sent == []


def message(job: str, step: int, total: int = 100) -> progress.Message:
    return progress.Message(job, f"{job} task", progress.UPDATE, step, total)


def test_the_plan_bar_counts_runs_until_a_job_trains_then_the_updates_left():
    out = io.StringIO()
    plan = progress.PlanBar("runs", ["a", "b", "c"], [100, 100, 100], show=True, file=out)
    plan.finished(2)  # c was finished already: no training, no updates
    assert (plan.bar.unit, plan.bar.n, plan.bar.total) == ("run", 1, 3)
    plan(message("a", 40))  # a resumes from its checkpoint at step 40
    assert (plan.bar.unit, plan.bar.n, plan.bar.total) == ("update", 0, 60 + 100)
    plan(message("a", 70))
    plan(message("b", 0))
    plan(message("b", 10))
    assert (plan.bar.n, plan.bar.total) == (40, 160)
    assert "a 70/100" in plan.bar.postfix and "b 10/100" in plan.bar.postfix
    assert "runs 1/3" in plan.bar.postfix
    plan(message("a", 100))
    plan.finished(0)
    plan.finished(1)  # b failed at step 10: the plan needs no more of its updates
    assert (plan.bar.n, plan.bar.total) == (70, 70)
    assert plan.bar.postfix == "runs 3/3"
    plan.close()


def test_a_plan_that_trains_nothing_counts_runs():
    plan = progress.PlanBar("runs", ["a", "b"], [None, None], show=True, file=io.StringIO())
    plan.finished(1)
    plan.finished(0)
    assert (plan.bar.unit, plan.bar.n, plan.bar.total) == ("run", 2, 2)


def test_job_labels_are_run_folders_without_their_hash():
    def job(path: str, seed: int = 0) -> SimpleNamespace:
        return SimpleNamespace(run_dir=Path("/out/runs") / path, seed=seed, steps=10)

    jobs = [job("radac/seed0-0123abcd"), job("bc/seed1-89abcdef")]
    assert job_labels(jobs) == ["radac/seed0", "bc/seed1"]
    stack = (job("radac/seed0-0123abcd"), job("radac/seed1-0123abcd"))
    assert job_labels([stack, jobs[1]]) == ["radac/seeds 0,1", "bc/seed1"]
    suite = [job("hopper-medium/radac/seed0-0123abcd"), job("walker2d-medium/radac/seed0-0123abcd")]
    assert job_labels(suite) == ["hopper-medium/radac/seed0", "walker2d-medium/radac/seed0"]
    assert job_labels([3, 4]) == ["job 0", "job 1"]
    assert job_labels([3, 3, jobs[0]]) == ["job 0", "job 1", "radac/seed0"]


def count_to(n: int) -> int:
    tick = progress.tracker("count", n)
    for step in range(1, n + 1):
        tick(step)
    tick.close(n)
    return n


def test_inline_jobs_report_to_the_plan_bar(monkeypatch):
    shown = []
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    monkeypatch.setattr(progress.PlanBar, "__call__", lambda self, m: shown.append(m))
    assert run_jobs(count_to, [5, 7], workers=1) == [5, 7]
    assert [(m.job, m.step, m.total) for m in shown] == [
        ("job 0", 0, 5), ("job 0", 5, 5), ("job 1", 0, 7), ("job 1", 7, 7)
    ]  # fmt: skip


def test_dataset_generation_reports_its_rows(tmp_path):
    rng = np.random.default_rng(0)
    obs_dim, act_dim, hidden = 11, 3, 8

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.5, shape).astype(np.float32)

    (tmp_path / "hopper").mkdir()
    for step, ret in {1000: 0.0, 2000: 90.0, 3000: 150.0}.items():
        arrays = {
            "w0": w(hidden, obs_dim), "b0": w(hidden), "w1": w(hidden, hidden), "b1": w(hidden),
            "mu_w": w(act_dim, hidden), "mu_b": w(act_dim), "log_std_w": w(act_dim, hidden),
            "log_std_b": np.full(act_dim, -1.0, np.float32),
        }  # fmt: skip
        path = tmp_path / "hopper" / f"step{step:07d}.npz"
        save_policy(path, arrays, task="hopper", step=step, eval_return=ret)
    sent = []
    with progress.reporting(sent.append):
        generate_dataset(
            "hopper", "medium-replay", 200, 0, tmp_path, tmp_path / "x.hdf5",
            max_episode_steps=40, n_envs=3, card=False,
        )  # fmt: skip
    assert sent and {(m.task, m.unit, m.total) for m in sent} == {
        ("generate hopper-medium-replay", "row", 200)
    }
    assert sent[-1].step == 200
    assert [m.step for m in sent] == sorted(m.step for m in sent)


# ----------------------------------------------------------------------------- a real command


def bandit_command(out: Path, workers: int, steps: int = 600) -> list[str]:
    args = ["bandit", "--profile", "smoke", "--steps", str(steps), "--workers", str(workers)]
    return [sys.executable, str(ROOT / "reproduce.py"), *args, "--out", str(out)]


def algos(workers: int) -> list[str]:
    return ["--algos", "cvae_ql"] if workers == 1 else ["--algos", "cvae_ql", "bc"]


def run_on_a_terminal(command: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal (200 columns) as its stdin, stdout and stderr."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command, cwd=ROOT, stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            if not ready:
                pytest.fail(f"no output for {timeout} s")
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        proc.kill()
        proc.wait()
    return proc.returncode, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminal on Linux")
@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "pool"])
def test_a_terminal_shows_each_running_job_with_its_rate_and_eta(tmp_path, workers):
    out = tmp_path / "bandit"
    rc, text = run_on_a_terminal(bandit_command(out, workers) + algos(workers))
    assert "bandit (smoke)" in text, text[-3000:]
    lines = text.replace("\r", "\n").splitlines()
    # a job's step of its total, its updates per second and ETA; the plan's rate and ETA
    job = re.compile(r"cvae_ql/seed0 \d+/600 [\d,]+/s ETA \d\d:\d\d")
    assert any(job.search(line) for line in lines), text[-3000:]
    plan = re.compile(r"bandit runs: +\d+%.*\| *\d+/\d+ \[\d\d:\d\d<\d\d:\d\d, +[\d.]+update/s")
    assert any(plan.search(line) for line in lines), text[-3000:]


@pytest.mark.slow
def test_off_a_terminal_nothing_shows_progress(tmp_path):
    command = bandit_command(tmp_path / "bandit", 2, steps=100) + algos(2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""  # no bars, no steps: CI logs stay short
    lines = proc.stdout.splitlines()  # the plan (issue 23: on a terminal or not), then the end
    assert lines[0].startswith("plan: bandit: 2 of 2 runs to train, 100 updates per run")
    assert lines[1].startswith("estimate: about ") and lines[-1].startswith(
        "bandit (smoke): 2 runs in"
    )
