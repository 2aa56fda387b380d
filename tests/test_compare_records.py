"""scripts/compare_records.py: the before/after check of issue 24 counts a change in the last
digit of any record, and nothing of where or how long a run ran."""

import importlib.util
import json

from ramac.config import ROOT

spec = importlib.util.spec_from_file_location("compare", ROOT / "scripts/compare_records.py")
compare_records = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_records)


def write(root, loss="0.123456789", device="cpu"):
    (root / "run").mkdir(parents=True)
    (root / "summary.csv").write_text(f"algo,loss,wall_seconds,device\nradac,{loss},1.5,{device}\n")
    record = {"loss": float(loss), "train_seconds": 3.0, "device": device, "versions": {"x": 1}}
    (root / "run" / "metrics.json").write_text(json.dumps(record))
    (root / "run" / "config.yaml").write_text(f"seed: 0\ndevice: {device}\ncompile: false\n")


def test_identical_numbers_elsewhere_compare_equal(tmp_path, capsys):
    write(tmp_path / "a")
    write(tmp_path / "b", device="cuda:0")
    assert compare_records.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.endswith(": 0 files (0 cells) differ\n")


def test_the_last_digit_counts(tmp_path, capsys):
    write(tmp_path / "a")
    write(tmp_path / "b", loss="0.123456788")
    (tmp_path / "b" / "extra.csv").write_text("x\n1\n")
    counts = compare_records.compare(tmp_path / "a", tmp_path / "b")
    assert counts == {"files": 4, "files_differ": 3, "cells": 6, "cells_differ": 2}
    assert "only in after: extra.csv" in capsys.readouterr().out
