"""The bandit's smoke profile end to end, in a subprocess, as a user would run it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "reproduce.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_bandit_smoke_profile_writes_every_output(tmp_path):
    out = tmp_path / "bandit"
    proc = run_cli("bandit", "--profile", "smoke", "--out", str(out), "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]

    suite = yaml.safe_load((ROOT / "configs/suites/bandit.yaml").read_text())
    algos = suite["algos"]
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["algo"]) == sorted(algos)  # smoke: one seed per method
    for column in ("mean_reward", "cvar", "centre_frac", "ring_frac", "ood_rate", "ood_rate_k3"):
        assert np.isfinite(summary[column]).all(), column
    assert (summary["cvar"] <= summary["mean_reward"] + 1e-9).all()

    for algo, run_name in zip(summary["algo"], summary["run"], strict=True):
        run = out / "runs" / algo / run_name
        assert run_name.startswith("seed0-")  # seed plus the hash of the resolved config
        assert (run / "done").exists()
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["seed"] == 0 and config["dataset"]["source"] == "bandit"
        assert "torch" in config["versions"]
        # where it ran: recorded (auto is the CPU here), never hashed
        assert config["device"] == "cpu" and config["compile"] is False
        assert "device" not in config["algo_config"]
        data = np.load(run / "actions.npz")
        assert data["actions"].shape == (config["eval"]["n_actions"], 2)
        assert np.abs(data["actions"]).max() <= 1.0
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["algo"] == algo and metrics["device"] == "cpu"
        assert len(pd.read_csv(run / "train_log.csv")) > 0

    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["metric"]) == {"mean", "cvar", "centre", "ring", "ood_rate"}
    tex = (out / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\textbf" in tex
    md = (out / "leaderboard.md").read_text()
    assert md.count("|") > 10 and "RADAC" in md
    for name in ("bandit.png", "bandit.pdf"):
        assert (out / name).stat().st_size > 1000
    assert (out / "bandit.png").read_bytes()[:4] == b"\x89PNG"

    # A rerun finds every run done and only rewrites the tables.
    again = run_cli("bandit", "--profile", "smoke", "--out", str(out), "--workers", "1")
    assert again.returncode == 0, again.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), summary)


def test_user_errors_exit_2_with_one_line(tmp_path):
    proc = run_cli("bandit", "--profile", "smoke", "--algos", "nope", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown algorithm 'nope'" in proc.stderr
    proc = run_cli("train", "--profile", "smoke", "--tasks", "nope", "--out", str(tmp_path))
    assert proc.returncode == 2 and "unknown dataset(s) nope" in proc.stderr
    proc = run_cli("report", "--profile", "smoke", "--out", str(tmp_path / "empty"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: no records in")


def test_the_installed_ramac_command_is_the_same_command_line(tmp_path):
    # pyproject.toml installs every package the command line imports (pipeline included)
    # and a `ramac` entry point; both work outside the checkout.
    ramac = Path(sys.executable).with_name("ramac")
    proc = subprocess.run([ramac, "bandit", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "--profile" in proc.stdout and "usage: ramac" in proc.stdout
    code = "import pipeline.cli, eval.ood, reports.suite, figures.bandit"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_every_stage_has_help_and_make_reproduce_options_parse():
    for stage in ("bandit", "data", "train", "evaluate", "report", "figures", "all"):
        proc = run_cli(stage, "--help")
        assert proc.returncode == 0 and "--profile" in proc.stdout, stage
    assert "--data" in run_cli("all", "--help").stdout


@pytest.mark.parametrize(
    "stage, option",
    [
        ("bandit", ["--suite", "x.yaml"]),
        ("bandit", ["--tasks", "hopper"]),
        ("bandit", ["--checkpoint", "best"]),
        ("bandit", ["--data", "d4rl"]),
        ("data", ["--steps", "5"]),
        ("data", ["--algos", "bc"]),
        ("data", ["--executor", "ray"]),
        ("report", ["--workers", "3"]),
        ("figures", ["--seeds", "2"]),
        ("report", ["--no-seed-stacks"]),
        ("evaluate", ["--compile"]),
        ("report", ["--device", "cpu"]),
        ("data", ["--gpus-per-run", "1"]),
    ],
)
def test_a_stage_rejects_the_options_it_does_not_use(stage, option, capsys):
    from pipeline import cli

    with pytest.raises(SystemExit) as exit:
        cli.build_parser().parse_args([stage, "--profile", "smoke", *option])
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"error: unrecognized arguments: {' '.join(option)}")


def test_the_options_make_and_the_readme_pass_still_parse(tmp_path, capsys):
    from pipeline import cli

    parser = cli.build_parser()
    for argv in (
        "bandit --profile quick --seeds 5 --steps 10 --algos bc --out o --workers 2",
        "data --profile quick",
        "data --profile smoke --data d4rl --out o --workers 1",
        "data --task hopper --kind medium-expert --size 100",
        "all --profile quick --seeds 2 --data generated",
        "train --profile cpu --algos bc --tasks hopper --seeds 1 --executor ray --ray-address a",
        "evaluate --profile quick --algos bc --checkpoint best --no-seed-stacks",
        "report --profile quick",
        "figures --profile quick --out o",
        "bandit --profile smoke --device cpu --compile --executor ray --gpus-per-run 0.25",
        "all --profile paper --device cuda:1 --compile --gpus-per-run 0.5",
        "evaluate --profile quick --device auto",
        "calibrate --on suite --device cpu --executor ray --gpus-per-run 0.25",
        "frontier --device cuda --compile",
    ):
        parser.parse_args(argv.split())
    # --ray-address without --executor ray: one line, before any work.
    out = tmp_path / "out"
    argv = ["train", "--profile", "smoke", "--ray-address", "h:1", "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ray-address h:1 is for --executor ray" in err[0]
    assert not out.exists()


def test_data_stage_choices_match_the_generator():
    from pipeline import cli
    from ramac.data.behaviour import ENV_IDS
    from ramac.data.generate import KINDS

    assert cli.KINDS == tuple(KINDS) and cli.TASKS == tuple(ENV_IDS)


@pytest.mark.slow
def test_bandit_seeds_train_as_one_stack(tmp_path):
    out = tmp_path / "bandit"
    args = ["--profile", "smoke", "--out", str(out), "--seeds", "2", "--algos", "radac", "bc"]
    proc = run_cli("bandit", *args, "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["seed"]) == [0, 0, 1, 1] and (summary["wall_seconds"] > 0).all()
    for algo, run_name in zip(summary["algo"], summary["run"], strict=True):
        config = yaml.safe_load((out / "runs" / algo / run_name / "config.yaml").read_text())
        assert config["trained_with_seeds"] == [0, 1]
    # The two seeds of a method learned different policies.
    for algo in ("radac", "bc"):
        runs = summary[summary["algo"] == algo]["run"]
        a, b = (np.load(out / "runs" / algo / r / "actions.npz")["actions"] for r in runs)
        assert not np.array_equal(a, b)
