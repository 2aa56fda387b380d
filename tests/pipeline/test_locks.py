"""One owner per run folder (pipeline/locks.py): a second process waits for a run another
live process owns and then reads its results; a stale lock is taken over; two commands on
one --out train each run once."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline import locks
from pipeline.runs import DONE, METRICS, run_once

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="owner checks read /proc (Linux)"
)


@pytest.fixture(autouse=True)
def _fast_polling(monkeypatch):
    monkeypatch.setattr(locks, "POLL_SECONDS", 0.05)


def lock_of(pid: int, **changes) -> str:
    """A lock file's text as process ``pid`` on this host would have written it."""
    owner = {
        "pid": pid,
        "host": socket.gethostname(),
        "boot_id": locks._boot_id(),
        "process_start": locks._process_start(pid),
        "started": "2025-01-01T00:00:00+00:00",
        "token": f"token-of-{pid}",
    }
    return json.dumps(owner | changes)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_the_lock_names_its_owner_and_goes_when_the_work_ends(tmp_path):
    run = tmp_path / "run"
    with locks.owned(run):
        owner = json.loads((run / locks.LOCK).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert owner["started"] and owner["process_start"]
    assert not (run / locks.LOCK).exists()
    with pytest.raises(ValueError), locks.owned(run):
        raise ValueError("the work failed")
    assert not (run / locks.LOCK).exists()  # released on errors too


def test_several_folders_are_locked_together_in_a_fixed_order(tmp_path):
    dirs = [tmp_path / "seed1-x", tmp_path / "seed0-x"]
    with locks.owned(dirs):
        assert all((d / locks.LOCK).exists() for d in dirs)
    assert not any((d / locks.LOCK).exists() for d in dirs)


@pytest.mark.parametrize(
    "owner",
    [
        lambda: lock_of(dead_pid()),  # its process ended
        lambda: lock_of(os.getppid(), boot_id="another-boot"),  # the host restarted since
        lambda: lock_of(os.getppid(), process_start="1"),  # the pid was reused
        lambda: "",  # killed between creating and writing it (and old)
        lambda: lock_of(os.getpid(), host="another-node"),  # untouched for an hour
    ],
    ids=["dead-pid", "before-a-restart", "reused-pid", "empty", "silent-other-host"],
)
def test_a_stale_lock_is_taken_over_with_one_warning(tmp_path, capsys, owner):
    run = tmp_path / "run"
    run.mkdir()
    (run / locks.LOCK).write_text(owner())
    old = time.time() - 3600
    os.utime(run / locks.LOCK, (old, old))
    row = run_once(run, lambda: {"mean": 1.0})
    assert row == {"mean": 1.0} and (run / DONE).exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {run}: taking over the lock of")
    assert not (run / locks.LOCK).exists()


def test_a_run_another_process_owns_is_waited_for_then_read(tmp_path, capsys, sleeper):
    run = tmp_path / "run"
    run.mkdir()
    (run / locks.LOCK).write_text(lock_of(sleeper.pid))

    def the_owner_finishes() -> None:
        time.sleep(0.5)
        (run / METRICS).write_text(json.dumps({"mean": 2.0}))
        (run / DONE).write_text("")
        (run / locks.LOCK).unlink()

    thread = threading.Thread(target=the_owner_finishes)
    thread.start()
    row = run_once(run, lambda: pytest.fail("a run another process finished was redone"))
    thread.join()
    assert row == {"mean": 2.0}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"note: {run} is being worked on by pid")


def test_a_lock_another_host_keeps_touching_is_waited_for(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / locks.LOCK).write_text(lock_of(1, host="another-node"))
    threading.Timer(0.5, (run / locks.LOCK).unlink).start()  # that owner is done
    assert run_once(run, lambda: {"mean": 4.0}) == {"mean": 4.0}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "being worked on by pid 1 on another-node" in err


def test_an_owner_touches_its_locks_while_it_works(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "HEARTBEAT_SECONDS", 0.05)
    run = tmp_path / "run"
    with locks.owned([run]):
        old = time.time() - 3600
        os.utime(run / locks.LOCK, (old, old))
        time.sleep(0.5)
        assert time.time() - (run / locks.LOCK).stat().st_mtime < 60


def test_a_run_whose_owner_dies_while_waited_for_is_taken_over(tmp_path, capsys, sleeper):
    run = tmp_path / "run"
    run.mkdir()
    (run / locks.LOCK).write_text(lock_of(sleeper.pid))
    threading.Timer(0.5, sleeper.kill).start()
    assert run_once(run, lambda: {"mean": 3.0}) == {"mean": 3.0}
    err = capsys.readouterr().err
    assert "is being worked on" in err and "taking over the lock" in err


# A hook for the commands' processes (the pool's workers too): every training loop that
# runs updates appends "<run folder> <first step> <last step>" to $TRAIN_COUNTER.
COUNTER_HOOK = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, inspect, os, sys

    class _Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "ramac.train":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                loop, signature = module._loop, inspect.signature(module._loop)

                def counted(*args, **kwargs):
                    bound = signature.bind(*args, **kwargs).arguments
                    start = bound["step"]
                    for r in bound["runs"]:
                        if start < r.settings.steps:
                            with open(os.environ["TRAIN_COUNTER"], "a") as f:
                                f.write(f"{r.run_dir} {start} {r.settings.steps}\\n")
                    return loop(*args, **kwargs)

                module._loop = counted

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Hook())
    """
)


@pytest.mark.slow
def test_two_commands_on_one_out_train_each_run_once(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(COUNTER_HOOK)
    counter, out = tmp_path / "trained", tmp_path / "bandit"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
        "TRAIN_COUNTER": str(counter),
        "RAMAC_LOCK_POLL_SECONDS": "0.2",
    }
    args = ["bandit", "--profile", "smoke", "--algos", "bc", "--seeds", "2"]
    args += ["--steps", "200", "--out", str(out)]
    commands = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "reproduce.py"), *args, "--workers", workers],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for workers in ("2", "1")  # a pool and an inline run, started at the same time
    ]
    summaries, deadline = {}, time.time() + 600
    while len(summaries) < len(commands) and time.time() < deadline:
        for i, proc in enumerate(commands):
            if i not in summaries and proc.poll() is not None:
                summaries[i] = pd.read_csv(out / "summary.csv")  # as this command wrote it
        time.sleep(0.05)
    for proc in commands:
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    trained = [line.split() for line in counter.read_text().splitlines()]
    folders = sorted(str(p) for p in (out / "runs").glob("*/seed*"))
    assert len(folders) == 2
    # every run trained once, from its first update to its last, by one of the commands
    assert sorted(run for run, _, _ in trained) == folders, trained
    assert all((start, end) == ("0", "200") for _, start, end in trained), trained
    pd.testing.assert_frame_equal(summaries[0], summaries[1])  # both read the records
    for folder in folders:
        log = pd.read_csv(Path(folder) / "train_log.csv")
        assert log["step"].is_unique and log["step"].max() == 200
        assert not (Path(folder) / locks.LOCK).exists()
