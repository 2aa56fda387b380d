"""Compare two results folders record by record, cell by cell, to the last printed digit.

    python scripts/compare_records.py BEFORE AFTER

Every CSV, JSON and YAML record under BEFORE (``summary.csv``, ``train_log.csv``,
``episodes.csv``, ``metrics.json``, ``config.yaml``, ...) is read beside its namesake under
AFTER: CSV cells as the text written (no float parsing, so a change in the last digit
counts), JSON and YAML values by their key path. What may differ between two runs of the
same numbers is left out: wall-clock columns (``*_seconds``), and where and with what a run
ran (``device``, ``compile``, ``versions``). A file on one side only counts as differing.

Prints the number of files and cells compared and of those that differ (with the first
differences); exits 1 when any differ. Used to show that a change keeps every number
(issue 24: the device path on the CPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SUFFIXES = (".csv", ".json", ".yaml")
IGNORED = re.compile(r"(.*_seconds|device|compile|versions)")


def _ignored(key: str) -> bool:
    return IGNORED.fullmatch(key) is not None


def _flatten(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(key path, value as JSON text) of every leaf, ignored keys left out."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not _ignored(str(key)):
                yield from _flatten(item, f"{path}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _flatten(item, f"{path}[{i}]")
    else:
        yield path, json.dumps(value, sort_keys=True, default=str)


def _csv_cells(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    header, cells = rows[0], {"rows": str(len(rows) - 1)}
    for r, row in enumerate(rows[1:]):
        for name, cell in zip(header, row, strict=False):
            if not _ignored(name):
                cells[f"row {r} {name}"] = cell
    cells["columns"] = ",".join(name for name in header if not _ignored(name))
    return cells


def cells(path: Path) -> dict[str, str]:
    """The comparable cells of a record file, by position or key path."""
    if path.suffix == ".csv":
        return _csv_cells(path)
    text = path.read_text()
    value = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return dict(_flatten(value))


def compare(before: Path, after: Path, show: int = 10) -> dict[str, int]:
    """Counts of files and cells compared and differing; prints the first ``show`` diffs."""
    names = {
        p.relative_to(root)
        for root in (before, after)
        for p in root.rglob("*")
        if p.suffix in SUFFIXES and p.is_file() and "corrupt" not in p.parts
    }
    counts = dict.fromkeys(("files", "files_differ", "cells", "cells_differ"), 0)
    shown = 0
    for name in sorted(names):
        counts["files"] += 1
        a, b = before / name, after / name
        if not (a.exists() and b.exists()):
            counts["files_differ"] += 1
            print(f"only in {'before' if a.exists() else 'after'}: {name}")
            continue
        ca, cb = cells(a), cells(b)
        keys = sorted(set(ca) | set(cb))
        differ = [k for k in keys if ca.get(k) != cb.get(k)]
        counts["cells"] += len(keys)
        counts["cells_differ"] += len(differ)
        counts["files_differ"] += bool(differ)
        for key in differ:
            if shown < show:
                print(f"{name}: {key}: {ca.get(key)!r} != {cb.get(key)!r}")
                shown += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    counts = compare(args.before, args.after)
    print(
        f"{counts['files']} files ({counts['cells']} cells) compared: "
        f"{counts['files_differ']} files ({counts['cells_differ']} cells) differ"
    )
    return 1 if counts["files_differ"] else 0


if __name__ == "__main__":
    sys.exit(main())
