"""Suite, profile and evaluation settings are typed: every bad value in a suite file is one
line naming the file, the block and the key, raised when the plan is made (before any job
starts, so nothing is written); the settings as recorded are the file's own values."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from pipeline.bandit import SUITE_FILE as BANDIT_FILE
from pipeline.bandit import BanditSuite, make_jobs
from pipeline.suite import SUITE_FILE, D4RLSuite, make_plan
from ramac.errors import UserError

SUITE = yaml.safe_load(SUITE_FILE.read_text())
BANDIT = yaml.safe_load(BANDIT_FILE.read_text())


def edited(tmp_path: Path, base: dict, edit) -> Path:
    suite = copy.deepcopy(base)
    edit(suite)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def suite_error(tmp_path: Path, edit, **plan) -> str:
    path = edited(tmp_path, SUITE, edit)
    with pytest.raises(UserError) as err:
        make_plan("smoke", suite_file=path, out=tmp_path / "out", **plan)
    message = str(err.value)
    assert "\n" not in message and not (tmp_path / "out").exists()
    return message


def set_in(path: str, value):
    """An edit that sets the key at dotted ``path`` (``profiles.smoke.steps``)."""
    *parents, last = path.split(".")

    def edit(suite: dict) -> None:
        for key in parents:
            suite = suite[key]
        suite[last] = value

    return edit


def drop(path: str):
    *parents, last = path.split(".")

    def edit(suite: dict) -> None:
        for key in parents:
            suite = suite[key]
        del suite[last]

    return edit


SMOKE = r"\[profiles.smoke\]: "
EVAL = r"\[eval\]: "


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (set_in("profiles.smoke.stepz", 20), SMOKE + r"unknown key\(s\) stepz"),
        (drop("profiles.smoke.steps"), SMOKE + r"missing key\(s\) steps"),
        (set_in("profiles.smoke.steps", "twenty"), SMOKE + r"steps must be a whole"),
        (set_in("profiles.smoke.steps", 0), SMOKE + r"steps must be a whole number >= 1"),
        (set_in("profiles.smoke.seeds", 1.5), SMOKE + r"seeds must be"),
        (set_in("profiles.smoke.seeds", True), SMOKE + r"seeds must be"),
        (set_in("profiles.smoke.checkpoints", 0), r"checkpoints must be"),
        (set_in("profiles.smoke.horizon", "long"), SMOKE + r"horizon must be"),
        (set_in("profiles.smoke.snapshots", "yes"), r"snapshots must be true or false"),
        (
            set_in("profiles.smoke.overrides.batch_sise", 8),
            r"batch_sise is no algorithm's setting",
        ),
        (set_in("profiles.paper.seeds", 0), r"\[profiles.paper\]: seeds"),  # any profile
        (set_in("profiles.smoke.overrides.lr", -1), SMOKE + r"config lr must be > 0, got -1"),
        (set_in("eval.alpha", 0), EVAL + r"alpha must be a number in \(0, 1\]"),
        (set_in("eval.alpha", 1.5), EVAL + r"alpha must be a number in \(0, 1\]"),
        (set_in("eval.kappa", -3), EVAL + r"kappa must be a number in \(0, inf\)"),
        (set_in("eval.kappa_sweep", [1, "x"]), EVAL + r"kappa_sweep must be"),
        (set_in("eval.cvar_rule", "worst"), EVAL + r"cvar_rule must be one of ceil"),
        (set_in("eval.checkpoint", "last"), EVAL + r"checkpoint must be one of final, best"),
        (set_in("eval.ood_features", "joint"), EVAL + r"ood_features is no longer a setting: "),
        (set_in("eval.episodes", -1), EVAL + r"episodes must be"),
        (set_in("eval.kapa", 3), EVAL + r"unknown key\(s\) kapa"),
        (drop("eval.alpha"), EVAL + r"missing key\(s\) alpha"),
        (set_in("eval", None), EVAL + r"expected a mapping"),
        (set_in("hazards", {"minari": "x"}), r"hazards must map generated / d4rl"),
        (set_in("algos", "radac"), r"algos must be a non-empty list"),
        (set_in("algos", ["radac", "radak"]), r"algos: unknown algorithm\(s\) radak \("),
        (set_in("profiles.smoke.algos", ["bc", "b c"]), SMOKE + r"algos: unknown algorithm"),
        (set_in("relabel_seed", -1), r"relabel_seed must be a whole number >= 0"),
        (set_in("datasets", ["hopper-medium-expret"]), r"datasets: unknown dataset\(s\) hopper-m"),
        (set_in("datasets", ["ant-medium"]), r"datasets: unknown dataset\(s\) ant-medium"),
        (set_in("hazards.generated", "nope"), r"hazards: generated: unknown hazard spec set 'nope"),
        (set_in("profiles.smoke.datasets", ["walker2d-medium"]), SMOKE + r"datasets: unknown"),
        (set_in("algos", ["bc", "radac", "bc"]), r": algos: bc named more than once"),
        (set_in("profiles.smoke.algos", ["bc", "bc"]), SMOKE + r"algos: bc named more than"),
        (set_in("seeds", 3), r"unknown key\(s\) seeds"),
        (set_in("frontier.key", "etta"), r"\[frontier\]: key: radac has no setting 'etta'"),
        (set_in("frontier.algos", ["radac", "bc"]), r"\[frontier\]: key: bc has no setting"),
        (set_in("frontier.values", [0.0, -1.0]), r"\[frontier\]: values must be >= 0, got -1"),
        (set_in("frontier.values", [1.0, 1.0]), r"\[frontier\]: values: each value once"),
        (set_in("frontier.values", []), r"\[frontier\]: values must be a non-empty list"),
        (set_in("frontier.seeds", 0), r"\[frontier\]: seeds must be a whole number >= 1"),
        (
            set_in("frontier.datasets", ["walker2d-medium"]),
            r"\[frontier\]: datasets: walker2d-medium not in datasets",
        ),
    ],
)
def test_a_bad_suite_value_is_one_line_naming_file_and_key(tmp_path, edit, expected):
    message = suite_error(tmp_path, edit)
    assert message.startswith(str(tmp_path / "suite.yaml"))
    assert re.search(expected, message), message


def test_command_line_counts_are_checked_not_replaced_by_the_profile(tmp_path):
    for option in ("seeds", "steps"):
        with pytest.raises(UserError, match=f"--{option} must be at least 1, got 0"):
            make_plan("smoke", out=tmp_path, **{option: 0})
    with pytest.raises(UserError, match="--checkpoint must be final or best"):
        make_plan("smoke", out=tmp_path, checkpoint="last")
    with pytest.raises(UserError, match="no profile 'huge'"):
        make_plan("huge")


def test_the_recorded_settings_are_the_files_own_values():
    suite = D4RLSuite.read(SUITE_FILE)
    assert suite.eval.record() == SUITE["eval"]  # nothing added, nothing coerced
    plan = make_plan("smoke", out=Path("/nonexistent"))
    assert plan.eval == {**SUITE["eval"], "episodes": 2, "horizon": 25}  # the profile's
    assert plan.jobs[0].eval == plan.eval and plan.jobs[0].settings.checkpoint_every == 10
    bandit = BanditSuite.read(BANDIT_FILE)
    assert bandit.eval.record() == BANDIT["eval"]
    assert bandit.bandit.ring_radius == BANDIT["bandit"]["ring_radius"]
    jobs = make_jobs(bandit, "smoke", None, Path("/nonexistent"), ["bc"])
    assert jobs[0].eval == {**BANDIT["eval"], "n_actions": 200}  # the smoke profile's


def test_a_bad_bandit_value_is_one_line_naming_file_and_key(tmp_path):
    for edit, expected in (
        (set_in("eval.n_actions", 0), "[eval]: n_actions must be a whole number >= 1"),
        (set_in("profiles.smoke.n_actions", 2.5), "[profiles.smoke]: n_actions"),
        (set_in("bandit.ring_radiu", 0.8), "[bandit]: unknown key(s) ring_radiu"),
        (set_in("data_seed", "zero"), "data_seed must be a whole number >= 0"),
        (set_in("bandit.penalty_prob", 1.5), "[bandit]: penalty_prob must be a probability"),
        (set_in("bandit.n_samples", 0), "[bandit]: n_samples must be a whole number >= 2"),
        (set_in("bandit.ring_std", 0), "[bandit]: ring_std must be a number in (0, inf)"),
        (set_in("bandit.zone_radius", 0.9), "[bandit]: zone_radius (0.9) must be below"),
        (set_in("bandit.penalty", "big"), "[bandit]: penalty must be a number"),
    ):
        path = edited(tmp_path, BANDIT, edit)
        with pytest.raises(UserError) as err:
            BanditSuite.read(path)
        assert str(err.value).startswith(str(path)) and expected in str(err.value)
        assert "\n" not in str(err.value)


def test_an_algorithm_named_twice_on_the_command_line_is_one_line(tmp_path, capsys):
    from pipeline.cli import main

    for stage in ("bandit", "train"):
        out = tmp_path / stage
        assert main([stage, "--profile", "smoke", "--algos", "bc", "bc", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [err[0]] and "--algos: bc named more than once" in err[0]
        assert not out.exists()
    with pytest.raises(UserError, match="algos: bc named more than once"):
        make_plan("smoke", out=tmp_path / "api", algos=["bc", "radac", "bc"])
