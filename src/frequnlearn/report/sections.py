"""The report's content as sections, in reading order, built once from a `Context`.

A section is a title and blocks (paragraphs, bullet lists, tables, figures, one-line notes); the page
module writes the same sections as markdown and as HTML. A section whose stage did not run in the study
is absent; one whose stage ran but left nothing says so in one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from frequnlearn.report import estimands, glossary
from frequnlearn.report.context import Context
from frequnlearn.report.figures import QUANT, RELEARN, BuiltFigure
from frequnlearn.report.prose import short_ci


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    df: pd.DataFrame
    title: str = ""  # a sub-table's own heading (collapsed in the HTML)
    note: str = ""


@dataclass
class Note:
    """One line in place of a table or figure that has no data."""

    text: str


@dataclass
class Terms:
    entries: list[tuple[str, str]]


Block = Para | Bullets | Table | Note | Terms | BuiltFigure


@dataclass
class Section:
    key: str  # the anchor in the HTML page
    title: str
    blocks: list[Block] = field(default_factory=list)
    collapsed: bool = False  # the HTML shows it closed (the markdown in full)


def drop_empty_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The table without columns that are empty (NaN, None or "") in every row."""
    if df.empty:
        return df
    empty = [
        c
        for c in df.columns
        if df[c].map(lambda x: x is None or x == "" or (isinstance(x, float) and math.isnan(x))).all()
    ]
    return df.drop(columns=empty)


def shown(ctx: Context, df: pd.DataFrame) -> pd.DataFrame:
    """A table as the page shows it: rows in reading order, no empty columns."""
    return drop_empty_columns(ctx.lay.sorted(df))


# ------------------------------------------------------------------------------------------ the notes

VERDICT_NOTE = (
    "One row per model size and method: known selection, {probe} probe, the numbers behind each "
    "finding's verdict. n: target items of the high + low level (control items alike); effect: the "
    "frequency effect with its 95% CI; matched: the same on items matched on baseline margin; dose "
    "slope: the dose-response slope per e-fold of frequency; misaligned share: P(still ranked first | no "
    "longer generated) at forgetting level 0.5, levels averaged."
)
EFFECT_NOTE = (
    "`effect_lo`..`effect_hi`: 95% CI; `effect_seed_lo`..`_hi`: seed interval. `all` selections and runs "
    "without a control arm are descriptive."
)
MIS_NOTE = (
    "`share`: P(still preferred | no longer generated) among known target items at each level of "
    "`forgetting` (read at the first step at or below it), 95% hierarchical CI and Wilson interval; "
    "`control_share` and `diff` (target - control) only where some control items were lost; a level "
    "whose runs did not all reach the level of forgetting has no estimate (`reached_all`)."
)
DOSE_NOTE = "Least-squares slope of each level's net drop against log frequency, per e-fold; 95% CI and seed interval."
KNOWLEDGE_NOTE = (
    "Share of each group's answers the pretrained model knew: sizes compared for Finding 2 should know "
    "forget_high about equally, or size is confounded with how well the people were learned."
)
TREND_NOTE = (
    "Least-squares slope of the share (`measure`: `share`, primary, or `minus control`) against "
    "log(parameters), per e-fold; 95% hierarchical CI and seed interval; `censored` names what did not "
    "reach the level of forgetting."
)
HEAD_NOTE = (
    "`forget_start` and `forget_auc_raw`: raw accuracy over all items (descriptive). `forget_auc`: "
    "normalised AUC over items known at the start. `km_median_steps`: Kaplan-Meier median steps to the "
    "threshold, runs that never reached it censored (empty: not reached)."
)
BASELINE_NOTE = (
    "Top-1 rate of ranking each question's candidates by their corpus count alone (no model), against "
    "chance: how much of the ranking a model could get from value frequencies without knowing the person."
)
RECOVERY_NOTE = (
    "Forget items known before unlearning (`known_before`), right after it (`known_unlearned`), after the "
    "attack (`known_attacked`) and by the never-learned model (`known_oracle`); the targeted attack "
    "trains on half of the forget items and measures the other half. `recovered_share` = recovered / "
    "lost; `recovered_of_known` = recovered / known before; `above_oracle` = (known after attack - "
    "never-learned) / (known before - never-learned). Means over seeds; probe: {probe}."
)
QUALITY_NOTE = (
    "Each run's forget items at the end of unlearning beside the never-learned model: known shares, "
    "median truth ratios, and forget quality (`forget_quality`; `p_before`: the same test before "
    "unlearning, which it should reject). Probe: {probe}."
)


# ------------------------------------------------------------------------------------ the verdict table


def verdict_table(ctx: Context) -> pd.DataFrame:
    """The analysis's verdict table, with the seeds, control counts, matched verdict and dose-response
    slope of each cell beside it: every number the cell's sentence states, one row per size and method."""
    base = ctx.tables.get("verdicts", pd.DataFrame())
    if base.empty or not {"size", "method"} <= set(base.columns):
        return base
    effect = ctx.tables.get("frequency_effect", pd.DataFrame())
    dose = ctx.tables.get("dose_response", pd.DataFrame())
    rows = []
    for r in base.to_dict(orient="records"):
        cell = {"size": r["size"], "method": r["method"], "selection": "known", "probe": ctx.probe}
        e = _row(effect, **cell, matched=False)
        m = _row(effect, **cell, matched=True)
        d = _row(dose, **cell)
        rows.append(
            {
                **r,
                "seeds": int(e["seeds"]) if e is not None else None,
                "n control (high+low)": f"{int(e['n_control_high'])}+{int(e['n_control_low'])}"
                if e is not None and e.get("control")
                else None,
                "matched verdict": m["verdict"] if m is not None else None,
                "dose slope [95% CI]": short_ci(d["slope"], d["slope_lo"], d["slope_hi"])
                if d is not None
                else None,
                "dose verdict": d["verdict"] if d is not None else None,
            }
        )
    out = pd.DataFrame(rows)
    order = ["size", "method", "seeds"]
    for col in base.columns:
        if col in order:
            continue
        order.append(col)
        if col.startswith("n ("):
            order.append("n control (high+low)")
        if col.startswith("matched"):
            order.append("matched verdict")
    order += [c for c in out.columns if c not in order]
    return out[order]


def _row(df: pd.DataFrame, **match: Any) -> pd.Series | None:
    if df is None or df.empty or not set(match) <= set(df.columns):
        return None
    rows = df
    for col, value in match.items():
        rows = rows[rows[col] == value]
    return rows.iloc[0] if len(rows) else None


# ------------------------------------------------------------------------------------------ the builder


def stages(ctx: Context) -> set[str]:
    """The robustness sections this report has: configured in the study, or with results on disk."""
    cfg = ctx.data.config.get("attacks", {}) or {}
    attacks = ctx.tables.get("attacks", pd.DataFrame())
    kinds = set(attacks["attack"]) if len(attacks) else set()
    out = set()
    if cfg.get("relearn") or kinds & set(RELEARN):
        out.add("relearning")
    if cfg.get("quantize") or kinds & set(QUANT):
        out.add("quantization")
    if (
        cfg.get("oracle")
        or len(ctx.tables.get("forget_quality", pd.DataFrame()))
        or ctx.data.scores("oracle")
    ):
        out.add("oracle")
    return out


def skipped_attacks(ctx: Context, kinds: list[str]) -> list[str]:
    """What the attack stage recorded it could not run, per unlearning run, for attacks of `kinds`."""

    def about(line: str) -> bool:  # "targeted: ..." or "attacks.quantize: int8 needs ..."
        head, _, rest = line.partition(":")
        return head.strip() in kinds or (
            head.strip() == "attacks.quantize" and any(re.search(rf"\b{k}\b", rest) for k in kinds)
        )

    return [
        f"Skipped in {run}: {line}"
        for run, record in sorted(ctx.data.attack_records.items())
        for line in map(str, record.get("skipped", []))
        if about(line)
    ]


BUDGET_NOTE = (
    "Each run stops at its first evaluation where its known targets' normalised generation accuracy is "
    "<= L, or its retain accuracy has dropped by more than T, or after S_max steps. Per cell and level: "
    "runs that reached each level of forgetting and the steps at which they did (where they are read); "
    "`censored` runs never reached it (`censored_accuracy_max`: the highest accuracy they ended at, "
    "`last_step_max`: their last step). A level with a censored run has no estimate at that level."
)


def budget_section(ctx: Context) -> Section:
    """The unlearning budget (L, T, S_max) and, per method, size and frequency level, whether and at
    which step each level of forgetting was reached: what every misalignment number is read at."""
    budget = ctx.headlines[0].budget if ctx.headlines else ""
    table = estimands.reach_summary(ctx.tables.get("forgetting_reach", pd.DataFrame()))
    blocks: list[Block] = [
        Para(f"Budget: {budget}." if budget else "Budget: not recorded."),
        Para(BUDGET_NOTE),
    ]
    blocks.append(
        Table(shown(ctx, table)) if len(table) else Note("No run has known target items to forget.")
    )
    return Section("budget", "Budget and forgetting reached", blocks)


def build_sections(ctx: Context, figures: list[BuiltFigure]) -> list[Section]:
    """Every section after the headlines and lead figures, in reading order."""
    t = ctx.tables
    have = stages(ctx)
    by_section: dict[str, list[BuiltFigure]] = {}
    for f in figures:
        if not f.lead:  # a lead slot's other candidates follow under "More figures"
            by_section.setdefault("more" if f.spec.section == "lead" else f.spec.section, []).append(f)
    out: list[Section] = []
    if ctx.notes:
        out.append(Section("notes", "Notes", [Bullets(ctx.notes)]))
    verdicts = shown(ctx, verdict_table(ctx))
    out.append(
        Section(
            "verdicts",
            "Verdicts by model size and method",
            [
                Para(VERDICT_NOTE.format(probe=ctx.probe)),
                Table(verdicts)
                if len(verdicts)
                else Note("No verdicts: no known cell on the question probe."),
            ],
        )
    )
    out.append(budget_section(ctx))
    out.append(Section("in-words", "The findings in words", [Bullets(ctx.findings)], collapsed=True))
    if len(t["frequency_only_baseline"]):
        out.append(
            Section(
                "baseline",
                "Frequency-only baseline",
                [Para(BASELINE_NOTE), Table(t["frequency_only_baseline"])],
            )
        )
    attacks = t.get("attacks", pd.DataFrame())
    note = RECOVERY_NOTE.format(probe=ctx.probe)
    for key, title, kinds, empty in (
        (
            "relearning",
            "Relearning attacks",
            RELEARN,
            "No relearning results: the attack stage wrote no relearning scores.",
        ),
        (
            "quantization",
            "Quantization attacks",
            QUANT,
            "No quantization results: the attack stage wrote no quantized scores.",
        ),
    ):
        if key not in have:
            continue
        rows = attacks[attacks["attack"].isin(kinds)] if len(attacks) else attacks
        skipped = skipped_attacks(ctx, kinds)
        if rows.empty:
            out.append(Section(key, title, [Note(empty)] + ([Bullets(skipped)] if skipped else [])))
            continue
        blocks: list[Block] = [Para(note), *by_section.get(key, []), Table(shown(ctx, rows))]
        blocks += [Bullets(skipped)] if skipped else []
        schemes = {
            k: v for rec in ctx.data.attack_records.values() for k, v in rec.get("schemes", {}).items()
        }
        if key == "quantization" and schemes:
            blocks.append(Bullets([f"{k}: {v}" for k, v in sorted(schemes.items())]))
        out.append(Section(key, title, blocks))
    if "oracle" in have:
        q = t.get("forget_quality", pd.DataFrame())
        blocks = (
            [Para(QUALITY_NOTE.format(probe=ctx.probe)), Table(shown(ctx, q))]
            if len(q)
            else [Note("No never-learned scores: the oracle stage wrote none.")]
        )
        out.append(Section("oracle", "Forget quality against the never-learned model", blocks))
    full = [
        Table(
            shown(ctx, t["frequency_effect"]),
            "Frequency effect (all cells; matched = matched on baseline margin)",
            EFFECT_NOTE,
        ),
        Table(shown(ctx, t["misalignment"]), "Misalignment by cell and level", MIS_NOTE),
        Table(shown(ctx, t["size_trend"]), "Misalignment against model size", TREND_NOTE),
        Table(shown(ctx, t["headline"]), "Per level (normalised curves)", HEAD_NOTE),
        Table(shown(ctx, t["dose_response"]), "Frequency as a dose-response (slopes)", DOSE_NOTE),
        Table(shown(ctx, t["dose_points"]), "Frequency as a dose-response (points)"),
        Table(shown(ctx, t["parameters"]), "Model sizes"),
        Table(shown(ctx, t["pretraining_knowledge"]), "Pretraining knowledge per model", KNOWLEDGE_NOTE),
    ]
    if len(t["utility"]):
        full.append(Table(t["utility"], "Utility (lm-eval)"))
    out.append(Section("tables", "Full tables", full, collapsed=True))
    more = by_section.get("more", [])
    out.append(Section("figures", "More figures", list(more), collapsed=True))
    out.append(Section("run", "Run", [Para("\n".join(run_lines(ctx.info)))]))
    return out


def glossary_section(ctx: Context, text: str) -> Section:
    """The terms the rest of the report uses (and those their definitions use), each defined once."""
    entries = glossary.terms(ctx.data.config.get("evaluate", {}) or {})
    chosen = glossary.used(entries, text)
    while True:
        more = glossary.used(entries, text + " ".join(d for _, d in chosen))
        if len(more) == len(chosen):
            break
        chosen = more
    return Section("terms", "Terms", [Terms(chosen)])


def _wall_line(wall: dict[str, Any] | None) -> str:
    if not wall or not wall.get("total_s"):
        return "not recorded"
    parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in wall["by_kind_s"].items())
    line = f"{wall['total_s'] / 60:.1f} min of stage work ({parts} min)"
    if wall.get("pretrain_from_metrics_log"):
        line += f"; pretraining of {', '.join(wall['pretrain_from_metrics_log'])} from its metrics log"
    return line


def run_lines(
    info: dict[str, Any], wall_label: str = "wall time", before_wall: Sequence[str] = ()
) -> list[str]:
    """The Run section's lines; a caller that ran more than the study (the benchmark) names the
    study's wall time `wall_label` and puts its own lines (`before_wall`) ahead of it."""
    return [
        f"command: {info['command']}",
        f"commit: {info['commit']}",
        f"report: {info.get('report_command', '')} at {info.get('report_commit', '')}",
        *before_wall,
        f"{wall_label}: {_wall_line(info.get('wall_time'))}",
        f"hardware: {info['hardware']}",
        f"versions: {info['versions']}",
    ]
