"""The folders the toolkit writes into: made by it (they carry its marker), and never left.

Researchers open result folders that others shared, so two rules hold for every write,
move and read of a record:

- **Its own folders only.** A results folder (``--out``) and the data folder
  (``$RAMAC_DATA_DIR``) carry the marker ``.ramac``: a small JSON file (tool, version,
  created, command) written when the toolkit makes the folder. :func:`claim` lets the
  toolkit write into a folder that is new, empty or marked; any other folder is refused in
  one line naming it, unless the user says ``--force`` (which marks it). A folder made by an
  earlier version (no marker) whose contents are the toolkit's own (``adopt``: for results,
  run records ``runs/.../seed*/config.yaml``) is adopted: marked, with a one-line note.
- **Never out of them.** The outermost marked folder above a path is its root;
  :func:`check_inside` refuses (one line, naming the link) a path whose real location,
  symbolic links resolved, is outside the root's: a ``runs/`` or ``corrupt/`` linked to
  another folder is never written, moved into or read through. The root itself may be a link
  (``results`` on a scratch disk): only links below it are judged. Paths under no marked
  folder (a library call on a temporary folder) are not judged.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from ramac.errors import UserError

MARKER = ".ramac"


def is_marked(folder: Path) -> bool:
    """Whether ``folder`` holds the toolkit's marker (a regular file, not a link to one)."""
    try:
        return stat.S_ISREG(os.lstat(Path(folder) / MARKER).st_mode)
    except OSError:
        return False


def root_of(path: str | os.PathLike) -> Path | None:
    """The outermost marked folder among ``path`` and its parents (as named, not resolved)."""
    path = Path(os.path.abspath(path))
    found = None
    for folder in (path, *path.parents):
        if is_marked(folder):
            found = folder
    return found


def check_inside(path: str | os.PathLike, follow: bool = False) -> Path:
    """``path`` when it stays inside its root (:func:`root_of`) once links are resolved; a
    one-line UserError naming the link that leads out otherwise. ``follow``: ``path`` itself
    is read through (a record read); else only its folder must stay inside (a file written or
    moved is replaced by name, its own link never followed)."""
    path = Path(os.path.abspath(path))
    root = root_of(path)
    if root is None:
        return path
    real_root = os.path.realpath(root)
    real = os.path.realpath(path if follow else path.parent)
    if not follow:
        real = os.path.join(real, path.name)
    if os.path.commonpath([real_root, real]) == real_root:
        return path
    inner = path.relative_to(root).parts
    below = [root.joinpath(*inner[:n]) for n in range(1, len(inner) + 1)]
    link = next((p for p in below if p.is_symlink()), path)
    raise UserError(
        f"{link}: a symbolic link to {os.path.realpath(link)}, outside {root}; the toolkit "
        "never follows a link out of its folders (replace the link with a folder)"
    )


def mark(folder: Path) -> None:
    """Write the marker into ``folder``: what made it, when and with which command."""
    from ramac.io import atomic_write_text
    from ramac.records import ramac_version

    record = {
        "tool": "ramac",
        "version": ramac_version(),
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:1000],
    }
    atomic_write_text(Path(folder) / MARKER, json.dumps(record, indent=1) + "\n")


def claim(
    folder: Path,
    *,
    force: bool = False,
    adopt: Callable[[Path], bool] | None = None,
    how: str = "add --force to write into it anyway",
) -> Path:
    """Make ``folder`` the toolkit's to write into, or refuse in one line naming it.

    New, empty or marked: it is (marked when it was not). Non-empty without the marker: with
    ``force``, marked and used; when ``adopt(folder)`` says its contents are the toolkit's
    own (a folder an earlier version made, before the marker existed), marked with a
    one-line note; else a UserError ending in ``how`` (what the user can do instead).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: not a directory")
    if is_marked(folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if any(os.scandir(folder)) and not force:
        if adopt is None or not adopt(folder):
            raise UserError(
                f"{folder}: not empty and not made by ramac (no {MARKER} marker); choose a new "
                f"or empty folder, or {how}"
            )
        print(
            f"note: {folder}: records of an earlier ramac version (no {MARKER} marker): "
            "adopted, marker written",
            file=sys.stderr,
            flush=True,
        )
    mark(folder)
    return folder
