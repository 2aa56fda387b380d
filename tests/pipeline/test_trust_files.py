"""The toolkit's folders (issue 23): it writes only into folders it made (the ``.ramac``
marker), never follows a link out of them, keeps one command per results folder, ends on
SIGTERM as on Ctrl-C, names a worker that died, never reads a FIFO as a record, leaves no
temporary file on a full disk, and ``all`` passes its options to both halves.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline import locks, runs
from pipeline.cli import main
from ramac.errors import UserError
from ramac.folders import MARKER, check_inside, claim, is_marked
from ramac.io import atomic_write_text, move_aside

ROOT = Path(__file__).resolve().parents[2]
BANDIT = ["bandit", "--profile", "smoke", "--algos", "bc", "--steps", "4", "--workers", "1"]
INTERRUPTED = "interrupted: finished runs are kept; run the same command again to resume\n"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def marked(folder: Path) -> Path:
    claim(folder)
    return folder


# ----------------------------------------------------------------------------- links


def test_an_atomic_write_into_a_folder_linked_outside_is_refused(tmp_path):
    out, outside = marked(tmp_path / "out"), tmp_path / "outside"
    outside.mkdir()
    (out / "runs").symlink_to(outside)
    with pytest.raises(UserError, match=r"runs: a symbolic link to .*outside, outside"):
        atomic_write_text(out / "runs" / "bc" / "summary.csv", "x\n")
    assert list(outside.iterdir()) == []  # not even the folder was made there
    (out / "inner").mkdir()
    (out / "alias").symlink_to(out / "inner")  # a link that stays inside is fine
    atomic_write_text(out / "alias" / "a.csv", "x\n")
    assert (out / "inner" / "a.csv").read_text() == "x\n"


def test_a_results_folder_that_is_a_link_itself_is_used(tmp_path):
    real = marked(tmp_path / "scratch" / "results")
    (tmp_path / "results").symlink_to(real)  # results/ on a scratch disk
    atomic_write_text(tmp_path / "results" / "runs" / "a.csv", "x\n")
    assert (real / "runs" / "a.csv").exists()


def test_moving_aside_never_follows_a_linked_corrupt_folder(tmp_path, capsys):
    out, outside = marked(tmp_path / "out"), tmp_path / "outside"
    outside.mkdir()
    record = out / "runs" / "metrics.json"
    record.parent.mkdir()
    record.write_text("{")
    (record.parent / "corrupt").symlink_to(outside)
    moved = move_aside(record, "not JSON")
    assert moved == record.parent / "corrupt-1" / "metrics.json" and moved.read_text() == "{"
    assert list(outside.iterdir()) == []
    assert f"moved to {moved}" in capsys.readouterr().err  # the line names where it went


def test_a_record_read_through_a_link_out_is_refused(tmp_path):
    out = marked(tmp_path / "out")
    (tmp_path / "elsewhere.json").write_text("{}")
    (out / "metrics.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UserError, match="outside"):
        runs.read_metrics(out / "metrics.json")
    assert check_inside(out / "metrics.json")  # written by name: the link itself is replaced


@pytest.fixture(scope="module")
def bandit_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bandit") / "out"
    assert main([*BANDIT, "--out", str(out)]) == 0
    return out


def test_healing_keeps_damaged_records_inside_the_results_folder(bandit_folder, tmp_path, capsys):
    out, outside = tmp_path / "out", tmp_path / "outside"
    shutil.copytree(bandit_folder, out)
    outside.mkdir()
    run = next(out.glob("runs/bc/seed0-*"))
    (run / "corrupt").symlink_to(outside)
    (run / "metrics.json").write_text("")
    assert main([*BANDIT, "--out", str(out)]) == 0
    assert list(outside.iterdir()) == []
    assert (run / "corrupt-1" / "metrics.json").read_bytes() == b""
    assert (run / "done").exists() and json.loads((run / "metrics.json").read_text())
    assert "corrupt-1/metrics.json" in capsys.readouterr().err


def test_a_run_folder_linked_outside_is_refused_before_any_work(bandit_folder, tmp_path, capsys):
    out, outside = tmp_path / "out", tmp_path / "outside"
    shutil.copytree(bandit_folder, out)
    shutil.rmtree(out / "runs")
    outside.mkdir()
    (out / "runs").symlink_to(outside)
    assert main([*BANDIT, "--out", str(out)]) == 2
    assert "runs: a symbolic link" in one_line_error(capsys)
    assert list(outside.iterdir()) == [] and not (out / "lock").exists()


# ----------------------------------------------------------------------------- the marker


def test_a_folder_of_the_users_own_is_refused_unless_forced(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.csv").write_text("my,own\n1,2\n")
    (out / "report.html").write_text("<p>mine</p>")
    assert main([*BANDIT, "--out", str(out)]) == 2
    line = one_line_error(capsys)
    assert str(out) in line and "--force" in line
    assert (out / "summary.csv").read_text() == "my,own\n1,2\n" and not is_marked(out)
    assert main([*BANDIT, "--out", str(out), "--force"]) == 0
    assert is_marked(out) and json.loads((out / MARKER).read_text())["tool"] == "ramac"


def test_a_new_folder_gets_the_marker(bandit_folder):
    record = json.loads((bandit_folder / MARKER).read_text())
    assert record["tool"] == "ramac" and record["version"] and record["created"]


def test_a_results_folder_of_an_earlier_version_is_adopted(bandit_folder, tmp_path, capsys):
    out = tmp_path / "old"
    shutil.copytree(bandit_folder, out)
    (out / MARKER).unlink()
    assert main([*BANDIT, "--out", str(out)]) == 0
    assert "adopted" in capsys.readouterr().err and is_marked(out)


def test_a_data_folder_of_the_users_own_is_refused(tmp_path, monkeypatch):
    from ramac.data.generate import claim_data_folder

    data = tmp_path / "data"
    (data / "generated").mkdir(parents=True)
    monkeypatch.setenv("RAMAC_DATA_DIR", str(data))
    assert claim_data_folder() == data and is_marked(data)  # the toolkit's own: adopted
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("")
    monkeypatch.setenv("RAMAC_DATA_DIR", str(tmp_path / "home"))
    with pytest.raises(UserError, match="home: not empty and not made by ramac"):
        claim_data_folder()


# ----------------------------------------------------------------------------- one command


def test_a_second_command_waits_for_the_folder_before_writing_tables(bandit_folder, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(bandit_folder, out)
    (out / "summary.csv").unlink()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {**locks._owner(), "pid": holder.pid}
        owner["process_start"] = locks._process_start(holder.pid)
        (out / locks.LOCK).write_text(json.dumps(owner))  # another command holds the folder
        env = {**os.environ, "RAMAC_LOCK_POLL_SECONDS": "0.1"}
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "reproduce.py"),
                *BANDIT,
                "--steps",
                "8",
                "--out",
                str(out),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(8)
        assert proc.poll() is None and not (out / "summary.csv").exists()  # it waits
        (out / locks.LOCK).unlink()  # the first command ends
        _, err = proc.communicate(timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0, err
    assert f"note: {out} is being worked on by pid {holder.pid}" in err
    assert set(pd.read_csv(out / "summary.csv")["train_steps"]) == {8}


# ----------------------------------------------------------------------------- all


def test_all_applies_algos_steps_and_seeds_to_both_halves(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("pipeline.bandit.run_bandit", lambda **kw: seen.setdefault("bandit", kw))
    monkeypatch.setattr("pipeline.suite.run_plan", lambda plan, *a: seen.setdefault("suite", plan))
    monkeypatch.setattr("reports.suite.write_suite_reports", lambda *a: tmp_path)
    args = ["all", "--profile", "smoke", "--algos", "bc", "--steps", "4", "--seeds", "3"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    assert (seen["bandit"]["algos"], seen["bandit"]["steps"], seen["bandit"]["seeds"]) == (
        ["bc"],
        4,
        3,
    )
    jobs = seen["suite"].jobs
    assert {j.algo for j in jobs} == {"bc"} and {j.steps for j in jobs} == {4}
    assert {j.seed for j in jobs} == {0, 1, 2}


def test_all_refuses_an_algorithm_one_half_does_not_run(tmp_path, capsys):
    assert main(["all", "--profile", "smoke", "--algos", "ravl", "--out", str(tmp_path)]) == 2
    assert "ravl is not a method of the bandit" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- FIFOs, disks


@pytest.mark.parametrize("name", ["metrics.json", "actions.npz"])
def test_a_fifo_where_a_record_should_be_is_moved_aside_not_read(tmp_path, name, capsys):
    from eval.bandit import ACTIONS, read_actions

    run = marked(tmp_path / "run")
    (run / "done").write_text("")
    (run / "metrics.json").write_text('{"a": 1}')
    (run / name).unlink(missing_ok=True)
    os.mkfifo(run / name)
    assert runs.finished(run, {ACTIONS: read_actions}, heal=True) is None  # returns at once
    assert (run / "corrupt" / name).is_fifo() and "not a regular file" in capsys.readouterr().err


def test_a_fifo_summary_is_one_line_for_report(bandit_folder, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(bandit_folder, out)
    (out / "summary.csv").unlink()
    os.mkfifo(out / "summary.csv")
    assert main(["report", "--profile", "smoke", "--out", str(out)]) == 2
    assert "summary.csv: not a regular file" in one_line_error(capsys)


def test_a_full_disk_names_the_dataset_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    from ramac.data import generate

    def full(name, mode):
        Path(name).write_bytes(b"\0" * 100)
        raise OSError(28, "Can't synchronously write data (file write failed: ...\n, ...)")

    monkeypatch.setattr(generate.h5py, "File", full)
    path = tmp_path / "data" / "generated" / "hopper-medium-gen-n10-s0.hdf5"
    with pytest.raises(OSError) as caught:
        generate._write_hdf5(path, [], {})
    assert caught.value.filename == str(path) and caught.value.strerror == os.strerror(28)
    assert list(path.parent.iterdir()) == []


# ----------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _workers_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (_stat(int(entry.name)) or ("", 0))[1] == parent:
            try:
                if b"spawn_main" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _wait(condition, proc: subprocess.Popen, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, f"the command ended before {what}: {proc.stderr.read()}"
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _command(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "reproduce.py"), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _kill_group(proc: subprocess.Popen) -> None:
    """Whatever happened, nothing of the command survives the test."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


@pytest.mark.slow
@linux_only
def test_sigterm_ends_train_in_one_line_and_a_rerun_resumes_to_the_same_numbers(tmp_path):
    env = {"RAMAC_DATA_DIR": str(tmp_path / "data")}
    args = ["--profile", "smoke", "--algos", "radac", "--seeds", "2", "--steps", "600"]
    args += ["--workers", "2", "--no-seed-stacks"]  # one pool worker per seed
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    def finish(*stage_args: str) -> None:
        proc = _command([*stage_args, *args], env)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]

    finish("train", "--out", str(straight))
    proc = _command(["train", *args, "--out", str(killed)], env)
    try:
        workers = _wait(
            lambda: len(_workers_of(proc.pid)) == 2 and _workers_of(proc.pid), proc, "2 workers"
        )
        _wait(lambda: list(killed.glob("runs/**/checkpoint.pt")), proc, "a checkpoint")
        os.kill(proc.pid, signal.SIGTERM)  # as `kill PID` and a scheduler's time limit do
        _, err = proc.communicate(timeout=60)
    finally:
        _kill_group(proc)
    assert proc.returncode == 143 and err == INTERRUPTED
    deadline = time.monotonic() + 5
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers))
    assert not list(killed.glob("**/lock")) and not list(killed.glob("**/.*.tmp"))
    assert not list(killed.glob("runs/**/done"))  # stopped mid-way

    finish("train", "--out", str(killed))  # resumes
    for out in (straight, killed):
        finish("evaluate", "--out", str(out))
    metrics = ["mean_return", "cvar", "ood_rate", "risky_rate", "train_steps"]
    a, b = (pd.read_csv(out / "summary.csv").sort_values("seed") for out in (straight, killed))
    pd.testing.assert_frame_equal(
        a[metrics].reset_index(drop=True), b[metrics].reset_index(drop=True)
    )


@pytest.mark.slow
@linux_only
def test_a_worker_killed_as_by_the_oom_killer_is_named_and_the_others_finish(tmp_path):
    out = tmp_path / "bandit"
    args = ["bandit", "--profile", "smoke", "--algos", "bc", "cvae_ql", "--steps", "1500"]
    args += ["--workers", "2", "--no-seed-stacks", "--out", str(out)]
    proc = _command(args)
    try:
        lock = _wait(lambda: list(out.glob("runs/cvae_ql/*/lock")), proc, "cvae_ql training")[0]
        victim = _wait(lambda: json.loads(lock.read_text() or "{}").get("pid"), proc, "its owner")
        run = lock.parent
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        _kill_group(proc)
    assert proc.returncode == 2 and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"error: {run}: ") and "SIGKILL" in line and "again" in line
    assert list(out.glob("runs/bc/*/done")) and not (run / "done").exists()
    assert not list(out.glob("**/lock"))
    again = _command(args)  # the rerun finishes the killed run
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert (run / "done").exists() and len(pd.read_csv(out / "summary.csv")) == 2
