#!/usr/bin/env python
"""ramac's command line: one subcommand per pipeline stage, plus `all`.

    python reproduce.py bandit --profile quick --seeds 5     # the 2-D risky bandit (Figure 3)
    python reproduce.py all                                   # what `make reproduce` runs

Profiles scale budgets, never algorithms: `smoke` (seconds; CI), `quick` (the default main
job on one CPU machine), `paper` (the paper's budgets). Every stage reads the previous
stage's files and writes its own, so any stage can be re-run alone, and finished runs
(a `done` file) are skipped. Errors you can fix end with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# One BLAS thread per process: the pipeline runs one worker per core, and multithreaded
# OpenBLAS on busy cores makes small matrix products ~20x slower. Set before numpy loads;
# worker processes inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from ramac.errors import UserError

PROFILES = ("smoke", "quick", "paper")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile", choices=PROFILES, default="quick", help="budget profile (default: quick)"
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="number of seeds (default: the profile's)"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: results/<suite>)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="parallel worker processes (default: CPUs)"
    )


def _bandit(args: argparse.Namespace) -> None:
    from pipeline.bandit import run_bandit

    run_bandit(
        profile=args.profile,
        seeds=args.seeds,
        out=args.out,
        workers=args.workers,
        algos=args.algos,
    )


def _report(args: argparse.Namespace) -> None:
    from pipeline.bandit import rewrite_bandit_outputs

    rewrite_bandit_outputs(args.out)
    print("Stochastic-D4RL tables: not built yet (issue 5)")


def _all(args: argparse.Namespace) -> None:
    _bandit(args)
    print("Stochastic-D4RL pipeline: not built yet (issue 5); the bandit is done")


def _not_built(stage: str, issue: str):
    def run(_: argparse.Namespace) -> None:
        raise UserError(f"'{stage}' is not built yet ({issue}); 'reproduce.py bandit' is")

    return run


STAGES = {
    "bandit": ("train, evaluate, tabulate and plot the 2-D risky bandit (paper Figure 3)", _bandit),
    "data": ("generate or load the Stochastic-D4RL datasets", _not_built("data", "issue 4")),
    "train": ("train every (algorithm, dataset, seed) of a suite", _not_built("train", "issue 5")),
    "evaluate": (
        "roll out trained policies and record episodes",
        _not_built("evaluate", "issue 5"),
    ),
    "report": ("rewrite the leaderboards and figures from the records, no training", _report),
    "figures": ("rewrite the leaderboards and figures from the records, no training", _report),
    "all": ("the bandit, then the Stochastic-D4RL pipeline", _all),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reproduce.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (help_text, fn) in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_common(p)
        p.add_argument("--algos", nargs="+", default=None, help="algorithms (default: the suite's)")
        p.set_defaults(run=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished runs are kept; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
