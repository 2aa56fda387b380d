"""Atomic file writes: a crash or an interrupt never leaves a half-written file in place.

Every record and report is written to a temporary name in the destination's folder and
then renamed over the destination with ``os.replace`` (atomic on POSIX and Windows when
both names are on one file system), as the README's "Records" paragraph promises.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

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
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
