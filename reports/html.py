"""One static, self-contained HTML report: headings, table fragments and embedded images.

Images are inlined as base64 data URIs so the page can be mailed or archived as a single
file; the page carries a short stylesheet and no scripts.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ramac.errors import UserError
from ramac.io import atomic_write_text
from reports.budget import NOT_PAPER, SCHEDULE_NOTE, Budget

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}

TABLE_CSS = """
table.leaderboard { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
table.leaderboard caption { caption-side: bottom; text-align: left; font-size: .8rem;
                            color: #555; padding-top: .5rem; }
table.leaderboard th, table.leaderboard td { padding: .25rem .6rem; text-align: right;
                                             vertical-align: top; }
table.leaderboard th { text-align: left; white-space: nowrap; }
table.leaderboard th.algo { text-align: right; }
table.leaderboard thead tr { border-top: 2px solid #222; border-bottom: 1px solid #222; }
table.leaderboard tbody tr:last-child { border-bottom: 2px solid #222; }
table.leaderboard td { white-space: nowrap; }
td.best .value { font-weight: bold; }
td.runner-up { background: #dde6f3; }
.interval, .seeds { display: block; color: #666; font-size: .78em; }
.seeds { font-style: italic; }
strong.warning { color: #a40000; }
"""

CSS = (
    """
body { font-family: system-ui, sans-serif; max-width: 75rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; }
.budget { border-left: .35rem solid #5a7fb5; background: #f1f5fb; padding: .6rem 1rem;
          margin: 1rem 0; }
.budget.not-paper { border-left-color: #c00; background: #fff3f0; }
.budget .headline { font-weight: bold; font-size: 1.05rem; }
.budget dl { display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem;
             margin: .5rem 0 0; }
.budget dt { color: #555; }
.budget dd { margin: 0; }
.table-wrap { overflow-x: auto; }
p.caption { font-size: .8rem; color: #555; max-width: 60rem; margin-top: .3rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: .8rem; color: #555; max-width: 60rem; }
footer { margin-top: 3rem; font-size: .8rem; color: #777; }
"""
    + TABLE_CSS
)


@dataclass(frozen=True)
class Figure:
    """An image to embed, with a caption (the file name is shown after it)."""

    path: str | os.PathLike
    caption: str = ""


Section = tuple[str, "str | os.PathLike | Figure"]


def _is_image(item: str | os.PathLike | Figure) -> bool:
    """A Figure or a Path, or a str naming an existing image file, is an image; other str
    is HTML."""
    if isinstance(item, os.PathLike | Figure):
        return True
    return Path(item).suffix.lower() in IMAGE_TYPES and len(item) < 4096 and Path(item).is_file()


def html_caption(caption: str) -> str:
    """Plain-text caption as HTML: escaped, its not-the-paper's-budget warning in a
    ``<strong class="warning">``."""
    escaped = html.escape(caption)
    return escaped.replace(
        html.escape(NOT_PAPER), f'<strong class="warning">{html.escape(NOT_PAPER)}</strong>'
    )


def image_tag(path: str | os.PathLike, alt: str = "", caption: str = "") -> str:
    """A ``<figure>`` with the image at ``path`` embedded as a base64 data URI; its caption
    is ``caption`` (plain text) followed by the file name."""
    path = Path(path)
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:
        raise UserError(f"report: {path} is not an image type it can embed {list(IMAGE_TYPES)}")
    if not path.is_file():
        raise UserError(f"report: image {path} does not exist")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{html_caption(caption) + ' ' if caption else ''}"
        f"<code>{html.escape(path.name)}</code></figcaption></figure>"
    )


def _image(item: str | os.PathLike | Figure, alt: str) -> str:
    if isinstance(item, Figure):
        return image_tag(item.path, alt=alt, caption=item.caption)
    return image_tag(item, alt=alt)


def table_block(fragment: str, caption_html: str = "") -> str:
    """A table fragment in a horizontally scrolling box, its caption as a paragraph below
    (a ``<caption>`` would be squeezed to the table's width)."""
    cap = f'<p class="caption">{caption_html}</p>' if caption_html else ""
    return f'<div class="table-wrap">{fragment}</div>{cap}'


def render_report(title: str, sections: Sequence[Section], lead: str = "") -> str:
    """The whole page as a string (see ``write_report``); ``lead`` is HTML put under the
    title (e.g. ``budget_html``)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        lead,
    ]
    for heading, item in sections:
        body = _image(item, alt=heading) if _is_image(item) else str(item)
        parts.append(f"<section><h2>{html.escape(heading)}</h2>\n{body}\n</section>")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts += [f"<footer>Generated by ramac on {stamp}.</footer>", "</body></html>"]
    return "\n".join(parts) + "\n"


def write_report(
    path: str | os.PathLike, title: str, sections: Sequence[Section], lead: str = ""
) -> Path:
    """Write one self-contained HTML page, atomically.

    ``sections`` is a list of (heading, item): an item that is a ``Figure`` or a ``Path`` (or
    a str naming an existing .png/.jpg/.gif/.svg file) is embedded as an image; any other
    str is inserted as an HTML fragment (e.g. ``reports.leaderboard.to_html(table)``).
    ``lead`` is HTML under the title: the budget box of ``budget_html``.
    """
    return atomic_write_text(path, render_report(title, sections, lead))


def budget_html(budget: Budget) -> str:
    """The box at the top of a report: the profile, updates per run, seeds and evaluation
    draws, against the paper profile's; red, headed NOT the paper's budget, when they
    differ."""
    rows = [
        ("Profile", budget.profile or "not recorded"),
        ("Updates per run", _span(budget.steps, budget.steps_max, budget.paper_steps)),
        ("Seeds", _span(budget.seeds, budget.seeds_max, budget.paper_seeds)),
    ]
    if budget.draws is not None:
        unit = budget.draw_unit[0].upper() + budget.draw_unit[1:]
        rows.append((unit, _span(budget.draws, budget.draws, budget.paper_draws)))
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    if not budget.known:
        headline, cls = "Budget (the paper's is not known for these records)", "budget"
    elif budget.is_paper:
        headline, cls = "The paper's budget", "budget"
    else:
        differs = ", ".join(budget.differences)
        headline = f"{NOT_PAPER}: {differs} differ from the paper profile's"
        cls = "budget not-paper"
    note = ""
    if budget.known and not budget.is_paper and "updates per run" in budget.differences:
        scale = f" ({budget.scale:.3g})" if budget.scale else ""
        note = f"<p>{html.escape(SCHEDULE_NOTE[0].upper() + SCHEDULE_NOTE[1:])}{scale}.</p>"
    return (
        f'<div class="{cls}" role="note"><div class="headline">{html.escape(headline)}</div>'
        f"<dl>{items}</dl>{note}</div>"
    )


def _span(low: int, high: int, paper: int | None) -> str:
    ours = f"{low:,}" if low == high else f"{low:,}-{high:,}"
    if paper is None:
        return ours
    return ours + (" (the paper's)" if low == high == paper else f" (paper: {paper:,})")


# Pages a results folder may hold beside its report.html (``ramac calibrate``), linked from it.
COMPANION_PAGES = {"calibration_report.html": "Does the critic know the tail? (tail calibration)"}


def companion_links(folder: str | os.PathLike) -> str | None:
    """A list of links to the companion pages ``folder`` holds; None when it holds none."""
    found = [
        (name, title) for name, title in COMPANION_PAGES.items() if (Path(folder) / name).is_file()
    ]
    if not found:
        return None
    items = "".join(f'<li><a href="{html.escape(n)}">{html.escape(t)}</a></li>' for n, t in found)
    return f"<ul>{items}</ul>"
