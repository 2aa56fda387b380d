"""The Stochastic-D4RL smoke profile end to end, and a killed run resuming, as a user runs them."""

import html.parser
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from eval.suite_run import episode_seeds, horizon_steps
from pipeline.suite import make_plan

ROOT = Path(__file__).resolve().parents[2]


def cli(data_dir: Path, *args: str, wait: bool = True):
    command = [sys.executable, str(ROOT / "reproduce.py"), *args]
    env = {**os.environ, "RAMAC_DATA_DIR": str(data_dir)}
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def check_html(path: Path) -> str:
    text = path.read_text()
    html.parser.HTMLParser().feed(text)  # raises on nothing, but walks the whole page
    assert text.count("<table") == text.count("</table>")
    return text


@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path):
    out, data = tmp_path / "suite", tmp_path / "data"
    smoke = ["--profile", "smoke", "--out", str(out)]
    cli(data, "data", *smoke)
    assert len(list((data / "generated").glob("hopper-medium-expert-*.hdf5"))) == 1
    cli(data, "train", *smoke, "--workers", "2")
    cli(data, "evaluate", *smoke, "--workers", "2")

    episodes = pd.read_csv(out / "episodes.csv")
    assert len(episodes) == 2 * 2 * 2  # algos x seeds x episodes
    assert set(episodes["algo"]) == {"radac", "bc"} and set(episodes["seed"]) == {0, 1}
    assert (episodes["length"] <= 25).all() and (episodes["horizon"] == 25).all()
    assert sorted(set(episodes["env_seed"])) == episode_seeds(0, 2) + episode_seeds(1, 2)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4 and summary["ood_rate"].between(0, 1).all()
    # Both OOD rates, each with its kappa sweep: the paper's 1-NN on joint (s, a) and ours.
    for rate in ("ood_rate_1nn", "ood_rate"):
        for column in (rate, *(f"{rate}_k{k}" for k in (1, 3, 5, 10))):
            assert summary[column].between(0, 1).all(), column
    assert (summary["ood_rate_1nn"] == summary["ood_rate_1nn_k3"]).all()  # kappa = 3
    assert (summary["cvar"] <= summary["mean_return"] + 1e-9).all()
    assert pd.read_csv(out / "train_logs.csv")["step"].max() == 20

    run = out / "runs" / "hopper-medium-expert" / "radac" / summary["run"][0]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["provenance"]["source"] == "generated" and config["provenance"]["hazard"]
    recorded = json.loads((run / "metrics.json").read_text())
    assert recorded["ood_rate_1nn"] == summary["ood_rate_1nn"][0]
    assert recorded["ood_rate"] == summary["ood_rate"][0]
    assert config["algo_config"]["batch_size"] == 32 and "torch" in config["versions"]
    assert config["trained_with_seeds"] == [0, 1]  # the two seeds trained as one stack

    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["metric"]) == {"mean", "cvar"} and set(board["algo"]) == {"RADAC", "BC"}
    assert set(pd.read_csv(out / "ood.csv")["metric"]) == {"ood_rate_1nn", "ood_rate"}
    ood_md = (out / "ood.md").read_text()
    assert "| Hopper-M-E | OOD, 1-NN (paper), κ = 3 (%) |" in ood_md
    assert "|  | OOD, state-conditioned (%) |" in ood_md
    assert r"OOD, 1-NN (paper), $\kappa$ = 3" in (out / "ood.tex").read_text()
    for stem in ("leaderboard", "ood"):
        tex = (out / f"{stem}.tex").read_text()
        assert "\\toprule" in tex and "\\bottomrule" in tex and "\\caption{" in tex
        assert "| Hopper-M-E |" in (out / f"{stem}.md").read_text()
        check_html(out / f"{stem}.html")
    for name in ("frontier", "ood_1nn", "ood", "learning_curves", "returns"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    report = check_html(out / "report.html")
    assert report.count("data:image/png;base64,") == 5 and "2 seeds x 2 evaluation" in report
    assert "OOD action rate: OOD, 1-NN (paper), κ = 3 (%)" in report

    # `make tables` / `make figures`: rewritten from the records alone, same numbers.
    (out / "leaderboard.csv").unlink()
    cli(data, "report", *smoke)
    pd.testing.assert_frame_equal(pd.read_csv(out / "leaderboard.csv"), board)


@pytest.mark.slow
def test_ravl_runs_share_one_dynamics_model_and_report_it(tmp_path):
    out, data = tmp_path / "suite", tmp_path / "data"
    args = ["--profile", "smoke", "--algos", "ravl", "ravl_cvar", "--out", str(out)]
    cli(data, "train", *args, "--workers", "2")
    cli(data, "evaluate", *args, "--workers", "2")
    # Two seeds x two variants, one model: trained once, in $RAMAC_DATA_DIR/models.
    assert len(list((data / "models").glob("*.pt"))) == 1
    models = pd.read_csv(out / "dynamics.csv")
    assert len(models) == 4 and models["model_data_sha256"].nunique() == 1
    assert (models["model_seed"] == 0).all() and models["train_seconds"].nunique() == 1
    assert models["hazard_risky_rows"].iloc[0] > 0  # the relabelled data's hazard, seen
    logs = pd.read_csv(out / "train_logs.csv")
    assert logs["model_hazard_rate"].dropna().between(0, 1).all()
    table = pd.read_csv(out / "model_based.csv")
    assert list(table["Method"]) == ["RAVL", "RAVL (CVaR)"] and (table["Seeds"] == 2).all()
    assert "Model-based runs" in check_html(out / "report.html")
    assert set(pd.read_csv(out / "leaderboard.csv")["algo"]) == {"RAVL", "RAVL (CVaR)"}


def _wait_for_checkpoint(run_root: Path, proc: subprocess.Popen) -> Path:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list(run_root.glob("**/checkpoint.pt"))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint before the run ended: {proc.stderr.read()[-2000:]}")


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_final_metrics(tmp_path):
    data = tmp_path / "data"
    # Two seeds: they train as one seed stack, killed between or during its checkpoints.
    args = ["--profile", "smoke", "--algos", "radac", "--seeds", "2", "--steps", "600"]
    args += ["--workers", "1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    cli(data, "train", *args, "--out", str(straight))

    proc = cli(data, "train", *args, "--out", str(killed), wait=False)
    checkpoint = _wait_for_checkpoint(killed / "runs", proc)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, as on a lost machine
    proc.wait()
    assert torch.load(checkpoint, weights_only=True)["step"] == 300  # killed mid-way
    assert not (checkpoint.parent / "done").exists()

    cli(data, "train", *args, "--out", str(killed))  # resumes from step 300
    for out in (straight, killed):
        cli(data, "evaluate", *args, "--out", str(out))
    a = pd.read_csv(straight / "summary.csv")
    b = pd.read_csv(killed / "summary.csv")
    metrics = ["mean_return", "cvar", "ood_rate", "risky_rate", "train_steps"]
    pd.testing.assert_frame_equal(a[metrics], b[metrics])
    log = pd.read_csv(killed / "train_logs.csv")
    assert set(log["seed"]) == {0, 1}
    for _, steps in log.groupby("seed")["step"]:
        assert steps.is_monotonic_increasing and steps.is_unique and steps.max() == 600


def test_plan_names_tasks_datasets_and_rejects_unknown_names(tmp_path):
    plan = make_plan("smoke", datasets=["walker2d"], algos=["bc"], seeds=3, out=tmp_path)
    assert plan.datasets == ["walker2d-medium-expert", "walker2d-medium-replay"]
    assert [(j.data.name, j.seed) for j in plan.jobs][:3] == [
        ("walker2d-medium-expert", s) for s in range(3)
    ]
    assert len({j.run_dir for j in plan.jobs}) == 6
    assert plan.jobs[0].data.config_key == "walker2d-medium-expert-v2"
    from ramac.errors import UserError

    with pytest.raises(UserError, match="unknown dataset"):
        make_plan("smoke", datasets=["ant-medium"])
    with pytest.raises(UserError, match="unknown data source"):
        make_plan("smoke", source="minari")
    with pytest.raises(UserError, match="no profile"):
        make_plan("huge")
    assert horizon_steps("paper", "hopper") == 500 and horizon_steps("full", "hopper") == 1000
    assert episode_seeds(2, 3) == [1_002_000, 1_002_001, 1_002_002]


@pytest.mark.slow
def test_best_checkpoint_selection_is_labelled_optimistic(tmp_path):
    out, data = tmp_path / "best", tmp_path / "data"
    args = ["--profile", "smoke", "--algos", "bc", "--seeds", "1", "--out", str(out)]
    cli(data, "train", *args, "--checkpoint", "best")
    cli(data, "evaluate", *args, "--checkpoint", "best")
    summary = pd.read_csv(out / "summary.csv")
    assert summary["checkpoint"].iloc[0] == "best on the evaluation env (optimistic)"
    assert summary["checkpoint_step"].iloc[0] in (10, 20)  # the smoke profile keeps 2
    run = next((out / "runs").glob("*/bc/seed0-*"))
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [
        "step00000010.pt",
        "step00000020.pt",
    ]
    assert "optimistic" in (out / "leaderboard.tex").read_text()


@pytest.mark.slow
def test_d4rl_files_run_through_the_same_pipeline(tmp_path, monkeypatch):
    """``--data d4rl``: a D4RL-format file in $D4RL_DATASET_DIR (here a generated one, which has
    D4RL's keys, without the generator's metadata, as D4RL's files come) is read, relabelled
    with RAMAC's own ramac-v2 hazard, trained and evaluated in D4RL's collection dynamics
    (Gymnasium v4); a suite override (v5, with its reason) re-evaluates without retraining."""
    import h5py

    data, d4rl_dir, out = tmp_path / "data", tmp_path / "d4rl", tmp_path / "out"
    cli(data, "data", "--profile", "smoke", "--out", str(out))
    d4rl_dir.mkdir()
    generated = next((data / "generated").glob("hopper-medium-expert-*.hdf5"))
    target = d4rl_dir / "hopper_medium_expert-v2.hdf5"
    target.write_bytes(generated.read_bytes())
    with h5py.File(target, "a") as f:
        del f["metadata"]
    monkeypatch.setenv("D4RL_DATASET_DIR", str(d4rl_dir))  # cli() passes os.environ on
    args = ["--profile", "smoke", "--data", "d4rl", "--algos", "bc", "--seeds", "1"]
    cli(data, "train", *args, "--out", str(out))
    cli(data, "evaluate", *args, "--out", str(out))
    run = next((out / "runs" / "hopper-medium-expert" / "bc").iterdir())
    config = yaml.safe_load((run / "config.yaml").read_text())
    provenance = config["provenance"]
    assert (provenance["source"], provenance["id"]) == ("d4rl", "hopper-medium-expert-v2")
    assert provenance["hazard"]["name"] == "ramac-v2/hopper-medium-expert"
    assert provenance["hazard"]["unlabelled_end_rows"] == 0
    assert config["eval_env"]["env_id"] == "Hopper-v4"
    summary = pd.read_csv(out / "summary.csv")
    assert summary["data_source"].tolist() == ["d4rl"]
    assert summary[["eval_env", "eval_env_chosen_by"]].values.tolist() == [["Hopper-v4", "data"]]
    assert set(pd.read_csv(run / "episodes.csv")["env_id"]) == {"Hopper-v4"}
    assert (
        "Evaluation simulator: Hopper-v4 (the data's own: D4RL"
        in (out / "leaderboard.tex").read_text()
    )

    suite = yaml.safe_load((ROOT / "configs/suites/stochastic-d4rl.yaml").read_text())
    suite["eval"]["env"] = {"version": "v5", "reason": "as the toolkit evaluated before"}
    suite_file = tmp_path / "suite-v5.yaml"
    suite_file.write_text(yaml.safe_dump(suite))
    checkpoint = (run / "checkpoint.pt").stat().st_mtime_ns
    cli(data, "evaluate", *args, "--out", str(out), "--suite", str(suite_file))
    assert (run / "checkpoint.pt").stat().st_mtime_ns == checkpoint  # not retrained
    summary = pd.read_csv(out / "summary.csv")
    assert summary[["eval_env", "eval_env_chosen_by", "eval_env_reason"]].values.tolist() == [
        ["Hopper-v5", "suite override", "as the toolkit evaluated before"]
    ]
    assert set(pd.read_csv(run / "episodes.csv")["env_id"]) == {"Hopper-v5"}
    assert (
        "Hopper-v5 (suite override: as the toolkit evaluated before)"
        in (out / "leaderboard.md").read_text()
    )
