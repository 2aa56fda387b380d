"""The model-based runs' table (RAVL): does the dynamics model see the hazard?

Reads ``dynamics.csv`` (each model-based run's dynamics model: held-out errors and what its
reward head makes of the data's penalties, ``ramac.models.hazard_view``), the runs' training
logs (``model_hazard_rate`` of their model rollouts) and ``summary.csv`` (the evaluation's
``risky_rate``, and the model against the simulator from the same states,
``eval.model_check``), and writes ``model_based.{csv,tex,md,html}``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from reports.html import html_caption, table_block
from reports.leaderboard import html_table, write_frame_tables

STEM = "model_based"
MISSING = "–"  # a figure the records do not hold (a model saved before it was measured)
CAPTION = (
    "Model-based runs: their dynamics model (one per dataset and model seed, shared by every "
    "run seed and both RAVL variants) on its 20% held-out split. s' MSE: one-step error of "
    "the elites' mean next state, data units (in brackets: predicting no change). On the "
    "held-out rows in the hazard region: the share the data penalised against the share of "
    "the model's reward draws (a random elite's Gaussian, as rollouts draw) nearer the "
    "penalised reward than the unpenalised one, and the mean penalty in the data against "
    "the model's mean shift. Model / sim: from the same 200 dataset states, k steps of the "
    "evaluated policy in the model and in the simulator set to each state "
    "(eval.model_check): the share of steps that end in the hazard region, and the mean "
    "reward per step (penalties included; the model's sampled). Training rollouts / "
    "evaluation: the hazard rate of the last model rollout of training (the stochastic "
    "training policy from dataset states) and of the evaluation episodes (from resets). "
    "Means over seeds."
)

# eval.model_check's columns of summary.csv: model and simulator from the same states
CHECK = (
    "check_model_hazard_rate",
    "check_env_hazard_rate",
    "check_model_reward",
    "check_env_reward",
)
# the record's numbers the table shows (ramac.models.dynamics.record_row)
NUMBERS = [
    "heldout_state_mse",
    "no_change_state_mse",
    "epochs",
    "train_seconds",
    "hazard_data_penalty_rate",
    "hazard_model_penalty_rate",
    "hazard_data_mean_penalty",
    "hazard_model_mean_penalty",
    "model_hazard_rate",
    "risky_rate",
    *CHECK,
]


def model_based_table(
    dynamics: pd.DataFrame,
    summary: pd.DataFrame,
    logs: pd.DataFrame,
    names: dict[str, str],
    label: Callable[[str], str] = str,
) -> pd.DataFrame:
    """One row per (dataset, model-based algorithm) among ``names``, in the records' order;
    ``label`` names a dataset in the table."""
    key = ["dataset", "algo", "seed"]
    runs = dynamics[dynamics["algo"].isin(names)].set_index(key)
    if runs.empty:
        return pd.DataFrame()
    if "model_hazard_rate" in logs:
        rows = logs.dropna(subset=["model_hazard_rate"]).sort_values("step")
        runs = runs.join(rows.groupby(key)["model_hazard_rate"].last())  # the last rollout's
    measured = [c for c in ("risky_rate", *CHECK) if c in summary]
    runs = runs.join(summary.set_index(key)[measured])
    runs = runs.reindex(columns=[*runs.columns.difference(NUMBERS), *NUMBERS])  # NaN if absent
    mean = runs.groupby(level=["dataset", "algo"], sort=False).mean(numeric_only=True)
    seeds = runs.groupby(level=["dataset", "algo"], sort=False).size()

    def text(column: str, fmt: str) -> pd.Series:
        return mean[column].map(lambda v: MISSING if pd.isna(v) else fmt.format(v))

    def pair(a: str, b: str, fmt: str) -> np.ndarray:
        return (text(a, fmt) + " / " + text(b, fmt)).to_numpy()

    table = pd.DataFrame(
        {
            "Dataset": [label(d) for d in mean.index.get_level_values("dataset")],
            "Method": [names[a] for a in mean.index.get_level_values("algo")],
            "Seeds": seeds.to_numpy(),
            "s' MSE (no change)": (
                text("heldout_state_mse", "{:.3g}")
                + " ("
                + text("no_change_state_mse", "{:.3g}")
                + ")"
            ).to_numpy(),
            "Model: epochs, s": (
                text("epochs", "{:.0f}") + ", " + text("train_seconds", "{:.0f}")
            ).to_numpy(),
            "Penalised, data / model": pair(
                "hazard_data_penalty_rate", "hazard_model_penalty_rate", "{:.1%}"
            ),
            "Mean penalty, data / model": pair(
                "hazard_data_mean_penalty", "hazard_model_mean_penalty", "{:.2f}"
            ),
            "Hazard rate, model / sim": pair(
                "check_model_hazard_rate", "check_env_hazard_rate", "{:.1%}"
            ),
            "Reward per step, model / sim": pair(
                "check_model_reward", "check_env_reward", "{:.2f}"
            ),
            "Hazard rate, training rollouts / evaluation": pair(
                "model_hazard_rate", "risky_rate", "{:.1%}"
            ),
        }
    )
    return table


def write_model_based(
    out: Path,
    summary: pd.DataFrame,
    logs: pd.DataFrame,
    names: dict[str, str],
    context: str,
    label: Callable[[str], str] = str,
) -> tuple[str, str] | None:
    """``model_based.*`` from ``out/dynamics.csv`` and the report's section; None when the
    records hold no model-based run of ``names``."""
    path = out / "dynamics.csv"
    if not path.exists():
        return None
    table = model_based_table(pd.read_csv(path), summary, logs, names, label)
    if table.empty:
        return None
    caption = f"{CAPTION} {context}".strip()
    write_frame_tables(table, out, STEM, caption, "tab:model-based")
    return "Model-based runs: the dynamics model and the hazard", table_block(
        html_table(table), html_caption(caption)
    )
