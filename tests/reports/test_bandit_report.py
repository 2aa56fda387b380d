"""The bandit's tables and its one self-contained report.html, from tiny records."""

import pandas as pd

from reports.bandit import write_bandit_leaderboards
from reports.suite import write_suite_reports


def test_bandit_writes_tables_with_their_own_captions_and_a_report(bandit_folder, bandit_eval):
    out, summary = bandit_folder
    paths = write_bandit_leaderboards(out, summary, bandit_eval, ["radac", "bc"])
    assert sorted(paths) == ["caption", "csv", "html", "md", "report", "tex"]
    assert (out / "bandit.png").read_bytes()[:4] == b"\x89PNG"
    md, tex, caption = (paths[k].read_text() for k in ("md", "tex", "caption"))
    assert "In italics: runner-up" in md and "Underlined" not in md
    assert r"Underlined: runner-up" in tex and r"\textbf{NOT the paper's budget}" in tex
    assert "is_runner_up" in caption and "profile 'smoke'" in caption
    assert "(seeds: " in md and "[" not in md.split("\n\n")[0]  # 2 seeds: no interval
    board = pd.read_csv(paths["csv"])
    assert board["low"].isna().all() and (board["n_seeds"] == 2).all()

    report = paths["report"].read_text()
    assert report.count("data:image/png;base64,") == 1 and "<script" not in report
    assert 'src="http' not in report and "<link" not in report  # nothing fetched
    assert 'class="budget not-paper"' in report and "20 (paper: 20,000)" in report
    assert "Shaded: runner-up" in report and "Underlined" not in report
    assert "<style>" in report and report.count('<table class="leaderboard">') == 1


def test_three_seeds_draw_intervals(tmp_path, bandit_eval, make_bandit_records):
    out = tmp_path / "b3"
    summary = make_bandit_records(out, seeds=(0, 1, 2))
    paths = write_bandit_leaderboards(out, summary, bandit_eval, ["radac", "bc"])
    md = paths["md"].read_text()
    assert "(seeds: " not in md and md.count("[") >= 10
    assert "Brackets: 95% percentile bootstrap interval across seeds" in md


def test_suite_report_states_the_budget(suite_folder, suite_eval):
    report = write_suite_reports(suite_folder, suite_eval).read_text()
    assert report.count("data:image/png;base64,") == 4
    assert 'class="budget not-paper"' in report and "Profile</dt><dd>smoke" in report
    assert "Shaded: runner-up" in report and "Underlined" not in report
    for stem in ("leaderboard", "ood"):
        assert "is_runner_up" in (suite_folder / f"{stem}.caption.txt").read_text()
        assert "**NOT the paper's budget**" in (suite_folder / f"{stem}.md").read_text()
