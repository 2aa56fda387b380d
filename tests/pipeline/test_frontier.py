"""The risk-return frontier: a swept setting reaches each run's config and folder, and the
frontier's points, table and figure come from hand-made records with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.bandit import SUITE_FILE, BanditSuite, make_jobs
from pipeline.frontier import SWEEP, mark_value, value_folder
from reports.frontier import frontier_points, read_sweep, write_frontier_report


def test_a_swept_value_is_in_the_config_and_gets_a_folder_of_its_own(tmp_path):
    suite = BanditSuite.read(SUITE_FILE)
    plain = make_jobs(suite, "smoke", 1, tmp_path, ["radac", "bc"])
    swept = make_jobs(suite, "smoke", 1, tmp_path, ["radac", "bc"], overrides={"eta": 7.0})
    before, after = {j.algo: j for j in plain}, {j.algo: j for j in swept}
    assert after["radac"].overrides["eta"] == 7.0 and "eta" not in before["radac"].overrides
    assert after["radac"].run_dir != before["radac"].run_dir  # another config, another folder
    assert "eta" not in after["bc"].overrides and after["bc"].run_dir == before["bc"].run_dir
    assert after["radac"].overrides["batch_size"] == 32  # the profile's overrides stay


def test_value_folders_are_named_and_marked(tmp_path):
    assert value_folder(tmp_path, "eta", 0.5).name == "eta-0.5"
    assert value_folder(tmp_path, "eta", 50.0).name == "eta-50"
    mark_value(tmp_path / "eta-0.5", "eta", 0.5)
    assert json.loads((tmp_path / "eta-0.5" / SWEEP).read_text()) == {"key": "eta", "value": 0.5}


def _summary(
    algo_values: dict[str, list[tuple[float, float]]], runs: dict[str, str]
) -> pd.DataFrame:
    rows = []
    for algo, seeds in algo_values.items():
        for seed, (mean, cvar) in enumerate(seeds):
            rows.append(
                {"suite": "bandit", "dataset": "bandit", "algo": algo, "seed": seed,
                 "run": runs.get(algo, f"seed{seed}-x"), "n_actions": 100,
                 "mean_reward": mean, "cvar": cvar, "ood_rate": 0.1 * seed,
                 "train_steps": 10, "schedule_scale": 0.0005}
            )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture
def sweep(tmp_path) -> tuple[Path, Path]:
    """Two values of eta for RADAC (3 seeds each) and a main run with RADAC at eta 0.5 and
    BC, as their records."""
    root, reference = tmp_path / "frontier", tmp_path / "main"
    for eta, shift in ((0.0, 0.0), (0.5, 1.0)):
        folder = value_folder(root, "eta", eta)
        mark_value(folder, "eta", eta)
        seeds = [
            (1.0 + shift, -5.0 + shift),
            (2.0 + shift, -4.0 + shift),
            (3.0 + shift, -3.0 + shift),
        ]
        _summary({"radac": seeds}, {}).to_csv(folder / "summary.csv", index=False)
    main = _summary({"radac": [(9.0, 9.0)], "bc": [(4.0, -6.0), (6.0, -2.0)]}, {"radac": "seed0-r"})
    reference.mkdir()
    main.to_csv(reference / "summary.csv", index=False)
    config = reference / "runs" / "radac" / "seed0-r" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump({"profile": "smoke", "algo_config": {"eta": 0.5}}))
    return root, reference


def test_points_are_the_seeds_means_and_the_default_is_marked(sweep):
    root, reference = sweep
    points, suite, key = frontier_points(read_sweep(root), reference)
    assert (suite, key) == ("bandit", "eta")
    radac = points[points["algo"] == "radac"].set_index("value")
    assert list(radac.index) == [0.0, 0.5]
    assert radac.loc[0.0, "mean"] == pytest.approx(2.0) and radac.loc[0.5, "cvar"] == pytest.approx(
        -3.0
    )
    assert radac.loc[0.0, "mean_low"] <= 2.0 <= radac.loc[0.0, "mean_high"]
    assert radac.loc[0.0, "ood_rate"] == pytest.approx(0.1)  # mean of 0, 0.1, 0.2
    assert list(radac["default"]) == [False, True]  # the main run trained with eta 0.5
    bc = points[points["algo"] == "bc"].iloc[0]  # a reference method: no value
    assert np.isnan(bc["value"]) and bc["mean"] == pytest.approx(5.0) and bc["label"] == "BC"
    assert "radac" not in set(points.loc[points["value"].isna(), "algo"])  # swept: not twice


def test_the_report_writes_table_figure_and_page(sweep):
    root, reference = sweep
    paths = write_frontier_report(root, reference)
    md = (root / "frontier.md").read_text()
    assert "| bandit | RADAC | 0.5 (default) | 3 | 3.00 [" in md
    tex = (root / "frontier.tex").read_text()
    assert "\\toprule" in tex and "\\label{tab:frontier}" in tex and "CVaR\\_0.1" in tex
    assert (root / "frontier.png").stat().st_size > 1000
    page = paths["report"].read_text()
    assert "risk-return frontier" in page and "data:image/png;base64" in page


def test_no_records_is_one_line(tmp_path):
    from ramac.errors import UserError

    with pytest.raises(UserError, match="no frontier records"):
        read_sweep(tmp_path)
