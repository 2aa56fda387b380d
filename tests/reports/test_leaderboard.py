"""Leaderboard tables: bold / runner-up rules, LaTeX, Markdown, CSV, OOD table, atomic writes."""

import os
import re

import numpy as np
import pandas as pd
import pytest

from ramac.errors import UserError
from ramac.io import atomic_target, atomic_write_text
from reports.leaderboard import (
    CSV_COLUMNS,
    caption_for,
    leaderboard,
    mark_best,
    ood_caption_for,
    ood_table,
    to_html,
    to_latex,
    to_markdown,
    write_csv,
    write_tables,
)

ALGOS = ["CQL", "ORAAC", "RADAC"]


def aggregated():
    """Two datasets x three algorithms, values from the paper's main table
    (docs/reference-code.md, "The paper"; ties added)."""
    values = {
        ("hc", "CQL"): (-66.66, -135.39),
        ("hc", "ORAAC"): (796.06, 742.94),
        ("hc", "RADAC"): (916.64, 742.94),
        ("w2d", "CQL"): (-21.52, -64.88),
        ("w2d", "ORAAC"): (969.62, 358.55),
        ("w2d", "RADAC"): (1708.68, 573.22),
    }
    rows = []
    for (dataset, algo), (mean, cvar) in values.items():
        rows.append(
            {"suite": "main", "dataset": dataset, "algo": algo}
            | {"mean": mean, "mean_low": mean - 10, "mean_high": mean + 12.5}
            | {"cvar": cvar, "cvar_low": cvar - 20, "cvar_high": cvar + 5}
        )
    return pd.DataFrame(rows)


def table():
    return leaderboard(
        aggregated(), rows={"hc": "HalfCheetah-M-E", "w2d": "Walker2d-M-E"}, algo_order=ALGOS
    )


def flags(t, dataset, metric):
    cells = [t.cell(dataset, metric, a) for a in ALGOS]
    return [c["is_best"] for c in cells], [c["is_runner_up"] for c in cells]


def test_bold_and_runner_up_rule():
    t = table()
    assert t.rows == [("hc", "mean"), ("hc", "cvar"), ("w2d", "mean"), ("w2d", "cvar")]
    assert flags(t, "hc", "mean") == ([False, False, True], [False, True, False])
    # A tie at the top: both bold, the next distinct value is the runner-up.
    assert flags(t, "hc", "cvar") == ([False, True, True], [True, False, False])
    assert mark_best([1.0, np.nan, 0.5], True, 2) == ([True, False, False], [False, False, True])
    assert mark_best([1.004, 1.001], True, 2) == ([True, True], [False, False])  # tie as shown


def test_lower_is_better_metric():
    t = leaderboard(aggregated(), algo_order=ALGOS, higher_is_better={"cvar": False})
    assert flags(t, "hc", "cvar") == ([True, False, False], [False, True, True])


def test_latex():
    caption = caption_for(5, 10, 0.1, "ceil")
    tex = to_latex(table(), caption, "tab:main")
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\label{tab:main}"):
        assert tex.count(rule) == 1
    assert r"\textbf{916.64} {\scriptsize [906.64, 929.14]}" in tex
    assert r"\underline{796.06}" in tex
    assert r"\textbf{742.94}" in tex and tex.count(r"\textbf{") == 5  # 4 rows, one tie
    assert r"$-$66.66" in tex and r"\underline{$-$135.39}" in tex
    assert "95\\% stratified bootstrap CI" in tex and "5 seeds x 10 evaluation" in tex
    assert "HalfCheetah-M-E & Mean & " in tex and "\n & CVaR & " in tex
    assert r"\begin{tabular}{llccc}" in tex


def parse_markdown(text):
    """Rows of cell strings from a pipe table (header and separator skipped)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def test_markdown_parses_back_to_the_numbers():
    t = table()
    md = to_markdown(t, note="Note: 5 seeds.")
    assert md.splitlines()[0] == "| Dataset | Metric | CQL | ORAAC | RADAC |"
    assert md.rstrip().endswith("Note: 5 seeds.")
    rows = parse_markdown(md)
    assert len(rows) == 4
    for (dataset, metric), row in zip(t.rows, rows, strict=True):
        for algo, text in zip(ALGOS, row[2:], strict=True):
            cell = t.cell(dataset, metric, algo)
            value, low, high = map(float, re.findall(r"-?\d+\.\d+", text))
            assert (value, low, high) == pytest.approx(
                (cell["value"], cell["low"], cell["high"]), abs=0.005
            )
            assert text.startswith("**") == bool(cell["is_best"])
            assert (text.startswith("_") and not text.startswith("**")) == bool(
                cell["is_runner_up"]
            )
    assert rows[0][0] == "HalfCheetah-M-E" and rows[1][0] == ""


def test_csv_round_trip(tmp_path):
    t = table()
    path = write_csv(t, tmp_path / "main.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == [
        "dataset",
        "metric",
        "algo",
        "value",
        "low",
        "high",
        "is_best",
        "is_runner_up",
    ]
    pd.testing.assert_frame_equal(back, t.cells.reset_index(drop=True), check_dtype=False)
    assert os.listdir(tmp_path) == ["main.csv"]


def test_missing_cell_is_a_dash_and_never_bold():
    agg = aggregated()
    agg = agg[~((agg["dataset"] == "hc") & (agg["algo"] == "RADAC"))]
    t = leaderboard(agg, algo_order=ALGOS)
    assert flags(t, "hc", "mean") == ([False, True, False], [True, False, False])
    assert "| – |" in to_markdown(t) and " -- " in to_latex(t, "c", "l")


def test_bad_requests():
    with pytest.raises(UserError, match="zz"):
        leaderboard(aggregated(), rows=["hc", "zz"])
    with pytest.raises(UserError, match="IQL"):
        leaderboard(aggregated(), algo_order=["IQL"])
    two = pd.concat([aggregated(), aggregated().assign(suite="other")])
    with pytest.raises(ValueError, match="suites"):
        leaderboard(two)


def ood_summary():
    """Per-seed OOD rates (fractions): RADAC lowest on both datasets."""
    rates = {
        ("hc", "RADAC"): [0.01, 0.03],
        ("hc", "ORAAC"): [0.20, 0.42],
        ("hc", "ORAAC-Diff"): [0.30, 0.30],
        ("hop", "RADAC"): [0.012, 0.012],
        ("hop", "ORAAC"): [0.10, 0.13],
        ("hop", "ORAAC-Diff"): [0.2, 0.25],
    }
    return pd.DataFrame(
        [
            {"suite": "main", "dataset": d, "algo": a, "seed": s, "ood_rate": r}
            for (d, a), values in rates.items()
            for s, r in enumerate(values)
        ]
    )


def test_ood_table_bolds_the_lowest_rate():
    # The fixture has 2 seeds per cell: min_seeds=2 lets it draw the intervals checked here
    # (by default, fewer than 3 seeds show their values instead: test_few_seeds_...).
    t = ood_table(ood_summary(), algo_order=["RADAC", "ORAAC", "ORAAC-Diff"], min_seeds=2)
    cell = t.cell("hc", "ood_rate", "RADAC")
    assert cell["is_best"] and cell["value"] == pytest.approx(2.0)
    assert (cell["low"], cell["high"]) == pytest.approx((1.0, 3.0))  # ± 1 s.e.
    assert t.cell("hc", "ood_rate", "ORAAC-Diff")["is_runner_up"]
    md = to_markdown(t)
    assert md.splitlines()[0] == "| Dataset | RADAC | ORAAC | ORAAC-Diff |"
    assert "| hc | **2.00** ± 1.00 | 31.00 ± 11.00 | _30.00_ ± 0.00 |" in md
    assert r"\textbf{2.00} $\pm$ 1.00" in to_latex(t, ood_caption_for(2), "tab:ood")
    ci = ood_table(ood_summary(), interval="ci", reps=500, min_seeds=2)
    assert ci.interval == "ci" and ci.cell("hop", "ood_rate", "RADAC")["low"] == pytest.approx(1.2)


def test_html_fragment_marks_cells():
    frag = to_html(table(), caption="a & b")
    assert frag.startswith('<table class="leaderboard">')
    assert '<td class="best"><span class="value">916.64</span>' in frag
    assert '<td class="runner-up"><span class="value">796.06</span>' in frag
    assert "<caption>a &amp; b</caption>" in frag


def test_write_tables_writes_every_format_atomically(tmp_path):
    paths = write_tables(table(), tmp_path / "tables", "main", caption="c", label="tab:x")
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == [
        "main.csv",
        "main.html",
        "main.md",
        "main.tex",
    ]
    assert paths["tex"].read_text().count(r"\toprule") == 1


def test_atomic_write_leaves_no_temp_file_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    assert os.listdir(tmp_path) == ["out.txt"] and target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_target(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == ["out.txt"] and target.read_text() == "first"


def seeded():
    """One dataset, three algorithms with 2, 3 and 1 seeds: only C's cell may draw an interval."""
    seeds = {"A": (1.0, 0.98), "C": (0.5, 0.7, 0.6), "D": (0.3,)}
    rows = []
    for algo, values in seeds.items():
        mean = float(np.mean(values))
        rows.append(
            {"dataset": "d", "algo": algo, "mean": mean, "mean_low": mean - 0.1}
            | {"mean_high": mean + 0.1, "mean_seeds": values}
        )
    return leaderboard(pd.DataFrame(rows), metrics=("mean",))


def test_fewer_than_three_seeds_show_their_values_in_every_format(tmp_path):
    t = seeded()
    assert np.isnan(t.cell("d", "mean", "A")["low"]) and np.isnan(t.cell("d", "mean", "D")["high"])
    assert t.cell("d", "mean", "C")["low"] == pytest.approx(0.5)
    md = to_markdown(t)
    assert "| d | **0.99** (seeds: 1.00, 0.98) | _0.60_ [0.50, 0.70] | 0.30 (1 seed) |" in md
    tex = to_latex(t, "c", "tab:x")
    assert r"\textbf{0.99} {\scriptsize (seeds: 1.00, 0.98)}" in tex
    assert (
        r"\underline{0.60} {\scriptsize [0.50, 0.70]}" in tex and r"{\scriptsize (1 seed)}" in tex
    )
    frag = to_html(t)
    assert '<span class="value">0.99</span> <span class="seeds">(seeds: 1.00, 0.98)</span>' in frag
    assert '<span class="interval">[0.50, 0.70]</span>' in frag and "[0.98" not in frag
    back = pd.read_csv(write_csv(t, tmp_path / "t.csv"), keep_default_na=False)
    assert list(back.columns) == [*CSV_COLUMNS, "n_seeds", "seed_values"]
    assert back[["low", "high"]].iloc[0].tolist() == ["", ""]
    assert back["n_seeds"].tolist() == [2, 3, 1]
    assert back["seed_values"].tolist() == ["1; 0.98", "0.5; 0.7; 0.6", "0.3"]
    # Negative per-seed values keep LaTeX's minus sign.
    neg = leaderboard(
        pd.DataFrame([{"dataset": "d", "algo": "A", "mean": -1.5, "mean_seeds": (-1.0, -2.0)}]),
        metrics=("mean",),
    )
    assert r"{\scriptsize (seeds: $-$1.00, $-$2.00)}" in to_latex(neg, "c", "l")


def test_ood_table_from_two_seeds_gives_the_rates_not_a_standard_error():
    t = ood_table(ood_summary(), algo_order=["RADAC", "ORAAC", "ORAAC-Diff"])
    cell = t.cell("hc", "ood_rate", "RADAC")
    assert cell["is_best"] and np.isnan(cell["low"]) and cell["n_seeds"] == 2
    assert "| hc | **2.00** (seeds: 1.00, 3.00) | 31.00 (seeds: 20.00, 42.00) |" in to_markdown(t)


def test_each_format_has_its_own_caption(tmp_path):
    marks = {
        "latex": "Underlined: runner-up",
        "markdown": "In italics: runner-up",
        "html": "Shaded: runner-up",
        "csv": "is_runner_up: the next distinct value",
    }
    for make in (
        lambda fmt: caption_for(5, 10, 0.1, "ceil", fmt=fmt),
        lambda fmt: ood_caption_for(5, fmt=fmt),
    ):
        texts = {fmt: make(fmt=fmt) for fmt in marks}
        for fmt, text in texts.items():
            assert marks[fmt] in text, (fmt, text)
            others = [marks[f] for f in marks if f != fmt]
            assert not any(o in text for o in others), (fmt, text)
    assert "Brackets: 95% stratified" in caption_for(5, 10, 0.1, "ceil")
    assert "Columns low / high: 95% stratified" in caption_for(5, 10, 0.1, "ceil", fmt="csv")
    few = caption_for(2, 10, 0.1, "ceil", fmt="markdown")
    assert "only where a cell has 3 or more seeds" in few and "(seeds: a, b)" in few
    with pytest.raises(ValueError, match="fmt"):
        caption_for(5, 10, 0.1, "ceil", fmt="pdf")

    paths = write_tables(
        table(),
        tmp_path,
        "main",
        caption=lambda fmt: f"{fmt} caption. NOT the paper's budget (x).",
        label="tab:x",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "main.caption.txt",
        "main.csv",
        "main.html",
        "main.md",
        "main.tex",
    ]
    assert paths["caption"].read_text() == "csv caption. NOT the paper's budget (x).\n"
    tex, md, frag = (paths[k].read_text() for k in ("tex", "md", "html"))
    assert r"\caption{latex caption. \textbf{NOT the paper's budget} (x).}" in tex
    assert md.rstrip().endswith("markdown caption. **NOT the paper's budget** (x).")
    assert (
        '<caption>html caption. <strong class="warning">NOT the paper&#x27;s budget</strong>'
        in frag
    )
    assert frag.startswith("<style>") and "td.best .value { font-weight: bold; }" in frag
