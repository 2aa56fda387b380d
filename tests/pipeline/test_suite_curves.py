"""Kept snapshots give return learning curves; changed evaluation settings re-evaluate a
finished run without retraining it (run folders are keyed by what trains them)."""

import json

import pandas as pd
import pytest
import yaml

from pipeline.suite import SUITE_FILE, make_plan, run_plan


@pytest.mark.slow
def test_curves_and_re_evaluation(tmp_path, monkeypatch):
    monkeypatch.setenv("RAMAC_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "out"
    args = dict(algos=["bc"], seeds=1, out=out, checkpoint="best")
    plan = make_plan("smoke", **args)
    run_plan(plan, workers=1)

    run = plan.jobs[0].run_dir
    curve = pd.read_csv(run / "curve.csv")
    assert list(curve["step"]) == [10, 20]  # the smoke profile keeps 2 checkpoints
    assert (curve["cvar"] <= curve["mean_return"] + 1e-9).all()
    summary = pd.read_csv(out / "summary.csv")
    best = curve.loc[curve["mean_return"].idxmax()]
    assert summary["checkpoint_step"].iloc[0] == best["step"]
    assert summary["mean_return"].iloc[0] == pytest.approx(best["mean_return"])
    assert len(pd.read_csv(out / "curves.csv")) == 2

    # Another kappa: the same run folder, evaluated again, its training untouched.
    suite = yaml.safe_load(SUITE_FILE.read_text())
    suite["eval"]["kappa"] = 5.0
    changed = tmp_path / "suite.yaml"
    changed.write_text(yaml.safe_dump(suite))
    log_before = (run / "train_log.csv").read_text()
    replan = make_plan("smoke", **args, suite_file=changed)
    assert replan.jobs[0].run_dir == run
    run_plan(replan, workers=1)
    assert (run / "train_log.csv").read_text() == log_before
    assert json.loads((run / "metrics.json").read_text())["ood_kappa"] == 5.0
    assert (run / "done.stale-eval").exists() and (run / "done").exists()

    # A record from before both OOD rates were recorded (same eval settings, no 1-NN rate):
    # evaluated again, so that no run's paper-detector cell stays empty; training untouched.
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["ood_rate_1nn"] <= 1 and "ood_rate_1nn_k10" in metrics
    old = {k: v for k, v in metrics.items() if not k.startswith("ood_rate_1nn")}
    (run / "metrics.json").write_text(json.dumps(old))
    (run / "done.stale-eval").unlink()
    run_plan(replan, workers=1)
    again = json.loads((run / "metrics.json").read_text())
    rates = [k for k in metrics if k.startswith(("ood_rate", "mean_return", "cvar"))]
    assert {k: again[k] for k in rates} == {k: metrics[k] for k in rates}  # seeded: the same
    assert (run / "done.stale-eval").exists() and (run / "train_log.csv").read_text() == log_before
