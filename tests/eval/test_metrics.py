"""Per-seed and across-seed summaries on hand-made episode frames."""

import numpy as np
import pandas as pd
import pytest

from eval.metrics import aggregate, normalised_score, summarise_seeds
from ramac.errors import UserError


def episodes_frame():
    """Two seeds x 10 episodes: seed 0 returns 1..10, seed 1 returns 10..100."""
    rows = []
    for seed, scale in ((0, 1.0), (1, 10.0)):
        for ep in range(10):
            rows.append(
                {
                    "suite": "s",
                    "dataset": "d",
                    "algo": "a",
                    "seed": seed,
                    "episode": ep,
                    "return": scale * (ep + 1),
                    "length": 100,
                    "risky_steps": ep if seed == 0 else 0,
                }
            )
    return pd.DataFrame(rows)


def test_summarise_seeds_by_hand():
    summary = summarise_seeds(episodes_frame(), alpha=0.1, rule="ceil")
    assert len(summary) == 2
    s0, s1 = summary.iloc[0], summary.iloc[1]
    assert s0["n_episodes"] == 10
    assert s0["mean_return"] == pytest.approx(5.5)
    assert s0["std_return"] == pytest.approx(np.std(np.arange(1, 11), ddof=1))
    assert s0["cvar"] == 1.0  # ceil(0.1 * 10) = 1 worst episode
    assert s1["cvar"] == 10.0
    assert s0["mean_length"] == 100
    assert s0["risky_rate"] == pytest.approx(45 / 1000)
    assert s1["risky_rate"] == 0.0
    assert (summary["alpha"] == 0.1).all() and (summary["cvar_rule"] == "ceil").all()
    assert summarise_seeds(episodes_frame(), alpha=0.2).iloc[0]["cvar"] == pytest.approx(1.5)


def test_optional_columns_absent():
    frame = episodes_frame().drop(columns=["length", "risky_steps"])
    summary = summarise_seeds(frame)
    assert summary["mean_length"].isna().all() and summary["risky_rate"].isna().all()


def test_aggregate_by_hand():
    eps = episodes_frame()
    agg = aggregate(summarise_seeds(eps), eps, alpha=0.1, rule="ceil", reps=4000, seed=0)
    assert len(agg) == 1
    row = agg.iloc[0]
    assert row["n_seeds"] == 2 and row["episodes_per_seed"] == 10
    assert row["mean"] == pytest.approx((5.5 + 55.0) / 2)
    # Two seeds: resampled means are 5.5, 30.25 or 55 -> the 95% interval spans both seeds.
    assert (row["mean_low"], row["mean_high"]) == (5.5, 55.0)
    assert row["cvar"] == pytest.approx((1.0 + 10.0) / 2)  # per seed, then mean
    assert (row["cvar_low"], row["cvar_high"]) == (1.0, 10.0)
    assert row["cvar_se"] == pytest.approx(4.5)  # std([1, 10], ddof=1) / sqrt(2)
    assert row["cvar_pooled"] == pytest.approx(1.5)  # worst ceil(0.1 * 20) = 2 of all: 1, 2
    assert row["risky_rate"] == pytest.approx(0.0225)
    assert row["metric_pipeline"] == "per_seed_then_mean" and row["cvar_rule"] == "ceil"


def test_aggregate_groups_and_rules():
    eps = episodes_frame()
    other = eps.assign(algo="b", **{"return": eps["return"] + 1})
    both = pd.concat([eps, other], ignore_index=True)
    agg = aggregate(summarise_seeds(both, 0.2, "floor"), both, 0.2, "floor", reps=200)
    assert agg["algo"].tolist() == ["a", "b"]
    assert agg["cvar"].tolist() == pytest.approx([(1.5 + 15) / 2, (2.5 + 16) / 2])
    with pytest.raises(ValueError, match="alpha"):
        aggregate(summarise_seeds(both, 0.1), both, alpha=0.2)


def test_bad_records():
    eps = episodes_frame()
    with pytest.raises(UserError, match="return"):
        summarise_seeds(eps.drop(columns="return"))
    with pytest.raises(UserError, match="twice"):
        summarise_seeds(pd.concat([eps, eps.iloc[:1]]))
    with pytest.raises(UserError):
        summarise_seeds(eps.assign(**{"return": np.nan}))


def test_normalised_score():
    lo, hi = -20.272305, 3234.3  # hopper (docs/reference-code.md, "D4RL")
    assert normalised_score(hi, lo, hi) == pytest.approx(100.0)
    assert normalised_score(lo, lo, hi) == pytest.approx(0.0)
    np.testing.assert_allclose(normalised_score(np.array([lo, (lo + hi) / 2]), lo, hi), [0, 50])
    with pytest.raises(ValueError):
        normalised_score(1.0, 5.0, 5.0)
