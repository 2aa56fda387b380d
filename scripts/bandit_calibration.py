"""Does a trained bandit critic know the tail? Its CVaR_0.1 at the centre and on the ring
against the closed form (``eval.calibration.bandit_critic_calibration``), per run.

Reads the finished runs of a bandit output folder (``reproduce.py bandit``), rebuilds each
agent from its ``config.yaml`` and checkpoint, and writes ``calibration.csv`` (one row per
run x point) and ``calibration_curve.csv`` next to them; prints, per algorithm, the mean
over seeds (and the seeds' range) of the predicted and true CVaR_0.1 and the relative gap
|predicted - true| / |true|, at the centre and averaged over 8 ring points:

    python scripts/bandit_calibration.py results/bandit/quick --algos radac rafmac codac
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.calibration import bandit_critic_calibration  # noqa: E402
from ramac.config import build  # noqa: E402
from ramac.envs.bandit import BanditSpec, make_dataset  # noqa: E402
from ramac.train import CHECKPOINT, build_agent  # noqa: E402

IQN_AGENTS = ("radac", "rafmac", "codac", "oraac", "oraac_diff", "oraac_flow")


def trained_critic(run_dir: Path, algo: str):
    """The critic of the run in ``run_dir``, built from the config it trained with; None
    while the run has not finished training."""
    if not (run_dir / CHECKPOINT).exists():
        return None, None
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    extra = config["dataset"]["extra"]  # the bandit's provenance: its geometry and data seed
    spec = build(BanditSpec, extra["spec"], f"{run_dir}/config.yaml")
    dataset, _ = make_dataset(spec, extra["seed"])
    agent = build_agent(algo, dataset, config["seed"], config["algo_config"])
    state = torch.load(run_dir / CHECKPOINT, weights_only=False)
    if state["step"] < config["steps"]:
        return None, None
    agent.load_state_dict(state["agent"])
    return agent.critic, spec


def calibrate_runs(root: Path, algos: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, curves = [], []
    for algo in algos:
        for run_dir in sorted((root / "runs" / algo).glob("seed*")):
            critic, spec = trained_critic(run_dir, algo)
            if critic is None:
                continue
            points, curve = bandit_critic_calibration(critic, spec)
            seed = int(run_dir.name.split("-")[0].removeprefix("seed"))
            for frame in (points, curve):
                frame.insert(0, "seed", seed)
                frame.insert(0, "algo", algo)
            rows.append(points)
            curves.append(curve)
    if not rows:
        raise SystemExit(f"no finished runs of {', '.join(algos)} under {root / 'runs'}")
    return pd.concat(rows, ignore_index=True), pd.concat(curves, ignore_index=True)


def summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per algorithm and zone: seeds' mean (min, max) of predicted / true CVaR and rel. gap."""
    per_seed = points.groupby(["algo", "zone", "seed"])[
        ["predicted_cvar", "true_cvar", "cvar_rel_gap"]
    ].mean()
    return per_seed.groupby(["algo", "zone"]).agg(["mean", "min", "max"]).round(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a bandit output folder (reproduce.py bandit)")
    parser.add_argument("--algos", nargs="+", default=["radac"], choices=IQN_AGENTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    points, curve = calibrate_runs(args.root, args.algos)
    points.to_csv(args.root / "calibration.csv", index=False)
    curve.to_csv(args.root / "calibration_curve.csv", index=False)
    with pd.option_context("display.width", 140):
        print(summary(points))


if __name__ == "__main__":
    main()
