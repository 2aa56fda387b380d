"""The static HTML report: one self-contained page with tables and embedded images."""

import base64
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ramac.errors import UserError  # noqa: E402
from reports.html import write_report  # noqa: E402
from reports.leaderboard import leaderboard, to_html  # noqa: E402


def small_png(path):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path, dpi=20)
    plt.close(fig)
    return path


def test_report_embeds_tables_and_images(tmp_path):
    agg = pd.DataFrame(
        {"dataset": ["d", "d"], "algo": ["A", "B"], "mean": [1.0, 2.0], "cvar": [0.5, 0.1]}
    )
    fragment = to_html(leaderboard(agg))
    png = small_png(tmp_path / "fig.png")
    out = write_report(
        tmp_path / "site" / "report.html",
        "RAMAC <results>",
        [("Main table", fragment), ("Bandit", png), ("Same, as str", str(png))],
    )
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<title>RAMAC &lt;results&gt;</title>" in text
    assert '<table class="leaderboard">' in text and "<h2>Main table</h2>" in text
    encoded = base64.b64encode(png.read_bytes()).decode("ascii")
    assert text.count(f"data:image/png;base64,{encoded}") == 2
    assert "<script" not in text
    assert os.listdir(tmp_path / "site") == ["report.html"]


def test_missing_image_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_report(tmp_path / "r.html", "t", [("x", tmp_path / "nope.png")])
    assert not (tmp_path / "r.html").exists()


def test_atomic_savefig_uses_the_suffix_format(tmp_path):
    from ramac.io import atomic_savefig

    fig, ax = plt.subplots(figsize=(1, 1))
    for name in ("f.png", "f.pdf"):
        atomic_savefig(fig, tmp_path / name, dpi=20)
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(os.listdir(tmp_path)) == ["f.pdf", "f.png"]
