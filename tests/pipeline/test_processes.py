"""The pool's worker processes: they die with the main process (kill -9 included), and
Ctrl-C at any moment ends the command with one clean line and no worker left behind.

Each test runs a real command (the bandit, long enough to be caught mid-run) in a session
of its own, finds its workers as its children in /proc, and kills the whole session at the
end whatever happened.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTERRUPTED = "interrupted: finished runs are kept; run the same command again to resume\n"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)"),
]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)", which may hold spaces
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie has stopped working


def workers_of(parent: int) -> list[int]:
    """The pool worker processes (multiprocessing spawn children) of ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[1] != parent:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the command ended (rc {proc.returncode}) before {what}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def command(tmp_path):
    """Start the bandit with 2 workers and runs long enough to be caught mid-run."""
    started: list[subprocess.Popen] = []

    def start(steps: int = 100_000) -> subprocess.Popen:
        out = tmp_path / "bandit"
        args = ["bandit", "--profile", "smoke", "--steps", str(steps), "--workers", "2"]
        args += ["--algos", "bc", "cvae_ql", "--out", str(out)]
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "reproduce.py"), *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # not a terminal: no progress bars
            text=True,
            start_new_session=True,  # its own process group: signalled as a terminal would
            # Ctrl-C as at a terminal: a shell starts background jobs (make test & ...) with
            # SIGINT ignored, and Python then never raises KeyboardInterrupt.
            preexec_fn=_default_sigint,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        proc.out = out
        started.append(proc)
        return proc

    yield start
    for proc in started:  # whatever happened: nothing of it survives the test
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()


def training(proc: subprocess.Popen) -> bool:
    """Both workers are training: each run wrote its config.yaml."""
    return len(list(proc.out.glob("runs/*/*/config.yaml"))) == 2


def assert_gone(workers: list[int], within: float) -> None:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if alive(pid)]
    assert not left, f"worker processes {left} still alive {within} s after their parent ended"


def test_workers_die_with_a_killed_parent(command):
    proc = command()
    workers = wait_for(lambda: len(workers_of(proc.pid)) == 2, 120, "2 workers", proc)
    workers = workers_of(proc.pid)
    wait_for(lambda: training(proc), 180, "both runs training", proc)
    os.kill(proc.pid, signal.SIGKILL)  # the main process only, as `kill -9 PID` does
    proc.wait(timeout=10)
    assert_gone(workers, within=5)


def _interrupt(proc: subprocess.Popen, workers: list[int]) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert stderr == INTERRUPTED
    assert_gone(workers, within=5)


def test_ctrl_c_at_worker_start_up_prints_one_line(command):
    proc = command()
    wait_for(lambda: len(workers_of(proc.pid)) == 2, 120, "2 workers", proc)
    _interrupt(proc, workers_of(proc.pid))  # the workers are still importing


def test_ctrl_c_mid_run_prints_one_line(command):
    proc = command(steps=4000)  # checkpoints every 1,000 updates
    wait_for(lambda: len(workers_of(proc.pid)) == 2, 120, "2 workers", proc)
    workers = workers_of(proc.pid)
    # the slower run's first checkpoint: well into its training loop (a worker's tqdm
    # there once left the resource tracker a semaphore to warn about under the last line)
    first = lambda: list(proc.out.glob("runs/cvae_ql/*/checkpoint.pt"))  # noqa: E731
    wait_for(first, 180, "a checkpoint", proc)
    _interrupt(proc, workers)
