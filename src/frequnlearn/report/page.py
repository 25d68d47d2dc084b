"""The report's sections written as one markdown file and one self-contained HTML page, in the same
order: the title, one headline box per finding, the two lead figures, then every section.

The HTML is sized for a 1280x800 window: the headline boxes and the lead figures (side by side, each
shown at no more than its natural size) fill the first screen; the long tables and the other figures
are collapsed.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass

import pandas as pd

from frequnlearn.report.figures import BuiltFigure
from frequnlearn.report.headline import Headline
from frequnlearn.report.prose import as_markdown
from frequnlearn.report.sections import Bullets, Note, Para, Section, Table, Terms

TITLE = "frequnlearn study report"


def _ci(h: Headline) -> str:
    if math.isnan(h.estimate):
        return "no estimate"
    if math.isnan(h.lo) or math.isnan(h.hi):
        return f"{h.estimate:+.3f} (no interval: too few items or sizes to resample)"
    return f"{h.estimate:+.3f} (95% CI {h.lo:+.3f} to {h.hi:+.3f})"


def _counts(h: Headline) -> str:
    parts = [f"n = {h.n_items} items per arm"] if h.n_items or not math.isnan(h.estimate) else []
    if h.n_people:
        parts.append(f"{h.n_people} people")
    if h.n_seeds:
        parts.append(f"{h.n_seeds} seed{'s' if h.n_seeds != 1 else ''}")
    if h.n_worlds > 1:
        parts.append(f"{h.n_worlds} worlds")
    parts.append(h.budget)
    return ", ".join(parts)


@dataclass
class Page:
    """What the report says, in reading order."""

    subtitle: str
    headlines: list[Headline]
    lead: list[BuiltFigure]
    sections: list[Section]

    def headings(self) -> list[str]:
        return [s.title for s in self.sections]

    # ---------------------------------------------------------------------------------------- markdown

    def markdown(self) -> str:
        parts = [f"# {TITLE}", "", self.subtitle, ""]
        for h in self.headlines:
            parts += [
                f"> **Finding {h.finding}: {h.claim}: {h.verdict}.** "
                + ("" if math.isnan(h.estimate) else _ci(h) + (f", {h.unit}" if h.unit else "") + "; ")
                + f"{_counts(h)}.  ",
                f"> Measured: {h.measured}.  ",
                f"> {h.meaning}",
                *[f"> Note: {n}" for n in h.notes],
                "",
            ]
        for f in self.lead:
            parts += _md_figure(f)
        for s in self.sections:
            parts += [f"## {s.title}", ""]
            for b in s.blocks:
                parts += _md_block(b)
        return "\n".join(parts).rstrip("\n") + "\n"

    # -------------------------------------------------------------------------------------------- html

    def html(self) -> str:
        esc = html.escape
        boxes = "".join(_html_headline(h) for h in self.headlines)
        lead = "".join(_html_figure(f) for f in self.lead)
        nav = " · ".join(f'<a href="#{s.key}">{esc(s.title)}</a>' for s in self.sections)
        body = "\n".join(_html_section(s) for s in self.sections)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{TITLE}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{CSS}</style></head><body>
<header><h1>{TITLE}</h1><p class="sub">{esc(self.subtitle)}</p></header>
<div class="headlines">{boxes}</div>
<div class="lead">{lead}</div>
<nav>{nav}</nav>
{body}
</body></html>
"""


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1240px; margin: 0 auto; padding: 6px 16px;
  color: #222; }
header h1 { font-size: 20px; margin: 4px 0 0; } p.sub { font-size: 13px; color: #555; margin: 2px 0 8px; }
.headlines { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.headline { border: 1px solid #ccc; border-left: 6px solid #888; border-radius: 4px; padding: 6px 10px;
  font-size: 13px; line-height: 1.3; }
.headline p { margin: 2px 0; font-size: 13px; }
.headline .claim { font-weight: 600; }
.headline .verdict { font-size: 20px; font-weight: 700; }
.headline .effect b { font-size: 15px; }
.headline .measured, .headline .counts, .headline .unit { color: #555; }
.v-supported { border-left-color: #1e8449; } .v-supported .verdict { color: #1e8449; }
.v-opposite { border-left-color: #c0392b; } .v-opposite .verdict { color: #c0392b; }
.v-inconclusive { border-left-color: #b9770e; } .v-inconclusive .verdict { color: #b9770e; }
.v-no-estimate .verdict, .v-descriptive .verdict { color: #666; }
.lead { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-top: 8px; }
.lead figure { margin: 0; }
figure { margin: 10px 0; } img { width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: #555; }
p.nodata { font-style: italic; color: #666; border: 1px dashed #bbb; padding: 8px; font-size: 13px; }
nav { font-size: 13px; margin: 10px 0; padding: 6px 0; border: 1px solid #ddd; border-width: 1px 0; }
h2 { font-size: 17px; margin: 16px 0 6px; } p, li { font-size: 14px; }
summary { cursor: pointer; } summary h2 { display: inline; }
summary.sub { font-weight: 600; font-size: 14px; }
dl.terms { columns: 3; column-gap: 20px; font-size: 12.5px; margin: 0; line-height: 1.3; }
dl.terms dt { font-weight: 600; break-after: avoid; } dl.terms dd { margin: 0 0 5px 0; break-inside: avoid; }
dl.terms dt, dl.terms dd { font-size: 12.5px; }
.scroll { overflow-x: auto; max-width: 100%; }
table.t { border-collapse: collapse; font-size: 12px; margin: 4px 0 12px; }
table.t th, table.t td { border-bottom: 1px solid #ddd; padding: 3px 6px; text-align: right;
  white-space: nowrap; }
table.t th { background: #f4f4f4; position: sticky; top: 0; }
pre { white-space: pre-wrap; word-break: break-all; font-size: 12px; }
@media (max-width: 900px) { .headlines, .lead { grid-template-columns: 1fr; } dl.terms { columns: 1; } }
@media print { figure { page-break-inside: avoid; } details { display: block; } }
"""


def _md_figure(f: BuiltFigure) -> list[str]:
    if f.rendered is None:
        return [f"_{f.missing}_", ""]
    return [f"![{f.caption}]({f.name})", "", f"_{f.caption}_", ""]


def _md_block(b: object) -> list[str]:
    if isinstance(b, Para):
        return [b.text if "\n" not in b.text else "```\n" + b.text + "\n```", ""]
    if isinstance(b, Bullets):
        return [f"- {x}" for x in b.items] + [""]
    if isinstance(b, Note):
        return [f"_{b.text}_", ""]
    if isinstance(b, Terms):
        return [f"- **{t}**: {d}" for t, d in b.entries] + [""]
    if isinstance(b, Table):
        head = [f"### {b.title}", ""] if b.title else []
        return head + ([b.note, ""] if b.note else []) + [as_markdown(b.df), ""]
    if isinstance(b, BuiltFigure):
        return _md_figure(b)
    raise TypeError(f"unknown block {type(b).__name__}")


def _html_headline(h: Headline) -> str:
    esc = html.escape
    if math.isnan(h.estimate):
        effect = ""
    elif math.isnan(h.lo) or math.isnan(h.hi):
        effect = f"<b>{h.estimate:+.3f}</b> (no interval: too few items or sizes to resample)"
    else:
        effect = f"<b>{h.estimate:+.3f}</b> 95% CI {h.lo:+.3f} to {h.hi:+.3f}"
    unit = f" · <span class='unit'>{esc(h.unit)}</span>" if h.unit else ""
    notes = "".join(f"<p class='note'>{esc(n)}</p>" for n in h.notes)
    return (
        f'<div class="headline v-{h.verdict.replace(" ", "-")}" id="finding-{esc(h.finding)}">'
        f'<p class="claim">Finding {esc(h.finding)}: {esc(h.claim)}</p>'
        f'<p class="verdict">{esc(h.verdict)}</p>'
        + (f'<p class="effect">{effect}{unit}</p>' if effect else "")
        + f'<p class="counts">{esc(_counts(h))}</p>'
        f'<p class="measured">Measured: {esc(h.measured)}</p>'
        f'<p class="meaning">{esc(h.meaning)}</p>{notes}</div>'
    )


def _html_figure(f: BuiltFigure) -> str:
    esc = html.escape
    if f.rendered is None:
        note = f'<p class="nodata">{esc(f.missing)}</p>'
        return f'<figure class="empty" data-name="{esc(f.name)}">{note}</figure>'
    r = f.rendered
    data = base64.b64encode(r.png).decode()
    return (
        f'<figure data-name="{esc(f.name)}"><img alt="{esc(f.caption)}" style="max-width:{r.width_px}px" '
        f'data-min-font-px="{r.min_font_px:.2f}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(f.caption)}</figcaption></figure>"
    )


def _table_html(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><em>(no rows)</em></p>"
    table = df.to_html(index=False, float_format=lambda x: f"{x:.3f}", na_rep="", border=0, classes="t")
    return f'<div class="scroll">{table}</div>'


def _html_block(b: object) -> str:
    esc = html.escape
    if isinstance(b, Para):
        return f"<pre>{esc(b.text)}</pre>" if "\n" in b.text else f"<p>{esc(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in b.items) + "</ul>"
    if isinstance(b, Note):
        return f'<p class="nodata">{esc(b.text)}</p>'
    if isinstance(b, Terms):
        return (
            '<dl class="terms">'
            + "".join(f"<dt>{esc(t)}</dt><dd>{esc(d)}</dd>" for t, d in b.entries)
            + "</dl>"
        )
    if isinstance(b, Table):
        body = (f"<p>{esc(b.note)}</p>" if b.note else "") + _table_html(b.df)
        return f'<details><summary class="sub">{esc(b.title)}</summary>{body}</details>' if b.title else body
    if isinstance(b, BuiltFigure):
        return _html_figure(b)
    raise TypeError(f"unknown block {type(b).__name__}")


def _html_section(s: Section) -> str:
    esc = html.escape
    body = "".join(_html_block(b) for b in s.blocks)
    if s.collapsed:
        summary = f"<summary><h2>{esc(s.title)}</h2></summary>"
        return f'<section id="{s.key}"><details>{summary}{body}</details></section>'
    return f'<section id="{s.key}"><h2>{esc(s.title)}</h2>{body}</section>'
