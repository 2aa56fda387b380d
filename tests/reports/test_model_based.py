"""The model-based table from hand-made records: seeds averaged, each run's last logged
rollout hazard rate, runs of other algorithms left out, missing figures shown as a dash."""

import pandas as pd

from reports.model_based import model_based_table, write_model_based

NAMES = {"ravl": "RAVL", "ravl_cvar": "RAVL (CVaR)"}


def records():
    model = {
        "heldout_state_mse": 0.5, "no_change_state_mse": 4.0, "epochs": 30, "train_seconds": 120.0,
        "hazard_data_penalty_rate": 0.1, "hazard_model_penalty_rate": 0.02,
        "hazard_data_mean_penalty": -5.0, "hazard_model_mean_penalty": -1.5,
    }  # fmt: skip
    dynamics = pd.DataFrame(
        [{"dataset": "hc", "algo": a, "seed": s} | model for a in ("ravl", "bc") for s in (0, 1)]
    )
    logs = pd.DataFrame(
        {
            "dataset": "hc",
            "algo": "ravl",
            "seed": [0, 0, 0, 1, 1],
            "step": [0, 100, 200, 0, 100],
            # seed 0's last logged value is 0.3 (step 200); seed 1's is 0.1
            "model_hazard_rate": [0.9, 0.5, 0.3, 0.7, 0.1],
        }
    )
    summary = pd.DataFrame(
        {
            "dataset": "hc",
            "algo": ["ravl", "ravl", "bc"],
            "seed": [0, 1, 0],
            "risky_rate": [0.04, 0.08, 0.5],
            "check_model_hazard_rate": [0.1, 0.2, None],
            "check_env_hazard_rate": [0.3, 0.5, None],
            "check_model_reward": [2.0, 3.0, None],
            "check_env_reward": [-1.0, 0.0, None],
        }
    )
    return dynamics, summary, logs


def test_the_table_by_hand():
    dynamics, summary, logs = records()
    table = model_based_table(dynamics, summary, logs, NAMES)
    assert len(table) == 1  # BC is not model-based; RAVL (CVaR) has no records
    row = table.iloc[0]
    assert row["Method"] == "RAVL" and row["Seeds"] == 2
    assert row["s' MSE (no change)"] == "0.5 (4)"
    assert row["Model: epochs, s"] == "30, 120"
    assert row["Penalised, data / model"] == "10.0% / 2.0%"
    assert row["Mean penalty, data / model"] == "-5.00 / -1.50"
    assert row["Hazard rate, model / sim"] == "15.0% / 40.0%"
    assert row["Reward per step, model / sim"] == "2.50 / -0.50"
    # the last logged rollouts' mean(0.3, 0.1); the evaluation's mean(.04, .08)
    assert row["Hazard rate, training rollouts / evaluation"] == "20.0% / 6.0%"


def test_records_without_the_hazard_figures_still_make_a_table(tmp_path):
    dynamics, summary, logs = records()
    dynamics = dynamics.drop(columns=["hazard_model_penalty_rate", "hazard_data_penalty_rate"])
    dynamics.to_csv(tmp_path / "dynamics.csv", index=False)
    title, block = write_model_based(tmp_path, summary, logs.drop(columns="model_hazard_rate"),
                                     NAMES, "Budget: tiny.")  # fmt: skip
    table = pd.read_csv(tmp_path / "model_based.csv")
    assert table["Penalised, data / model"].iloc[0] == "– / –"
    assert table["Hazard rate, training rollouts / evaluation"].iloc[0] == "– / 6.0%"
    assert table["Hazard rate, model / sim"].iloc[0] == "15.0% / 40.0%"
    assert "Budget: tiny." in (tmp_path / "model_based.caption.txt").read_text()
    assert "<table" in block and "dynamics model" in title
    assert write_model_based(tmp_path, summary, logs, {"cql": "CQL"}, "") is None
