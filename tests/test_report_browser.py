"""report.html as a reader sees it: rendered by a real headless browser (chromium) when one is installed.

A small script appended to a copy of the page writes, once the page has loaded, whether every image
decoded and where the first one sits; `chromium --headless --dump-dom` prints the page with that
record in it. `make browser` installs chromium (Debian's package).
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess

import pandas as pd
import pytest

from frequnlearn.evaluate.columns import COLUMNS
from frequnlearn.records import write_json
from frequnlearn.report.build import build_report

SCREEN = (1280, 800)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no headless browser installed (chromium); `make browser` installs it"
)

PROBE = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const box = images.length ? images[0].getBoundingClientRect() : null;
  const out = document.createElement("pre");
  out.id = "browser-probe";
  out.textContent = JSON.stringify({
    loaded: images.map((img) => img.complete && img.naturalWidth > 0),
    first: box && {top: box.top, height: box.height, width: box.width},
    screen: [window.innerWidth, window.innerHeight],
  });
  document.body.appendChild(out);
});
</script>
"""

STEPS = (0, 1, 2, 3, 4)
LEVELS = {"forget_high": (10, 4), "forget_low": (1, 1)}  # level: (exposure, step the answers stop)


def _rows(level: str, exposure: int, fall: int) -> list[dict]:
    """Per-item rows of one run: forget items stop being generated at `fall` and stop ranking first
    one step later; control, retain and utility items stay known."""
    people = [("forget", f"{level}-{i}", level, exposure) for i in range(6)]
    people += [("control", f"{level}-c{i}", level, exposure) for i in range(6)]
    people += [("retain", f"r{i}", "retain", 1) for i in range(6)]
    people += [("utility", f"u{i}", "utility", 1) for i in range(4)]
    rows = []
    for step in STEPS:
        for role, item_id, group, frequency in people:
            gone = role == "forget" and step >= fall + (int(item_id[-1]) % 2)
            ranked_first = not (role == "forget" and step >= fall + 1)
            for probe in ("question", "paraphrase"):
                ident = dict.fromkeys(COLUMNS, math.nan)
                ident.update(
                    model="mini-s0",
                    run_id="",
                    step=step,
                    item_id=item_id,
                    person_id=item_id,
                    group=group,
                    attribute="birth_city",
                    frequency=float(frequency),
                    bucket=None,
                    probe=probe,
                    generation=None,
                    role=role,
                    epoch=step / 2,
                    finite=True,
                )
                lp = -0.2 if ranked_first else -2.5
                prob = {
                    **ident,
                    "family": "prob",
                    "logprob": 2 * lp,
                    "logprob_per_token": lp,
                    "p_norm": math.exp(lp),
                    "n_answer_tokens": 2.0,
                    "rank": 1.0 if ranked_first else 3.0,
                    "rank_correct": float(ranked_first),
                    "truth_ratio": 0.2 if ranked_first else 1.5,
                    "margin": 1.0 if ranked_first else -1.0,
                }
                gen = {
                    **ident,
                    "family": "gen",
                    "generation": "" if gone else "Paris",
                    "rougeL_recall": 0.0 if gone else 1.0,
                    "exact": 0.0 if gone else 1.0,
                    "contains": 0.0 if gone else 1.0,
                    "known": 0.0 if gone else 1.0,
                }
                rows += [prob, gen]
    return rows


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    """The report of a small synthetic study: one size, one method, two frequency levels."""
    run = tmp_path_factory.mktemp("study")
    config = {
        "study": {"levels": list(LEVELS), "model_sizes": ["mini"], "methods": ["ga+gd"], "n_boot": 200},
        "evaluate": {"gen_threshold": 0.5},
    }
    write_json(run / "study.json", {"config": config})
    for level, (exposure, fall) in LEVELS.items():
        task = f"mini-s0/ga+gd/{level}-known"
        out = run / "unlearn" / task
        out.mkdir(parents=True)
        frame = pd.DataFrame(_rows(level, exposure, fall))
        frame.to_parquet(out / "trajectory.parquet", index=False)
        ids = {
            role: sorted(set(frame.loc[frame["role"] == role, "item_id"])) for role in frame["role"].unique()
        }
        write_json(
            out / "sets.json",
            {
                "forget": ids["forget"],
                "control": ids["control"],
                "retain": ids["retain"],
                "eval_retain": ids["retain"],
                "eval_utility": ids["utility"],
            },
        )
        identity = {
            "run_id": task,
            "task": task,
            "model": "mini-s0",
            "size": "mini",
            "n_params": 570432,
            "seed": 0,
            "method": "ga+gd",
            "level": level,
            "selection": "known",
        }
        write_json(out / "run.json", {"run": identity})
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
