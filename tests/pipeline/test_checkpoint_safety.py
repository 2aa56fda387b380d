"""Opening a shared checkpoint, snapshot or model cache never runs code (issue 23).

Each case plants a file whose pickle would create a marker file when unpickled with
``weights_only=False`` (what every ``torch.load`` here did before), then runs the stage a
user would run on it: ``evaluate``, a resumed ``train``, ``calibrate`` and a RAVL run on a
cached dynamics model. The marker must never appear, and the planted file must end up
under a ``corrupt/`` folder (refused like any damaged record), never deleted.
"""

import io
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from ramac.io import load_torch_file


class Payload:
    """Unpickles as ``open(marker, "w")``: a file appears when the pickle runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path) -> None:
    """Replace ``path`` with a checkpoint-shaped dict whose agent is the payload."""
    buffer = io.BytesIO()
    torch.save({"step": 10**6, "log": [], "agent": Payload(marker), "weights": {}}, buffer)
    path.write_bytes(buffer.getvalue())


def test_the_payload_runs_code_when_unpickled_unsafely(tmp_path):
    """The test's own premise: the planted file does run code under weights_only=False."""
    marker, path = tmp_path / "marker", tmp_path / "evil.pt"
    plant(path, marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_the_toolkit_loader_refuses_the_payload(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "evil.pt"
    plant(path, marker)
    with pytest.raises(pickle.UnpicklingError, match=r"refused: .*\(io\.open\)"):
        load_torch_file(path)
    assert not marker.exists()


def test_the_toolkit_loader_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "checkpoint.pt"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        load_torch_file(fifo)  # would wait forever if opened


def corrupt_files(root: Path, name: str) -> list[Path]:
    return [p for p in root.rglob(name) if p.parent.name == "corrupt"]


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("RAMAC_DATA_DIR", str(data))
    return data


SMOKE = ["--profile", "smoke", "--seeds", "1", "--workers", "1", "--steps", "20"]


@pytest.mark.slow
def test_evaluate_and_resumed_train_never_run_a_checkpoint(tmp_path, data_dir):
    marker, out = tmp_path / "marker", tmp_path / "suite"
    args = [*SMOKE, "--algos", "radac", "--out", str(out)]
    assert main(["train", *args]) == 0
    (checkpoint,) = out.rglob("checkpoint.pt")
    plant(checkpoint, marker)

    assert main(["evaluate", *args]) == 2  # refused: "not trained", the file moved aside
    assert not marker.exists() and corrupt_files(out, "checkpoint.pt")

    plant(checkpoint.parent / "checkpoint.pt", marker)
    (checkpoint.parent / "done").unlink(missing_ok=True)
    assert main(["train", *args]) == 0  # resumed: the payload moved aside, trained over
    assert not marker.exists() and len(corrupt_files(out, "checkpoint.pt*")) == 2
    assert load_torch_file(checkpoint)["step"] == 20


@pytest.mark.slow
def test_calibrate_never_runs_a_checkpoint(tmp_path, data_dir):
    marker, out = tmp_path / "marker", tmp_path / "bandit"
    args = ["--profile", "smoke", "--seeds", "1", "--workers", "1", "--out", str(out)]
    assert main(["bandit", *args, "--algos", "radac", "--steps", "20"]) == 0
    (checkpoint,) = out.rglob("checkpoint.pt")
    plant(checkpoint, marker)
    main(["calibrate", "--profile", "smoke", "--out", str(out)])
    assert not marker.exists()
    assert corrupt_files(out, "checkpoint.pt")


@pytest.mark.slow
def test_a_ravl_run_never_runs_a_cached_model(tmp_path, data_dir):
    marker = tmp_path / "marker"
    args = [*SMOKE, "--algos", "ravl"]
    assert main(["train", *args, "--out", str(tmp_path / "first")]) == 0
    (cache,) = (data_dir / "models").glob("*.pt")
    plant(cache, marker)
    shutil.rmtree(tmp_path / "first")
    assert main(["train", *args, "--out", str(tmp_path / "second")]) == 0
    assert not marker.exists()
    assert corrupt_files(data_dir / "models", cache.name)  # moved aside, then trained anew
    assert load_torch_file(cache)["weights"]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["empty", "cut", "random"])
def test_a_damaged_model_cache_is_moved_aside_and_trained_anew(tmp_path, data_dir, damage):
    args = [*SMOKE, "--algos", "ravl"]
    assert main(["train", *args, "--out", str(tmp_path / "first")]) == 0
    (cache,) = (data_dir / "models").glob("*.pt")
    data = cache.read_bytes()
    damaged = {"empty": b"", "cut": data[: len(data) // 2], "random": os.urandom(len(data))}
    cache.write_bytes(damaged[damage])
    assert main(["train", *args, "--out", str(tmp_path / "second")]) == 0  # no error, no trace
    (aside,) = corrupt_files(data_dir / "models", cache.name + "*")
    assert aside.read_bytes() == damaged[damage]  # kept for a person to look at
    assert load_torch_file(cache)["weights"]  # and a readable model in its place
