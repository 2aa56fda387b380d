"""The Stochastic-D4RL OOD table, figures and report show both OOD rates, each named (the
paper's 1-NN detector and ours, state-conditioned); a summary written before the 1-NN rate
was recorded still makes every report, with the state-conditioned rate alone."""

import pandas as pd
import pytest

from reports.leaderboard import ood_caption_for, ood_table, to_html, to_latex, to_markdown
from reports.suite import write_suite_reports

PAPER_LABEL = "OOD, 1-NN (paper), κ = 3 (%)"
OURS_LABEL = "OOD, state-conditioned (%)"


def two_rates():
    """Per-seed rates: the paper's detector ranks RADAC first, ours ORAAC."""
    rows = []
    for algo, paper, ours in (
        ("RADAC", (0.01, 0.03), (0.40, 0.50)),
        ("ORAAC", (0.10, 0.12), (0.2, 0.2)),
    ):
        for seed in (0, 1):
            rows.append(
                {"suite": "s", "dataset": "hc", "algo": algo, "seed": seed}
                | {"ood_rate_1nn": paper[seed], "ood_rate": ours[seed]}
            )
    return pd.DataFrame(rows)


def test_the_ood_table_names_both_rates_and_marks_each_row():
    t = ood_table(two_rates(), columns=("ood_rate_1nn", "ood_rate"), min_seeds=2)
    assert t.rows == [("hc", "ood_rate_1nn"), ("hc", "ood_rate")]  # the paper's first
    assert t.cell("hc", "ood_rate_1nn", "RADAC")["value"] == pytest.approx(2.0)
    assert t.cell("hc", "ood_rate_1nn", "RADAC")["is_best"]
    assert t.cell("hc", "ood_rate", "ORAAC")["is_best"]  # ours disagrees
    assert t.cell("hc", "ood_rate", "RADAC")["value"] == pytest.approx(45.0)
    md = to_markdown(t)
    assert md.splitlines()[0] == "| Dataset | Metric | RADAC | ORAAC |"
    assert f"| hc | {PAPER_LABEL} | **2.00** ± 1.00 | _11.00_ ± 1.00 |" in md
    assert f"|  | {OURS_LABEL} | _45.00_ ± 5.00 | **20.00** ± 0.00 |" in md
    tex = to_latex(t, ood_caption_for(2, paper=True), "tab:ood")
    assert r"OOD, 1-NN (paper), $\kappa$ = 3 (\%)" in tex and r"OOD, state-conditioned (\%)" in tex
    assert PAPER_LABEL in to_html(t) and OURS_LABEL in to_html(t)
    caption = ood_caption_for(2, detector="state_conditioned", neighbours=50, paper=True)
    assert '"OOD, 1-NN (paper), κ = 3": the paper\'s detector' in caption
    assert '"OOD, state-conditioned": ours' in caption and "k = 50" in caption


def test_a_rate_a_run_lacks_leaves_its_cell_empty():
    rates = two_rates()
    rates.loc[rates["algo"] == "ORAAC", "ood_rate_1nn"] = float("nan")  # evaluated before
    t = ood_table(rates, columns=("ood_rate_1nn", "ood_rate"), min_seeds=2)
    assert "| hc | OOD, 1-NN (paper), κ = 3 (%) | **2.00** ± 1.00 | – |" in to_markdown(t)


def with_paper_rate(out):
    summary = pd.read_csv(out / "summary.csv")
    summary["ood_rate_1nn"] = summary["ood_rate"] / 2
    summary.to_csv(out / "summary.csv", index=False)
    return out


def test_the_suite_report_shows_both_rates(suite_folder, suite_eval):
    out = with_paper_rate(suite_folder)
    report = write_suite_reports(out, suite_eval).read_text()
    assert set(pd.read_csv(out / "ood.csv")["metric"]) == {"ood_rate_1nn", "ood_rate"}
    assert PAPER_LABEL in (out / "ood.md").read_text()
    assert (out / "figures" / "ood_1nn.png").exists() and (out / "figures" / "ood.png").exists()
    assert f"OOD action rate: {PAPER_LABEL}" in report
    assert f"OOD action rate: {OURS_LABEL}" in report


def test_an_old_summary_without_the_paper_rate_still_reports(suite_folder, suite_eval):
    assert "ood_rate_1nn" not in pd.read_csv(suite_folder / "summary.csv")  # as before
    report = write_suite_reports(suite_folder, suite_eval).read_text()
    assert set(pd.read_csv(suite_folder / "ood.csv")["metric"]) == {"ood_rate"}
    caption = (suite_folder / "ood.caption.txt").read_text()
    assert "The paper's 1-NN rate is not in these records: evaluate the runs again." in caption
    assert not (suite_folder / "figures" / "ood_1nn.png").exists()
    assert f"OOD action rate: {OURS_LABEL}" in report
