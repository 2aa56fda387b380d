"""Both HTML reports, rendered by headless Chromium: they load without errors, their tables
are in the rendered DOM, their images are decoded and visible on a screenshot.

Needs a Chromium binary (``make browser`` installs Debian's ``chromium-headless-shell``;
``RAMAC_CHROMIUM`` names another); skipped, saying so, where there is none. Set
``RAMAC_REPORT_SHOTS`` to a folder to keep the screenshots.
"""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reports.bandit import write_bandit_leaderboards
from reports.suite import write_suite_reports

NAMES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
PLACES = ("/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/chromium")
WIDTH = 1280


def find_chromium() -> str | None:
    """``RAMAC_CHROMIUM``, else the first of NAMES on PATH, else Debian's install folder."""
    named = os.environ.get("RAMAC_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    for name in NAMES:
        if shutil.which(name):
            return shutil.which(name)
    return next((p for p in PLACES if os.access(p, os.X_OK)), None)


CHROMIUM = find_chromium()
if os.environ.get("RAMAC_CHROMIUM"):
    WHY = f"RAMAC_CHROMIUM={os.environ['RAMAC_CHROMIUM']} is not a program"
else:
    WHY = (
        f"headless Chromium not found (looked for {', '.join(NAMES)} on PATH and in "
        f"/usr/lib/chromium/); `make browser` installs it where apt-get and root allow"
    )
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=WHY)

# Injected into a copy of the page only: records failed loads and script errors from the
# start, and after the load event writes what the browser made of the images and tables.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? "failed to load <" + t.tagName.toLowerCase() + ">"
                                      : String(e.message));
}, true);
window.addEventListener("load", function () {
  function box(el) {
    var r = el.getBoundingClientRect();
    return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];
  }
  var result = {
    errors: window.__errors,
    height: document.documentElement.scrollHeight,
    images: Array.from(document.images).map(function (i) {
      return {data: i.getAttribute("src").startsWith("data:image/"), complete: i.complete,
              width: i.naturalWidth, height: i.naturalHeight, box: box(i)};
    }),
    tables: Array.from(document.querySelectorAll("table.leaderboard")).map(function (t) {
      return {rows: t.rows.length, box: box(t)};
    })
  };
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # containers run tests as root
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        *args,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def render(report: Path, tmp_path: Path, name: str) -> tuple[dict, str, np.ndarray]:
    """(what the probe saw, the rendered DOM, the screenshot as an RGB array) of ``report``."""
    text = report.read_text()
    assert "<script" not in text  # the report itself stays script-free
    probe = tmp_path / f"{name}-probe.html"
    probe.write_text(text.replace("<head>", "<head>" + PROBE, 1))
    dom = chromium(
        "--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), profile=tmp_path / "p1"
    ).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the page never finished loading: {dom[-500:]}"
    seen = json.loads(html.unescape(found.group(1)))
    shot = tmp_path / f"{name}.png"
    height = int(min(max(seen["height"], 600), 12_000))
    chromium(
        f"--window-size={WIDTH},{height}",
        f"--screenshot={shot}",
        report.as_uri(),
        profile=tmp_path / "p2",
    )
    keep = os.environ.get("RAMAC_REPORT_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return seen, dom, np.asarray(Image.open(shot).convert("RGB"))


def colours(pixels: np.ndarray) -> int:
    """How many distinct colours an RGB array holds."""
    packed = pixels.reshape(-1, 3).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
    return len(np.unique(packed))


def check_page(seen: dict, dom: str, pixels: np.ndarray, n_tables: int, n_images: int) -> None:
    assert seen["errors"] == []
    assert len(seen["tables"]) == n_tables and dom.count('<table class="leaderboard"') >= n_tables
    assert all(t["rows"] >= 2 for t in seen["tables"])
    assert len(seen["images"]) == n_images
    assert colours(pixels) > 1
    for image in seen["images"]:
        assert image["data"] and image["complete"], image  # embedded, loaded
        assert image["width"] > 100 and image["height"] > 100, image  # decoded
        left, top, width, height = (int(v) for v in image["box"])
        assert width > 100 and height > 100, image  # laid out at a visible size
        crop = pixels[top : top + height, left : left + width]
        assert crop.size and colours(crop) > 8, image  # drawn, not a blank box
    for table in seen["tables"]:
        left, top, width, height = (int(v) for v in table["box"])
        assert colours(pixels[top : top + height, left : left + width]) > 2  # text drawn


def test_suite_report_renders(suite_folder, suite_eval, tmp_path):
    report = write_suite_reports(suite_folder, suite_eval)
    seen, dom, pixels = render(report, tmp_path, "suite-report")
    # the leaderboard, the OOD table, the records table; the four figures
    check_page(seen, dom, pixels, n_tables=3, n_images=4)
    assert 'class="budget not-paper"' in dom and "NOT the paper's budget" in dom
    assert "(seeds: " in dom  # 2 seeds: the values, no interval


def test_bandit_report_renders(bandit_folder, bandit_eval, tmp_path):
    out, summary = bandit_folder
    paths = write_bandit_leaderboards(out, summary, bandit_eval, ["radac", "bc"])
    seen, dom, pixels = render(paths["report"], tmp_path, "bandit-report")
    check_page(seen, dom, pixels, n_tables=1, n_images=1)
    assert 'class="budget not-paper"' in dom and "Risky bandit" in dom
    assert "(seeds: " in dom
