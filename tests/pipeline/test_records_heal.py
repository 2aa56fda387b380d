"""Damaged records heal on rerun: the unreadable file moves to the run folder's corrupt/
(one warning line), the run is done again (its evaluation only, when its checkpoint is
good), nothing is deleted, and the rerun ends with the numbers of an undamaged run.

The bandit's smoke profile (BC, 200 updates, in this process) stands in for every suite:
the run-once contract, checkpoints and seed stacks are shared (pipeline/runs.py,
ramac/train.py); the Stochastic-D4RL's own records are checked at the end.
"""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from pipeline import runs
from pipeline.bandit import SUITE_FILE, BanditSuite, make_jobs
from pipeline.cli import main
from ramac.train import CHECKPOINT, PENDING, train, train_seeds

STEPS = 200  # checkpoints every 50 updates (the bandit's quarter of the budget)
BANDIT = ["bandit", "--profile", "smoke", "--algos", "bc", "--steps", str(STEPS)]
BANDIT += ["--workers", "1"]


def bandit(out: Path, seeds: int) -> int:
    return main([*BANDIT, "--seeds", str(seeds), "--out", str(out)])


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "runs" / "bc").iterdir() if p.is_dir())


def numbers(out: Path) -> pd.DataFrame:
    """Every column of summary.csv but the training's wall clock."""
    return pd.read_csv(out / "summary.csv").drop(columns="wall_seconds")


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """One undamaged, uninterrupted run."""
    out = tmp_path_factory.mktemp("straight") / "bandit"
    assert bandit(out, seeds=1) == 0
    return out


@pytest.fixture(scope="module")
def straight_stack(tmp_path_factory) -> Path:
    """Two seeds trained as one seed stack, undamaged."""
    out = tmp_path_factory.mktemp("straight-stack") / "bandit"
    assert bandit(out, seeds=2) == 0
    return out


def killed_at(out: Path, seeds: int, step: int) -> list[Path]:
    """Run folders as a kill at ``step`` leaves them (a stack when ``seeds`` > 1)."""
    jobs = make_jobs(BanditSuite.read(SUITE_FILE), "smoke", seeds, out, ["bc"], STEPS)
    dataset = jobs[0].dataset()
    for job in jobs:
        runs.write_config(job, dataset, [j.seed for j in jobs])
    dirs = [job.run_dir for job in jobs]
    if seeds == 1:
        job = jobs[0]
        train(job.algo, dataset, job.run_dir, job.settings, job.overrides, stop_after=step)
    else:
        settings = [job.settings for job in jobs]
        train_seeds("bc", dataset, dirs, settings, jobs[0].overrides, stop_after=step)
    assert all(torch.load(d / CHECKPOINT, weights_only=True)["step"] == step for d in dirs)
    return dirs


def damage_metrics_empty(run: Path) -> None:
    (run / "metrics.json").write_bytes(b"")  # what a full disk leaves


def damage_metrics_missing(run: Path) -> None:
    (run / "metrics.json").unlink()


def damage_metrics_invalid(run: Path) -> None:
    truncate(run / "metrics.json")


def damage_actions_truncated(run: Path) -> None:
    truncate(run / "actions.npz")


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage",
    [
        damage_metrics_empty,
        damage_metrics_missing,
        damage_metrics_invalid,
        damage_actions_truncated,
    ],
    ids=lambda f: f.__name__.removeprefix("damage_"),
)
def test_a_finished_run_with_an_unreadable_record_is_evaluated_again(
    straight, tmp_path, capsys, damage
):
    out = tmp_path / "bandit"
    shutil.copytree(straight, out)
    (run,) = run_dirs(out)
    trained = (run / CHECKPOINT).stat().st_mtime_ns
    damage(run)
    capsys.readouterr()

    assert bandit(out, seeds=1) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "the run is done again" in warnings[0], err
    assert (run / "corrupt" / "done").exists() and (run / "done").exists()
    if damage is not damage_metrics_missing:
        name = "actions.npz" if damage is damage_actions_truncated else "metrics.json"
        assert (run / "corrupt" / name).exists()  # kept for a person to look at
    assert (run / CHECKPOINT).stat().st_mtime_ns == trained  # evaluated, not retrained
    json.loads((run / "metrics.json").read_text())
    # the same numbers, the training clock included (the run was not retrained)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "summary.csv"), pd.read_csv(straight / "summary.csv")
    )


@pytest.mark.slow
def test_a_truncated_checkpoint_of_an_unfinished_run_starts_it_over(straight, tmp_path, capsys):
    out = tmp_path / "bandit"
    (run,) = killed_at(out, seeds=1, step=100)
    truncate(run / CHECKPOINT)
    capsys.readouterr()

    assert bandit(out, seeds=1) == 0
    err = capsys.readouterr().err
    assert f"{run / CHECKPOINT}: unreadable" in err and "training starts over" in err
    assert (run / "corrupt" / CHECKPOINT).exists()
    pd.testing.assert_frame_equal(numbers(out), numbers(straight))
    log = pd.read_csv(run / "train_log.csv")
    assert log["step"].is_monotonic_increasing and log["step"].is_unique
    assert log["step"].max() == STEPS


@pytest.mark.slow
def test_a_truncated_pending_checkpoint_resumes_the_stack(straight_stack, tmp_path, capsys):
    out = tmp_path / "bandit"
    first, second = killed_at(out, seeds=2, step=100)
    # seed 0's next checkpoint damaged on disk; seed 1's intact (here: its step-100 state)
    (first / PENDING).write_bytes((first / CHECKPOINT).read_bytes()[:1000])
    shutil.copy(second / CHECKPOINT, second / PENDING)
    capsys.readouterr()

    assert bandit(out, seeds=2) == 0
    err = capsys.readouterr().err
    assert f"{first / PENDING}: unreadable" in err, err
    assert (first / "corrupt" / PENDING).exists()
    assert not (first / PENDING).exists() and not (second / PENDING).exists()
    pd.testing.assert_frame_equal(numbers(out), numbers(straight_stack))


@pytest.mark.slow
def test_a_truncated_checkpoint_in_a_stack_starts_the_stack_over(straight_stack, tmp_path, capsys):
    out = tmp_path / "bandit"
    first, second = killed_at(out, seeds=2, step=100)
    truncate(second / CHECKPOINT)
    capsys.readouterr()

    assert bandit(out, seeds=2) == 0
    err = capsys.readouterr().err
    assert f"{second / CHECKPOINT}: unreadable" in err
    assert "starts over from step 0" in err
    assert (second / "corrupt" / CHECKPOINT).exists()
    # trained as one stack again: the numbers of the undamaged stack
    pd.testing.assert_frame_equal(numbers(out), numbers(straight_stack))


@pytest.mark.slow
@pytest.mark.parametrize("cut", [0.0, 0.7], ids=["empty", "cut-mid-line"])
def test_an_unreadable_bandit_summary_is_never_read_as_data(straight, tmp_path, capsys, cut):
    out = tmp_path / "bandit"
    shutil.copytree(straight, out)
    truncate(out / "summary.csv", keep=cut)
    capsys.readouterr()

    assert main(["report", "--profile", "smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {out / 'summary.csv'}: unreadable")
    assert "run 'reproduce.py bandit'" in err
    assert (out / "corrupt" / "summary.csv").exists() and not (out / "summary.csv").exists()

    assert bandit(out, seeds=1) == 0  # rewritten from the run records, nothing retrained
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "summary.csv"), pd.read_csv(straight / "summary.csv")
    )
    assert main(["report", "--profile", "smoke", "--out", str(out)]) == 0


# ----------------------------------------------------------------------------- the suite


def suite_cli(*args: str) -> int:
    return main([*args, "--profile", "smoke", "--seeds", "1", "--workers", "1"])


@pytest.mark.slow
def test_the_suite_heals_its_records(tmp_path, monkeypatch, capsys):
    """Stochastic-D4RL: a done run's invalid metrics.json or truncated episodes.csv is
    evaluated again (not retrained); a truncated checkpoint is moved aside and the run is
    trained again; gathered tables cut off are never read as data; and evaluating the best
    checkpoint of a default training says what is missing."""
    monkeypatch.setenv("RAMAC_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "suite"
    where = ["--out", str(out)]
    assert suite_cli("train", *where) == 0
    assert suite_cli("evaluate", *where) == 0
    summary = pd.read_csv(out / "summary.csv")
    evaluated = summary.drop(columns=["eval_seconds"])
    bc, radac = (
        next((out / "runs" / "hopper-medium-expert" / a).iterdir()) for a in ("bc", "radac")
    )
    trained = (bc / CHECKPOINT).stat().st_mtime_ns

    # A finished run's metrics.json invalid, another's episodes.csv cut off: evaluated again.
    truncate(bc / "metrics.json")
    truncate(radac / "episodes.csv")
    capsys.readouterr()
    assert suite_cli("evaluate", *where) == 0
    err = capsys.readouterr().err
    assert err.count("the run is done again") == 2, err
    assert (bc / "corrupt" / "metrics.json").exists()
    assert (radac / "corrupt" / "episodes.csv").exists()
    assert (bc / CHECKPOINT).stat().st_mtime_ns == trained
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "summary.csv").drop(columns=["eval_seconds"]), evaluated
    )

    # A truncated checkpoint in a run to evaluate: moved aside, the run trained again.
    truncate(bc / CHECKPOINT)
    (bc / "done").unlink()
    capsys.readouterr()
    assert suite_cli("evaluate", *where) == 2
    err = capsys.readouterr().err
    assert f"{bc / CHECKPOINT}: unreadable" in err and "no checkpoint); run 'train' first" in err
    assert suite_cli("train", *where) == 0
    assert suite_cli("evaluate", *where) == 0
    again = pd.read_csv(out / "summary.csv").drop(columns=["eval_seconds", "train_seconds"])
    pd.testing.assert_frame_equal(again, evaluated.drop(columns=["train_seconds"]))

    # summary.csv cut at a line end (BC's row lost): one line naming it, not "no records
    # for algorithm(s) BC"; evaluate rewrites it from the run records.
    lines = (out / "summary.csv").read_text().splitlines(keepends=True)
    (out / "summary.csv").write_text("".join(lines[:2]))
    capsys.readouterr()
    assert main(["report", "--profile", "smoke", *where]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {out / 'summary.csv'}: unreadable (cut off" in err
    assert "run 'reproduce.py evaluate'" in err and "no records for" not in err
    assert suite_cli("evaluate", *where) == 0
    (out / "episodes.csv").write_bytes(b"")  # a zero-byte table
    assert main(["report", "--profile", "smoke", *where]) == 2
    assert "episodes.csv: unreadable (empty file" in capsys.readouterr().err
    assert suite_cli("evaluate", *where) == 0
    assert main(["report", "--profile", "smoke", *where]) == 0

    # --checkpoint best after a default training: says what is missing and how to get it.
    capsys.readouterr()
    assert suite_cli("evaluate", *where, "--checkpoint", "best") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "no kept checkpoints" in err and "training kept only the final checkpoint" in err
    assert "train with --checkpoint best" in err and "not trained" not in err


@pytest.mark.parametrize(
    "damage", [b"", b"algo: [bc\n", b"- a list\n"], ids=["empty", "yaml", "list"]
)
def test_an_unreadable_config_of_an_unfinished_run_is_moved_aside_and_written_again(
    tmp_path, capsys, damage
):
    from ramac.config import read_yaml
    from ramac.envs.bandit import BanditSpec, make_dataset

    (job,) = make_jobs(BanditSuite.read(SUITE_FILE), "smoke", 1, tmp_path / "out", ["bc"])
    dataset, _ = make_dataset(BanditSpec(n_samples=100), seed=0)
    runs.write_config(job, dataset, stack=[0])
    path = job.run_dir / runs.CONFIG
    whole = path.read_bytes()
    runs.write_config(job, dataset, stack=[0])  # a readable config is kept as it is
    assert path.read_bytes() == whole and not (job.run_dir / "corrupt").exists()
    path.write_bytes(damage)
    runs.write_config(job, dataset, stack=[0])
    assert (job.run_dir / "corrupt" / runs.CONFIG).read_bytes() == damage  # kept, not deleted
    assert read_yaml(path)["algo"] == "bc"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {path}: unreadable")
