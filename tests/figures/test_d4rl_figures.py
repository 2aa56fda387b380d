"""The D4RL figures: files written, VaR and seed-band arithmetic, input checks, colours."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from eval.metrics import aggregate, summarise_seeds
from figures.d4rl import (
    algo_colours,
    plot_frontier,
    plot_learning_curves,
    plot_ood_bars,
    plot_return_ecdfs,
    seed_band,
    var_threshold,
)
from ramac.errors import UserError

DATASETS = ["hopper-medium", "walker2d-expert"]
ALGOS = ["radac", "cql", "oraac"]
LABELS = {"radac": "RADAC", "cql": "CQL", "oraac": "O-RAAC"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def episodes() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {"suite": "d4rl", "dataset": d, "algo": a, "seed": s, "episode": e, "return": r}
        for d in DATASETS
        for i, a in enumerate(ALGOS)
        for s in range(2)
        for e, r in enumerate(rng.normal(100.0 * (i + 1), 30.0, size=10))
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def agg(episodes: pd.DataFrame) -> pd.DataFrame:
    return aggregate(summarise_seeds(episodes), episodes, reps=100)


@pytest.fixture(scope="module")
def logs() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for d in DATASETS:
        for a in ALGOS:
            for s in range(2):
                steps = range(100, 1100 if s == 0 else 900, 100)  # seed 1 stopped early
                for step in steps:
                    loss = np.nan if a == "oraac" else float(rng.exponential(1.0))
                    rows.append(
                        {"dataset": d, "algo": a, "seed": s, "step": step, "critic_loss": loss}
                    )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def ood() -> pd.DataFrame:
    rows = [
        {"dataset": d, "algo": a, "ood_rate": r, "ood_low": r * 0.8, "ood_high": min(1.0, r * 1.2)}
        for d in DATASETS
        for a, r in zip(ALGOS, (0.02, 0.35, 0.1), strict=True)
    ]
    return pd.DataFrame(rows)


def _check_written(paths: list[Path], stem: Path) -> None:
    assert paths == [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"]
    png, pdf = (p.read_bytes() for p in paths)
    assert png.startswith(PNG_MAGIC) and len(png) > len(PNG_MAGIC)
    assert pdf.startswith(b"%PDF") and len(pdf) > 4
    assert not list(stem.parent.glob("*.tmp")), "temporary files left behind"
    assert plt.get_fignums() == [], "figure not closed"


def test_plot_frontier_writes_png_and_pdf(agg: pd.DataFrame, tmp_path: Path) -> None:
    stem = tmp_path / "out" / "frontier_a0.1"  # the dot must not be taken for a suffix
    paths = plot_frontier(agg, stem, algos=ALGOS, labels=LABELS)
    _check_written(paths, stem)


def test_plot_ood_bars_writes_png_and_pdf(ood: pd.DataFrame, tmp_path: Path) -> None:
    stem = tmp_path / "ood"
    _check_written(plot_ood_bars(ood, stem, datasets=DATASETS[::-1], labels=LABELS), stem)
    no_ci = ood.drop(columns=["ood_low", "ood_high"])
    _check_written(plot_ood_bars(no_ci, stem), stem)


def test_plot_learning_curves_writes_png_and_pdf(logs: pd.DataFrame, tmp_path: Path) -> None:
    stem = tmp_path / "critic_loss"
    paths = plot_learning_curves(logs, stem, "critic_loss", algos=ALGOS, labels=LABELS)
    _check_written(paths, stem)


def test_plot_return_ecdfs_writes_png_and_pdf(episodes: pd.DataFrame, tmp_path: Path) -> None:
    stem = tmp_path / "ecdf"
    _check_written(plot_return_ecdfs(episodes, stem, alpha=0.1, labels=LABELS), stem)


def test_var_threshold_hand_computed() -> None:
    returns = np.random.default_rng(2).permutation(np.arange(1.0, 11.0))
    assert var_threshold(returns, 0.2) == 2.0  # worst 2
    assert var_threshold(returns, 0.25) == 3.0  # ceil(2.5) = 3
    assert var_threshold(returns, 0.1) == 1.0
    assert var_threshold(np.arange(1.0, 31.0), 0.1) == 3.0  # 0.1 * 30 is 3.0000000000000004
    with pytest.raises(ValueError):
        var_threshold([], 0.1)


def test_seed_band_drops_steps_missing_for_a_seed() -> None:
    logs = pd.DataFrame(
        {
            "seed": [0, 0, 0, 1, 1, 1, 1, 2, 2, 2],
            "step": [10, 20, 30, 10, 20, 30, 40, 10, 20, 30],
            "loss": [1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0, 5.0, 9.0, np.nan],
        }
    )
    band = seed_band(logs, "loss")
    assert band["step"].tolist() == [10, 20]  # 30: NaN for seed 2; 40: seed 1 only
    assert band["mean"].tolist() == pytest.approx([3.0, 5.0])
    assert band["low"].tolist() == [1.0, 2.0]
    assert band["high"].tolist() == [5.0, 9.0]
    assert band["n_seeds"].tolist() == [3, 3]


def test_seed_band_one_seed_and_all_missing() -> None:
    one = seed_band(pd.DataFrame({"seed": 0, "step": [2, 1], "m": [4.0, 7.0]}), "m")
    assert one["step"].tolist() == [1, 2]
    assert one["low"].tolist() == one["mean"].tolist() == one["high"].tolist() == [7.0, 4.0]
    assert seed_band(pd.DataFrame({"seed": [0], "step": [1], "m": [np.nan]}), "m").empty


def test_missing_column_or_no_rows_is_user_error(
    agg: pd.DataFrame, ood: pd.DataFrame, episodes: pd.DataFrame, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="cvar_low"):
        plot_frontier(agg.drop(columns=["cvar_low"]), tmp_path / "f")
    with pytest.raises(UserError, match="ood_rate"):
        plot_ood_bars(ood.drop(columns=["ood_rate"]), tmp_path / "o")
    with pytest.raises(UserError, match="no rows"):
        plot_return_ecdfs(episodes.iloc[:0], tmp_path / "e")
    with pytest.raises(UserError, match="percent"):
        plot_ood_bars(ood.assign(ood_rate=35.0), tmp_path / "o")
    with pytest.raises(UserError, match="nope"):
        plot_frontier(agg, tmp_path / "f", datasets=["nope"])
    assert not list(tmp_path.iterdir())


def test_learning_curve_metric_absent_is_user_error(logs: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="actor_loss"):
        plot_learning_curves(logs, tmp_path / "c", "actor_loss")
    with pytest.raises(UserError, match="no values"):
        plot_learning_curves(logs.assign(q_mean=np.nan), tmp_path / "c", "q_mean")


def test_algo_colours_stable() -> None:
    first = algo_colours(ALGOS)
    assert algo_colours(ALGOS) == first
    tab10 = plt.get_cmap("tab10")
    assert [first[a] for a in ALGOS] == [tab10(0), tab10(1), tab10(2)]
    many = algo_colours([f"a{i}" for i in range(17)])
    assert len(set(list(many.values())[:16])) == 16  # the suite's 12 methods all differ
    assert many["a10"] == (0.0, 0.0, 0.0, 1.0) and many["a16"] == tab10(0)  # cycles after 16
