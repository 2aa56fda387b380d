"""Atomic file writes: a crash or an interrupt never leaves a half-written file in place.

Every record and report is written to a temporary name in the destination's folder and
then renamed over the destination with ``os.replace`` (atomic on POSIX and Windows when
both names are on one file system), as the README's "Records" paragraph promises. A write
that fails (no space left, a read-only folder) raises an ``OSError`` naming the
destination, never the temporary name.

A record that cannot be read back (damaged on disk, truncated by a full disk) is moved
aside with :func:`move_aside`, never deleted, so that the run can redo it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ramac.folders import check_inside

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files with mode 0600; finished files get the usual 0666 & ~umask instead.
_FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit rename it onto ``path``.

    The parent folder is created if missing. On an exception the temporary file is removed
    and ``path`` is left exactly as it was.
    """
    target = check_inside(path)
    with _naming(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _naming(target):
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """An ``OSError`` raised in the block names ``target``: a failed ``write`` or ``fsync``
    (no space left) names no file, and one about a temporary file names that file."""
    try:
        yield
    except OSError as exc:
        name = None if exc.filename is None else Path(exc.filename)
        temporary = name is not None and (
            name.parent == target.parent
            and name.name.startswith(f".{target.name}.")
            and name.name.endswith(".tmp")
        )
        if exc.errno is None or not (name is None or temporary):
            raise
        # os.strerror: h5py's own text for a full disk runs over lines and names the temporary
        raise OSError(exc.errno, os.strerror(exc.errno), str(target)) from exc


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 by default); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_to_csv(df: pd.DataFrame, path: str | os.PathLike, *, index: bool = False) -> Path:
    """Write a DataFrame as CSV atomically (no index column unless asked); returns the path."""
    with atomic_target(path) as tmp:
        df.to_csv(tmp, index=index)
    return Path(path)


def atomic_savefig(fig: Figure, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """Save a matplotlib figure atomically; the format comes from the suffix of ``path``
    unless ``format=`` is given (the temporary name ends in .tmp). Returns the path."""
    fmt = savefig_kwargs.pop("format", None) or Path(path).suffix.lstrip(".") or None
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format=fmt, **savefig_kwargs)
    return Path(path)


CORRUPT = "corrupt"  # where a run folder keeps the records that could not be read


def move_aside(
    path: str | os.PathLike,
    problem: str,
    folder: str | os.PathLike | None = None,
    quiet: bool = False,
    then: str = "",
) -> Path:
    """Move the unreadable record ``path`` into ``folder`` (default: ``corrupt/`` beside it),
    keeping its name (plus a timestamp when that name is taken there), and say so in one
    line on stderr (unless ``quiet``), ending with ``then`` (what happens next). Nothing is
    deleted: the file stays there for a person to inspect. Returns where it went.

    The record stays in its folder (``ramac.folders``): a ``corrupt`` that is not a real
    folder there (a link elsewhere, a file) is passed over for a fresh ``corrupt-<n>/``, and
    the warning names where the record went."""
    source = check_inside(path)
    aside = _aside_folder(Path(folder) if folder is not None else source.parent / CORRUPT)
    target = aside / source.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    n = 0
    while target.exists():
        target = aside / (f"{source.name}.{stamp}" + (f"-{n}" if n else ""))
        n += 1
    os.replace(source, target)
    if not quiet:
        problem = " ".join(str(problem).split())[:300]  # one line
        print(
            f"warning: {source}: unreadable ({problem}); moved to {target}"
            + (f"; {then}" if then else ""),
            file=sys.stderr,
            flush=True,
        )
    return target


def _aside_folder(wanted: Path) -> Path:
    """``wanted``, or the first of ``wanted-1``, ``wanted-2``... that is (or can be made) a
    real folder, not a link, inside its marked root: where damaged records go."""
    n = 0
    while True:
        aside = wanted if n == 0 else wanted.with_name(f"{wanted.name}-{n}")
        n += 1
        if aside.is_symlink() or (aside.exists() and not aside.is_dir()):
            continue
        aside.mkdir(parents=True, exist_ok=True)
        if not aside.is_symlink() and aside.is_dir():  # made by us, or a real folder already
            return check_inside(aside / "x").parent


def problem_of(exc: BaseException) -> str:
    """``exc`` as a short phrase for a one-line warning (its type and first line)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 120:
        first = first[:117].rstrip() + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def read_table(path: str | os.PathLike, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """The CSV table at ``path`` when it reads as a whole table with ``columns``, else a
    ``ValueError`` saying why: empty (a zero-byte file a full disk left), cut off (its last
    line unfinished: every table here is written whole, ending in a newline), unparsable,
    without rows or without a column it must have."""
    path = require_regular_file(path)
    data = path.read_bytes()
    if not data.strip():
        raise ValueError("empty file")
    if not data.endswith(b"\n"):
        raise ValueError("cut off: its last line is unfinished")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(problem_of(exc)) from None
    if table.empty:
        raise ValueError("no rows")
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"no column {', '.join(missing)}")
    return table


class NotRegularFile(IsADirectoryError):
    """A FIFO, device or folder where a record (a regular file) should be."""

    def __str__(self) -> str:
        return f"not a regular file (a FIFO, device or folder): {self.filename}"


def require_regular_file(path: str | os.PathLike) -> Path:
    """``path`` when it is a regular file; an ``OSError`` naming it otherwise (missing, a
    folder, a FIFO or a device: opening a FIFO where a record should be would wait forever)."""
    path = check_inside(path, follow=True)
    mode = os.stat(path).st_mode  # FileNotFoundError when missing
    if not stat.S_ISREG(mode):
        raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
    return path


def load_torch_file(path: str | os.PathLike, map_location=None):  # noqa: ANN201 - torch's data
    """The tensors and plain values saved at ``path`` by ``torch.save``, read as data only.

    Checkpoints, snapshots and caches are shared between researchers, so opening one must
    never run code: the unpickler is torch's ``weights_only=True`` one, which builds only
    tensors, containers and plain values and refuses anything else with an
    ``UnpicklingError`` (every caller treats that as a damaged record). Only regular files
    are opened (:func:`require_regular_file`)."""
    import pickle
    import re

    import torch

    try:
        return torch.load(require_regular_file(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's message advises weights_only=False: not here
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        needs = f" ({found.group(1)})" if found else ""
        raise pickle.UnpicklingError(
            f"refused: its pickle needs more than tensors and plain values{needs}, "
            "and a file is never run as code"
        ) from None
