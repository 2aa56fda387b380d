"""One owner per run folder: a lock file while a process trains or evaluates the run.

``<run folder>/lock`` is created atomically (``O_CREAT | O_EXCL``) and names its owner: pid,
host, the host's boot id and the process's start time (so a pid reused after a restart is
not taken for the owner), and when it took the run. It is removed when the work ends, on an
error too. Another process that finds it waits while the owner is alive (polling, with a
one-line note), then reads what the owner left (a finished run is read, not redone); a lock
whose owner is gone from this host is stale and taken over with a one-line warning. A lock
held on another host (a cluster on a shared file system) cannot be checked from here: its
owner touches it every minute, and one left untouched for ``REMOTE_STALE_SECONDS`` (its
node died) is stale; meanwhile it is waited for, and the note names the file to delete.

Several run folders (a seed stack) are locked in sorted order, so two processes that lock
overlapping sets never wait for each other in a circle.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ramac.config import env_seconds
from ramac.folders import check_inside

LOCK = "lock"
# A bad value is a one-line error when the module is imported (as a plan is made).
POLL_SECONDS = env_seconds("RAMAC_LOCK_POLL_SECONDS", 2.0)
HEARTBEAT_SECONDS = 60.0  # how often an owner touches its locks
REMOTE_STALE_SECONDS = 15 * 60  # another host's lock untouched this long: its owner is gone


def _read(path: str) -> str:
    with contextlib.suppress(OSError), open(path) as handle:
        return handle.read()
    return ""


def _boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id").strip()


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), "" where unknown."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else ""


def _owner() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "process_start": _process_start(pid),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }


def _alive(owner: dict[str, Any], stat: os.stat_result) -> bool:
    """Whether the lock's owner may still be running; on another host: whether it touched
    the lock (``stat``) within ``REMOTE_STALE_SECONDS``."""
    if owner.get("host") != socket.gethostname():
        return time.time() - stat.st_mtime < REMOTE_STALE_SECONDS
    if owner.get("boot_id") and _boot_id() and owner["boot_id"] != _boot_id():
        return False  # this host restarted since
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    stat = _read(f"/proc/{pid}/stat")
    if stat and stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
        return False  # a zombie: ended, not yet reaped
    started = owner.get("process_start")
    return not (started and stat and _process_start(pid) != started)  # else a reused pid


def _describe(owner: dict[str, Any]) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('started')}"


def _take(path: Path, owner: dict[str, Any]) -> bool:
    """Create the lock file for ``owner``; False when it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, (json.dumps(owner) + "\n").encode())
    finally:
        os.close(fd)
    return True


def _load(path: Path) -> tuple[dict[str, Any] | None, os.stat_result | None]:
    """The lock's owner and its file's identity; (None, None) once it is gone. A lock that
    does not parse (its owner was killed between creating and writing it) has owner {}."""
    try:
        stat = path.lstat()
        # a FIFO where the lock should be would block the read forever: not a lock
        text = path.read_text() if path.is_file() and not path.is_symlink() else ""
    except FileNotFoundError:
        return None, None
    try:
        owner = json.loads(text)
    except ValueError:
        owner = {}
    if not isinstance(owner, dict):
        owner = {}
    if not owner and time.time() - stat.st_mtime < 10 * POLL_SECONDS:
        owner = {"host": "?", "note": "being written"}  # give its writer time to finish
    return owner, stat


def _take_over(path: Path, stale: os.stat_result) -> None:
    """Remove the stale lock ``path`` if it is still the file judged stale (``stale``): it
    is renamed to a private name first, and put back when another process replaced it."""
    private = path.with_name(f".{LOCK}.stale.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, private)
    except FileNotFoundError:
        return  # another process took it over first
    moved = private.stat()
    if (moved.st_ino, moved.st_dev) != (stale.st_ino, stale.st_dev):
        with contextlib.suppress(FileExistsError):
            os.link(private, path)  # a live owner's fresh lock: give it back
    private.unlink()


def acquire(run_dir: Path) -> dict[str, Any]:
    """Own ``run_dir`` (its lock file), waiting while another live process owns it; returns
    the owner record written. A stale lock is taken over with a one-line warning. A folder
    reached through a link out of its results folder is refused (``ramac.folders``)."""
    check_inside(run_dir / LOCK)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    mine = _owner()
    noted = False
    while not _take(path, mine):
        owner, stat = _load(path)
        if owner is None or stat is None:
            continue  # released meanwhile: try again
        if owner and _alive(owner, stat):
            if (owner.get("pid"), owner.get("host")) == (mine["pid"], mine["host"]):
                # never wait for ourselves: a second lock on a folder this process holds
                raise RuntimeError(f"{path}: already held by this process")
            if not noted:
                print(
                    f"note: {run_dir} is being worked on by {_describe(owner)}: waiting for it "
                    f"(delete {path} if that process is gone)",
                    file=sys.stderr,
                    flush=True,
                )
                noted = True
            time.sleep(POLL_SECONDS)
            continue
        what = _describe(owner) if owner else "an unreadable owner"
        print(
            f"warning: {run_dir}: taking over the lock of {what}, which is no longer running",
            file=sys.stderr,
            flush=True,
        )
        _take_over(path, stat)
    return mine


def release(run_dir: Path, owner: dict[str, Any]) -> None:
    """Remove ``run_dir``'s lock file when it is still ``owner``'s."""
    path = run_dir / LOCK
    found, _ = _load(path)
    if found is not None and found.get("token") == owner["token"]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clear_dead(run_dir: Path, pid: int) -> None:
    """Remove ``run_dir``'s lock when its owner is process ``pid`` of this host, which the
    caller saw die (a pool worker killed): a rerun then finds no stale lock to warn about."""
    path = run_dir / LOCK
    owner, stat = _load(path)
    if owner and stat and owner.get("pid") == pid and owner.get("host") == socket.gethostname():
        _take_over(path, stat)


def _heartbeat(paths: list[Path], stop: threading.Event) -> None:
    """Touch ``paths`` every ``HEARTBEAT_SECONDS`` until ``stop``: the owner is alive."""
    while not stop.wait(HEARTBEAT_SECONDS):
        for path in paths:
            with contextlib.suppress(OSError):
                os.utime(path)


@contextlib.contextmanager
def owned(run_dirs: Path | Iterable[Path]) -> Iterator[None]:
    """Hold the locks of ``run_dirs`` (one folder or several, taken in sorted order) for the
    block; released when it ends, by an exception too."""
    dirs = [run_dirs] if isinstance(run_dirs, Path) else sorted(set(run_dirs))
    held: list[tuple[Path, dict[str, Any]]] = []
    stop = threading.Event()
    try:
        for run_dir in dirs:
            held.append((run_dir, acquire(run_dir)))
        paths = [run_dir / LOCK for run_dir, _ in held]
        threading.Thread(target=_heartbeat, args=(paths, stop), daemon=True).start()
        yield
    finally:
        stop.set()
        for run_dir, owner in reversed(held):
            with contextlib.suppress(OSError):
                release(run_dir, owner)
