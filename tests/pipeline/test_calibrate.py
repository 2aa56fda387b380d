"""Tail calibration of a results folder: only IQN critics are calibrated, each run once (its
records are read back, not redone), and the table is the seeds' means of hand-made gaps."""

from __future__ import annotations

import pandas as pd
import pytest

import pipeline.calibrate as calibrate
from pipeline.bandit import run_bandit
from reports.calibration import calibration_table, write_calibration_report


@pytest.fixture(scope="module")
def bandit_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("bandit")
    run_bandit("smoke", seeds=2, out=out, workers=1, algos=["radac", "bc"], steps=5)
    return out


def test_bandit_calibration_covers_the_iqn_runs_once(bandit_folder, monkeypatch):
    table = calibrate.calibrate_bandit(bandit_folder)
    points = pd.read_csv(table)
    assert set(points["algo"]) == {"radac"} and sorted(set(points["seed"])) == [0, 1]
    assert set(points["zone"]) == {"centre", "ring"} and len(points) == 2 * 9  # 1 + 8 points
    assert (points["true_cvar"][points["zone"] == "ring"] == -10.0).all()  # the penalty
    run_dirs = list((bandit_folder / "runs" / "radac").iterdir())
    assert all((d / calibrate.POINTS).exists() for d in run_dirs)

    def fail(run_dir):
        raise AssertionError(f"{run_dir} calibrated again")

    monkeypatch.setattr(calibrate, "bandit_run_calibration", fail)
    again = pd.read_csv(calibrate.calibrate_bandit(bandit_folder))
    pd.testing.assert_frame_equal(points, again)  # read back from the runs' records
    paths = write_calibration_report(bandit_folder)
    assert "RADAC" in paths["md"].read_text() and paths["report"].stat().st_size > 1000


def test_the_table_averages_each_seed_then_the_seeds():
    rows = []
    for seed, gaps in enumerate(([1.0, 3.0], [5.0, 7.0], [0.0, 0.0])):
        for gap in gaps:  # two ring points per seed: seed means 2, 6, 0
            rows.append(
                {"algo": "radac", "seed": seed, "zone": "ring", "predicted_cvar": -10 + gap,
                 "predicted_mean": 2.0,
                 "true_cvar": -10.0, "cvar_gap": gap, "cvar_rel_gap": gap / 10, "mean_gap": 0.5}
            )  # fmt: skip
    table = calibration_table(pd.DataFrame(rows))
    row = table.iloc[0]
    assert row["Method"] == "RADAC" and row["Zone"] == "ring" and row["Seeds"] == 3
    assert row["CVaR gap"].startswith("2.67 [")  # (2 + 6 + 0) / 3
    assert row["|gap| / |true| (%)"].startswith("26.67 [")
    assert row["Mean gap"].startswith("0.50 [0.50, 0.50]")
    # spread = mean - CVaR: predicted 2 - (-10 + gap), true (2 - 0.5) - (-10) = 11.5
    assert row["Spread: predicted"].startswith("9.33 [")
    assert row["Spread: true"].startswith("11.50 [11.50, 11.50]")


@pytest.mark.slow
def test_suite_calibration_of_a_smoke_run(tmp_path):
    from pipeline.suite import make_plan, run_plan

    plan = make_plan("smoke", out=tmp_path / "suite", seeds=1, algos=["radac", "bc"])
    run_plan(plan, workers=1)
    points = pd.read_csv(calibrate.calibrate_suite(plan, 1, n_states=2, n_rollouts=4))
    assert set(points["algo"]) == {"radac"} and set(points["dataset"]) == {"hopper-medium-expert"}
    # Two start states, each with the state the policy reaches half an episode later
    # (fewer when an episode ends before: the smoke policy may fall).
    assert set(points["start_step"]) <= {0, 12} and (points["start_step"] == 0).sum() == 2
    assert (points["n_returns"] == 4).all() and points["cvar_gap"].notna().all()
    paths = write_calibration_report(plan.out)
    assert "hopper-medium-expert" in paths["md"].read_text()
