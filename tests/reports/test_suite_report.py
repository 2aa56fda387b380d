"""The Stochastic-D4RL report's own arithmetic: row labels and D4RL-normalised scores."""

import numpy as np
import pandas as pd
import pytest

from reports.suite import dataset_label, with_normalised_scores


def test_dataset_labels_follow_the_paper():
    assert dataset_label("halfcheetah-medium-expert") == "HalfCheetah-M-E"
    assert dataset_label("walker2d-medium-replay") == "Walker2d-M-R"
    assert dataset_label("hopper-expert") == "Hopper-E"


def test_normalised_score_only_for_full_episodes_and_maps_the_interval():
    agg = pd.DataFrame(
        {
            "dataset": ["a-medium", "b-medium"],
            "algo": ["radac", "radac"],
            "mean": [500.0, 500.0],
            "mean_low": [400.0, 400.0],
            "mean_high": [650.0, 650.0],
        }
    )
    summary = pd.DataFrame(
        {
            "dataset": ["a-medium", "b-medium"],
            "ref_min_score": [-100.0, -100.0],
            "ref_max_score": [1100.0, 1100.0],
            "horizon": [1000, 500],
        }
    )
    out = with_normalised_scores(agg, summary)
    # 100 (R - min) / (max - min) = 100 * 600 / 1200 = 50; interval 41.67 .. 62.5
    assert out.loc[0, "normalised"] == pytest.approx(50.0)
    assert out.loc[0, "normalised_low"] == pytest.approx(100 * 500 / 1200)
    assert out.loc[0, "normalised_high"] == pytest.approx(62.5)
    assert np.isnan(out.loc[1, ["normalised", "normalised_low", "normalised_high"]]).all()
