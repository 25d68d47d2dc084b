"""report.html as a reader sees it: rendered by a real headless browser (chromium) when one is installed.

A small script appended to a copy of the page writes, once the page has loaded, where the headline boxes
and the figures sit in a 1280x800 window, whether every image decoded, and each lead figure's natural
width and smallest text; `chromium --headless --dump-dom` prints the page with that record in it.
`make browser` installs chromium (Debian's package).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

from frequnlearn.report.build import build_report
from report_fixtures import write_study

SCREEN = (1280, 800)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no headless browser installed (chromium); `make browser` installs it"
)

PROBE = """
<script>
window.addEventListener("load", () => {
  const rect = (el) => {
    const b = el.getBoundingClientRect();
    return {top: b.top, bottom: b.bottom, left: b.left, width: b.width, height: b.height};
  };
  const images = Array.from(document.images);
  const lead = Array.from(document.querySelectorAll(".lead img")).map((img) => ({
    ...rect(img),
    natural: img.naturalWidth,
    font: parseFloat(img.dataset.minFontPx),
  }));
  const out = document.createElement("pre");
  out.id = "browser-probe";
  out.textContent = JSON.stringify({
    loaded: images.map((img) => img.complete && img.naturalWidth > 0),
    first: images.length ? rect(images[0]) : null,
    headlines: Array.from(document.querySelectorAll(".headline")).map(rect),
    lead: lead,
    screen: [window.innerWidth, window.innerHeight],
  });
  document.body.appendChild(out);
});
</script>
"""


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    """The report of a small synthetic study: two sizes, two methods, two levels, with attacks."""
    run = write_study(tmp_path_factory.mktemp("study"), attacks=True)
    return build_report(run) / "report.html"


@pytest.fixture(scope="module")
def rendered(report_html, tmp_path_factory):
    """What the browser measured on the page at a 1280x800 window."""
    page = tmp_path_factory.mktemp("browser") / "report.html"
    text = report_html.read_text()
    page.write_text(text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE)
    profile = page.parent / "profile"
    cmd = [
        BROWSER,
        "--headless",
        "--no-sandbox",  # the test may run as root (containers), where chromium's sandbox refuses
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={SCREEN[0]},{SCREEN[1]}",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="browser-probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, (
        f"the page did not finish loading in {BROWSER} (exit {proc.returncode}): {proc.stderr[-2000:]}"
    )
    return json.loads(html.unescape(found.group(1)))


def test_every_image_loads(rendered):
    assert rendered["screen"][0] == SCREEN[0]
    assert rendered["loaded"], "the report has no images"
    assert all(rendered["loaded"]), f"images that did not load: {rendered['loaded']}"


def test_the_first_screen_shows_a_figure(rendered):
    # The page's own height in a 1280x800 window (headless chromium keeps room for a window frame, as a
    # desktop browser does); at least 200 pixels of the first figure (all of it, when smaller) lie in it.
    first, height = rendered["first"], rendered["screen"][1]
    assert first["width"] > 0 and 0 <= first["top"] and first["top"] + min(first["height"], 200) <= height, (
        first
    )


def test_the_first_screen_shows_both_headline_boxes_whole(rendered):
    boxes, height = rendered["headlines"], rendered["screen"][1]
    assert len(boxes) == 2, boxes
    assert all(0 <= b["top"] and b["bottom"] <= height and b["width"] > 300 for b in boxes), boxes


def test_both_lead_figures_are_on_the_first_screen_at_a_readable_size(rendered):
    lead, height = rendered["lead"], rendered["screen"][1]
    assert len(lead) == 2, lead
    for fig in lead:
        assert fig["top"] + min(fig["height"], 200) <= height, fig
        # The smallest text of the figure (its legend and ticks) as shown: its size in the PNG times the
        # scale the page shows the image at.
        shown = fig["font"] * fig["width"] / fig["natural"]
        assert shown >= 10, (shown, fig)
