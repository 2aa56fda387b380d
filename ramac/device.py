"""Which torch device a run uses: chosen once, at the command line, and checked before work.

``--device auto|cpu|cuda|cuda:N`` (DESIGN "Devices"): ``auto`` is the first GPU when torch
sees one, else the CPU. The name is resolved and checked in the main process when the plan
is made, so ``--device cuda`` on a machine without CUDA ends with one line and exit code 2
before any job starts, never deep inside a worker. The device is recorded with every run
but is not part of its config hash: the same run may resume on another device.
"""

from __future__ import annotations

import re

import torch

from ramac.errors import UserError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device that ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; None means
    ``auto``) stands for on this machine; a ``UserError`` in one line when it names a GPU
    this machine does not have, or is no device name at all."""
    text = "auto" if name is None else str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    found = _CUDA.fullmatch(text)
    if found is None:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise UserError(f"--device {shown!r}: not a device (use {DEVICE_CHOICES})")
    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise UserError(f"--device {text}: {why} on this machine (use --device cpu or auto)")
    index = int(found.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UserError(
            f"--device {text}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0...)"
        )
    return torch.device("cuda", index)
