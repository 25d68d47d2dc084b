"""The report built once: which sections a run gets, that a rebuild keeps them, and what the page shows
(reading order by parameters, no empty columns, every term defined once, a note for a figure with no
data, one colour per method)."""

from __future__ import annotations

import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from frequnlearn.records import write_json
from frequnlearn.report.build import build_report
from report_fixtures import LEVELS, SIZES, write_study

ATTACK_SECTIONS = (
    "Relearning attacks",
    "Quantization attacks",
    "Forget quality against the never-learned model",
)


def md_headings(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, re.M)


def html_headings(text: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<h2>(.*?)</h2>", text)]


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts (header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables_of(text: str) -> list[list[list[str]]]:
    parser = Tables()
    parser.feed(text)
    return parser.tables


@pytest.fixture(scope="module")
def attacked(tmp_path_factory) -> Path:
    """A synthetic study with relearning, quantization and never-learned scores, and its report."""
    run = write_study(tmp_path_factory.mktemp("attacked"), attacks=True)
    build_report(run)
    return run


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """The same study without the robustness stages (and one method), and its report."""
    run = write_study(tmp_path_factory.mktemp("plain"), methods=("ga+gd",))
    build_report(run)
    return run


def test_a_run_with_attacks_gets_its_attack_sections_in_both_pages(attacked):
    report = attacked / "report"
    md, page = (report / "report.md").read_text(), (report / "report.html").read_text()
    for title in ATTACK_SECTIONS:
        assert title in md_headings(md) and title in html_headings(page), title
    assert md_headings(md) == html_headings(page)  # the same sections, in the same order
    for name in ("attacks.csv", "forget_quality.csv", "relearning.png", "quantization.png"):
        assert (report / name).is_file(), name
    assert "relearning.png" in md and "quantization.png" in md and "int8 weight-only" in page
    table = pd.read_csv(report / "attacks.csv")
    targeted = table[(table["attack"] == "targeted") & (table["k"] == 2)]
    assert (targeted["n_lost"] == 8).all() and (targeted["n_recovered"] == 4).all()
    assert (table.loc[table["attack"] != "targeted", "n_recovered"] == 0).all()
    quality = pd.read_csv(report / "forget_quality.csv")
    assert len(quality) == len(SIZES) * 2 * len(LEVELS) and quality["forget_quality"].between(0, 1).all()
    # One page, built once: nothing appended after the run section.
    assert page.count("</body>") == 1 and md_headings(md)[-1] == "Run" and html_headings(page)[-1] == "Run"


def test_a_run_without_attack_stages_has_no_attack_sections(plain):
    report = plain / "report"
    md = (report / "report.md").read_text()
    assert not set(ATTACK_SECTIONS) & set(md_headings(md))
    assert not (report / "attacks.csv").exists() and not (report / "relearning.png").exists()


def test_a_configured_stage_that_left_nothing_says_so_in_one_line(tmp_path):
    run = write_study(tmp_path / "run", sizes={"tiny": SIZES["tiny"]}, methods=("ga+gd",))
    study = json.loads((run / "study.json").read_text())
    study["config"]["attacks"] = {"oracle": True, "relearn": ["targeted"], "quantize": []}
    write_json(run / "study.json", study)
    md = (build_report(run) / "report.md").read_text()
    headings = md_headings(md)
    assert "Relearning attacks" in headings and "Quantization attacks" not in headings
    section = md.split("## Relearning attacks", 1)[1].split("\n## ", 1)[0]
    assert section.strip().splitlines() == [
        "_No relearning results: the attack stage wrote no relearning scores._"
    ]
    assert "_No never-learned scores: the oracle stage wrote none._" in md


def test_a_rebuilt_report_keeps_every_section_it_had(attacked, tmp_path, capsys):
    from frequnlearn.cli import main

    report = attacked / "report"
    before_md, before_html = (
        md_headings((report / "report.md").read_text()),
        html_headings((report / "report.html").read_text()),
    )
    files = set(json.loads((report / "findings.json").read_text())["files"])
    assert main(["report", str(attacked)]) == 0
    capsys.readouterr()
    after_md = md_headings((report / "report.md").read_text())
    after_html = html_headings((report / "report.html").read_text())
    assert before_md == after_md and before_html == after_html
    # Published elsewhere (`--out`), the same report.
    assert main(["report", str(attacked), "--out", str(tmp_path / "published")]) == 0
    capsys.readouterr()
    assert md_headings((tmp_path / "published" / "report.md").read_text()) == before_md
    assert set(json.loads((report / "findings.json").read_text())["files"]) == files
    assert json.loads((report / "findings.json").read_text())["sections"] == after_md


def test_a_rebuild_removes_only_the_files_its_last_build_wrote(tmp_path):
    run = write_study(tmp_path / "run", attacks=True, sizes={"tiny": SIZES["tiny"]}, methods=("ga+gd",))
    report = build_report(run)
    (report / "notes.txt").write_text("mine")
    # The robustness stages are gone from the run (say, rerun without them): their files go too.
    study = json.loads((run / "study.json").read_text())
    del study["config"]["attacks"]
    write_json(run / "study.json", study)
    for path in [*run.glob("unlearn/**/attacks"), *run.glob("models/*/oracle")]:
        shutil.rmtree(path)
    build_report(run)
    for name in ("attacks.csv", "forget_quality.csv", "relearning.png", "quantization.png"):
        assert not (report / name).exists(), name
    assert (report / "notes.txt").read_text() == "mine" and (report / "report.html").is_file()
    # A report from before reports listed their files: the one figure name no longer written goes.
    findings = json.loads((report / "findings.json").read_text())
    del findings["files"]
    write_json(report / "findings.json", findings)
    (report / "attacks.png").write_bytes(b"an earlier figure")
    build_report(run)
    assert not (report / "attacks.png").exists() and (report / "notes.txt").is_file()


def test_sizes_come_in_order_of_parameters_in_tables_and_pages(plain):
    report = plain / "report"
    want = sorted(SIZES, key=lambda s: SIZES[s][0])  # tiny before small (the config lists small first)
    assert want == ["tiny", "small"]
    for name in ("verdicts", "frequency_effect", "headline", "parameters", "misalignment"):
        sizes = list(dict.fromkeys(pd.read_csv(report / f"{name}.csv")["size"]))
        assert [s for s in sizes if s != "all"] == want, (name, sizes)  # "all": every size pooled, last
    page = (report / "report.html").read_text()
    for table in tables_of(page):
        header = table[0]
        if "size" in header:
            col = header.index("size")
            seen = list(dict.fromkeys(row[col] for row in table[1:] if row[col] in SIZES))
            assert seen == [s for s in want if s in seen], header
    assert "sizes tiny (0.96M), small (3.45M)" in page


def test_no_column_of_a_page_table_is_empty_in_every_row(attacked):
    page = (attacked / "report" / "report.html").read_text()
    tables = tables_of(page)
    assert len(tables) >= 8
    for table in tables:
        header, rows = table[0], table[1:]
        for i, name in enumerate(header):
            assert any(row[i] for row in rows), f"column {name!r} is empty in every row"


def test_every_term_the_report_uses_is_defined_once(attacked):
    md = (attacked / "report" / "report.md").read_text()
    terms = md.split("## Terms", 1)[1].split("\n## ", 1)[0]
    defined = re.findall(r"^- \*\*(.+?)\*\*: ", terms, re.M)
    assert len(defined) == len(set(defined))
    rest = md.replace(terms, "")
    for term in (
        "known",
        "net drop",
        "control-subtracted",
        "normalised AUC",
        "per e-fold",
        "seed interval",
        "matched on baseline margin",
        "never-learned model",
        "forget quality",
        "supported",
    ):
        if re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-])", rest, re.I):
            assert term in defined, term
    # Defined once: the captions and notes no longer define them.
    assert "net drop =" not in rest and "net drop (1 -" not in rest


def test_the_headlines_state_each_findings_verdict_effect_and_counts(attacked):
    findings = json.loads((attacked / "report" / "findings.json").read_text())
    one, two = findings["headlines"]
    # The declared primary endpoint: the first method, every size pooled (the study has two).
    assert one["finding"] == "1" and "every size pooled" in one["measured"] and "ga+gd" in one["measured"]
    effect = pd.read_csv(attacked / "report" / "frequency_effect.csv")
    row = effect[(effect["size"] == "all") & (effect["method"] == "ga+gd") & ~effect["matched"]].iloc[0]
    # Eight target items per level and size, 16 pooled: fewer than a verdict needs, so descriptive.
    assert (
        one["estimate"] == pytest.approx(row["effect"]) and one["verdict"] == row["verdict"] == "descriptive"
    )
    assert "fewer than the 20" in one["meaning"]
    assert one["n_items"] == min(row["n_high"], row["n_low"], row["n_control_high"], row["n_control_low"])
    assert one["n_people"] == 32 and one["n_seeds"] == 1
    trend = pd.read_csv(attacked / "report" / "size_trend.csv")
    row = trend[
        (trend["view"] == "rank1")
        & (trend["level"] == "both")
        & (trend["method"] == "ga+gd")
        & (trend["forgetting"] == 0.5)
        & (trend["measure"] == "share")
    ].iloc[0]
    assert two["finding"] == "2" and two["estimate"] == pytest.approx(row["slope"]) and two["estimate"] > 0
    page = (attacked / "report" / "report.html").read_text()
    first = page.split('<div class="lead">', 1)[0]
    assert first.count('class="headline ') == 2 and "Finding 2: misalignment grows with model size" in first
    md = (attacked / "report" / "report.md").read_text()
    assert md.index("> **Finding 1") < md.index("> **Finding 2") < md.index("](dose_response.png)")
    assert md.index("](size_trend.png)") < md.index("## Terms")


def test_a_figure_without_data_is_a_note_not_empty_axes(tmp_path):
    run = write_study(tmp_path / "run", sizes={"tiny": SIZES["tiny"]}, methods=("ga+gd",))  # no size trend
    report = build_report(run)
    page = (report / "report.html").read_text()
    assert not (report / "size_trend.png").exists()
    lead = page.split('<div class="lead">', 1)[1].split("</div>", 1)[0]
    # The slot takes the next figure of Finding 2 when it has data, else says why there is none.
    assert "misalignment.png" in lead or "No size trend" in lead
    findings = json.loads((report / "findings.json").read_text())
    assert findings["headlines"][1]["verdict"] == "no estimate" and "1" in findings["headlines"][1]["meaning"]
    md = (report / "report.md").read_text()
    assert "_No size trend: it needs two or more model sizes" in md


def test_each_method_has_its_own_colour_in_every_figure():
    from matplotlib.colors import to_hex

    from frequnlearn.report import plots

    methods = ["ga+gd", "simnpo+gd", "npo+gd"]
    assert len({plots.method_color(methods, m) for m in methods}) == 3
    rows = [
        {
            "size": size,
            "method": method,
            "selection": "known",
            "probe": "question",
            "level": level,
            "view": "rank1",
            "forgetting": 0.5,
            "n_forgotten": 5,
            "share": 0.1 * i,
            "share_lo": 0.0,
            "share_hi": 0.3,
        }
        for i, method in enumerate(methods)
        for size in ("tiny", "small")
        for level in ("forget_high", "both")
    ]
    fig = plots.misalignment(pd.DataFrame(rows), ["forget_high"], ["tiny", "small"], methods)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    colour = {label: to_hex(h.lines[0].get_color()) for h, label in zip(handles, labels)}
    for level in ("forget_high", "levels pooled"):
        assert len({colour[f"{level}, {m}"] for m in methods}) == 3
    assert colour["forget_high, ga+gd"] == colour["levels pooled, ga+gd"]


def test_a_lead_figures_smallest_text_is_readable_at_its_natural_width():
    from frequnlearn.report import plots

    points = pd.DataFrame(
        [
            {
                "size": s,
                "method": m,
                "selection": "known",
                "probe": "question",
                "level": lv,
                "exposure": x,
                "net_drop": 0.5 - 0.1 * math.log(x),
                "net_drop_lo": 0.4 - 0.1 * math.log(x),
                "net_drop_hi": 0.6 - 0.1 * math.log(x),
            }
            for s in ("tiny", "small")
            for m in ("ga+gd", "simnpo+gd")
            for lv, x in (("forget_low", 1.0), ("forget_high", 10.0))
        ]
    )
    rendered = plots.render(
        plots.dose_response(points, pd.DataFrame(), ["tiny", "small"], ["ga+gd", "simnpo+gd"])
    )
    assert rendered.min_font_px >= 12  # 9 pt at 110 dpi
    # Shown at most at its natural width in a half of a 1280-pixel page: never scaled below 10 px text.
    assert rendered.width_px <= 620 and rendered.min_font_px * min(1.0, 600 / rendered.width_px) >= 10
