"""The command line explains itself: --version, profiles offered only where accepted, and a
help text for every option (issue 27's smaller points)."""

import argparse

import pytest

from pipeline.cli import PROFILES, build_parser, main
from ramac.records import ramac_version


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"ramac {ramac_version()}"


def stage_parsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_bandit_offers_only_the_profiles_its_suite_file_defines(capsys):
    profile = next(a for a in stage_parsers()["bandit"]._actions if a.dest == "profile")
    assert tuple(profile.choices) == ("smoke", "quick", "paper")  # configs/suites/bandit.yaml
    with pytest.raises(SystemExit) as exit_:
        main(["bandit", "--profile", "cpu"])
    assert exit_.value.code == 2 and "invalid choice: 'cpu'" in capsys.readouterr().err
    train = next(a for a in stage_parsers()["train"]._actions if a.dest == "profile")
    assert tuple(train.choices) == PROFILES


def test_every_option_of_every_stage_has_a_help_text():
    missing = [
        f"{stage} {action.option_strings[0]}"
        for stage, parser in stage_parsers().items()
        for action in parser._actions
        if action.option_strings and not action.help
    ]
    assert missing == []
