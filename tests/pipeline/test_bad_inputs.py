"""A few of scripts/bad_inputs.py's cases (issue 13), run through the script's own case code.

The script runs every case (``python scripts/bad_inputs.py``, minutes); here the fastest of
them (each fails before any work) and, marked slow, two damaged records that heal on rerun.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script():
    spec = importlib.util.spec_from_file_location("bad_inputs", ROOT / "scripts/bad_inputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bad_inputs"] = module  # dataclasses resolve the module's annotations there
    spec.loader.exec_module(module)
    return module


bad_inputs = _load_script()

FAST = [
    "cli-unknown-profile",  # argparse's usage block + its error line
    "bandit-workers--1",
    "bandit-seeds-0",
    "bandit-out-is-file",
    "suite-eval-alpha-0",  # a --suite copy
    "bandit-eval-alpha-0",  # configs/suites/bandit.yaml edited in a copy of the checkout
]
SLOW = ["bandit-metrics-empty", "bandit-actions-truncated"]  # trains a bandit fixture first


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    session = bad_inputs.Session(root)
    # The fast suite cases fail before any data is read: an empty data folder stands in for
    # the smoke dataset (were one to get that far, it would fail for the missing data).
    (root / "data" / "generated").mkdir(parents=True)
    session._done["fixture:data"] = root / "data"
    return session


def test_the_cases_cover_the_issue():
    cases = bad_inputs.build_cases()
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids))
    assert len([c for c in cases if not c.covered]) >= 60
    for case in cases:
        assert set(case.expect) <= {"error", "ok", "heal"}, case.id
        if not case.covered:
            argv = case.argv("/t")
            assert argv[0] == case.stage and "{T}" not in " ".join(argv)
    assert set(FAST + SLOW) <= set(ids)


def test_one_line_means_one_line():
    usage = "usage: reproduce.py bandit [-h]\n       [--seeds SEEDS]\n"
    lines = bad_inputs.message_lines(usage + "reproduce.py bandit: error: argument --profile\n")
    assert lines == ["reproduce.py bandit: error: argument --profile"]
    progress = "bandit runs:  50%|#####     | 1/2 [00:01<00:01]\r"
    heal = "warning: x/metrics.json: unreadable; moved to x/corrupt/metrics.json\n"
    assert bad_inputs.message_lines(progress + heal + "error: boom\n") == ["error: boom"]
    assert len(bad_inputs.message_lines("warning: slow\nerror: boom\n")) == 2


def test_standard_flags_yield_to_the_case():
    case = bad_inputs.Case("x", "validation", "", "bandit", ("--seeds", "0"))
    argv = case.argv("/t")
    assert argv.count("--seeds") == 1 and argv[argv.index("--seeds") + 1] == "0"
    assert argv[argv.index("--out") + 1] == "/t/out" and "--steps" in argv


@pytest.mark.parametrize("case_id", FAST)
def test_a_bad_input_ends_in_one_line(session, case_id):
    result = session.result(session.cases[case_id])
    assert result.verdict == "PASS", f"{result.reason}: {result.line}"
    assert result.rc == 2 and not result.traceback and not result.changed


@pytest.mark.slow
@pytest.mark.parametrize("case_id", SLOW)
def test_a_damaged_record_heals_on_rerun(session, case_id):
    result = session.result(session.cases[case_id])
    assert result.verdict == "PASS", f"{result.reason}: {result.line}"
    assert result.outcome == "heal"
