#!/usr/bin/env python
"""Bad inputs a new user might give the command line (tracker issue 13), run and tabulated.

Each case is set up in a fresh temporary folder ``$T`` and the real command line runs there
(``python reproduce.py STAGE ...``, smoke profile, a tiny budget: seconds per case):
- a suite file with one bad key: a copy of ``configs/suites/stochastic-d4rl.yaml``, passed
  with ``--suite``;
- a bad ``configs/algos/*.yaml`` or ``configs/suites/bandit.yaml`` value: these are read from
  ``ramac.config.CONFIG_DIR`` (``<checkout>/configs``) and no option or environment variable
  points elsewhere (the bandit stage ignores ``--suite``), so the case runs in a copy of the
  checkout's tracked files with the one file edited; the real configs/ is never written;
- damaged records: a copy of one trained smoke folder (built once per session by the ``ok-*``
  cases), with one file truncated, emptied or removed;
- generated data: the smoke dataset copied into the session's ``RAMAC_DATA_DIR``; D4RL files:
  a D4RL-format copy of it in ``$T/d4rl`` (``D4RL_DATASET_DIR``).

    python scripts/bad_inputs.py                    # every case -> results/bad_inputs.md
    python scripts/bad_inputs.py --list             # the cases, without running them
    python scripts/bad_inputs.py --only 'suite-*'   # a subset (glob or regex on id / category)
    python scripts/bad_inputs.py --jobs 1 --keep    # one case at a time; keep $T folders

Each case accepts one or more outcomes (``expect``):
  error  exit 2 and exactly one stderr line that is not progress and not a heal notice
         (argparse's usage block before its ``error:`` line is part of that one error; a
         ``warning: ... corrupt/ ...`` line that reports a damaged record moved aside is a
         heal notice), no traceback, no file that existed before changed (a damaged record
         moved under ``corrupt/`` intact is not a change), no checkpoint written (a bad input
         fails before any work), the line under 600 characters, saying what the case needs
         said (``want``: every pattern) and not what misleads (``forbid``);
  ok     a valid input: exit 0, no traceback, the records it should leave are right (``check``);
  heal   a damaged record: exit 0, no traceback, the damaged bytes kept under a ``corrupt/``
         folder (nothing deleted), and the records right again (``check``).
PASS when the outcome is one the case accepts and meets its conditions, else FAIL with the
reason. A case that runs past the timeout (120 s) is killed with its process group: FAIL.
Process and progress cases (kill -9, Ctrl-C, two commands on one --out, progress bars) are
not run here; their rows name the test that covers them (looked up by name in tests/).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # seconds per case
LINE_CHARS = 160  # the last stderr line as the table shows it
LONG_LINE = 600  # an error line longer than this is not "one clear line" (a repr, a dump)
SMOKE_DATA = "hopper-medium-expert-gen-n3000-s0"  # the suite smoke profile's generated dataset
D4RL_FILE = "hopper_medium_expert-v2.hdf5"  # what `--data d4rl` reads for the smoke profile

# The flags each stage gets unless the case sets them itself ("[std]" in the table).
STD = {
    "bandit": ("--profile", "smoke", "--algos", "bc", "--steps", "4", "--workers", "1"),
    "train": (
        "--profile",
        "smoke",
        "--algos",
        "bc",
        "--seeds",
        "1",
        "--steps",
        "4",
        "--workers",
        "1",
    ),  # fmt: skip
    "data": ("--profile", "smoke"),
    "report": ("--profile", "smoke"),
}
STD["evaluate"] = STD["train"]
# The options of the suite smoke folder the record cases copy (the smoke profile's radac and
# bc, 2 seeds each): a rerun on a copy uses them ("[fix]" in the table).
FIX = ("--profile", "smoke", "--steps", "4", "--workers", "1")
# Fixtures: the session's smoke data, a D4RL-format file, and the output folders of three
# valid cases (a finished bandit folder, a trained and a finished suite folder).
FIXTURE_CASES = {
    "bandit_done": "ok-bandit",
    "suite_trained": "ok-train",
    "suite_done": "ok-evaluate",
}

PROGRESS = re.compile(r"\d+%\||\|\s*\d+/\d+ \[")
ARGPARSE_ERROR = re.compile(r"^\S+(?: \S+)*: error: ")
HEAL_NOTICE = re.compile(r"^warning: .*corrupt", re.I)


class Skip(Exception):
    """The case cannot be built on this machine (the message says why)."""


# ----------------------------------------------------------------------------- cases


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad (or valid) input: how to set it up, the command, and which outcomes are right."""

    id: str
    category: str
    what: str  # what is bad, in words
    stage: str = ""  # reproduce.py's stage ("" for a covered-by-test row)
    args: tuple[str, ...] = ()  # {T}: the case folder
    std: tuple[str, ...] | None = None  # None: STD[stage]
    out: str | None = "{T}/out"  # --out (None: not given)
    expect: tuple[str, ...] = ("error",)
    prepare: Callable[[Ctx], None] | None = None
    check: Callable[[Ctx], str | None] | None = None  # ok / heal: None when the records are right
    repo: bool = False  # run in a copy of the checkout (configs/ edited there)
    env: tuple[tuple[str, str], ...] = ()  # extra environment ({T} expanded)
    want: tuple[str, ...] = ()  # regexes the error line must match (each)
    forbid: str | None = None  # regex the error line must not match
    covered: str | None = None  # regex of the test name that covers it (not run here)
    fixtures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.want, str):
            object.__setattr__(self, "want", (self.want,))

    def _args(self) -> list[str]:
        args = list(self.args)
        if self.out is not None and "--out" not in args:
            args += ["--out", self.out]
        return args

    def _std(self) -> tuple[str, ...]:
        return STD.get(self.stage, ()) if self.std is None else self.std

    def argv(self, folder: str) -> list[str]:
        """The stage and its arguments, ``{T}`` as ``folder``."""
        argv = [self.stage, *self._args(), *_missing_flags(self._std(), self._args())]
        return [a.replace("{T}", folder) for a in argv]

    def shown(self) -> str:
        """The command as the table shows it: the case's own arguments, then [std] / [fix]."""
        args = " ".join([self.stage, *self._args()]).replace("{T}", "$T")
        std = tuple(self._std())
        if not std:
            tag = ""
        elif std == FIX:
            tag = " [fix]"
        elif std == STD.get(self.stage):
            tag = " [std]"
        else:
            tag = " " + " ".join(_missing_flags(std, self.args))
        return ("repo copy: " if self.repo else "") + squeeze(args) + tag


def _missing_flags(std: Sequence[str], args: Sequence[str]) -> list[str]:
    """The flags of ``std`` (with their values) that ``args`` does not set."""
    given = {a for a in args if a.startswith("--")}
    out: list[str] = []
    i = 0
    while i < len(std):
        flag, i = std[i], i + 1
        values = []
        while i < len(std) and not std[i].startswith("--"):
            values.append(std[i])
            i += 1
        if flag not in given:
            out += [flag, *values]
    return out


def squeeze(text: str) -> str:
    """Runs of 20+ equal characters written as ``x{300}``."""
    return re.sub(r"(.)\1{19,}", lambda m: f"{m.group(1)}{{{len(m.group(0))}}}", text)


@dataclasses.dataclass
class Ctx:
    """A case's folder while it is set up and run."""

    session: Session
    case: Case
    dir: Path
    root: Path  # the checkout the command runs in (a copy when case.repo)
    env: dict[str, str]
    damaged: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, sha256)
    cleanups: list[Callable[[], None]] = dataclasses.field(default_factory=list)

    @property
    def out(self) -> Path:
        return Path((self.case.out or "{T}/out").replace("{T}", str(self.dir)))

    def fixture(self, name: str, into: Path | None = None) -> Path:
        """A copy of fixture ``name`` (a finished output folder) at ``into`` (the output)."""
        into = into or self.out
        shutil.copytree(self.session.fixture(name), into, symlinks=True)
        return into

    def damage(self, path: Path, how: str) -> None:
        """Damage ``path`` as a full disk or a kill would: truncate, zero, garbage or remove."""
        if how == "remove":
            path.unlink()
            return
        data = path.read_bytes()
        new = {
            "truncate": data[: max(1, len(data) // 2)],
            "zero": b"",
            "garbage": b'{"algo": "bc", "mean_ret',
        }[how]
        path.write_bytes(new)
        self.damaged.append((str(path.relative_to(self.dir)), sha256(new)))


@dataclasses.dataclass
class Result:
    case: Case
    rc: int | None = None
    line: str = ""
    lines: int = 0
    traceback: bool = False
    changed: list[str] = dataclasses.field(default_factory=list)
    trained: bool = False
    outcome: str = ""  # error / ok / heal / "" (none of them)
    verdict: str = ""  # PASS / FAIL / skipped / covered / not covered
    reason: str = ""
    seconds: float = 0.0
    folder: Path | None = None  # the case folder ($T)
    out: Path | None = None  # its output folder


# ----------------------------------------------------------------------------- helpers


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256); caches skipped."""
    hashes = {}
    for path in folder.rglob("*"):
        if "__pycache__" in path.parts or path.is_symlink() or not path.is_file():
            continue
        try:
            hashes[str(path.relative_to(folder))] = sha256(path.read_bytes())
        except OSError:
            continue
    return hashes


def message_lines(stderr: str) -> list[str]:
    """stderr's lines that are neither blank nor progress nor heal notices; argparse's usage
    block before its ``error:`` line is dropped (it is how argparse states one error)."""
    lines = [seg.rstrip() for line in stderr.splitlines() for seg in line.split("\r")]
    lines = [line for line in lines if line.strip() and not PROGRESS.search(line)]
    if lines and ARGPARSE_ERROR.match(lines[-1]):
        starts = [i for i, line in enumerate(lines) if line.startswith("usage:")]
        if starts:
            lines = lines[: starts[-1]] + [lines[-1]]
    return [line for line in lines if not HEAL_NOTICE.match(line)]


def run_dirs(out: Path) -> list[Path]:
    """The run folders under ``out/runs`` (bandit: runs/<algo>/seed*, suite: one level more)."""
    found = {p.parent for p in out.glob("runs/**/config.yaml")}
    found |= {p.parent for p in out.glob("runs/**/checkpoint.pt")}
    return sorted(d for d in found if d.name.startswith("seed") and "corrupt" not in d.parts)


def first_run(out: Path, algo: str = "bc", seed: int = 0) -> Path:
    for d in run_dirs(out):
        if d.parent.name == algo and d.name.startswith(f"seed{seed}-"):
            return d
    raise RuntimeError(f"no {algo} seed{seed} run in {out}")


def edit_yaml(path: Path, edit: Callable[[Any], Any]) -> None:
    """``path`` rewritten with ``edit`` applied to its parsed YAML (in place or returned)."""
    data = yaml.safe_load(path.read_text())
    new = edit(data)
    path.write_text(yaml.safe_dump(data if new is None else new, sort_keys=False))


def mount_tmpfs(ctx: Ctx, where: Path, options: str) -> Path:
    """A tmpfs at ``where`` (unmounted after the case); Skip when this machine cannot mount."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise Skip(f"cannot mount a tmpfs ({proc.stderr.strip() or 'mount failed'})")
    ctx.cleanups.append(lambda: _umount(where))
    return where


def _umount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def copy_checkout(root: Path, dest: Path) -> None:
    """The checkout's tracked and unignored files (as they are in the work tree) at ``dest``."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
    )
    if listed.returncode == 0:
        for name in listed.stdout.decode().split("\0"):
            src = root / name
            if name and src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
        return
    ignore = shutil.ignore_patterns(".git", ".venv", "results", "data", "__pycache__", "*.egg-info")
    shutil.copytree(root, dest, ignore=ignore, dirs_exist_ok=True)


def find_test(pattern: str) -> str | None:
    """``tests/<path>::<test>`` of the first test whose name matches ``pattern``."""
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if path.name == "test_bad_inputs.py":
            continue
        for match in re.finditer(r"^def (test_\w+)", path.read_text(), re.M):
            if re.search(pattern, match.group(1)):
                return f"{path.relative_to(ROOT)}::{match.group(1)}"
    return None


class _suppress:
    """``with _suppress():`` ignores an OSError (cleaning up after a case)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


# ----------------------------------------------------------------------------- checks


def _torch_loads(path: Path) -> str | None:
    import torch

    try:
        torch.load(path, weights_only=True)  # as the toolkit loads it
    except Exception as exc:  # the check reports any failure to load
        return f"{path.name} does not load ({exc.__class__.__name__})"
    return None


def _csv_rows(path: Path) -> int | str:
    import pandas as pd

    try:
        return len(pd.read_csv(path))
    except Exception as exc:
        return f"{path.name} unreadable ({exc.__class__.__name__})"


def _finished(run: Path) -> str | None:
    if not (run / "done").exists():
        return f"{run.name}: no done"
    try:
        json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        return f"{run.name}: metrics.json unreadable ({exc.__class__.__name__})"
    return None


def _configs(runs: Sequence[Path]) -> str | None:
    for run in runs:
        try:
            config = yaml.safe_load((run / "config.yaml").read_text())
        except (OSError, yaml.YAMLError) as exc:
            return f"{run.name}: config.yaml unreadable ({exc.__class__.__name__})"
        if not isinstance(config, dict) or "algo" not in config:
            return f"{run.name}: config.yaml holds no run record ({len(str(config or ''))} chars)"
    return None


def trained(ctx: Ctx) -> str | None:
    """Every run has a checkpoint that loads and a config.yaml record."""
    runs = run_dirs(ctx.out)
    if not runs:
        return "no run folders"
    for run in runs:
        if not (run / "checkpoint.pt").exists():
            return f"{run.name}: no checkpoint.pt"
        if problem := _torch_loads(run / "checkpoint.pt"):
            return f"{run.name}: {problem}"
    return _configs(runs)


def logs_whole(ctx: Ctx) -> str | None:
    """Every run is trained (:func:`trained`) and its train_log.csv has no cut-off line."""
    if problem := trained(ctx):
        return problem
    for run in run_dirs(ctx.out):
        text = (run / "train_log.csv").read_text()
        lines = text.splitlines()
        width = lines[0].count(",") if lines else -1
        if not text.endswith("\n") or any(line.count(",") != width for line in lines):
            return f"{run.name}: train_log.csv still cut off"
    return None


def suite_logs_whole(ctx: Ctx) -> str | None:
    """The suite is complete (:func:`suite_complete`) with every run's log whole."""
    return suite_complete(ctx) or logs_whole(ctx)


def suite_complete(ctx: Ctx) -> str | None:
    """Every run finished with readable metrics and episodes; summary.csv has every run."""
    runs = run_dirs(ctx.out)
    if not runs:
        return "no run folders"
    for run in runs:
        if problem := _finished(run):
            return problem
        rows = _csv_rows(run / "episodes.csv")
        if isinstance(rows, str) or rows == 0:
            return f"{run.name}: {rows or 'episodes.csv empty'}"
    rows = _csv_rows(ctx.out / "summary.csv")
    if rows != len(runs):
        return f"summary.csv: {rows} rows for {len(runs)} runs"
    return _configs(runs)


def bandit_complete(ctx: Ctx) -> str | None:
    """Every run finished with its actions; summary.csv has every run; the figure is there."""
    import numpy as np

    runs = run_dirs(ctx.out)
    if not runs:
        return "no run folders"
    for run in runs:
        if problem := _finished(run):
            return problem
        try:
            np.load(run / "actions.npz")["actions"]
        except Exception as exc:
            return f"{run.name}: actions.npz unreadable ({exc.__class__.__name__})"
    rows = _csv_rows(ctx.out / "summary.csv")
    if rows != len(runs):
        return f"summary.csv: {rows} rows for {len(runs)} runs"
    if not (ctx.out / "bandit.png").exists():
        return "no bandit.png"
    return _configs(runs)


def report_written(ctx: Ctx) -> str | None:
    """The report's tables are there and summary.csv is readable."""
    rows = _csv_rows(ctx.out / "summary.csv")
    if isinstance(rows, str) or rows == 0:
        return f"summary.csv: {rows or 'no rows'}"
    if not list(ctx.out.glob("leaderboard.*")):
        return "no leaderboard"
    return None


def card_written(ctx: Ctx) -> str | None:
    if not list((ctx.dir / "d4rl").glob("*card*")):
        return "no dataset card beside the D4RL file"
    return None


# ----------------------------------------------------------------------------- set-up steps


def suite_copy(edit: Callable[[Any], Any] | None = None, text: Callable[[str], str] | None = None):
    """A ``prepare`` that writes ``$T/suite.yaml``: the checkout's Stochastic-D4RL suite file
    with ``edit`` applied to its mapping (or ``text`` to its text)."""

    def prepare(ctx: Ctx) -> None:
        path = ctx.dir / "suite.yaml"
        shutil.copy(ctx.root / "configs/suites/stochastic-d4rl.yaml", path)
        if edit is not None:
            edit_yaml(path, edit)
        if text is not None:
            path.write_text(text(path.read_text()))

    return prepare


def repo_edit(rel: str, edit: Callable[[Any], Any] | None = None, text=None):
    """A ``prepare`` that edits ``rel`` in the case's copy of the checkout."""

    def prepare(ctx: Ctx) -> None:
        path = ctx.root / rel
        if edit is not None:
            edit_yaml(path, edit)
        if text is not None:
            path.write_text(text(path.read_text()))

    return prepare


DELETE = object()


def setting(path: str, value: Any) -> Callable[[Any], None]:
    """An edit that sets ``a.b.c`` to ``value`` (``DELETE``: removes the key)."""
    keys = path.split(".")

    def edit(data: Any) -> None:
        for key in keys[:-1]:
            if data.get(key) is None:
                data[key] = {}
            data = data[key]
        if value is DELETE:
            data.pop(keys[-1], None)
        else:
            data[keys[-1]] = value

    return edit


def rename(path: str, new: str) -> Callable[[Any], None]:
    """An edit that renames key ``a.b.c`` to ``new`` (a typo)."""
    keys = path.split(".")

    def edit(data: Any) -> None:
        for key in keys[:-1]:
            data = data[key]
        data[new] = data.pop(keys[-1])

    return edit


def file(name: str, content: str = "not a folder\n") -> Callable[[Ctx], None]:
    def prepare(ctx: Ctx) -> None:
        (ctx.dir / name).write_text(content)

    return prepare


def with_fixture(name: str, then: Callable[[Ctx], None] | None = None) -> Callable[[Ctx], None]:
    """A ``prepare`` that copies fixture ``name`` to the output folder, then runs ``then``."""

    def prepare(ctx: Ctx) -> None:
        ctx.fixture(name)
        if then is not None:
            then(ctx)

    return prepare


def damage_run(filename: str, how: str, algo="bc", seed=0, unfinish=False):
    """Damage ``filename`` of a run (``unfinish``: first remove its done and its results)."""

    def then(ctx: Ctx) -> None:
        run = first_run(ctx.out, algo, seed)
        if unfinish:
            for name in ("done", "metrics.json", "actions.npz", "episodes.csv"):
                (run / name).unlink(missing_ok=True)
        target = run / filename
        if filename == "checkpoint.pending.pt":
            target.write_bytes((run / "checkpoint.pt").read_bytes())  # a stack's next state
        ctx.damage(target, how)

    return then


def damage_top(filename: str, how: str):
    def then(ctx: Ctx) -> None:
        ctx.damage(ctx.out / filename, how)

    return then


def d4rl_file(change: Callable[[Any], None] | None = None, content: bytes | None = None):
    """A ``prepare`` that puts a D4RL-format file for the smoke dataset into ``$T/d4rl`` (the
    smoke data with D4RL's keys and no generator metadata), changed by ``change(h5py file)``
    or replaced by ``content``."""

    def prepare(ctx: Ctx) -> None:
        folder = ctx.dir / "d4rl"
        folder.mkdir()
        target = folder / D4RL_FILE
        if content is not None:
            target.write_bytes(content)
            return
        shutil.copy(ctx.session.fixture("d4rl") / D4RL_FILE, target)
        if change is not None:
            import h5py

            with h5py.File(target, "a") as f:
                change(f)

    return prepare


def nan_rewards(f: Any) -> None:
    rewards = f["rewards"][()]
    rewards[5] = float("nan")
    f["rewards"][...] = rewards


def wrong_obs_dim(f: Any) -> None:
    for key in ("observations", "next_observations"):
        if key in f:
            value = f[key][()][:, :-1]
            del f[key]
            f.create_dataset(key, data=value)


def drop_rewards(f: Any) -> None:
    del f["rewards"]


def read_only_out(ctx: Ctx) -> None:
    """``$T/ro`` read-only: by permissions when not root, else a read-only tmpfs."""
    where = ctx.dir / "ro"
    if os.geteuid() != 0:
        where.mkdir()
        where.chmod(0o555)
        ctx.cleanups.append(lambda: where.chmod(0o755))
        return
    try:
        mount_tmpfs(ctx, where, "ro,size=1m")
    except Skip as exc:
        raise Skip(f"running as root (chmod does not stop root) and {exc}") from None


def read_only_records(ctx: Ctx) -> None:
    """A finished suite folder at ``$T/ro`` that cannot be written (permissions when not root,
    else a read-only bind mount)."""
    src = ctx.fixture("suite_done", ctx.dir / "records")
    where = ctx.dir / "ro"
    if os.geteuid() != 0:
        shutil.copytree(src, where)
        paths = [where, *where.rglob("*")]
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        ctx.cleanups.append(lambda: [p.chmod(0o755) for p in paths])
        return
    where.mkdir()
    for command in (
        ["mount", "--bind", str(src), str(where)],
        ["mount", "-o", "remount,ro,bind", str(where)],
    ):
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            _umount(where)
            raise Skip(f"running as root and cannot bind-mount read-only ({proc.stderr.strip()})")
        if command[1] == "--bind":
            ctx.cleanups.append(lambda: _umount(where))


def full_disk(ctx: Ctx) -> None:
    mount_tmpfs(ctx, ctx.dir / "full", "size=64k")


# ----------------------------------------------------------------------------- the cases

SUITE = ("--suite", "{T}/suite.yaml")
NO_STEPS = ("--profile", "smoke", "--algos", "bc", "--seeds", "1", "--workers", "1")
NO_SEEDS = ("--profile", "smoke", "--algos", "bc", "--steps", "4", "--workers", "1")
BANDIT_NO_STEPS = ("--profile", "smoke", "--algos", "bc", "--workers", "1")
D4RL_ENV = (("D4RL_DATASET_DIR", "{T}/d4rl"),)
BANDIT_YAML, BC_YAML = "configs/suites/bandit.yaml", "configs/algos/bc.yaml"
LONG = "{T}/" + "x" * 300 + "/out"


def suite_case(id: str, cat: str, what: str, edit=None, *, text=None, key: str, **kw) -> Case:
    """``train --suite $T/suite.yaml`` with one edit; the line must name the file and ``key``."""
    return Case(
        id, cat, what, kw.pop("stage", "train"), kw.pop("args", SUITE),
        prepare=suite_copy(edit, text), want=(r"suite\.yaml", key), **kw,
    )  # fmt: skip


def repo_case(id: str, cat: str, what: str, stage: str, rel: str, edit=None, *, key, **kw) -> Case:
    """``stage`` in a checkout copy whose ``rel`` has one edit; the line names file and key."""
    return Case(
        id, cat, what, stage, repo=True, prepare=repo_edit(rel, edit, kw.pop("text", None)),
        want=(re.escape(Path(rel).name), key), **kw,
    )  # fmt: skip


def record_case(id, cat, what, stage, fixture, then=None, **kw) -> Case:
    """A rerun on a copy of fixture ``fixture`` damaged by ``then``."""
    kw.setdefault("std", FIX if stage in ("train", "evaluate") else None)
    kw.setdefault("expect", ("heal",))
    return Case(
        id, cat, what, stage, kw.pop("args", ()), prepare=with_fixture(fixture, then),
        fixtures=(fixture,), **kw,
    )  # fmt: skip


def build_cases() -> list[Case]:
    """Every case, in table order: the issue's groups in its order, then the additions."""
    c: list[Case] = []

    # -- found only after training (issue: every run trains, then evaluation crashes)
    cat = "traceback"
    c.append(
        suite_case(
            "suite-eval-alpha-0",
            cat,
            "suite file: eval.alpha: 0",
            setting("eval.alpha", 0),
            key="alpha",
        )
    )
    c.append(
        suite_case(
            "suite-eval-alpha-1.5",
            cat,
            "suite file: eval.alpha: 1.5",
            setting("eval.alpha", 1.5),
            key="alpha",
        )
    )
    c.append(
        repo_case(
            "bandit-eval-alpha-0",
            cat,
            "bandit.yaml: eval.alpha: 0",
            "bandit",
            BANDIT_YAML,
            setting("eval.alpha", 0),
            key="alpha",
        )
    )

    # -- silently changed (issue)
    cat = "silently accepted"
    for stage in ("bandit", "train"):
        for flag, value, was in (
            ("seeds", "0", "fell back to the profile's"),
            ("steps", "0", "fell back to the profile's"),
            ("workers", "0", "taken as the default"),
        ):
            c.append(
                Case(
                    f"{stage}-{flag}-{value}",
                    cat,
                    f"--{flag} {value} ({was})",
                    stage,
                    (f"--{flag}", value),
                    want=flag,
                )
            )
    c.append(
        Case(
            "d4rl-nan-rewards-data",
            cat,
            "data --data d4rl: a D4RL file with a NaN reward",
            "data",
            ("--data", "d4rl"),
            prepare=d4rl_file(nan_rewards),
            env=D4RL_ENV,
            fixtures=("d4rl",),
            want=(re.escape(D4RL_FILE), "reward"),
        )
    )

    # -- tracebacks (issue)
    cat = "traceback"
    c.append(
        suite_case(
            "suite-profile-typo-stepz",
            cat,
            "suite file: profiles.smoke: stepz:",
            rename("profiles.smoke.steps", "stepz"),
            key="stepz",
            std=NO_STEPS,
        )
    )
    c.append(
        suite_case(
            "suite-steps-twenty",
            cat,
            "suite file: profiles.smoke.steps: twenty",
            setting("profiles.smoke.steps", "twenty"),
            key="steps",
            std=NO_STEPS,
        )
    )
    c.append(
        suite_case(
            "suite-seeds-1.5",
            cat,
            "suite file: profiles.smoke.seeds: 1.5",
            setting("profiles.smoke.seeds", 1.5),
            key="seeds",
            std=NO_SEEDS,
        )
    )
    c.append(
        suite_case(
            "suite-override-negative-lr",
            cat,
            "suite file: profiles.smoke.overrides.lr: -1e-3",
            setting("profiles.smoke.overrides.lr", -1e-3),
            key="lr",
        )
    )
    c.append(
        repo_case(
            "algo-yaml-negative-lr",
            cat,
            "bc.yaml: hopper-medium-expert-v2: lr: -1e-3",
            "train",
            BC_YAML,
            setting("overrides.hopper-medium-expert-v2.lr", -1e-3),
            key="lr",
        )
    )
    c.append(
        repo_case(
            "algo-yaml-negative-lr-bandit",
            cat,
            "bc.yaml: bandit: lr: -2e-3",
            "bandit",
            BC_YAML,
            setting("overrides.bandit.lr", -2e-3),
            key="lr",
        )
    )
    for stage in ("bandit", "train"):
        c.append(
            Case(
                f"{stage}-workers--1",
                cat,
                "--workers -1",
                stage,
                ("--workers", "-1"),
                want="workers",
            )
        )
    c.append(
        record_case(
            "bandit-actions-truncated",
            cat,
            "a finished bandit run's actions.npz truncated; rerun",
            "bandit",
            "bandit_done",
            damage_run("actions.npz", "truncate"),
            check=bandit_complete,
        )
    )

    # -- filesystem (issue: tracebacks; and more)
    cat = "filesystem"
    for stage in ("bandit", "train"):
        c.append(
            Case(
                f"{stage}-out-is-file",
                cat,
                "--out is a file",
                stage,
                out="{T}/file.txt",
                prepare=file("file.txt"),
                want="file.txt",
            )
        )
    c.append(
        Case(
            "train-out-under-file",
            cat,
            "--out below a file (file.txt/out)",
            "train",
            out="{T}/file.txt/out",
            prepare=file("file.txt"),
            want="file.txt",
        )
    )
    c.append(
        Case(
            "bandit-out-read-only",
            cat,
            "--out in a read-only folder",
            "bandit",
            out="{T}/ro/out",
            prepare=read_only_out,
            want="/ro",
        )
    )
    c.append(
        Case(
            "report-read-only-records",
            cat,
            "report into a read-only folder of records",
            "report",
            out="{T}/ro",
            prepare=read_only_records,
            fixtures=("suite_done",),
            want="/ro",
        )
    )
    for stage, job in (("train", "SuiteJob"), ("bandit", "BanditJob")):
        c.append(
            Case(
                f"{stage}-full-disk",
                cat,
                "--out on a full disk (64 KiB tmpfs)",
                stage,
                out="{T}/full/out",
                prepare=full_disk,
                want="/full",
                forbid=rf"{job}\(",
            )
        )
    for stage in ("bandit", "train"):
        c.append(
            Case(
                f"{stage}-name-too-long",
                cat,
                "--out with a 300-character folder name",
                stage,
                out=LONG,
                want="xxxx",
            )
        )
    c.append(
        Case(
            "suite-file-is-dir",
            cat,
            "--suite names a folder",
            "train",
            ("--suite", "{T}/folder"),
            prepare=lambda ctx: (ctx.dir / "folder").mkdir(),
            want="folder",
        )
    )
    c.append(
        Case(
            "data-dir-is-file",
            cat,
            "RAMAC_DATA_DIR is a file; data must be generated",
            "data",
            prepare=file("data.txt"),
            env=(("RAMAC_DATA_DIR", "{T}/data.txt"),),
            want="data.txt",
        )
    )

    # -- stuck until a person deletes files (issue): the rerun heals
    cat = "stuck record"
    c.append(
        record_case(
            "bandit-checkpoint-truncated",
            cat,
            "an unfinished bandit run's checkpoint.pt truncated; rerun",
            "bandit",
            "bandit_done",
            damage_run("checkpoint.pt", "truncate", unfinish=True),
            check=bandit_complete,
        )
    )
    c.append(
        record_case(
            "train-checkpoint-truncated",
            cat,
            "an unfinished run's checkpoint.pt truncated; train",
            "train",
            "suite_trained",
            damage_run("checkpoint.pt", "truncate"),
            check=trained,
        )
    )
    c.append(
        record_case(
            "train-pending-truncated",
            cat,
            "a seed stack's checkpoint.pending.pt truncated; train",
            "train",
            "suite_trained",
            damage_run("checkpoint.pending.pt", "truncate"),
            check=trained,
        )
    )
    for how, what in (("remove", "missing"), ("garbage", "cut mid-JSON"), ("zero", "zero bytes")):
        name = {"remove": "missing", "garbage": "invalid", "zero": "empty"}[how]
        c.append(
            record_case(
                f"evaluate-metrics-{name}",
                cat,
                f"a done run's metrics.json {what}; evaluate",
                "evaluate",
                "suite_done",
                damage_run("metrics.json", how),
                check=suite_complete,
            )
        )
    for how, what in (("remove", "missing"), ("zero", "zero bytes")):
        name = {"remove": "missing", "zero": "empty"}[how]
        c.append(
            record_case(
                f"bandit-metrics-{name}",
                cat,
                f"a done bandit run's metrics.json {what}; rerun",
                "bandit",
                "bandit_done",
                damage_run("metrics.json", how),
                check=bandit_complete,
            )
        )
    for fixture, which in (("suite_done", "suite"), ("bandit_done", "bandit")):
        c.append(
            record_case(
                f"report-{which}-summary-empty",
                cat,
                f"{which} summary.csv zero bytes; report",
                "report",
                fixture,
                damage_top("summary.csv", "zero"),
                expect=("error", "heal"),
                check=report_written,
                want="summary.csv",
            )
        )
    c.append(
        record_case(
            "evaluate-episodes-truncated",
            cat,
            "a done run's episodes.csv truncated; evaluate",
            "evaluate",
            "suite_done",
            damage_run("episodes.csv", "truncate"),
            check=suite_complete,
        )
    )
    c.append(
        record_case(
            "evaluate-checkpoint-truncated",
            cat,
            "a trained run's checkpoint.pt truncated; evaluate",
            "evaluate",
            "suite_trained",
            damage_run("checkpoint.pt", "truncate"),
            expect=("error", "heal"),
            check=suite_complete,
            want="train",
        )
    )
    for stage, check in (("train", logs_whole), ("evaluate", suite_logs_whole)):
        c.append(
            record_case(
                f"{stage}-train-log-truncated",
                "silently accepted",
                f"a trained run's train_log.csv cut mid-line; {stage}",
                stage,
                "suite_trained",
                damage_run("train_log.csv", "truncate"),
                expect=("ok", "heal", "error") if stage == "evaluate" else ("ok", "heal"),
                check=check,
                want="train_log",
            )
        )

    # -- misleading (issue)
    cat = "misleading message"
    for fixture, which in (("suite_done", "suite"), ("bandit_done", "bandit")):
        c.append(
            record_case(
                f"report-{which}-summary-truncated",
                cat,
                f"{which} summary.csv truncated; report",
                "report",
                fixture,
                damage_top("summary.csv", "truncate"),
                expect=("error", "heal"),
                check=report_written,
                want="summary.csv",
                forbid="no records for algorithm",
            )
        )
    c.append(
        record_case(
            "evaluate-best-after-default",
            cat,
            "evaluate --checkpoint best after a default training",
            "evaluate",
            "suite_trained",
            args=("--checkpoint", "best"),
            expect=("error",),
            want="best|kept|snapshot",
            forbid=r"\bnot trained\b",
        )
    )

    # -- processes and progress (issue): other helpers' tests, not run here
    for id, cat, what, pattern in (
        ("kill-9-parent", "process", "kill -9 of the main process leaves pool workers",
         r"killed_parent|orphan"),
        ("ctrl-c-start-up", "process", "Ctrl-C during worker start-up prints worker tracebacks",
         r"ctrl_c.*start"),
        ("ctrl-c-mid-run", "process", "Ctrl-C mid-run prints only the one line", r"ctrl_c_mid"),
        ("two-commands-one-out", "process", "two commands on one --out both train every run",
         r"two_commands|each_run_once"),
        ("stale-lock", "process", "a lock left by a dead process", r"stale_lock"),
        ("progress-inside-runs", "progress", "the bar counts whole runs only (no step, ETA)",
         r"running_job.*eta|rate_and_eta"),
        ("progress-data", "progress", "dataset generation shows no progress",
         r"generation_reports|data_stage.*progress"),
    ):  # fmt: skip
        c.append(Case(id, cat, what, covered=pattern))

    # -- more: the command line
    cat = "validation"
    c += [
        Case("cli-unknown-stage", cat, "a stage typo: trian", "trian", out=None, std=()),
        Case("cli-unknown-profile", cat, "--profile fast", "bandit", ("--profile", "fast")),
        Case("cli-bad-data-choice", cat, "--data minari", "train", ("--data", "minari")),
        Case("cli-bad-executor", cat, "--executor dask", "train", ("--executor", "dask")),
        Case("cli-bad-checkpoint", cat, "--checkpoint last", "evaluate", ("--checkpoint", "last")),
        Case("cli-steps-not-int", cat, "--steps ten", "bandit", ("--steps", "ten")),
        Case("cli-seeds-float", cat, "--seeds 1.5", "bandit", ("--seeds", "1.5")),
        Case("cli-algos-empty", cat, "--algos with no name", "bandit", ("--algos",)),
        Case("cli-unknown-algo-bandit", cat, "--algos radacc", "bandit", ("--algos", "radacc"),
             want="radacc"),
        Case("cli-unknown-algo-train", cat, "--algos radacc", "train", ("--algos", "radacc"),
             want="radacc"),
        Case("cli-algo-twice", cat, "--algos bc bc (two jobs, one run folder)", "bandit",
             ("--algos", "bc", "bc"), want="bc", expect=("error", "ok"), check=bandit_complete),
        Case("cli-unknown-task", cat, "--tasks hoppr", "train", ("--tasks", "hoppr"),
             want="hoppr"),
        Case("cli-unknown-dataset", cat, "--tasks hopper-medium-expret", "train",
             ("--tasks", "hopper-medium-expret"), want="expret"),
        Case("cli-seeds-negative", cat, "--seeds -2", "bandit", ("--seeds", "-2"), want="seeds"),
        Case("cli-steps-negative", cat, "--steps -5", "train", ("--steps", "-5"), want="steps"),
        Case("cli-suite-missing", cat, "--suite names no file", "train",
             ("--suite", "{T}/nope.yaml"), want="nope.yaml"),
        Case("cli-evaluate-untrained", cat, "evaluate before train", "evaluate", want="train"),
        Case("cli-report-no-records", cat, "report on a folder without records", "report",
             prepare=lambda ctx: ctx.out.mkdir(), want="no records"),
        Case("cli-data-kind-typo", cat, "data --kind expret", "data",
             ("--task", "hopper", "--kind", "expret"), std=()),
    ]  # fmt: skip
    for size in ("0", "-5"):
        c.append(
            Case(
                f"cli-data-size-{size}",
                cat,
                f"data --size {size}",
                "data",
                ("--task", "hopper", "--kind", "medium-expert", "--size", size),
                std=(),
                env=(("RAMAC_DATA_DIR", "{T}/data"),),
                want="size",
            )
        )

    # -- more: options a stage does not use (issue: each stage accepts only the options it uses)
    cat = "silently accepted"
    c += [
        Case("bandit-ignores-suite", cat, "bandit --suite (the bandit reads its own file)",
             "bandit", ("--suite", "{T}/suite.yaml"), prepare=suite_copy(), want="suite"),
        Case("bandit-ignores-tasks", cat, "bandit --tasks hopper", "bandit",
             ("--tasks", "hopper"), want="tasks"),
        Case("bandit-ignores-checkpoint", cat, "bandit --checkpoint best", "bandit",
             ("--checkpoint", "best"), want="checkpoint"),
        Case("bandit-ignores-data", cat, "bandit --data d4rl", "bandit", ("--data", "d4rl"),
             want="data"),
        Case("train-ignores-ray-address", cat, "--ray-address with the local executor", "train",
             ("--ray-address", "10.0.0.1:6379"), want="ray"),
        Case("data-ignores-steps", cat, "data --steps 5 (data trains nothing)", "data",
             ("--steps", "5"), want="steps"),
        record_case("report-ignores-workers", cat, "report --workers 3 (report runs nothing)",
                    "report", "suite_done", args=("--workers", "3"), expect=("error",),
                    want="workers"),
        record_case("train-config-empty", cat,
                    "an unfinished run's config.yaml zero bytes; train",
                    "train", "suite_trained", damage_run("config.yaml", "zero"),
                    expect=("heal", "error"), check=trained, want="config.yaml"),
    ]  # fmt: skip

    # -- more: the suite file
    cat = "validation"
    for id, what, edit, key in (
        ("suite-yaml-syntax", "suite file: not valid YAML", None, "YAML"),
        ("suite-empty-file", "suite file: zero bytes", None, "missing|empty"),
        ("suite-top-level-list", "suite file: a list at the top level", None, "mapping"),
        ("suite-unknown-top-key", "suite file: datasetz: (a typo)",
         rename("datasets", "datasetz"), "datasetz"),
        ("suite-unknown-eval-key", "suite file: eval.alfa: 0.1 (a typo)",
         setting("eval.alfa", 0.1), "alfa"),
        ("suite-eval-missing", "suite file: no eval: block", setting("eval", DELETE), "eval"),
        ("suite-kappa-0", "suite file: eval.kappa: 0", setting("eval.kappa", 0), "kappa"),
        ("suite-kappa-negative", "suite file: eval.kappa: -1", setting("eval.kappa", -1),
         "kappa"),
        ("suite-kappa-sweep-0", "suite file: eval.kappa_sweep: [1, 0]",
         setting("eval.kappa_sweep", [1, 0]), "kappa_sweep"),
        ("suite-bootstrap-0", "suite file: eval.bootstrap_reps: 0",
         setting("eval.bootstrap_reps", 0), "bootstrap_reps"),
        ("suite-cvar-rule", "suite file: eval.cvar_rule: median",
         setting("eval.cvar_rule", "median"), "cvar_rule"),
        ("suite-episodes-text", "suite file: eval.episodes: ten",
         setting("eval.episodes", "ten"), "episodes"),
        ("suite-ood-features", "suite file: eval.ood_features: both",
         setting("eval.ood_features", "both"), "ood_features"),
        ("suite-ood-loo-0", "suite file: eval.ood_loo_sample: 0",
         setting("eval.ood_loo_sample", 0), "ood_loo_sample"),
        ("suite-ood-neighbours-0", "suite file: eval.ood_neighbours: 0",
         setting("eval.ood_neighbours", 0), "ood_neighbours"),
        ("suite-eval-checkpoint", "suite file: eval.checkpoint: last",
         setting("eval.checkpoint", "last"), "checkpoint"),
        ("suite-eval-env-version", "suite file: eval.env: {version: v9}",
         setting("eval.env", {"version": "v9", "reason": "test"}), "env"),
        ("suite-unknown-hazard-set", "suite file: hazards.generated: nope",
         setting("hazards.generated", "nope"), "nope"),
        ("suite-no-hazard-for-source", "suite file: hazards without generated",
         setting("hazards.generated", DELETE), "hazard"),
        ("suite-datasets-empty", "suite file: datasets: []", setting("datasets", []),
         "datasets"),
        ("suite-dataset-typo", "suite file: datasets: [hopper-medium-expret]",
         setting("datasets", ["hopper-medium-expret"]), "expret"),
        ("suite-algos-empty", "suite file: algos: []", setting("algos", []), "algos"),
        ("suite-algos-unknown", "suite file: algos: [radacc]", setting("algos", ["radacc"]),
         "radacc"),
        ("suite-relabel-seed-negative", "suite file: relabel_seed: -1",
         setting("relabel_seed", -1), "relabel_seed"),
        ("suite-no-smoke-profile", "suite file: no smoke profile; --profile smoke",
         setting("profiles.smoke", DELETE), "smoke"),
        ("suite-profile-null", "suite file: profiles.smoke: (empty)",
         setting("profiles.smoke", None), "smoke"),
        ("suite-episodes-0", "suite file: profiles.smoke.episodes: 0",
         setting("profiles.smoke.episodes", 0), "episodes"),
        ("suite-horizon-negative", "suite file: profiles.smoke.horizon: -5",
         setting("profiles.smoke.horizon", -5), "horizon"),
        ("suite-horizon-text", "suite file: profiles.smoke.horizon: long",
         setting("profiles.smoke.horizon", "long"), "horizon"),
        ("suite-checkpoints-0", "suite file: profiles.smoke.checkpoints: 0",
         setting("profiles.smoke.checkpoints", 0), "checkpoints"),
        ("suite-data-size-0", "suite file: profiles.smoke.data_size: 0",
         setting("profiles.smoke.data_size", 0), "data_size"),
        ("suite-snapshots-text", "suite file: profiles.smoke.snapshots: 'yes'",
         setting("profiles.smoke.snapshots", "yes"), "snapshots"),
        ("suite-override-unknown", "suite file: profiles.smoke.overrides.batchsize: 32",
         setting("profiles.smoke.overrides.batchsize", 32), "batchsize"),
        ("suite-override-batch-0", "suite file: profiles.smoke.overrides.batch_size: 0",
         setting("profiles.smoke.overrides.batch_size", 0), "batch_size"),
        ("suite-override-batch-text", "suite file: profiles.smoke.overrides.batch_size: big",
         setting("profiles.smoke.overrides.batch_size", "big"), "batch_size"),
    ):  # fmt: skip
        text = {
            "suite-yaml-syntax": lambda t: t + "\nprofiles: [unclosed\n",
            "suite-empty-file": lambda t: "",
            "suite-top-level-list": lambda t: "- datasets\n- algos\n",
        }.get(id)
        c.append(suite_case(id, cat, what, edit, text=text, key=key))

    # -- more: the bandit's suite file and the algorithm files (in a checkout copy)
    for id, what, rel, stage, edit, key, std, text in (
        ("bandit-profile-typo", "bandit.yaml: profiles.smoke: stepz:", BANDIT_YAML, "bandit",
         rename("profiles.smoke.steps", "stepz"), "stepz", BANDIT_NO_STEPS, None),
        ("bandit-n-actions-0", "bandit.yaml: profiles.smoke.n_actions: 0", BANDIT_YAML,
         "bandit", setting("profiles.smoke.n_actions", 0), "n_actions", None, None),
        ("bandit-spec-unknown-key", "bandit.yaml: bandit.radius: 1 (unknown key)", BANDIT_YAML,
         "bandit", setting("bandit.radius", 1.0), "radius", None, None),
        ("bandit-penalty-prob-1.5", "bandit.yaml: bandit.penalty_prob: 1.5", BANDIT_YAML,
         "bandit", setting("bandit.penalty_prob", 1.5), "penalty_prob", None, None),
        ("bandit-n-samples-0", "bandit.yaml: bandit.n_samples: 0", BANDIT_YAML, "bandit",
         setting("bandit.n_samples", 0), "n_samples", None, None),
        ("algo-yaml-unknown-key", "bc.yaml: hopper-medium-expert-v2: lrr: 1e-3", BC_YAML,
         "train", setting("overrides.hopper-medium-expert-v2.lrr", 1e-3), "lrr", None, None),
        ("algo-yaml-defaults-block", "bc.yaml: a defaults: block", BC_YAML, "train",
         setting("defaults", {"lr": 1e-3}), "defaults", None, None),
        ("algo-yaml-syntax", "bc.yaml: not valid YAML", BC_YAML, "train", None, "YAML", None,
         lambda t: t + "\n  bad: [unclosed\n"),
        ("algo-yaml-lr-text", "bc.yaml: hopper-medium-expert-v2: lr: fast", BC_YAML, "train",
         setting("overrides.hopper-medium-expert-v2.lr", "fast"), "lr", None, None),
        ("algo-yaml-bandit-hidden-0", "bc.yaml: bandit: actor_hidden: 0", BC_YAML, "bandit",
         setting("overrides.bandit.actor_hidden", 0), "actor_hidden", None, None),
    ):  # fmt: skip
        c.append(repo_case(id, cat, what, stage, rel, edit, key=key, std=std, text=text))

    # -- more: D4RL files
    for id, what, stage, prepare, key in (
        ("d4rl-nan-rewards-train", "train --data d4rl: a D4RL file with a NaN reward", "train",
         d4rl_file(nan_rewards), "reward"),
        ("d4rl-not-hdf5", "data --data d4rl: the D4RL file is not hdf5", "data",
         d4rl_file(content=b"not an hdf5 file\n" * 10), "hdf5"),
        ("d4rl-wrong-obs-dim", "data --data d4rl: observations of the wrong size", "data",
         d4rl_file(wrong_obs_dim), "observation"),
        ("d4rl-missing-key", "data --data d4rl: the file has no rewards", "data",
         d4rl_file(drop_rewards), "rewards"),
        ("d4rl-missing-file", "data --data d4rl: no file, offline", "data",
         lambda ctx: (ctx.dir / "d4rl").mkdir(), "offline|download"),
    ):  # fmt: skip
        c.append(
            Case(
                id,
                cat,
                what,
                stage,
                ("--data", "d4rl"),
                prepare=prepare,
                env=D4RL_ENV,
                fixtures=("d4rl",),
                want=(re.escape(D4RL_FILE), key),
            )
        )

    # -- valid inputs: each completes (ok-bandit, ok-train, ok-evaluate are the fixtures)
    cat = "valid"
    c += [
        Case("ok-bandit", cat, "bandit, smoke profile, a fresh folder", "bandit",
             expect=("ok",), check=bandit_complete),
        Case("ok-train", cat, "train, smoke profile, a fresh folder", "train", std=FIX,
             expect=("ok",), check=trained),
        record_case("ok-evaluate", cat, "evaluate a trained folder", "evaluate",
                    "suite_trained", expect=("ok",), check=suite_complete),
        record_case("ok-report-suite", cat, "report from a finished suite folder", "report",
                    "suite_done", expect=("ok",), check=report_written),
        record_case("ok-report-bandit", cat, "report from a finished bandit folder", "report",
                    "bandit_done", expect=("ok",), check=report_written),
        Case("ok-d4rl-data", cat, "data --data d4rl with a valid D4RL file", "data",
             ("--data", "d4rl"), prepare=d4rl_file(), env=D4RL_ENV, fixtures=("d4rl",),
             expect=("ok",), check=card_written),
    ]  # fmt: skip
    c += trust_files_cases() + trust_data_cases()  # issue 23 (trust, second round)
    return [_finish(case) for case in c]


def trust_files_cases() -> list[Case]:
    """Issue 23: checkpoints, symlinks, folders the toolkit did not make, signals, ``all``."""
    c: list[Case] = []
    cat = "unsafe"
    marker = "PAYLOAD RAN|marker"  # a line that says the payload ran would be very wrong
    c += [
        record_case("trust-checkpoint-payload-evaluate", cat,
                    "checkpoint.pt whose pickle would write a marker file; evaluate",
                    "evaluate", "suite_trained", plant_payload(), expect=("error", "heal"),
                    check=payload_idle(suite_complete), forbid=marker),
        record_case("trust-checkpoint-payload-train", cat,
                    "checkpoint.pt whose pickle would write a marker file; resumed train",
                    "train", "suite_trained", plant_payload(), expect=("heal", "error"),
                    check=payload_idle(trained), forbid=marker),
        record_case("trust-checkpoint-payload-calibrate", cat,
                    "checkpoint.pt (radac) whose pickle would write a marker file; calibrate",
                    "calibrate", "suite_done", plant_payload("radac"),
                    args=("--on", "suite", "--profile", "smoke", "--workers", "1"),
                    expect=("error", "heal", "ok"), check=payload_idle(), forbid=marker),
        record_case("trust-checkpoint-payload-bandit", cat,
                    "a damaged bandit checkpoint whose pickle would write a marker file",
                    "bandit", "bandit_done", plant_payload(unfinish=True),
                    expect=("heal", "error"), check=payload_idle(bandit_complete),
                    forbid=marker),
        record_case("trust-link-corrupt-outside", cat,
                    "a run's corrupt/ links to a folder outside --out; a record to heal",
                    "bandit", "bandit_done", link_corrupt_outside, check=healed_inside),
        record_case("trust-link-runs-outside", cat,
                    "--out's runs/ links to a folder outside it; bandit writes its runs",
                    "bandit", "bandit_done", link_runs_outside, expect=("error",),
                    want=("runs", "symbolic link", "outside")),
        record_case("trust-link-record-outside", cat,
                    "a run's metrics.json links to a file outside --out",
                    "bandit", "bandit_done", link_metrics_outside, check=secret_kept),
        Case("trust-folder-not-ramac", cat,
             "--out holds the user's own summary.csv and report.html (no marker)", "bandit",
             prepare=users_folder, want=(r"/out\b", "--force")),
    ]  # fmt: skip
    cat = "silently accepted"
    c += [
        Case("trust-folder-not-ramac-force", cat, "the same folder with --force", "bandit",
             ("--force",), prepare=users_folder, expect=("ok",), check=bandit_complete),
        record_case("trust-folder-earlier-version", cat,
                    "a results folder of an earlier version (no marker): adopted", "bandit",
                    "bandit_done", lambda ctx: (ctx.out / ".ramac").unlink(),
                    expect=("ok",), check=marked_and(bandit_complete)),
        Case("trust-data-folder-not-ramac", cat,
             "RAMAC_DATA_DIR is a folder of the user's own; data makes a dataset", "data",
             ("--task", "hopper", "--kind", "medium", "--size", "200"), std=(),
             env=(("RAMAC_DATA_DIR", "{T}/home"),), prepare=users_data_folder,
             want=("home", "RAMAC_DATA_DIR")),
        Case("trust-all-algos-steps", cat,
             "all --algos bc --steps 4 --seeds 1: both halves train bc for 4 updates", "all",
             ("--algos", "bc", "--steps", "4", "--seeds", "1"), std=("--profile", "smoke",
             "--workers", "1"), fixtures=("data",), expect=("ok",), check=all_applied),
        Case("trust-all-algos-one-half", cat,
             "all --algos ravl (no bandit method): refused, not dropped", "all",
             ("--algos", "ravl"), std=("--profile", "smoke", "--workers", "1"),
             want="ravl.*bandit"),
    ]  # fmt: skip
    cat = "traceback"
    for name, stage, fixture, check in (
        ("checkpoint.pt", "train", "suite_trained", trained),
        ("train_log.csv", "evaluate", "suite_trained", suite_complete),
        ("metrics.json", "bandit", "bandit_done", bandit_complete),
    ):
        c.append(
            record_case(f"trust-fifo-{name.replace('.', '-')}", cat,
                        f"a FIFO named {name} in a run folder; {stage}", stage, fixture,
                        fifo_in_run(name), expect=("heal", "error"), check=fifo_aside(check),
                        want=re.escape(name))
        )  # fmt: skip
    c.append(
        record_case("trust-fifo-summary", cat, "a FIFO named summary.csv; report", "report",
                    "bandit_done", fifo_at("summary.csv"), expect=("error",),
                    want=("summary.csv", "not a regular file"))
    )  # fmt: skip
    c.append(
        Case("trust-data-full-disk", cat,
             "data makes a dataset on a full disk (64 KiB tmpfs as RAMAC_DATA_DIR)", "data",
             ("--task", "hopper", "--kind", "medium", "--size", "3000"), std=(),
             env=(("RAMAC_DATA_DIR", "{T}/full"),), prepare=full_disk,
             want=(r"hopper-medium-gen-n3000-s0\.hdf5", "No space"), forbid="file system")
    )  # fmt: skip
    for how in ("zero", "truncate", "garbage"):  # a damaged dynamics-model cache
        c.append(
            Case(f"trust-model-cache-{how}", cat,
                 f"RAVL's cached dynamics model damaged ({how}); train ravl", "train",
                 ("--algos", "ravl"), env=(("RAMAC_DATA_DIR", "{T}/data"),),
                 prepare=damaged_model_cache(how), expect=("heal",), check=model_retrained)
        )  # fmt: skip
    # processes: covered by tests (pytest), not run here
    for id, what, pattern in (
        ("trust-sigterm-train", "SIGTERM a running train: one line, 143, no locks, resumes",
         r"sigterm_ends_train"),
        ("trust-worker-sigkill", "a pool worker killed as by the OOM killer",
         r"worker_killed_as_by_the_oom"),
        ("trust-two-bandit-steps", "two bandit commands on one --out, different --steps",
         r"second_command_waits"),
    ):  # fmt: skip
        c.append(Case(id, "process", what, covered=pattern))
    return c


# -- issue 23 (files): set-up steps and checks of trust_files_cases


def damaged_model_cache(how: str) -> Callable[[Ctx], None]:
    """A ``prepare``: the smoke data in ``$T/data``, a RAVL run (4 updates, one seed) that
    caches its dynamics model in ``$T/data/models``, then that cache damaged (``how``)."""

    def prepare(ctx: Ctx) -> None:
        folder = ctx.dir / "data" / "generated"
        folder.mkdir(parents=True)
        for path in (ctx.session.fixture("data") / "generated").glob(f"{SMOKE_DATA}.*"):
            shutil.copy(path, folder / path.name)
        command = [sys.executable, str(ctx.root / "reproduce.py"), "train", "--algos", "ravl"]
        command += [*FIX, "--seeds", "1", "--out", str(ctx.dir / "first")]
        subprocess.run(command, env=ctx.env, cwd=ctx.root, capture_output=True, check=True)
        (cache,) = (ctx.dir / "data" / "models").glob("*.pt")
        ctx.damage(cache, how)

    return prepare


def model_retrained(ctx: Ctx) -> str | None:
    """The damaged cache moved under ``models/corrupt/`` and a readable model cached anew."""
    models = ctx.dir / "data" / "models"
    if not list((models / "corrupt").glob("*.pt*")):
        return "the damaged cache was not moved to models/corrupt/"
    problem = next((_torch_loads(p) for p in models.glob("*.pt")), "no model cached anew")
    return problem or trained(ctx)


class Payload:
    """Unpickles as ``open(marker, "w")``: the marker file is emptied when the pickle runs."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


MARKER_TEXT = "the payload never ran\n"


def plant_payload(algo: str = "bc", unfinish: bool = False) -> Callable[[Ctx], None]:
    """Replace a run's ``checkpoint.pt`` with a checkpoint-shaped pickle whose agent is the
    payload; ``$T/marker`` holds MARKER_TEXT, which the payload would empty."""

    def then(ctx: Ctx) -> None:
        import io

        import torch

        marker = ctx.dir / "marker"
        marker.write_text(MARKER_TEXT)
        run = first_run(ctx.out, algo)
        if unfinish:
            for name in ("done", "metrics.json", "actions.npz", "episodes.csv"):
                (run / name).unlink(missing_ok=True)
        buffer = io.BytesIO()
        state = {"step": 10**6, "log": [], "agent": Payload(str(marker)), "weights": {}}
        torch.save(state, buffer)
        (run / "checkpoint.pt").write_bytes(buffer.getvalue())
        ctx.damaged.append((str((run / "checkpoint.pt").relative_to(ctx.dir)),
                            sha256(buffer.getvalue())))  # fmt: skip

    return then


def payload_idle(then: Callable[[Ctx], str | None] | None = None) -> Callable[[Ctx], str | None]:
    """A check: the marker untouched (the payload never ran), then ``then``."""

    def check(ctx: Ctx) -> str | None:
        if (ctx.dir / "marker").read_text() != MARKER_TEXT:
            return "THE PAYLOAD RAN (the marker file was written)"
        return then(ctx) if then is not None else None

    return check


def link_corrupt_outside(ctx: Ctx) -> None:
    """The bc run's ``corrupt`` links to ``$T/outside``; its metrics.json is emptied."""
    (ctx.dir / "outside").mkdir()
    run = first_run(ctx.out)
    (run / "corrupt").symlink_to(ctx.dir / "outside")
    (run / "metrics.json").write_bytes(b"")


def healed_inside(ctx: Ctx) -> str | None:
    if list((ctx.dir / "outside").iterdir()):
        return "a record was moved out of --out"
    if not list(first_run(ctx.out).glob("corrupt-*/metrics.json")):
        return "the damaged metrics.json is not kept in the run folder"
    return bandit_complete(ctx)


def link_runs_outside(ctx: Ctx) -> None:
    """``--out``'s ``runs/`` replaced by a link to an empty ``$T/outside``."""
    (ctx.dir / "outside").mkdir()
    shutil.rmtree(ctx.out / "runs")
    (ctx.out / "runs").symlink_to(ctx.dir / "outside")


def link_metrics_outside(ctx: Ctx) -> None:
    """The bc run's ``metrics.json`` replaced by a link to ``$T/secret.json``."""
    (ctx.dir / "secret.json").write_text('{"secret": 1}\n')
    run = first_run(ctx.out)
    (run / "metrics.json").unlink()
    (run / "metrics.json").symlink_to(ctx.dir / "secret.json")


def secret_kept(ctx: Ctx) -> str | None:
    if (ctx.dir / "secret.json").read_text() != '{"secret": 1}\n':
        return "the file outside --out was changed"
    return bandit_complete(ctx)


def users_folder(ctx: Ctx) -> None:
    ctx.out.mkdir()
    (ctx.out / "summary.csv").write_text("my,own\n1,2\n")
    (ctx.out / "report.html").write_text("<p>my own report</p>\n")


def users_data_folder(ctx: Ctx) -> None:
    (ctx.dir / "home").mkdir()
    (ctx.dir / "home" / "thesis.tex").write_text("\\documentclass{article}\n")


def marked_and(then: Callable[[Ctx], str | None]) -> Callable[[Ctx], str | None]:
    def check(ctx: Ctx) -> str | None:
        return None if (ctx.out / ".ramac").is_file() else "no .ramac marker written"

    return lambda ctx: check(ctx) or then(ctx)


def all_applied(ctx: Ctx) -> str | None:
    """Both halves ran bc only, with 4 updates per run and one seed."""
    import pandas as pd

    for half in ("bandit", "suite"):
        path = ctx.out / half / "summary.csv"
        if not path.is_file():
            return f"no {half}/summary.csv"
        table = pd.read_csv(path)
        if set(table["algo"]) != {"bc"} or set(table["train_steps"]) != {4}:
            return f"{half}: algos {sorted(set(table['algo']))}, steps {set(table['train_steps'])}"
        if len(table) != 1:
            return f"{half}: {len(table)} runs for one seed"
    return None


def fifo_in_run(name: str, algo: str = "bc") -> Callable[[Ctx], None]:
    """The run's ``name`` replaced by a FIFO (a read would wait forever)."""

    def then(ctx: Ctx) -> None:
        path = first_run(ctx.out, algo) / name
        path.unlink(missing_ok=True)
        os.mkfifo(path)

    return then


def fifo_at(name: str) -> Callable[[Ctx], None]:
    def then(ctx: Ctx) -> None:
        (ctx.out / name).unlink(missing_ok=True)
        os.mkfifo(ctx.out / name)

    return then


def fifo_aside(then: Callable[[Ctx], str | None]) -> Callable[[Ctx], str | None]:
    """A check: the FIFO kept under a ``corrupt/`` folder, then ``then``."""

    def check(ctx: Ctx) -> str | None:
        if not any(p.is_fifo() for p in ctx.out.glob("runs/**/corrupt*/*")):
            return "the FIFO is not kept under corrupt/"
        return then(ctx)

    return check


def trust_data_cases() -> list[Case]:
    """Issue 23: one validation path for every data source, data hashes, unbounded values."""
    c: list[Case] = []
    cat = "data validation"
    for id, what, stage, change, key in (
        ("d4rl-terminals-2-7", "D4RL terminals 2 and 7 (a bool cast made them pass)", "data",
         terminals_2_7, "terminals"),
        ("d4rl-float64-1e39", "D4RL float64 reward 1e39 (inf in float32)", "train",
         reward_1e39, "float32"),
        ("d4rl-rewards-2d", "D4RL rewards of shape (n, 2)", "data", rewards_2d, "rewards"),
        ("d4rl-one-row", "a D4RL file of one row", "data", one_row, "row"),
        ("d4rl-actions-int-5", "D4RL integer actions of 5 (bounds +-1)", "train", int_actions,
         "actions"),
    ):  # fmt: skip
        c.append(
            Case(id, cat, what, stage, ("--data", "d4rl"), prepare=d4rl_file(change),
                 env=D4RL_ENV, fixtures=("d4rl",), want=(re.escape(D4RL_FILE), key))
        )  # fmt: skip
    c.append(
        Case("d4rl-differs-from-card", cat, "data --data d4rl: the file changed since its card",
             "data", ("--data", "d4rl"), prepare=d4rl_file(card_then(nan_rewards)),
             env=D4RL_ENV, fixtures=("d4rl",), want=(re.escape(D4RL_FILE), "card"))
    )  # fmt: skip
    for id, what, damage, stage in (
        ("gen-truncated", "generated file cut in half; data", "truncate", "data"),
        ("gen-one-row", "generated file of one row (card kept); train", one_row, "train"),
        ("gen-actions-int-5", "generated integer actions of 5; train", int_actions, "train"),
        ("gen-metadata-not-json", "generated metadata/json not JSON; train", bad_metadata, "train"),
        ("gen-other-dataset", "a medium-replay file under the medium-expert name, no card; train",
         other_dataset, "train"),
    ):  # fmt: skip
        c.append(
            Case(id, cat, what, stage, prepare=generated_copy(damage), expect=("heal",),
                 env=(("RAMAC_DATA_DIR", "{T}/data"),), check=data_restored)
        )  # fmt: skip

    cat = "data hash"
    # calibrate has no --steps: a suite copy whose smoke profile has the fixture's 4 steps
    steps_4 = suite_copy(setting("profiles.smoke.steps", 4))
    for id, stage, fixture, args, std in (
        ("hash-evaluate", "evaluate", "suite_trained", (), FIX),
        ("hash-train-resume", "train", "suite_trained", (), FIX),
        ("hash-calibrate", "calibrate", "suite_done", ("--on", "suite", *SUITE),
         ("--profile", "smoke", "--workers", "1")),
    ):  # fmt: skip
        then = other_data_hash if stage != "calibrate" else both(other_data_hash, steps_4)
        c.append(
            record_case(id, cat, f"{stage}: the runs' config.yaml records other data's sha256",
                        stage, fixture, then, args=args, expect=("error",), std=std,
                        want=("sha256", "trained on"))
        )  # fmt: skip

    cat = "unbounded value"
    for stage in ("train", "bandit"):
        c.append(
            Case(f"{stage}-steps-1e12", cat, "--steps 10**12 (about 30 years)", stage,
                 ("--steps", str(10**12)), want=("force", "paper"))
        )  # fmt: skip
    c.append(
        suite_case("suite-yaml-bomb-override", cat, "suite file: a YAML bomb in overrides",
                   setting("profiles.smoke.overrides.eta", yaml_bomb()), key="alias")
    )  # fmt: skip
    c.append(
        suite_case("suite-yaml-bomb-env-reason", cat, "suite file: a YAML bomb in eval.env.reason",
                   setting("eval.env", {"version": "v5", "reason": yaml_bomb()}), key="alias")
    )  # fmt: skip
    for id, variable, value, stage, args in (
        ("env-lock-poll-abc", "RAMAC_LOCK_POLL_SECONDS", "abc", "train", ()),
        ("env-data-dir-empty", "RAMAC_DATA_DIR", "", "data", ()),
        ("env-d4rl-dir-empty", "D4RL_DATASET_DIR", "", "data", ("--data", "d4rl")),
    ):
        c.append(
            Case(id, cat, f"{variable}={value!r}", stage, args, env=((variable, value),),
                 want=variable)
        )  # fmt: skip
    return c


# Set-up steps of the data cases (issue 23).


def terminals_2_7(f: Any) -> None:
    terminals = f["terminals"][()].astype("int64")
    terminals[[3, 9]] = [2, 7]
    del f["terminals"]
    f.create_dataset("terminals", data=terminals)


def reward_1e39(f: Any) -> None:
    rewards = f["rewards"][()].astype("float64")
    rewards[10] = 1e39
    del f["rewards"]
    f.create_dataset("rewards", data=rewards)


def rewards_2d(f: Any) -> None:
    import numpy as np

    rewards = f["rewards"][()]
    del f["rewards"]
    f.create_dataset("rewards", data=np.stack([rewards, rewards], axis=1))


def one_row(f: Any) -> None:
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        value = f[key][()][:1]
        del f[key]
        f.create_dataset(key, data=value)


def int_actions(f: Any) -> None:
    actions = f["actions"][()].round().astype("int64")
    actions[7] = 5
    del f["actions"]
    f.create_dataset("actions", data=actions)


def bad_metadata(f: Any) -> None:
    del f["metadata/json"]
    f.create_dataset("metadata/json", data="{not json")


def card_then(change: Callable[[Any], None]) -> Callable[[Any], None]:
    """A D4RL change made after the file's card was written (from the good file)."""

    def apply(f: Any) -> None:
        path = Path(f.filename)
        f.flush()
        facts = {"bytes": path.stat().st_size, "sha256": sha256(path.read_bytes())}
        card = {"id": path.stem, "file": path.name, **facts}
        path.with_suffix(".card.json").write_text(json.dumps(card))
        change(f)

    return apply


def other_dataset(f: Any) -> None:
    meta = json.loads(f["metadata/json"][()])
    meta["kind"] = "medium-replay"
    del f["metadata/json"]
    f.create_dataset("metadata/json", data=json.dumps(meta))


def generated_copy(damage: str | Callable[[Any], None]):
    """A ``prepare`` that copies the session's smoke dataset (and its card) into the case's
    ``$T/data`` (its ``RAMAC_DATA_DIR``) and damages the hdf5 file: ``truncate``, or a
    change through h5py (``other_dataset`` also removes the card)."""

    def prepare(ctx: Ctx) -> None:
        folder = ctx.dir / "data" / "generated"
        folder.mkdir(parents=True)
        for path in (ctx.session.fixture("data") / "generated").glob(f"{SMOKE_DATA}.*"):
            shutil.copy(path, folder / path.name)
        target = folder / f"{SMOKE_DATA}.hdf5"
        if damage == "truncate":
            ctx.damage(target, "truncate")
            return
        import h5py

        with h5py.File(target, "a") as f:
            damage(f)
        if damage is other_dataset:
            (folder / f"{SMOKE_DATA}.card.json").unlink()
        ctx.damaged.append((str(target.relative_to(ctx.dir)), sha256(target.read_bytes())))

    return prepare


def data_restored(ctx: Ctx) -> str | None:
    """The smoke dataset is whole again: its sha256 is the session's good file's."""
    good = ctx.session.fixture("data") / "generated" / f"{SMOKE_DATA}.hdf5"
    now = ctx.dir / "data" / "generated" / f"{SMOKE_DATA}.hdf5"
    if not now.exists() or sha256(now.read_bytes()) != sha256(good.read_bytes()):
        return "the dataset was not made again byte for byte"
    return trained(ctx) if ctx.case.stage == "train" else None


def other_data_hash(ctx: Ctx) -> None:
    """Every run's config.yaml says it trained on other data (another sha256)."""
    for run in run_dirs(ctx.out):
        edit_yaml(run / "config.yaml", setting("provenance.sha256", "0" * 64))


def both(*steps: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    """A set-up step that runs ``steps`` in order."""

    def prepare(ctx: Ctx) -> None:
        for step in steps:
            step(ctx)

    return prepare


def yaml_bomb(depth: int = 8) -> Any:
    """A value whose YAML is a few lines of anchors and aliases (``yaml.safe_dump`` writes a
    shared list once) but which holds 9**depth strings when walked or printed whole."""
    value: Any = ["lol"] * 9
    for _ in range(depth):
        value = [value] * 9
    return value


def _finish(case: Case) -> Case:
    """``case`` with the fixtures its set-up needs (the suite and D4RL files need the smoke
    data); the data stage writes no records, so it gets no ``--out``."""
    needed = set(case.fixtures)
    if case.stage in ("train", "evaluate", "data") or "d4rl" in needed:
        needed.add("data")
    out = None if case.stage == "data" and case.out == "{T}/out" else case.out
    return dataclasses.replace(case, fixtures=tuple(sorted(needed)), out=out)


# ----------------------------------------------------------------------------- the session


class Session:
    """One run of the script: its temporary root, the shared smoke data, the fixtures and
    every case's result (each computed once, under its own lock)."""

    def __init__(self, root: Path, python: str = sys.executable, timeout: float = TIMEOUT):
        self.root = root
        self.python = python
        self.timeout = timeout
        self.data = root / "data"  # RAMAC_DATA_DIR of every case (a copy of the smoke data)
        self.cases = {case.id: case for case in build_cases()}
        self._done: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _once(self, key: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._done:
                try:
                    self._done[key] = build()
                except Exception as exc:
                    self._done[key] = exc
        return self._done[key]

    def result(self, case: Case) -> Result:
        """``case``'s result (run on first use: a fixture case may have run already)."""
        found = self._once(f"case:{case.id}", lambda: run_case(case, self))
        if isinstance(found, Exception):
            return Result(case, verdict="FAIL", reason=f"{found.__class__.__name__}: {found}")
        return found

    def fixture(self, name: str) -> Path:
        """The folder of fixture ``name``, built on first use (raises when it failed)."""
        found = self._once(f"fixture:{name}", lambda: self._build(name))
        if isinstance(found, Exception):
            raise RuntimeError(f"fixture {name} failed: {found}")
        return found

    def _build(self, name: str) -> Path:
        if name == "data":
            return self._data()
        if name == "d4rl":
            import h5py

            source = self.fixture("data") / "generated" / f"{SMOKE_DATA}.hdf5"
            folder = self.root / "fixtures" / "d4rl"
            folder.mkdir(parents=True)
            shutil.copy(source, folder / D4RL_FILE)
            with h5py.File(folder / D4RL_FILE, "a") as f:  # D4RL files have no generator metadata
                if "metadata" in f:
                    del f["metadata"]
            return folder
        result = self.result(self.cases[FIXTURE_CASES[name]])
        if result.verdict != "PASS" or result.out is None:
            raise RuntimeError(f"case {result.case.id}: {result.verdict} {result.reason}")
        return result.out

    def _data(self) -> Path:
        """The suite smoke profile's generated dataset in the session's data folder: a copy
        of $RAMAC_DATA_DIR's or the checkout's, else generated once."""
        folder = self.data / "generated"
        folder.mkdir(parents=True, exist_ok=True)
        for source in (os.environ.get("RAMAC_DATA_DIR"), ROOT / "data"):
            files = list((Path(source) / "generated").glob(f"{SMOKE_DATA}.*")) if source else []
            if any(f.suffix == ".hdf5" for f in files):
                for f in files:
                    shutil.copy(f, folder / f.name)
                return self.data
        rc, _, stderr = self.run_cli(["data", "--profile", "smoke"], ROOT, self.base_env(), ROOT)
        if rc != 0:
            raise RuntimeError(f"data exit {rc}: {stderr.strip()[-200:]}")
        return self.data

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            MPLBACKEND="Agg",
            RAMAC_DATA_DIR=str(self.data),
            D4RL_DATASET_DIR=str(self.root / "no-d4rl"),
            PYTHONDONTWRITEBYTECODE="1",
        )
        env.pop("PYTHONPATH", None)
        return env

    def run_cli(self, argv: Sequence[str], root: Path, env: dict[str, str], cwd: Path):
        """``python <root>/reproduce.py argv``: (exit code, or None on timeout; stdout; stderr)."""
        proc = subprocess.Popen(
            [self.python, str(root / "reproduce.py"), *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: a timeout kills its workers too
        )
        try:
            stdout, stderr = proc.communicate(timeout=self.timeout)
            return proc.returncode, stdout, stderr
        except subprocess.TimeoutExpired:
            with _suppress():
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            return None, stdout, stderr


# ----------------------------------------------------------------------------- running a case


def run_case(case: Case, session: Session) -> Result:
    """Set up ``case`` in a fresh folder, run its command, judge the outcome."""
    result = Result(case)
    if case.covered:
        found = find_test(case.covered)
        result.verdict = "covered" if found else "not covered"
        result.reason = f"by {found} (other helper)" if found else "no test found yet"
        return result
    start = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix=f"{case.id[:40]}-", dir=session.root))
    ctx = Ctx(session, case, folder, ROOT, session.base_env())
    result.folder, result.out = folder, ctx.out
    try:
        try:
            for name in case.fixtures:
                session.fixture(name)
            if case.repo:
                ctx.root = folder / "repo"
                copy_checkout(ROOT, ctx.root)
            for key, value in case.env:
                ctx.env[key] = value.replace("{T}", str(folder))
            if case.prepare is not None:
                case.prepare(ctx)
        except Skip as exc:
            result.verdict, result.reason = "skipped", str(exc)
            return result
        except Exception as exc:
            result.verdict = "FAIL"
            result.reason = f"set-up failed: {exc.__class__.__name__}: {exc}"[:300]
            return result
        before = snapshot(folder)
        cwd = ctx.root if case.repo else folder
        rc, stdout, stderr = session.run_cli(case.argv(str(folder)), ctx.root, ctx.env, cwd)
        after = snapshot(folder)
        logs = session.root / "logs"
        logs.mkdir(exist_ok=True)
        (logs / f"{case.id}.stderr").write_text(stderr)
        (logs / f"{case.id}.stdout").write_text(stdout)
        judge(result, ctx, rc, stderr, before, after)
        result.line = result.line.replace(str(folder), "$T").replace(str(session.root), "$S")
    finally:
        for cleanup in reversed(ctx.cleanups):
            with _suppress():
                cleanup()
        result.seconds = time.perf_counter() - start
    return result


def judge(result: Result, ctx: Ctx, rc: int | None, stderr: str, before: dict, after: dict) -> None:
    """Fill ``result`` from the command's exit code, stderr and the files before / after."""
    case = result.case
    result.rc = rc
    lines = message_lines(stderr)
    result.lines = len(lines)
    result.line = (stderr.strip().splitlines() or [""])[-1].split("\r")[-1].strip()
    result.traceback = "Traceback" in stderr
    kept = {v for k, v in after.items() if "corrupt" in Path(k).parts[:-1]}
    damaged = {path for path, _ in ctx.damaged}
    # a damaged record moved under corrupt/ intact is not a change
    result.changed = sorted(
        k for k, v in before.items() if after.get(k) != v and not (k in damaged and v in kept)
    )
    result.trained = any(  # a checkpoint written (not one moved under corrupt/)
        Path(k).name in ("checkpoint.pt", "checkpoint.pending.pt")
        and "corrupt" not in Path(k).parts
        and before.get(k) != v
        for k, v in after.items()
    )
    if rc is None:
        result.verdict, result.reason = "FAIL", f"timeout: killed after {ctx.session.timeout:.0f} s"
        return
    problems: list[str] = []
    if rc == 2 and not result.traceback and len(lines) == 1:
        result.outcome = "error"
        line = lines[0]
        if result.changed:
            problems.append(f"changed {', '.join(result.changed[:3])}")
        if result.trained:
            problems.append("trained before the error")
        if len(line) > LONG_LINE:
            problems.append(f"a {len(line)}-character line")
        missing = [w for w in case.want if not re.search(w, line, re.I)]
        if missing:
            problems.append(f"the line does not say /{'/, /'.join(missing)}/")
        if case.forbid and re.search(case.forbid, line, re.I):
            problems.append(f"misleading: says /{case.forbid}/")
    elif rc == 0 and not result.traceback:
        problem = case.check(ctx) if case.check is not None else None
        all_kept = all(digest in kept for _, digest in ctx.damaged)
        if problem:
            problems.append(f"exit 0 but {problem}")
        elif ctx.damaged and not all_kept:
            result.outcome = "ok"
            if "ok" not in case.expect:
                problems.append("exit 0 but the damaged file was not kept under corrupt/")
        else:
            result.outcome = "heal" if "heal" in case.expect else "ok"
    elif result.traceback:
        exc = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", ln)]
        problems.append(f"traceback ({(exc or [result.line])[-1][:80]})")
    elif rc == 2:
        problems.append(f"exit 2 with {len(lines)} stderr lines")
    else:
        problems.append(f"exit {rc}")
    if result.outcome and result.outcome not in case.expect and not problems:
        if case.expect == ("error",):
            problems.append("exit 0: accepted")
        else:
            problems.append(f"outcome {result.outcome}, expected {'/'.join(case.expect)}")
    result.verdict = "FAIL" if problems or result.outcome not in case.expect else "PASS"
    result.reason = "; ".join(problems)


# ----------------------------------------------------------------------------- the table


def cell(text: str, limit: int | None = None) -> str:
    text = " ".join(str(text).split())
    if limit and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def table(results: Sequence[Result]) -> str:
    head = (
        "| id | category | case | command | exit | last stderr line | traceback | changed "
        "| verdict |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        ran = r.rc is not None or r.reason.startswith("timeout")
        exit_code = "timeout" if ran and r.rc is None else "" if r.rc is None else str(r.rc)
        verdict = r.verdict + (f" ({r.outcome})" if r.outcome and r.verdict == "PASS" else "")
        verdict += f": {r.reason}" if r.reason else ""
        if not ran:
            changed = ""
        elif r.outcome in ("ok", "heal"):
            changed = f"{len(r.changed)} rewritten" if r.changed else "no"
        else:
            changed = cell(", ".join(r.changed), 60) if r.changed else "no"
        fields = [
            r.case.id,
            r.case.category,
            cell(r.case.what),
            "" if r.case.covered else f"`{cell(r.case.shown())}`",
            exit_code,
            cell(squeeze(r.line), LINE_CHARS) if ran else "",
            ("yes" if r.traceback else "no") if ran else "",
            changed,
            cell(verdict, 220),
        ]
        rows.append("| " + " | ".join(fields) + " |")
    return head + "\n".join(rows) + "\n"


def legend() -> str:
    std = "; ".join(f"{stage}: `{' '.join(flags)}`" for stage, flags in STD.items())
    return (
        "Each command is `python reproduce.py ...` with `$T` a fresh folder; `$S` is the "
        "session's folder (its `data/` is `RAMAC_DATA_DIR`, holding a copy of the smoke "
        "dataset). `repo copy:` the command runs in a copy of the checkout's tracked files "
        "with one configs/ file edited (configs/ is read from `ramac.config.CONFIG_DIR`; no "
        "option or variable points elsewhere). `[std]`: the stage's tiny-budget flags where "
        f"the case does not set them ({std}); `[fix]`: `{' '.join(FIX)}`, the options of the "
        "copied smoke folder (radac and bc, 2 seeds each). Changed: files that existed before "
        "the command and differ after it (for ok / heal outcomes, how many were rewritten). "
        "Verdicts: the docstring of `scripts/bad_inputs.py`.\n"
    )


def summary(results: Sequence[Result], seconds: float) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    ran = [r for r in results if r.rc is not None or r.reason.startswith("timeout")]
    return (
        f"{len(results)} cases ({len(ran)} run): "
        + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        + f"; {sum(r.traceback for r in ran)} printed a traceback; {seconds:.0f} s.\n"
    )


def select(cases: Sequence[Case], pattern: str | None) -> list[Case]:
    """The cases whose id or category matches ``pattern`` (a glob, else a regex)."""
    if not pattern:
        return list(cases)

    def matches(text: str) -> bool:
        try:
            found = re.search(pattern, text) is not None
        except re.error:
            found = False
        return fnmatch.fnmatch(text, pattern) or found

    return [c for c in cases if matches(c.id) or matches(c.category)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Set-up, outcomes and verdicts: the module docstring.",
    )
    parser.add_argument("--only", metavar="PATTERN", help="case ids or categories (glob/regex)")
    parser.add_argument("--list", action="store_true", help="list the cases, run nothing")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "results" / "bad_inputs.md", help="Markdown table"
    )
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per case")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    cases = select(build_cases(), args.only)
    if not cases:
        parser.error(f"no case matches {args.only!r}")
    if args.list:
        for c in cases:
            shown = f"(covered by a test: /{c.covered}/)" if c.covered else c.shown()
            print(f"{c.id:32} {c.category:18} {'/'.join(c.expect):16} {shown}")
        print(f"{len(cases)} cases")
        return 0

    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="ramac-bad-inputs-"))
    session = Session(root, timeout=args.timeout)
    configs = snapshot(ROOT / "configs")
    results: list[Result | None] = [None] * len(cases)
    try:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(session.result, c): i for i, c in enumerate(cases)}
            for future in concurrent.futures.as_completed(futures):
                r = results[futures[future]] = future.result()
                print(f"{r.case.id:32} {r.verdict:8} {r.seconds:5.1f} s  {r.reason[:100]}",
                      file=sys.stderr, flush=True)  # fmt: skip
    finally:
        if args.keep:
            print(f"kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    done = [r for r in results if r is not None]
    same = snapshot(ROOT / "configs") == configs
    text = (
        "# Bad inputs (issue 13): `python scripts/bad_inputs.py`\n\n"
        + summary(done, time.perf_counter() - start)
        + f"\nThe checkout's configs/ unchanged by the run: {'yes' if same else 'NO'}.\n\n"
        + legend()
        + "\n"
        + table(done)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
